"""Tier re-evaluation: who moves up or down, as of a day, and why.

Tier evaluation
---------------
For each tier, a member's *qualifying* spend and purchase count are the sums over the
tier's rolling window ``[cutoff - window_months, cutoff)`` of non-refunded purchases
(SQL ``GROUP BY`` per distinct window). A member qualifies for the highest tier whose
spend **and** purchase thresholds they meet (:func:`loyalty.program.tiers.qualifying_tier_index`).

* **Upgrade**: qualifying for a higher tier moves the member there at once.
* **Downgrade**: a member qualifying only for a lower tier (or none) keeps their tier
  while ``cutoff < tier_since + grace_months`` of the tier they are in: a tier is
  guaranteed for its grace period from the day it was reached. After that, the member
  moves to the tier they qualify for (possibly several levels down, or out of the tiers).
* Each move sets ``tier_id`` and ``tier_since`` (= the cutoff) and writes a
  :class:`~db.models.TierMovement` with ``as_of = D`` and a reason a member can read:
  ``spent 1,234.00 and bought 14 times in the last 12 months: qualifies for Gold``.
* Erased members are left as they are.
* Each member whose tier differs from the stored one emits ``tier.changed``
  (``{"member_id", "from", "to", "at"}``: tier names, None outside the tiers; ``at`` the
  cutoff) in the same transaction; a re-run that leaves a tier as it was emits nothing.
* A re-run as of the same ``D`` first undoes that day's movements (the tier goes back to
  the movement's ``from_tier``; ``tier_since`` to the member's previous movement's
  ``moved_at``, or ``joined_at`` when there is none), then evaluates again: the result is
  the one a single run would give. A member whose latest movement is dated after ``D``
  was settled by a later evaluation and is not touched.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
from sqlalchemy import delete, func, text
from sqlmodel import Session, col, select

from db.bulk import insert_frame
from db.engine import write_transaction
from db.models import Tier, TierMovement
from loyalty.analytics.data import fetch_frame, moment_text_sql, parse_moments
from loyalty.analytics.reader import analytics_reader
from loyalty.evaluation.runs import ProgressFn, hold_job_lock
from loyalty.events import TIER_CHANGED, emit_many, iso, member_external_ids, subscribed
from loyalty.periods import cutoff_of
from loyalty.program.tiers import qualifying_tier_index

__all__ = ["evaluate_tiers"]

# --- tier evaluation --------------------------------------------------------------------------------


def _window_totals(session: Session, cutoff: datetime, months: int) -> pd.DataFrame:
    """``member_id, spend, purchases`` over ``[cutoff - months, cutoff)``, refunds excluded.

    Summed by the database, the totals read as columns (a million members' rows through
    SQLAlchemy cost seconds more)."""
    since = (pd.Timestamp(cutoff) - pd.DateOffset(months=months)).to_pydatetime()
    frame = fetch_frame(
        session,
        "SELECT member_id, SUM(amount) AS spend, COUNT(*) AS purchases FROM purchase"
        " WHERE occurred_at >= :since AND occurred_at < :cutoff AND refunded_at IS NULL GROUP BY member_id",
        {"member_id": pl.Int64, "spend": pl.Float64, "purchases": pl.Int64},
        params={"since": since, "cutoff": cutoff},
        reader=analytics_reader(session),
    )
    return frame.to_pandas().set_index("member_id")


def _utc_series(values: Sequence[Any], index: pd.Index) -> pd.Series:
    """UTC timestamps (NaT for None) on ``index``."""
    return pd.Series(pd.to_datetime(list(values), utc=True), index=index)


def _times(counts: np.ndarray) -> pd.Series:
    return pd.Series(np.where(counts == 1, "once", pd.Series(counts).astype(str).to_numpy() + " times"))


def _window_words(months: np.ndarray) -> pd.Series:
    return pd.Series(np.where(months == 1, "month", pd.Series(months).astype(str).to_numpy() + " months"))


def _set_member_tiers(session: Session, changes: pd.DataFrame) -> None:
    """Set ``tier_id`` and ``tier_since`` of many members in one statement.

    The new values go to a temporary table by the bulk writer, then one ``UPDATE ...
    FROM`` joins it (SQLite 3.33+ and PostgreSQL): an ``executemany`` of a million
    single-row updates built in Python took 40 s here.
    """
    changes = changes.assign(tier_id=pd.array(changes["tier_id"], dtype="Int64"), tier_since=pd.to_datetime(changes["tier_since"], utc=True))
    sqlite = session.get_bind().dialect.name == "sqlite"
    session.execute(text("DROP TABLE IF EXISTS tier_change"))
    session.execute(
        text(
            "CREATE TEMPORARY TABLE tier_change (member_id BIGINT PRIMARY KEY, tier_id BIGINT, tier_since "
            + ("DATETIME" if sqlite else "TIMESTAMP WITH TIME ZONE")
            + ")"
        )
    )
    insert_frame(session, "tier_change", changes[["member_id", "tier_id", "tier_since"]])
    session.execute(text("UPDATE member SET tier_id = c.tier_id, tier_since = c.tier_since FROM tier_change AS c WHERE member.id = c.member_id"))
    session.execute(text("DROP TABLE tier_change"))


@dataclass(frozen=True)
class _TierTable:
    """The tiers in rank order, as arrays indexed by a tier's position."""

    ids: np.ndarray
    names: np.ndarray
    min_spend: np.ndarray
    min_purchases: np.ndarray
    window: np.ndarray
    grace: np.ndarray

    @classmethod
    def of(cls, tiers: Sequence[Tier]) -> _TierTable:
        return cls(
            ids=np.array([t.id for t in tiers], dtype=np.int64),
            names=np.array([t.name for t in tiers], dtype=object),
            min_spend=np.array([t.min_spend for t in tiers], dtype=float),
            min_purchases=np.array([t.min_purchases for t in tiers], dtype=np.int64),
            window=np.array([t.window_months for t in tiers], dtype=np.int64),
            grace=np.array([t.grace_months for t in tiers], dtype=np.int64),
        )


