"""Challenges: goals members reach by buying, paid the moment the purchase that meets them arrives.

A challenge is one of three kinds:

- ``purchases``: ``target`` purchases (in ``category`` if set), within ``within_days`` of each
  other if set, else anywhere in the challenge's dates;
- ``spend``: purchases adding up to at least ``min_spend`` (same window and category rules);
- ``streak_months``: a purchase in each of ``target`` consecutive calendar months (UTC).

:func:`evaluate_purchases` runs inside the transaction that writes purchases (the import, the
pages, the API: :func:`loyalty.ledger.purchases.add_purchases`), for the members of those
purchases: whoever now meets a challenge gets its points (a ``bonus`` ledger entry, no
campaign, no purchase: a partial return does not touch it) and its badge, recorded as a
completion with the purchase that met it. A member completes a challenge at most
``max_completions`` times; after a completion the count starts again from the next purchase
(for a streak, the next month). A completion is never paid twice: the completion rows are
unique per challenge, member and sequence, and evaluation only adds completions beyond those
stored. A full refund of the purchase that met a challenge, within the return window
(Settings), takes its reward back (:func:`reverse_for_refund`); the member can then meet it
again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import bindparam, text
from sqlmodel import Session, col, select

from db.bulk import allocate_ids, id_batches, insert_frame
from db.engine import sql_moment, write_transaction
from db.models import Challenge, ChallengeCompletion, LedgerEntry, Purchase, Segment, stored_id, utcnow
from loyalty.access.audit import record_audit
from loyalty.access.roles import Actor, require
from loyalty.bounds import MAX_BONUS_POINTS
from loyalty.errors import InvalidInput
from loyalty.ledger.kinds import BONUS, REVERSE, expiry_dates
from loyalty.ledger.outbox import emit_entries, emit_entry
from loyalty.periods import as_utc
from loyalty.settings import get_settings

__all__ = [
    "KINDS",
    "Completion",
    "define_challenge",
    "draft_challenge",
    "active_challenges",
    "challenges_during",
    "evaluate_purchases",
    "in_holdout",
    "segment_members",
    "list_challenges",
    "member_badges",
    "member_challenges",
    "reverse_for_refund",
    "challenge_target",
    "streak_months",
    "streak_runs",
]

KINDS = ("purchases", "spend", "streak_months")
MAX_TARGET = 1_000
MAX_STREAK_MONTHS = 120
MAX_WITHIN_DAYS = 3_650
MAX_COMPLETIONS = 100
MAX_HOLDOUT = 0.5


@dataclass(frozen=True)
class Completion:
    challenge: str
    member_id: int
    purchase_id: int
    completed_at: datetime
    points: int
    badge: str


# --- defining ---------------------------------------------------------------------------------------


def define_challenge(session: Session, *, actor: Actor, **fields: Any) -> dict[str, Any]:
    """Save a new challenge after checking every field (those of :func:`draft_challenge`); refused
    whole, naming each field and why. Returns the challenge as ``challenges list`` shows it.

    ``holdout_pct``: a stable share of the eligible members who are left out (never complete
    it, never see it), so its effect can be measured as a campaign's is.
    """
    require(actor, "program.configure")
    row = draft_challenge(session, **fields)
    row.created_by = actor.username
    with write_transaction(session):
        session.add(row)
        session.flush()
        record_audit(session, actor=actor, action="challenge.create", entity="challenge", entity_id=row.name, after=_jsonable(_as_dict(row)))
    return _as_dict(row)


def draft_challenge(
    session: Session,
    *,
    name: str,
    purchases: float | None = None,
    min_spend: float | None = None,
    streak_months: float | None = None,
    within_days: int | None = None,
    category: str = "",
    points: int = 0,
    badge: str = "",
    starts: datetime | date | None = None,
    ends: datetime | date | None = None,
    segment_id: int | None = None,
    max_completions: int = 1,
    holdout_pct: float = 0.0,
    refused: str = "The challenge was not saved.",
    check_name: bool = True,
) -> Challenge:
    """A challenge checked field by field and not saved (what :func:`define_challenge` saves, what a preview measures).

    ``starts`` and ``ends`` are moments, or days (their start, UTC); ``starts`` defaults to now."""
    name, category, badge = (name or "").strip(), (category or "").strip(), (badge or "").strip()
    problems: list[str] = []
    chosen = [k for k, v in (("purchases", purchases), ("min_spend", min_spend), ("streak_months", streak_months)) if v is not None]
    if len(chosen) != 1:
        problems.append("goal: give exactly one of purchases, min_spend or streak_months.")
    if not check_name:
        pass
    elif not name or len(name) > 100:
        problems.append("name: 1 to 100 characters.")
    elif session.exec(select(Challenge.id).where(Challenge.name == name)).first() is not None:
        problems.append(f"name: a challenge named {name!r} already exists.")
    if purchases is not None and not (float(purchases).is_integer() and 1 <= purchases <= MAX_TARGET):
        problems.append(f"purchases: a whole number from 1 to {MAX_TARGET:,} (you entered {purchases:g}).")
    if min_spend is not None and not (np.isfinite(min_spend) and 0 < min_spend <= get_settings(session).max_purchase_amount * MAX_TARGET):
        problems.append(f"min_spend: an amount above 0 (you entered {min_spend}).")
    if streak_months is not None and not (float(streak_months).is_integer() and 2 <= streak_months <= MAX_STREAK_MONTHS):
        problems.append(f"streak_months: a whole number of months from 2 to {MAX_STREAK_MONTHS} (you entered {streak_months:g}).")
    if within_days is not None and streak_months is not None:
        problems.append("within_days: a streak counts calendar months; leave within_days out.")
    elif within_days is not None and not 1 <= within_days <= MAX_WITHIN_DAYS:
        problems.append(f"within_days: from 1 to {MAX_WITHIN_DAYS:,} days (you entered {within_days}).")
    if category and streak_months is not None:
        problems.append("category: a streak counts any purchase; leave category out.")
    if len(category) > 100 or len(badge) > 100:
        problems.append("category and badge: at most 100 characters each.")
    if not 0 <= points <= MAX_BONUS_POINTS:
        problems.append(f"points: from 0 to {MAX_BONUS_POINTS:,} (you entered {points}).")
    if points == 0 and not badge:
        problems.append("reward: give points, a badge, or both.")
    starts = as_utc(starts) if starts is not None else utcnow()
    ends = as_utc(ends) if ends is not None else None
    if ends is not None and ends <= starts:
        problems.append(f"ends: after the start ({starts:%Y-%m-%d}); you entered {ends:%Y-%m-%d}.")
    if not 1 <= max_completions <= MAX_COMPLETIONS:
        problems.append(f"max_completions: from 1 to {MAX_COMPLETIONS} (you entered {max_completions}).")
    if not (np.isfinite(holdout_pct) and 0 <= holdout_pct <= MAX_HOLDOUT):
        problems.append(f"holdout: a share from 0 to {MAX_HOLDOUT:g} (you entered {holdout_pct:g}).")
    if segment_id is not None and session.get(Segment, segment_id) is None:
        problems.append(f"segment: no segment with id {segment_id}.")
    if problems:
        raise InvalidInput(f"{refused} " + " ".join(problems))
    kind = "purchases" if purchases is not None else "spend" if min_spend is not None else "streak_months"
    return Challenge(
        name=name,
        kind=kind,
        target=int(purchases or streak_months or 0),
        min_spend=min_spend,
        within_days=within_days,
        category=category,
        points=points,
        badge=badge,
        starts_at=starts,
        ends_at=ends,
        segment_id=segment_id,
        max_completions=max_completions,
        holdout_pct=float(holdout_pct),
    )


def list_challenges(session: Session) -> list[dict[str, Any]]:
    """Every challenge, newest first, with how many members completed it (reversed ones not counted)."""
    completed = dict(
        session.execute(
            text("SELECT challenge_id, COUNT(DISTINCT member_id) FROM challenge_completion WHERE reversed_at IS NULL GROUP BY challenge_id")
        ).all()
    )
    rows = session.exec(select(Challenge).order_by(col(Challenge.created_at).desc(), col(Challenge.id).desc())).all()
    return [{**_as_dict(c), "members_completed": int(completed.get(c.id, 0))} for c in rows]


def _as_dict(c: Challenge) -> dict[str, Any]:
    return {
        "id": c.id,
        "name": c.name,
        "kind": c.kind,
        "target": challenge_target(c),
        "within_days": c.within_days,
        "category": c.category,
        "points": c.points,
        "badge": c.badge,
        "starts_at": c.starts_at,
        "ends_at": c.ends_at,
        "segment_id": c.segment_id,
        "max_completions": c.max_completions,
        "holdout_pct": c.holdout_pct,
        "status": c.status,
        "created_by": c.created_by,
    }


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in values.items()}


def challenge_target(challenge: Challenge) -> float | int:
    """What a member must reach: purchases or months (a whole number), or an amount spent."""
    return float(challenge.min_spend or 0) if challenge.kind == "spend" else challenge.target


# --- evaluating ---------------------------------------------------------------------------------------


_ACTIVE_IDS = text("SELECT id FROM challenge WHERE status = 'active' AND starts_at <= :last AND (ends_at IS NULL OR ends_at > :first) ORDER BY id")


def active_challenges(session: Session, first: datetime, last: datetime) -> list[Challenge]:
    """The active challenges whose dates overlap purchases made from ``first`` to ``last``.

    Asked first as one plain statement: every batch of purchases the API writes asks, and a
    program mostly has none (the ORM query costs a millisecond a batch)."""
    ids = session.execute(_ACTIVE_IDS, {"first": sql_moment(session, first), "last": sql_moment(session, last)}).scalars().all()
    if not ids:
        return []
    return list(session.exec(select(Challenge).where(col(Challenge.id).in_(ids)).order_by(col(Challenge.id))).all())


def challenges_during(session: Session, purchases: pd.DataFrame) -> list[Challenge]:
    """The active challenges whose dates overlap these purchases (``occurred_at``)."""
    if purchases.empty:
        return []
    first, last = pd.Timestamp(purchases["occurred_at"].min()), pd.Timestamp(purchases["occurred_at"].max())
    return active_challenges(session, as_utc(first.to_pydatetime()), as_utc(last.to_pydatetime()))


def evaluate_purchases(session: Session, purchases: pd.DataFrame, *, actor: str, active: list[Challenge] | None = None) -> list[Completion]:
    """Pay every challenge the members of ``purchases`` (just written: ``member_id, occurred_at``) now meet.

    ``active``: :func:`challenges_during` these purchases, when the caller has asked already.
    Runs in the caller's write transaction. Returns the completions it added.
    """
    active = challenges_during(session, purchases) if active is None else active
    if purchases.empty or not active:
        return []
    at = pd.to_datetime(purchases["occurred_at"], utc=True)
    made: list[Completion] = []
    for challenge in active:
        arrived = purchases[(at >= challenge.starts_at) & ((at < challenge.ends_at) if challenge.ends_at else True)]
        if challenge.category:
            arrived = arrived[arrived["category"] == challenge.category]
        members = np.unique(arrived["member_id"].to_numpy(dtype=np.int64))
        if challenge.segment_id is not None and len(members):
            members = np.intersect1d(members, segment_members(session, challenge.segment_id))
        members = members[~in_holdout(challenge, members)]
        if len(members):
            made.extend(_complete(session, challenge, members, actor=actor))
    return made


def in_holdout(challenge: Challenge, member_ids: np.ndarray) -> np.ndarray:
    """Whether each member is in the challenge's holdout: fixed per (challenge, member), a ``holdout_pct`` share."""
    if not challenge.holdout_pct:
        return np.zeros(len(member_ids), dtype=bool)
    from loyalty.program.campaigns import stable_uniform

    # Offset from campaign ids, so a challenge and a campaign with the same id draw independently.
    return stable_uniform((1 << 40) + stored_id(challenge), np.asarray(member_ids, dtype=np.int64)) < challenge.holdout_pct


