"""How challenges and referrals do: who takes part, who completes, what it costs (the Challenges and Referrals pages)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import func, text
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from db.models import Challenge, ChallengeCompletion, KpiSnapshot, Member, Purchase, table_of, utcnow
from loyalty.errors import InvalidInput
from loyalty.ledger.challenges import challenge_target, draft_challenge, in_holdout, list_challenges, segment_members, streak_runs
from loyalty.program.goals import kpi_tiles
from loyalty.settings import get_settings

__all__ = [
    "CLOSE_SHARE",
    "REFERRAL_METRICS",
    "ChallengeResults",
    "challenge_effect",
    "challenge_results",
    "describe_goal",
    "effect_table",
    "referral_overview",
]

# A member who has reached this share of a challenge's target, and not completed it, is "close".
CLOSE_SHARE = 0.5

RESULT_COLUMNS = [
    "id",
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
    "holdout_pct",
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
                "id": challenge.id,
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
                "holdout_pct": challenge.holdout_pct,
            }
        )
    return ChallengeResults(pd.DataFrame(rows, columns=RESULT_COLUMNS), _weekly(session), settings.currency)


def preview_challenge(session: Session, *, now: datetime | None = None, **fields: Any) -> dict[str, Any]:
    """What a challenge not saved yet (the fields of :func:`define_challenge`) would find now:
    ``participants`` (members with a purchase that counts so far), ``would_complete`` (already at
    the target: paid with their next purchase) and ``close`` (half way or more, not there yet)."""
    challenge = draft_challenge(session, refused="Nothing to preview:", check_name=False, **fields)
    now = now or utcnow()
    end = min(now, challenge.ends_at) if challenge.ends_at else now
    if challenge.starts_at >= end:
        return {"participants": 0, "would_complete": 0, "close": 0, "goal": describe_goal(challenge, get_settings(session).currency)}
    reached = _close(session, challenge, end, 1.0)
    return {
        "participants": _participants(session, challenge, end),
        "would_complete": reached,
        "close": _close(session, challenge, end) - reached,
        "goal": describe_goal(challenge, get_settings(session).currency),
    }


def challenge_effect(session: Session, challenge_id: int, *, now: datetime | None = None) -> dict[str, Any]:
    """The challenge's effect measured against its holdout, as a campaign's is.

    The eligible members (its segment, or every member not erased) who joined before it
    ended are split as :func:`loyalty.ledger.challenges.in_holdout` splits them; over the
    challenge's dates so far, purchases and revenue per member of each group (members who did
    not buy count as 0), and the difference with its 95 % Welch interval. ``verdict`` says
    whether the interval of the purchases per member excludes 0.
    """
    from loyalty.insights.campaign_results import welch_interval

    challenge = session.get(Challenge, challenge_id)
    if challenge is None:
        raise InvalidInput(f"No challenge with id {challenge_id}.")
    if not challenge.holdout_pct:
        raise InvalidInput(f"The challenge {challenge.name} has no holdout: nothing to measure its effect against.")
    end = min(now or utcnow(), challenge.ends_at) if challenge.ends_at else (now or utcnow())
    member = table_of(Member)
    eligible = sa_select(member.c.id).where(member.c.erased_at.is_(None), member.c.joined_at < end)
    ids = np.asarray([r[0] for r in session.execute(eligible).all()], dtype=np.int64)
    if challenge.segment_id is not None:
        ids = np.intersect1d(ids, segment_members(session, challenge.segment_id))
    bought = session.execute(
        sa_select(_PURCHASE.c.member_id, func.count(), func.sum(_PURCHASE.c.amount))
        .where(*_counted(challenge, challenge.starts_at, end))
        .group_by(_PURCHASE.c.member_id)
    ).all()
    per_member = pd.DataFrame(bought, columns=["member_id", "purchases", "revenue"]).set_index("member_id")
    frame = pd.DataFrame(index=pd.Index(ids, name="member_id")).join(per_member).fillna(0.0)
    holdout = in_holdout(challenge, ids)
    out: dict[str, Any] = {
        "challenge": challenge.name,
        "from": challenge.starts_at,
        "to": end,
        "treatment_members": int((~holdout).sum()),
        "holdout_members": int(holdout.sum()),
    }
    for column in ("purchases", "revenue"):
        treated, held = frame[column].to_numpy()[~holdout], frame[column].to_numpy()[holdout]
        difference, low, high = welch_interval(treated, held)
        out[column] = {
            "treatment_per_member": float(treated.mean()) if len(treated) else math.nan,
            "holdout_per_member": float(held.mean()) if len(held) else math.nan,
            "difference": difference,
            "ci_low": low,
            "ci_high": high,
        }
    low, high = out["purchases"]["ci_low"], out["purchases"]["ci_high"]
    if low is None or high is None:
        out["verdict"] = "too few members to tell"
    elif low > 0:
        out["verdict"] = "more purchases than the holdout"
    elif high < 0:
        out["verdict"] = "fewer purchases than the holdout"
    else:
        out["verdict"] = "no difference shown (the interval includes 0)"
    return out


def effect_table(effect: dict[str, Any]) -> pd.DataFrame:
    """The effect as rows a page shows: per member in each group, the difference and its interval."""
    return pd.DataFrame(
        [
            {
                "per member": label,
                "with the challenge": effect[key]["treatment_per_member"],
                "holdout": effect[key]["holdout_per_member"],
                "difference": effect[key]["difference"],
                "95 % interval": "n/a" if effect[key]["ci_low"] is None else f"{effect[key]['ci_low']:,.2f} to {effect[key]['ci_high']:,.2f}",
            }
            for key, label in (("purchases", "purchases"), ("revenue", "revenue"))
        ]
    )


def describe_goal(challenge: Challenge, currency: str) -> str:
    """The goal in words: "3 purchases of eco within 30 days", "spend EUR 300.00 within 60 days", "4 months in a row"."""
    if challenge.kind == "streak_months":
        return f"a purchase in each of {challenge.target} months in a row"
    what = f"{challenge.target} purchases" if challenge.kind == "purchases" else f"spend {currency} {challenge.min_spend or 0:,.2f}"
    if challenge.category:
        what += f" in {challenge.category}"
    return what + (f" within {challenge.within_days} days" if challenge.within_days else "")


_PURCHASE = table_of(Purchase)
_COMPLETION = table_of(ChallengeCompletion)


def _counted(challenge: Challenge, starts: datetime, end: datetime) -> list[Any]:
    """Conditions on purchases that count towards the challenge from ``starts`` to ``end`` (not refunded in full)."""
    conditions = [_PURCHASE.c.refunded_at.is_(None), _PURCHASE.c.occurred_at >= starts, _PURCHASE.c.occurred_at < end]
    if challenge.category:
        conditions.append(_PURCHASE.c.category == challenge.category)
    return conditions


def _participants(session: Session, challenge: Challenge, end: datetime) -> int:
    statement = sa_select(func.count(func.distinct(_PURCHASE.c.member_id))).where(*_counted(challenge, challenge.starts_at, end))
    return int(session.execute(statement).scalar_one())


def _close(session: Session, challenge: Challenge, end: datetime, share: float = CLOSE_SHARE) -> int:
    """Members who never completed it whose progress now is at least ``share`` of the target."""
    completed = sa_select(_COMPLETION.c.member_id).where(_COMPLETION.c.challenge_id == (challenge.id or -1), _COMPLETION.c.reversed_at.is_(None))
    not_completed = _PURCHASE.c.member_id.not_in(completed)
    if challenge.kind == "streak_months":
        since = (pd.Timestamp(end).tz_convert("UTC").tz_localize(None).to_period("M") - challenge.target).to_timestamp().tz_localize("UTC")
        starts = max(challenge.starts_at, since.to_pydatetime())
        found = session.execute(
            sa_select(_PURCHASE.c.member_id, _PURCHASE.c.occurred_at).where(*_counted(challenge, starts, end), not_completed)
        ).all()
        if not found:
            return 0
        frame = pd.DataFrame(found, columns=["member_id", "occurred_at"])
        run = streak_runs(frame["member_id"], frame["occurred_at"], end)
        return int((run >= math.ceil(challenge.target * share)).sum())
    start = challenge.starts_at
    if challenge.within_days:
        start = max(start, end - timedelta(days=challenge.within_days))
    measure = func.count() if challenge.kind == "purchases" else func.sum(_PURCHASE.c.amount)
    goal = float(challenge_target(challenge))
    statement = (
        sa_select(_PURCHASE.c.member_id)
        .where(*_counted(challenge, start, end), not_completed)
        .group_by(_PURCHASE.c.member_id)
        .having(measure >= goal * share - 1e-9)
    )
    return len(session.execute(statement).all())


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


# --- the Referrals page ---------------------------------------------------------------------------

REFERRAL_METRICS = ("referrals", "referral_conversion", "referral_bonus_cost", "referred_revenue_per_member", "unreferred_revenue_per_member")


def referral_overview(session: Session, *, months: int = 12) -> dict[str, Any]:
    """What the Referrals page shows: the rules in force, the referral KPIs of the latest monthly
    snapshot (tiles with trend), referrals and conversion per month (snapshots), the referrals
    still pending, and the members who referred most."""
    settings = get_settings(session)
    history = pd.DataFrame(
        session.exec(
            select(KpiSnapshot.period_start, KpiSnapshot.metric, KpiSnapshot.value).where(  # type: ignore[call-overload]  # value is Optional
                col(KpiSnapshot.metric).in_(["referrals", "referral_conversion"]), KpiSnapshot.period == "month", KpiSnapshot.dimension == "overall"
            )
        ).all(),
        columns=["month", "metric", "value"],
    )
    monthly = (
        history.pivot_table(index="month", columns="metric", values="value", aggfunc="first", dropna=False).reset_index().tail(months)
        if not history.empty
        else pd.DataFrame(columns=["month", "referrals", "referral_conversion"])
    )
    top = pd.DataFrame(
        session.execute(
            text(
                "SELECT m.external_id, COUNT(*), SUM(CASE WHEN r.status = 'rewarded' THEN 1 ELSE 0 END), "
                "SUM(CASE WHEN r.status = 'rewarded' THEN r.referrer_points ELSE 0 END), MAX(r.referred_at) "
                "FROM referral r JOIN member m ON m.id = r.referrer_id GROUP BY m.external_id ORDER BY COUNT(*) DESC, m.external_id LIMIT 20"
            )
        ).all(),
        columns=["member", "referred", "paid", "bonus_points", "last_referral"],
    )
    status = dict(session.execute(text("SELECT status, COUNT(*) FROM referral GROUP BY status")).all())
    return {
        "rules": {
            "referrer_points": settings.referral_referrer_points,
            "referee_points": settings.referral_referee_points,
            "min_purchase": settings.referral_min_purchase,
            "return_window_days": settings.return_window_days,
            "currency": settings.currency,
        },
        "tiles": kpi_tiles(session, metrics=REFERRAL_METRICS),
        "monthly": monthly,
        "top_referrers": top,
        "by_status": {s: int(status.get(s, 0)) for s in ("pending", "rewarded", "reversed")},
    }