@dataclass
class _Members:
    """The members evaluated: their tier and tier-since now, and before this day's earlier movements."""

    frame: pd.DataFrame  # member_id -> tier_id, tier_since, joined_at
    later: set[int]  # members settled by a later evaluation, left alone
    current_tier: pd.Series
    current_since: pd.Series
    todays: pd.DataFrame  # this day's earlier movements: id, member_id, from_tier_id
    base_tier: pd.Series
    base_since: pd.Series


@dataclass
class _Moves:
    """Who moves where, and who stays inside their grace period."""

    qualified: np.ndarray  # position of the highest tier each member qualifies for (-1: none)
    base_idx: np.ndarray
    final_idx: np.ndarray
    moved: np.ndarray
    kept: np.ndarray
    final_tier: pd.Series
    final_since: pd.Series


def evaluate_tiers(session: Session, *, as_of: date, progress: ProgressFn | None = None) -> dict[str, Any]:
    """Move members between tiers as of the end of ``as_of``; one transaction (see the module notes).

    Steps: read each tier window's spend and purchases (outside the transaction: purchases
    before the cutoff are settled history); then, holding the job lock, read the members and
    undo this day's earlier movements in memory, find the tier each qualifies for, decide
    the moves (grace periods), word the reasons, and write.

    Returns
    -------
    dict
        ``rows`` (= members moved), ``upgrades``, ``downgrades``, ``kept_in_grace``
        (below their tier's thresholds but inside its grace period), ``members``
        (evaluated), ``replaced`` (movements of an earlier run for the same day undone),
        ``skipped_later`` (members settled by a later evaluation).
    """
    report = progress or (lambda _f, _m: None)
    cutoff = cutoff_of(as_of)
    tiers = session.exec(select(Tier).order_by(col(Tier.rank))).all()
    if not tiers:
        return {
            "rows": 0,
            "upgrades": 0,
            "downgrades": 0,
            "kept_in_grace": 0,
            "members": 0,
            "replaced": 0,
            "skipped_later": 0,
            "note": "no tiers are configured",
        }
    table = _TierTable.of(tiers)
    totals = _read_window_totals(session, cutoff, table.window, report)
    report(0.5, "moving members")
    with write_transaction(session):
        hold_job_lock(session, "tier-evaluation")
        members = _read_members(session, as_of)
        member_ids = members.frame.index.to_numpy()
        spend_by_window = {m: totals[m]["spend"].reindex(member_ids).fillna(0.0).to_numpy() for m in totals}
        count_by_window = {m: totals[m]["purchases"].reindex(member_ids).fillna(0).astype(np.int64).to_numpy() for m in totals}
        moves = _decide_moves(table, members, spend_by_window, count_by_window, cutoff)
        movements, upward = _movements(table, moves, member_ids, spend_by_window, count_by_window, cutoff=cutoff, as_of=as_of)
        _write(session, members, moves, movements)
        _emit_tier_changes(session, table, members, moves, cutoff)
    return {
        "rows": int(moves.moved.sum()),
        "upgrades": int(upward.sum()),
        "downgrades": int((~upward).sum()),
        "kept_in_grace": int(moves.kept.sum()),
        "members": len(members.frame),
        "replaced": len(members.todays),
        "skipped_later": len(members.later),
    }