def segment_members(session: Session, segment_id: int) -> np.ndarray:
    cache: dict[int, np.ndarray] = session.info.setdefault("challenge_segments", {})
    if segment_id not in cache:
        from loyalty.program.segments import segment_member_ids

        segment = session.get(Segment, segment_id)
        cache[segment_id] = segment_member_ids(session, segment.rules if segment else {}) if segment else np.empty(0, np.int64)
    return cache[segment_id]


def _counted_purchases(session: Session, challenge: Challenge, members: np.ndarray) -> pd.DataFrame:
    """The challenge's purchases of these members (not refunded in full), sorted by member, time and id."""
    sql = (
        "SELECT id, member_id, occurred_at, amount FROM purchase WHERE member_id IN :ids AND refunded_at IS NULL "
        "AND occurred_at >= :starts"
        + (" AND occurred_at < :ends" if challenge.ends_at else "")
        + (" AND category = :category" if challenge.category else "")
    )
    statement = text(sql).bindparams(bindparam("ids", expanding=True))
    params: dict[str, Any] = {
        "starts": sql_moment(session, challenge.starts_at),
        "ends": sql_moment(session, challenge.ends_at),
        "category": challenge.category,
    }
    parts = [
        pd.DataFrame(session.execute(statement, {**params, "ids": batch}).all(), columns=["id", "member_id", "occurred_at", "amount"])
        for batch in id_batches(members)
    ]
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["id", "member_id", "occurred_at", "amount"])
    frame["occurred_at"] = pd.to_datetime(frame["occurred_at"], utc=True)
    frame = frame.astype({"id": "int64", "member_id": "int64", "amount": "float64"})
    return frame.sort_values(["member_id", "occurred_at", "id"], ignore_index=True)


