"""The ledger's events (``loyalty.events``): what each points change and redemption tells webhooks.

Every write to the ledger emits ``points.changed`` in the transaction that writes it:

* one entry (an adjustment, a return, a redemption or its cancellation): one event,
  ``{"member_id", "points", "kind", "reason", "occurred_at"}`` with ``purchase_id`` (the
  company's purchase id) or ``redemption_id`` when the entry has one;
* many entries at once (purchases arriving through the import, the demo or the API; the
  nightly expiry): **one event per member and ledger kind per call**, ``points`` their sum,
  ``occurred_at`` the latest, ``entries`` how many, ``purchase_id`` only when all of them
  come from one purchase, ``reason`` only when they share it. A file of a million
  purchases then sends one ``earn`` (and one ``bonus``) event per member, not a million.

Nothing is computed when no endpoint receives the type (:func:`loyalty.events.subscribed`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import text
from sqlmodel import Session

from db.models import LedgerEntry, Member, Redemption
from loyalty.events import (
    POINTS_CHANGED,
    POINTS_EXPIRING,
    REDEMPTION_UPDATED,
    emit,
    emit_many,
    iso,
    iso_column,
    member_external_ids,
    stable_event_id,
    subscribed,
)

__all__ = ["EXPIRING_WITHIN", "emit_entries", "emit_entry", "emit_points_expiring", "emit_redemption"]

# points.expiring announces lots that expire within this time after the expiry run.
EXPIRING_WITHIN = timedelta(days=30)


def _external_id(session: Session, member_id: int) -> str:
    member = session.get(Member, member_id)
    return member.external_id if member is not None else str(member_id)


def emit_entry(session: Session, entry: LedgerEntry, *, purchase: str | None = None) -> None:
    """``points.changed`` for one ledger entry (``purchase``: the company's id of its purchase)."""
    if not subscribed(session, POINTS_CHANGED):
        return
    data: dict[str, Any] = {
        "member_id": _external_id(session, entry.member_id),
        "points": int(entry.points),
        "kind": entry.kind,
        "reason": entry.reason,
        "occurred_at": iso(entry.occurred_at),
    }
    if purchase is not None:
        data["purchase_id"] = purchase
    if entry.redemption_id is not None:
        data["redemption_id"] = int(entry.redemption_id)
    emit(session, POINTS_CHANGED, data)


def emit_entries(session: Session, entries: pd.DataFrame, *, purchases: pd.Series | None = None) -> int:
    """``points.changed`` for ledger rows written in bulk: one event per member and kind (module notes).

    ``entries`` has ``member_id, kind, points, occurred_at`` and may have ``reason`` and
    ``purchase_id``; ``purchases`` maps a purchase's id to the company's id. Returns the
    number of events written.
    """
    if entries.empty or not subscribed(session, POINTS_CHANGED):
        return 0
    work = entries.assign(occurred_at=pd.to_datetime(entries["occurred_at"], utc=True))
    if "reason" not in work:
        work = work.assign(reason="")
    if "purchase_id" in work and purchases is not None:
        work = work.assign(purchase=work["purchase_id"].map(purchases))
    else:
        work = work.assign(purchase=pd.NA)
    grouped = work.groupby(["member_id", "kind"], sort=True).agg(
        points=("points", "sum"),
        entries=("points", "size"),
        occurred_at=("occurred_at", "max"),
        reasons=("reason", "nunique"),
        reason=("reason", "first"),
        purchases=("purchase", "nunique"),
        purchase=("purchase", "first"),
    )
    names = member_external_ids(session, grouped.index.get_level_values("member_id").to_numpy())
    grouped = grouped.assign(at=iso_column(grouped["occurred_at"]))
    data = []
    for (member_id, kind), row in zip(grouped.index, grouped.itertuples(index=False)):
        item: dict[str, Any] = {
            "member_id": names.get(int(member_id), str(member_id)),
            "points": int(row.points),
            "kind": kind,
            "reason": row.reason if row.reasons == 1 else "",
            "occurred_at": row.at,
            "entries": int(row.entries),
        }
        if row.purchases == 1 and not pd.isna(row.purchase):
            item["purchase_id"] = str(row.purchase)
        data.append(item)
    return len(emit_many(session, POINTS_CHANGED, data))


def emit_redemption(session: Session, redemption: Redemption, *, member: str | None = None) -> None:
    """``redemption.updated``: ``{"redemption_id", "member_id", "reward_id", "status", "points"}``."""
    if not subscribed(session, REDEMPTION_UPDATED):
        return
    emit(
        session,
        REDEMPTION_UPDATED,
        {
            "redemption_id": int(redemption.id or 0),
            "member_id": member or _external_id(session, redemption.member_id),
            "reward_id": int(redemption.reward_id),
            "status": redemption.status,
            "points": int(redemption.points),
        },
    )


# Positive lots that expire by the horizon, and all points consumed, of the members with a
# lot expiring after the run and by the horizon (the FIFO rule of loyalty.ledger.entries).
_EXPIRING_SQL = """
SELECT e.member_id, e.expires_at, e.points, e.points > 0 AS lot
FROM ledger_entry AS e
JOIN member AS m ON m.id = e.member_id AND m.erased_at IS NULL
WHERE e.member_id IN (
    SELECT member_id FROM ledger_entry WHERE points > 0 AND expires_at > :after AND expires_at <= :until
)
AND (e.points < 0 OR (e.expires_at IS NOT NULL AND e.expires_at <= :until))
"""


def expiring_points(session: Session, *, after: datetime, within: timedelta = EXPIRING_WITHIN, read_last_commit: bool = False) -> pd.DataFrame:
    """Points that expire after ``after`` and within ``within`` (to the end of that UTC day), per member and expiry day.

    ``member_id, day, points, expires_at``: the points still unspent in that day's lots
    (spending uses the soonest-expiring lots first) and the first moment one of them expires.
    ``read_last_commit`` (SQLite): read the ledger as last committed, through the analytics
    reader processes, for a caller that has written nothing in its transaction yet (the
    nightly messages): one scan in parts instead of a lookup per member.
    """
    empty = pd.DataFrame(columns=["member_id", "day", "points", "expires_at"])
    until = (pd.Timestamp(after + within).tz_convert("UTC").normalize() + pd.Timedelta(days=1)).to_pydatetime()
    sqlite = session.get_bind().dialect.name == "sqlite"

    def bound(moment: datetime) -> object:
        utc = pd.Timestamp(moment).tz_convert("UTC")
        return utc.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else utc.to_pydatetime()

    if read_last_commit and sqlite:
        frame = _expiring_rows_last_commit(session, bound(after), bound(until))
        if frame.empty:
            return empty
    else:
        rows = session.execute(text(_EXPIRING_SQL), {"after": bound(after), "until": bound(until)}).all()
        if not rows:
            return empty
        # Built from columns: from the rows themselves pandas asks each row for namedtuple fields, and
        # SQLAlchemy's rows answer slowly (0.85 s against 0.33 s for 226k rows).
        frame = pd.DataFrame(dict(zip(["member_id", "expires_at", "points", "lot"], zip(*rows))))
    frame["lot"] = frame["lot"].astype(bool)
    consumed = -frame.loc[~frame["lot"]].groupby("member_id")["points"].sum()
    lots = frame.loc[frame["lot"]].assign(expires_at=lambda f: pd.to_datetime(f["expires_at"], utc=True)).sort_values(["member_id", "expires_at"])
    spent = lots["member_id"].map(consumed).fillna(0)
    through = lots.groupby("member_id")["points"].cumsum()
    # Unspent points of the lots up to each one, less those before it: this lot's unspent part.
    unspent_through = (through - spent).clip(lower=0)
    lots["unspent"] = unspent_through - unspent_through.groupby(lots["member_id"]).shift(fill_value=0)
    due = lots[(lots["expires_at"] > pd.Timestamp(after)) & (lots["unspent"] > 0)]
    if due.empty:
        return empty
    return (
        due.assign(day=due["expires_at"].dt.normalize())
        .groupby(["member_id", "day"], sort=True)
        .agg(points=("unspent", "sum"), expires_at=("expires_at", "min"))
        .reset_index()
    )


# _EXPIRING_SQL's rows, as one scan: every entry that may count, and whether it is a lot
# expiring in the window (its member is then one to tell).
_EXPIRING_SCAN_SQL = (
    "SELECT member_id, COALESCE(expires_at, '') AS expires_at, points, CASE WHEN points > 0 THEN 1 ELSE 0 END AS lot, "
    "CASE WHEN points > 0 AND expires_at > :after AND expires_at <= :until THEN 1 ELSE 0 END AS soon "
    "FROM ledger_entry WHERE (points < 0 OR (expires_at IS NOT NULL AND expires_at <= :until))"
)


def _expiring_rows_last_commit(session: Session, after: object, until: object) -> pd.DataFrame:
    """:data:`_EXPIRING_SQL`'s rows (``member_id, expires_at, points, lot``) from a read of the last
    commit in the analytics reader processes, the ledger in parts at once.

    SQLite ran _EXPIRING_SQL as a lookup of each listed member's entries in the member index,
    a row fetched from the table for each: 30 s and more at ten million entries.
    """
    import polars as pl

    from loyalty.analytics.data import PART_CONDITION, fetch_frame, id_parts

    parts = id_parts(session, "ledger_entry", "auto")
    entries = fetch_frame(
        session,
        _EXPIRING_SCAN_SQL + (" AND " + PART_CONDITION if parts else ""),
        {"member_id": pl.Int64, "expires_at": pl.String, "points": pl.Int64, "lot": pl.Int8, "soon": pl.Int8},
        params={"after": after, "until": until},
        parts=parts,
    )
    erased = [int(m) for m in session.execute(text("SELECT id FROM member WHERE erased_at IS NOT NULL")).scalars()]
    told = entries.filter(pl.col("soon") == 1)["member_id"].unique()
    kept = entries.filter(pl.col("member_id").is_in(told.implode()) & ~pl.col("member_id").is_in(erased))
    # Text, never NULL, through the reader (its driver types a column from its first 65,536 rows,
    # and an all-NULL start would be taken for integers): '' is no expiry date.
    return kept.select("member_id", pl.col("expires_at").replace("", None), "points", "lot").to_pandas()


def emit_points_expiring(session: Session, *, after: datetime, within: timedelta = EXPIRING_WITHIN) -> int:
    """``points.expiring`` for :func:`expiring_points`: one event per member and expiry day.

    ``{"member_id", "points", "expires_at"}``. The event id is derived from the member and the
    day, so a second run (the job re-run, the next night) writes nothing new for them.
    Returns the number of events written.
    """
    if not subscribed(session, POINTS_EXPIRING):
        return 0
    per_day = expiring_points(session, after=after, within=within)
    if per_day.empty:
        return 0
    names = member_external_ids(session, per_day["member_id"].to_numpy())
    data, ids = [], []
    for member_id, day, points, expires_at in per_day[["member_id", "day", "points", "expires_at"]].itertuples(index=False):
        member = names.get(int(member_id), str(member_id))
        data.append({"member_id": member, "points": int(points), "expires_at": iso(expires_at)})
        ids.append(stable_event_id(POINTS_EXPIRING, f"{int(member_id)}:{day.date().isoformat()}"))
    return len(emit_many(session, POINTS_EXPIRING, data, event_ids=ids))