def _read_window_totals(session: Session, cutoff: datetime, window: np.ndarray, report: ProgressFn) -> dict[int, pd.DataFrame]:
    """Spend and purchases per member over each distinct tier window before the cutoff."""
    totals: dict[int, pd.DataFrame] = {}
    for i, months in enumerate(sorted(set(window.tolist()))):
        report(0.1 + 0.4 * i / len(set(window.tolist())), f"spend and purchases over {months} months")
        totals[months] = _window_totals(session, cutoff, months)
    return totals


def _read_members(session: Session, as_of: date) -> _Members:
    """The members to evaluate, and their tier as it was before this day's earlier movements.

    A member's first movement of the day gives back its ``from_tier``; tier-since goes back to
    the member's previous movement, or the day they joined when there is none.
    """
    dialect = session.get_bind().dialect.name
    frame = (
        fetch_frame(
            session,
            f"SELECT id AS member_id, tier_id, COALESCE({moment_text_sql(dialect, 'tier_since')}, '') AS tier_since, "
            f"{moment_text_sql(dialect, 'joined_at')} AS joined_at FROM member WHERE erased_at IS NULL",
            {"member_id": pl.Int64, "tier_id": pl.Int64, "tier_since": pl.String, "joined_at": pl.String},
            reader=analytics_reader(session),
        )
        .to_pandas()
        .set_index("member_id")
    )
    frame["tier_since"], frame["joined_at"] = parse_moments(frame["tier_since"]), parse_moments(frame["joined_at"])
    later = {
        int(m)
        for m in session.execute(
            select(col(TierMovement.member_id)).group_by(col(TierMovement.member_id)).having(func.max(col(TierMovement.as_of)) > as_of)
        ).scalars()
    }
    frame = frame[~frame.index.isin(list(later))]
    current_tier = frame["tier_id"].astype("Int64")
    current_since = frame["tier_since"]
    # Undo this day's earlier movements, in memory: the state before them.
    todays = pd.DataFrame(
        session.execute(
            select(col(TierMovement.id), col(TierMovement.member_id), col(TierMovement.from_tier_id))
            .where(col(TierMovement.as_of) == as_of)
            .order_by(col(TierMovement.id))
        ).all(),
        columns=["id", "member_id", "from_tier_id"],
    )
    todays = todays[todays["member_id"].isin(frame.index)]
    base_tier, base_since = current_tier.copy(), current_since.copy()
    if not todays.empty:
        first = todays.drop_duplicates("member_id", keep="first").set_index("member_id")
        first_ids = (
            select(TierMovement.member_id, func.min(TierMovement.id).label("first_id"))
            .where(col(TierMovement.as_of) == as_of)
            .group_by(col(TierMovement.member_id))
            .subquery()
        )
        previous = dict(
            session.execute(
                select(TierMovement.member_id, func.max(TierMovement.moved_at))
                .join(first_ids, first_ids.c.member_id == TierMovement.member_id)
                .where(col(TierMovement.id) < first_ids.c.first_id)
                .group_by(col(TierMovement.member_id))
            ).all()
        )
        undone = first.index
        base_tier.loc[undone] = first["from_tier_id"].astype("Int64")
        restored = pd.Series([previous.get(m) for m in undone], index=undone, dtype=object)
        joined = frame.loc[undone, "joined_at"]
        restored = restored.where(restored.notna(), joined.where(base_tier.loc[undone].notna().to_numpy(), None))
        base_since.loc[undone] = _utc_series(restored, undone)
    return _Members(frame, later, current_tier, current_since, todays, base_tier, base_since)