def _month_end(moments: pd.Series) -> pd.Series:
    """The last microsecond of each moment's calendar month (UTC)."""
    start = moments.dt.tz_convert("UTC").dt.tz_localize(None).dt.to_period("M").dt.to_timestamp()
    return (start + pd.DateOffset(months=1) - pd.Timedelta(microseconds=1)).dt.tz_localize("UTC")


def _restart_points(kind: str, member_ids: Sequence[int] | np.ndarray, moments: Any, purchase_ids: Sequence[int] | np.ndarray) -> pd.DataFrame:
    """Per member, the point after which purchases count again (``after_at``, ``after_id``): the
    purchase of a completion, or for a streak the end of that purchase's month."""
    points = pd.DataFrame(
        {"after_at": pd.to_datetime(pd.Series(list(moments)), utc=True).to_numpy(), "after_id": np.asarray(purchase_ids, dtype=np.int64)},
        index=pd.Index(np.asarray(member_ids, dtype=np.int64), name="member_id"),
    )
    points["after_at"] = pd.to_datetime(points["after_at"], utc=True)
    if kind == "streak_months":  # a streak starts again with the next month
        points["after_at"], points["after_id"] = _month_end(points["after_at"]), np.iinfo(np.int64).max
    return points


def _stored_completions(session: Session, challenge_id: int, members: np.ndarray, kind: str) -> pd.DataFrame:
    """Per member: sequences used so far, completions standing, and the purchase after which counting restarts."""
    statement = text(
        "SELECT c.member_id, c.sequence, c.reversed_at, c.completed_at, p.occurred_at, p.id FROM challenge_completion c "
        "JOIN purchase p ON p.id = c.purchase_id WHERE c.challenge_id = :c AND c.member_id IN :ids"
    ).bindparams(bindparam("ids", expanding=True))
    rows = [r for batch in id_batches(members) for r in session.execute(statement, {"c": challenge_id, "ids": batch}).all()]
    frame = pd.DataFrame(rows, columns=["member_id", "sequence", "reversed_at", "completed_at", "after_at", "after_id"])
    frame["completed_at"] = pd.to_datetime(frame["completed_at"], utc=True)
    frame["after_at"] = pd.to_datetime(frame["after_at"], utc=True)
    standing = frame[frame["reversed_at"].isna()]
    last = standing.sort_values(["after_at", "after_id"]).groupby("member_id")[["after_at", "after_id", "completed_at"]].last()
    restart = _restart_points(kind, last.index, last["after_at"], last["after_id"])
    last = last.assign(after_at=restart["after_at"], after_id=restart["after_id"])
    out = pd.DataFrame(index=pd.Index(np.unique(members), name="member_id"))
    out["sequences"] = frame.groupby("member_id")["sequence"].max().reindex(out.index).fillna(0).astype("int64")
    out["standing"] = standing.groupby("member_id").size().reindex(out.index).fillna(0).astype("int64")
    return out.join(last)


