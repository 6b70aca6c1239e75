"""How challenges do: who takes part, who completes, what it costs, who is close (the Challenges page)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import text
from sqlmodel import Session

from db.engine import sql_moment
from db.models import Challenge, stored_id, utcnow
from loyalty.engagement.challenges import list_challenges
from loyalty.settings import get_settings

__all__ = ["CLOSE_SHARE", "ChallengeResults", "challenge_results", "describe_goal"]

# A member who has reached this share of a challenge's target, and not completed it, is "close".
CLOSE_SHARE = 0.5

RESULT_COLUMNS = [
    "name",
    "goal",
    "reward",
    "starts_at",
    "ends_at",
    "participants",
    "members_completed",
    "completion_rate",
    "close",
    "completions",
    "taken_back",
    "points_paid",
    "cost",
]


@dataclass(frozen=True)
class ChallengeResults:
    """One row per challenge (``RESULT_COLUMNS``) and the completions per week (``week, challenge, completions``)."""

    table: pd.DataFrame
    weekly: pd.DataFrame
    currency: str


def challenge_results(session: Session, *, now: datetime | None = None) -> ChallengeResults:
    """Each challenge's participants (members with a purchase that counts towards it), completions,
    completion rate (members completed / participants), members close to completing, and cost
    (points paid on completions not taken back, times the value of a point)."""
    now = now or utcnow()
    settings = get_settings(session)
    rows = []
    for listed in list_challenges(session):
        challenge = session.get(Challenge, listed["id"])
        assert challenge is not None
        end = min(now, challenge.ends_at) if challenge.ends_at else now
        participants = _participants(session, challenge, end)
        stats = session.execute(
            text(
                "SELECT COUNT(*), COALESCE(SUM(CASE WHEN reversed_at IS NULL THEN 1 ELSE 0 END), 0), "
                "COALESCE(SUM(CASE WHEN reversed_at IS NULL THEN points ELSE 0 END), 0), "
                "COUNT(DISTINCT CASE WHEN reversed_at IS NULL THEN member_id END) FROM challenge_completion WHERE challenge_id = :c"
            ),
            {"c": challenge.id},
        ).one()
        made, standing, points, completed = (int(v) for v in stats)
        rows.append(
            {
                "name": challenge.name,
                "goal": describe_goal(challenge, settings.currency),
                "reward": " + ".join(
                    ([f"{challenge.points:,} pts"] if challenge.points else []) + ([f"badge {challenge.badge}"] if challenge.badge else [])
                ),
                "starts_at": challenge.starts_at,
                "ends_at": challenge.ends_at,
                "participants": participants,
                "members_completed": completed,
                "completion_rate": completed / participants if participants else math.nan,
                "close": _close(session, challenge, end) if challenge.starts_at <= now else 0,
                "completions": standing,
                "taken_back": made - standing,
                "points_paid": points,
                "cost": round(points * settings.point_value, 2),
            }
        )
    return ChallengeResults(pd.DataFrame(rows, columns=RESULT_COLUMNS), _weekly(session), settings.currency)


def describe_goal(challenge: Challenge, currency: str) -> str:
    """The goal in words: "3 purchases of eco within 30 days", "spend EUR 300.00 within 60 days", "4 months in a row"."""
    if challenge.kind == "streak_months":
        return f"a purchase in each of {challenge.target} months in a row"
    what = f"{challenge.target} purchases" if challenge.kind == "purchases" else f"spend {currency} {challenge.min_spend or 0:,.2f}"
    if challenge.category:
        what += f" in {challenge.category}"
    return what + (f" within {challenge.within_days} days" if challenge.within_days else "")


def _counted(challenge: Challenge) -> tuple[str, dict[str, Any]]:
    where = "refunded_at IS NULL AND occurred_at >= :starts AND occurred_at < :end" + (" AND category = :category" if challenge.category else "")
    return where, {"starts": challenge.starts_at, "category": challenge.category}


def _moments(session: Session, params: dict[str, Any]) -> dict[str, Any]:
    return {k: sql_moment(session, v) if isinstance(v, datetime) else v for k, v in params.items()}


def _participants(session: Session, challenge: Challenge, end: datetime) -> int:
    where, params = _counted(challenge)
    return int(
        session.execute(text(f"SELECT COUNT(DISTINCT member_id) FROM purchase WHERE {where}"), _moments(session, {**params, "end": end})).scalar_one()
    )


def _close(session: Session, challenge: Challenge, end: datetime) -> int:
    """Members who never completed it whose progress now is at least ``CLOSE_SHARE`` of the target."""
    where, params = _counted(challenge)
    done = "member_id NOT IN (SELECT member_id FROM challenge_completion WHERE challenge_id = :c AND reversed_at IS NULL)"
    params = {**params, "end": end, "c": stored_id(challenge)}
    if challenge.kind == "streak_months":
        since = (pd.Timestamp(end).tz_convert("UTC").tz_localize(None).to_period("M") - challenge.target).to_timestamp().tz_localize("UTC")
        found = session.execute(
            text(f"SELECT member_id, occurred_at FROM purchase WHERE {where} AND occurred_at >= :since AND {done}"),
            {**params, "since": since.to_pydatetime()},
        ).all()
        if not found:
            return 0
        frame = pd.DataFrame(found, columns=["member_id", "occurred_at"])
        stamp = pd.to_datetime(frame["occurred_at"], utc=True)
        frame["month"] = stamp.dt.year * 12 + stamp.dt.month - 1
        current = end.year * 12 + end.month - 1
        months = frame.drop_duplicates(["member_id", "month"]).sort_values(["member_id", "month"], ascending=[True, False])
        # the run of months ending this month, or last month (this one is not over yet)
        anchor = months["member_id"].map(months.groupby("member_id")["month"].max().eq(current)).map({True: current, False: current - 1})
        in_run = (months["month"] == anchor - months.groupby("member_id").cumcount()).astype(int)
        run = in_run.groupby(months["member_id"]).cumprod().groupby(months["member_id"]).sum()
        return int((run >= math.ceil(challenge.target * CLOSE_SHARE)).sum())
    start = params["starts"]
    if challenge.within_days:
        start = max(start, end - timedelta(days=challenge.within_days))
    measure = "COUNT(*)" if challenge.kind == "purchases" else "SUM(amount)"
    goal = float(challenge.target) if challenge.kind == "purchases" else float(challenge.min_spend or 0)
    found = session.execute(
        text(f"SELECT member_id FROM purchase WHERE {where} AND {done} GROUP BY member_id HAVING {measure} >= :half"),
        _moments(session, {**params, "starts": start, "half": goal * CLOSE_SHARE}),
    ).all()
    return len(found)


def _weekly(session: Session) -> pd.DataFrame:
    found = session.execute(
        text(
            "SELECT c.name, cc.completed_at FROM challenge_completion cc JOIN challenge c ON c.id = cc.challenge_id "
            "WHERE cc.reversed_at IS NULL ORDER BY c.id"
        )
    ).all()
    if not found:
        return pd.DataFrame(columns=["week", "challenge", "completions"])
    frame = pd.DataFrame(found, columns=["challenge", "completed_at"])
    monday = pd.to_datetime(frame["completed_at"], utc=True).dt.tz_localize(None).dt.to_period("W-SUN").dt.start_time
    return (
        frame.assign(week=monday.dt.strftime("week of %d %b %Y"), monday=monday)
        .sort_values("monday")
        .groupby(["monday", "week", "challenge"], as_index=False, sort=False)
        .size()
        .drop(columns="monday")
        .rename(columns={"size": "completions"})
    )