def _decide_moves(
    table: _TierTable, members: _Members, spend_by_window: dict[int, np.ndarray], count_by_window: dict[int, np.ndarray], cutoff: datetime
) -> _Moves:
    """Up at once to the highest tier qualified for; down only once the grace period of the tier left is over."""
    window, grace = table.window, table.grace
    index_of = pd.Series(np.arange(len(table.ids)), index=table.ids)
    base_idx = members.base_tier.map(index_of).fillna(-1).astype(np.int64).to_numpy()
    qualified = np.full(len(members.frame), -1, dtype=np.int64)
    for months in spend_by_window:
        group = np.flatnonzero(window == months)
        local = qualifying_tier_index(spend_by_window[months], count_by_window[months], table.min_spend[group], table.min_purchases[group])
        qualified = np.maximum(qualified, np.where(local >= 0, group[np.maximum(local, 0)], -1))
    up = qualified > base_idx
    below = qualified < base_idx
    grace_end = pd.Series(pd.NaT, index=members.frame.index, dtype="datetime64[us, UTC]")
    for months in np.unique(grace[base_idx[below]]) if below.any() else []:
        rows = below & (grace[np.maximum(base_idx, 0)] == months)
        grace_end[rows] = members.base_since[rows] + pd.DateOffset(months=int(months))
    grace_over = (members.base_since.isna() | (grace_end <= pd.Timestamp(cutoff))).to_numpy()
    down = below & grace_over
    kept = below & ~grace_over
    moved = up | down
    final_idx = np.where(moved, qualified, base_idx)
    final_tier = pd.Series(np.where(final_idx >= 0, table.ids[np.maximum(final_idx, 0)], 0), index=members.frame.index).astype("Int64")
    final_tier[final_idx < 0] = pd.NA
    final_since = members.base_since.copy()
    final_since[moved] = pd.Timestamp(cutoff)
    return _Moves(qualified, base_idx, final_idx, moved, kept, final_tier, final_since)