def _after_last_completion(purchases: pd.DataFrame, done: pd.DataFrame) -> pd.DataFrame:
    """Purchases strictly after each member's last standing completion's purchase."""
    work = purchases.join(done[["after_at", "after_id"]], on="member_id")
    later = (
        work["after_at"].isna()
        | (work["occurred_at"] > work["after_at"])
        | ((work["occurred_at"] == work["after_at"]) & (work["id"] > work["after_id"].fillna(-1)))
    )
    return purchases[later.to_numpy()].reset_index(drop=True)


def _first_meeting(challenge: Challenge, rows: pd.DataFrame) -> pd.DataFrame:
    """Each member's first purchase (of ``rows``, sorted) at which the challenge is met, with the progress there."""
    if rows.empty:
        return rows.iloc[0:0]
    member = rows["member_id"].to_numpy(dtype=np.int64)
    if challenge.kind == "streak_months":
        stamp = rows["occurred_at"].dt.tz_convert("UTC")
        month = (stamp.dt.year * 12 + stamp.dt.month - 1).to_numpy(dtype=np.int64)
        firsts = pd.DataFrame({"row": np.arange(len(rows)), "member_id": member, "month": month}).drop_duplicates(["member_id", "month"])
        gap = (firsts["month"].diff() != 1) | (firsts["member_id"].diff() != 0)
        run = gap.cumsum()
        length = firsts.groupby(run).cumcount() + 1
        met = firsts[length.to_numpy() == challenge.target]
        return rows.iloc[met.groupby("member_id")["row"].first().to_numpy()]
    # Running count or spend over the window ending at each purchase. Rows are sorted by member
    # and time; shifting each member's times by its rank times a span longer than all of them
    # makes one increasing key, so one searchsorted finds every window's first row.
    seconds = rows["occurred_at"].to_numpy(dtype="datetime64[s]").astype(np.int64)
    starts = np.r_[0, np.flatnonzero(np.diff(member)) + 1]
    sizes = np.diff(np.r_[starts, len(rows)])
    group_start = np.repeat(starts, sizes)
    if challenge.within_days:
        window = challenge.within_days * 86_400
        span = int(seconds.max() - seconds.min()) + window + 1
        key = np.repeat(np.arange(len(starts), dtype=np.int64), sizes) * span + (seconds - seconds.min())
        j = np.maximum(np.searchsorted(key, key - window, side="right"), group_start)  # first purchase after now - window
    else:
        j = group_start
    index = np.arange(len(rows))
    if challenge.kind == "purchases":
        progress = (index - j + 1).astype(np.float64)
    else:
        cumulative = np.cumsum(rows["amount"].to_numpy(dtype=np.float64))
        before = np.where(j > 0, cumulative[np.maximum(j - 1, 0)], 0.0)
        progress = np.round(cumulative - before, 2)
    met_rows = np.flatnonzero(progress >= float(challenge_target(challenge)) - 1e-9)
    if not len(met_rows):
        return rows.iloc[0:0]
    first = pd.Series(met_rows, index=member[met_rows]).groupby(level=0).first().to_numpy()
    return rows.iloc[first]


def _complete(session: Session, challenge: Challenge, members: np.ndarray, *, actor: str) -> list[Completion]:
    purchases = _counted_purchases(session, challenge, members)
    done = _stored_completions(session, stored_id(challenge), members, challenge.kind)
    completions: list[dict[str, Any]] = []
    sequences = done["sequences"].to_dict()
    standing = done["standing"].to_dict()
    rows = _after_last_completion(purchases, done)
    while not rows.empty:
        open_members = [m for m in np.unique(rows["member_id"]) if standing.get(int(m), 0) < challenge.max_completions]
        rows = rows[rows["member_id"].isin(open_members)].reset_index(drop=True)
        met = _first_meeting(challenge, rows)
        if met.empty:
            break
        for purchase_id, member_id, occurred_at in zip(met["id"], met["member_id"], met["occurred_at"]):
            member_id = int(member_id)
            sequences[member_id] = sequences.get(member_id, 0) + 1
            standing[member_id] = standing.get(member_id, 0) + 1
            completions.append(
                {
                    "member_id": member_id,
                    "purchase_id": int(purchase_id),
                    "completed_at": occurred_at.to_pydatetime(),
                    "sequence": sequences[member_id],
                }
            )
        restart = _restart_points(challenge.kind, met["member_id"], met["occurred_at"], met["id"])
        rows = _after_last_completion(rows[rows["member_id"].isin(restart.index)], restart)
    if not completions:
        return []
    return _pay(session, challenge, completions, actor=actor)