def _movements(
    table: _TierTable,
    moves: _Moves,
    member_ids: np.ndarray,
    spend_by_window: dict[int, np.ndarray],
    count_by_window: dict[int, np.ndarray],
    *,
    cutoff: datetime,
    as_of: date,
) -> tuple[pd.DataFrame, np.ndarray]:
    """The ``tier_movement`` rows, each with the numbers behind it in words; and which of them go up."""
    window, grace, names, min_spend, min_purchases, tier_ids = table.window, table.grace, table.names, table.min_spend, table.min_purchases, table.ids
    moved, base_idx, final_idx = moves.moved, moves.base_idx, moves.final_idx
    who = member_ids[moved]
    old, new = base_idx[moved], final_idx[moved]
    upward = new > old
    # Upgrades quote the window of the tier reached, downgrades the one of the tier left.
    quoted = np.where(upward, window[np.maximum(new, 0)], window[np.maximum(old, 0)])
    positions = np.flatnonzero(moved)
    spent, bought = np.zeros(len(positions)), np.zeros(len(positions), dtype=np.int64)
    for months in spend_by_window:
        quoting = quoted == months
        spent[quoting] = spend_by_window[months][positions[quoting]]
        bought[quoting] = count_by_window[months][positions[quoting]]
    lead = "spent " + _amounts_text(spent) + " and bought " + _times(bought) + " in the last " + _window_words(quoted)
    reached = pd.Series(np.where(new >= 0, names[np.maximum(new, 0)], ""))
    left = pd.Series(names[np.maximum(old, 0)])
    needs = (
        " (needs " + _amounts_text(min_spend[np.maximum(old, 0)]) + " and " + pd.Series(min_purchases[np.maximum(old, 0)]).astype(str) + " purchases)"
    )
    grace_words = pd.Series(
        np.where(
            grace[np.maximum(old, 0)] > 0,
            " and its " + pd.Series(grace[np.maximum(old, 0)]).astype(str).to_numpy() + "-month grace period is over",
            "",
        )
    )
    destination = pd.Series(np.where(new >= 0, "moves to " + reached.to_numpy(), "no longer qualifies for any tier"))
    reasons = pd.Series(
        np.where(
            upward, (lead + ": qualifies for " + reached).to_numpy(), (lead + ": below " + left + needs + grace_words + ": " + destination).to_numpy()
        )
    )
    movements = pd.DataFrame(
        {
            "member_id": who,
            "from_tier_id": pd.array([tier_ids[i] if i >= 0 else None for i in old], dtype="Int64"),
            "to_tier_id": pd.array([tier_ids[i] if i >= 0 else None for i in new], dtype="Int64"),
            "moved_at": pd.Timestamp(cutoff),
            "reason": reasons.str.slice(0, 500).to_numpy(),
            "as_of": np.full(len(who), as_of, dtype=object),
        }
    )
    return movements, upward


def _amounts_text(values: np.ndarray) -> pd.Series:
    """``1,234.50`` per value, as text even when there is none (an empty float column does not add to text)."""
    return pd.Series(values, dtype="float64").map("{:,.2f}".format).astype("str")


def _write(session: Session, members: _Members, moves: _Moves, movements: pd.DataFrame) -> None:
    """Drop this day's earlier movements, set the members whose tier or tier-since changes, add the moves."""
    todays, current_tier, current_since = members.todays, members.current_tier, members.current_since
    final_tier, final_since = moves.final_tier, moves.final_since
    if not todays.empty:
        for chunk in np.array_split(todays["id"].to_numpy(), max(1, math.ceil(len(todays) / 10_000))):
            session.execute(delete(TierMovement).where(col(TierMovement.id).in_(chunk.tolist())))
    same_tier = (final_tier == current_tier).fillna(False) | (final_tier.isna() & current_tier.isna())
    same_since = (final_since == current_since).fillna(False) | (final_since.isna() & current_since.isna())
    changed = members.frame.index[~(same_tier & same_since).to_numpy()]
    if len(changed):
        _set_member_tiers(
            session,
            pd.DataFrame(
                {"member_id": changed.to_numpy(), "tier_id": final_tier.loc[changed].to_numpy(), "tier_since": final_since.loc[changed].to_numpy()}
            ),
        )
    insert_frame(session, "tier_movement", movements)


def _emit_tier_changes(session: Session, table: _TierTable, members: _Members, moves: _Moves, cutoff: datetime) -> int:
    """``tier.changed`` for every member whose stored tier this run changes (compared with the stored tier,
    so undoing and redoing the same day's moves emits nothing)."""
    if not subscribed(session, TIER_CHANGED):
        return 0
    before, after = members.current_tier, moves.final_tier
    same = (before == after).fillna(False) | (before.isna() & after.isna())
    changed = members.frame.index[~same.to_numpy()]
    if not len(changed):
        return 0
    name_of = {int(i): str(n) for i, n in zip(table.ids, table.names)}
    external = member_external_ids(session, changed.to_numpy())

    def name(tier_id: object) -> str | None:
        return None if pd.isna(tier_id) else name_of.get(int(tier_id), str(tier_id))  # type: ignore[call-overload]

    at = iso(cutoff)
    data = [{"member_id": external.get(int(m), str(m)), "from": name(before.loc[m]), "to": name(after.loc[m]), "at": at} for m in changed]
    return len(emit_many(session, TIER_CHANGED, data))