def _pay(session: Session, challenge: Challenge, completions: list[dict[str, Any]], *, actor: str) -> list[Completion]:
    """The completions and their bonus entries, written in bulk (an import may complete thousands at once)."""
    settings = get_settings(session)
    now = pd.Timestamp(utcnow())
    done = pd.DataFrame(completions)
    done["completed_at"] = pd.to_datetime(done["completed_at"], utc=True)
    done["ledger_entry_id"] = pd.array([pd.NA] * len(done), dtype="Int64")
    if challenge.points:
        done["ledger_entry_id"] = pd.array(allocate_ids(session, "ledger_entry", len(done)), dtype="Int64")
        entries = pd.DataFrame(
            {
                "id": done["ledger_entry_id"].astype("int64"),
                "member_id": done["member_id"].astype("int64"),
                "kind": BONUS,
                "points": challenge.points,
                "occurred_at": done["completed_at"],
                "expires_at": expiry_dates(done["completed_at"], settings.expiry_months),
                "reason": f"challenge: {challenge.name}"[:500],
                "actor": actor,
                "created_at": now,
            }
        )
        insert_frame(session, "ledger_entry", entries)
        emit_entries(session, entries)
    rows = done.assign(challenge_id=stored_id(challenge), points=challenge.points, created_at=now)
    insert_frame(
        session,
        "challenge_completion",
        rows[["challenge_id", "member_id", "sequence", "purchase_id", "completed_at", "points", "ledger_entry_id", "created_at"]],
    )
    return [Completion(challenge.name, c["member_id"], c["purchase_id"], c["completed_at"], challenge.points, challenge.badge) for c in completions]


# --- refunds -----------------------------------------------------------------------------------------


def reverse_for_refund(session: Session, *, purchase_id: int, purchase_at: datetime, refunded_at: datetime, actor: Actor) -> int:
    """A purchase was refunded in full within the return window: take back the completions that are
    no longer met without it.

    The completions looked at are the member's standing ones at or after the purchase; one is
    taken back when the purchases that still count (the refunded one no longer does) do not meet
    the challenge by the completion's own purchase: the purchase that met it, or one that made up
    its count, spend or streak. Runs in the refund's transaction; the purchase is already marked
    refunded. Returns the points taken back. The member's balance may go below zero (the points
    were spent): a debt, as with any return.
    """
    purchase_at = as_utc(purchase_at)
    member_id = session.exec(select(Purchase.member_id).where(Purchase.id == purchase_id)).one()
    candidates = session.exec(
        select(ChallengeCompletion, Challenge)
        .join(Challenge, col(Challenge.id) == ChallengeCompletion.challenge_id)
        .where(
            ChallengeCompletion.member_id == member_id,
            col(ChallengeCompletion.reversed_at).is_(None),
            ChallengeCompletion.completed_at >= purchase_at,
            Challenge.starts_at <= purchase_at,
        )
        .order_by(col(ChallengeCompletion.challenge_id), col(ChallengeCompletion.sequence))
    ).all()
    found = [(c, challenge.name) for c, challenge in candidates if c.purchase_id == purchase_id or not _still_met(session, challenge, c)]
    taken = 0
    for completion, name in found:
        completion.reversed_at = refunded_at
        session.add(completion)
        if completion.points:
            entry = LedgerEntry(
                member_id=completion.member_id,
                kind=REVERSE,
                points=-completion.points,
                occurred_at=refunded_at,
                reason=f"challenge taken back (purchase refunded): {name}"[:500],
                actor=actor.username,
            )
            session.add(entry)
            emit_entry(session, entry)
            taken += completion.points
        record_audit(
            session,
            actor=actor,
            action="challenge.reverse",
            entity="challenge",
            entity_id=name,
            after={"member_id": completion.member_id, "points": completion.points},
        )
    if taken:
        session.flush()
    return taken


def _still_met(session: Session, challenge: Challenge, completion: ChallengeCompletion) -> bool:
    """Whether the purchases that count now meet the challenge by the completion's purchase (counting
    from the member's previous standing completion of it, as when it was paid)."""
    members = np.array([completion.member_id], dtype=np.int64)
    rows = _counted_purchases(session, challenge, members)
    earlier = session.exec(
        select(ChallengeCompletion.purchase_id).where(
            ChallengeCompletion.challenge_id == challenge.id,
            ChallengeCompletion.member_id == completion.member_id,
            col(ChallengeCompletion.reversed_at).is_(None),
            ChallengeCompletion.sequence < completion.sequence,
        )
    ).all()
    marks = session.exec(select(Purchase.id, Purchase.occurred_at).where(col(Purchase.id).in_([*earlier, completion.purchase_id]))).all()
    at = {int(i or 0): pd.Timestamp(as_utc(t)) for i, t in marks}
    own = (at[completion.purchase_id], completion.purchase_id)
    if earlier:
        previous = max((at[int(i)], int(i)) for i in earlier)
        rows = _after_last_completion(rows, _restart_points(challenge.kind, members, [previous[0]], [previous[1]]))
    keys = list(zip(rows["occurred_at"], rows["id"]))
    rows = rows[[key <= own for key in keys]].reset_index(drop=True)
    return not _first_meeting(challenge, rows).empty


# --- the member's view --------------------------------------------------------------------------------


def member_badges(session: Session, member_id: int) -> list[dict[str, Any]]:
    """The badges a member holds (completions not taken back), earliest first."""
    rows = session.exec(
        select(Challenge.badge, ChallengeCompletion.completed_at)
        .join(Challenge, col(Challenge.id) == ChallengeCompletion.challenge_id)
        .where(ChallengeCompletion.member_id == member_id, col(ChallengeCompletion.reversed_at).is_(None), Challenge.badge != "")
        .order_by(col(ChallengeCompletion.completed_at))
    ).all()
    first: dict[str, datetime] = {}
    for badge, at in rows:
        first.setdefault(badge, at)
    return [{"name": badge, "earned_at": at} for badge, at in first.items()]


def member_challenges(session: Session, member_id: int, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Each active challenge's progress for a member: ``{"name", "progress", "target", "completed_at"}``.

    ``progress`` counts what counts now towards the next completion (purchases or spend in the
    window ending now, or the streak of months up to this month or the last); ``completed_at``
    is the last completion standing, or None.
    """
    now = as_utc(now or utcnow())
    members = np.array([member_id], dtype=np.int64)
    out = []
    for challenge in session.exec(select(Challenge).where(Challenge.status == "active").order_by(col(Challenge.id))).all():
        if in_holdout(challenge, members)[0]:
            continue  # a member of the holdout does not see it
        done = _stored_completions(session, stored_id(challenge), members, challenge.kind)
        rows = _after_last_completion(_counted_purchases(session, challenge, members), done)
        rows = rows[rows["occurred_at"] <= now]
        finished = int(done["standing"].iloc[0]) >= challenge.max_completions
        target = challenge_target(challenge)
        # A challenge completed as often as allowed shows as full: nothing counts towards it any more.
        progress = target if finished else _progress(challenge, rows, now)
        out.append(
            {
                "name": challenge.name,
                "progress": progress,
                "target": target,
                "completed_at": None if pd.isna(done["completed_at"].iloc[0]) else done["completed_at"].iloc[0].to_pydatetime(),
                "completions": int(done["standing"].iloc[0]),
                "share": min(1.0, float(progress) / float(target)) if target else 0.0,
            }
        )
    return out


def _progress(challenge: Challenge, rows: pd.DataFrame, now: datetime) -> float | int:
    if challenge.kind == "streak_months":
        return streak_months(rows["occurred_at"], now)
    if challenge.within_days:
        rows = rows[rows["occurred_at"] > now - timedelta(days=challenge.within_days)]
    if challenge.kind == "purchases":
        return len(rows)
    return round(float(rows["amount"].sum()), 2)


def streak_runs(member_ids: Sequence[int] | np.ndarray | pd.Series, moments: Any, now: datetime) -> pd.Series:
    """Per member (index), the consecutive calendar months (UTC) with a purchase ending this month,
    or last month when this one has none yet (it is not over); members with no such run are left out."""
    stamps = pd.to_datetime(pd.Series(list(moments)), utc=True)
    frame = pd.DataFrame({"member_id": np.asarray(member_ids, dtype=np.int64), "month": (stamps.dt.year * 12 + stamps.dt.month - 1).to_numpy()})
    months = frame.drop_duplicates().sort_values(["member_id", "month"], ascending=[True, False])
    current = now.year * 12 + now.month - 1
    anchor = months["member_id"].map(months.groupby("member_id")["month"].max().eq(current)).map({True: current, False: current - 1})
    in_run = (months["month"] == anchor - months.groupby("member_id").cumcount()).astype(int)
    return in_run.groupby(months["member_id"]).cumprod().groupby(months["member_id"]).sum()


def streak_months(moments: pd.Series | Sequence[datetime], now: datetime) -> int:
    """Consecutive calendar months with a purchase, ending this month (or last month: this one is not over)."""
    moments = list(moments)
    return int(streak_runs(np.zeros(len(moments), dtype=np.int64), moments, now).get(0, 0))
