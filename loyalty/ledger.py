"""The points ledger: append-only entries, balances as sums, FIFO expiry.

Rules
-----
* A member's balance is ``SUM(points)`` over that member's entries; it is never stored.
* Positive entries (earn, bonus, positive adjust, points returned by a cancelled
  redemption) are *lots*, each with an ``expires_at`` ``expiry_months`` after it was
  earned (none when the period is 0).
* Negative entries (redeem, expire, reverse, negative adjust) consume lots
  soonest-expiring first, which with one expiry period is oldest first (FIFO).
* Hence at time ``t`` the points still unconsumed in expired lots are
  ``max(0, P(t) - D)`` where ``P(t)`` is the total of lots with ``expires_at <= t``
  (a prefix of the consumption order) and ``D`` all points consumed so far. Expiry
  writes exactly that as one ``expire`` entry per member, computed in one SQL
  ``GROUP BY`` over the whole member base.
* A refund reverses the points its purchase earned, once, less the part of them that
  has already expired (expiry took those; taking them again would count them twice).
  If the rest was already spent the balance may go below zero (a debt that later
  earnings repay), and the negative-balance report lists it. Redemptions and
  adjustments never make a balance negative.
* On PostgreSQL, use cases that work on one member's ledger hold the ledger lock
  shared and the all-member expiry run holds it exclusively, so the run never
  computes from a snapshot that misses a redemption's own expiry (SQLite's
  ``BEGIN IMMEDIATE`` already serialises every writer).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import pandas as pd
from sqlalchemy import func, text, update
from sqlmodel import Session, select

from db.engine import write_transaction
from db.models import LedgerEntry, Member, Purchase, utcnow
from loyalty.access import Actor, require
from loyalty.audit import record_audit
from loyalty.errors import AlreadyDone, InsufficientPoints, InvalidInput, NotFound
from loyalty.settings import get_settings

EARN, BONUS, REDEEM, EXPIRE, ADJUST, REVERSE = "earn", "bonus", "redeem", "expire", "adjust", "reverse"
KINDS = (EARN, BONUS, REDEEM, EXPIRE, ADJUST, REVERSE)

__all__ = [
    "KINDS",
    "Lot",
    "adjust_points",
    "balance",
    "balances",
    "expire_points",
    "expiry_date",
    "expiry_dates",
    "lock_member",
    "member_ledger",
    "negative_balances",
    "open_lots",
    "reverse_purchase",
]


def expiry_date(earned_at: datetime, months: int) -> datetime | None:
    """The moment a lot earned at ``earned_at`` expires (``None`` if points never expire)."""
    if months <= 0:
        return None
    earned = pd.Timestamp(earned_at)
    # Month arithmetic in UTC, as expiry_dates does: Jan 31 23:00 at UTC-2 is Feb 1 UTC.
    if earned.tzinfo is not None:
        earned = earned.tz_convert("UTC")
    return (earned + pd.DateOffset(months=months)).to_pydatetime()


def expiry_dates(earned_at: pd.Series, months: int) -> pd.Series:
    """Vectorised :func:`expiry_date` for a column of UTC timestamps."""
    if months <= 0:
        return pd.Series(pd.NaT, index=earned_at.index, dtype=earned_at.dtype)
    return earned_at + pd.DateOffset(months=months)


def balance(session: Session, member_id: int) -> int:
    """The member's balance: the sum of the member's ledger entries."""
    total = session.exec(
        select(func.coalesce(func.sum(LedgerEntry.points), 0)).where(LedgerEntry.member_id == member_id)
    ).one()
    return int(total)


def balances(session: Session, member_ids: Sequence[int]) -> dict[int, int]:
    if not member_ids:
        return {}
    rows = session.exec(
        select(LedgerEntry.member_id, func.sum(LedgerEntry.points))
        .where(LedgerEntry.member_id.in_(list(member_ids)))
        .group_by(LedgerEntry.member_id)
    ).all()
    found = {int(m): int(p) for m, p in rows}
    return {m: found.get(m, 0) for m in member_ids}


def member_ledger(session: Session, member_id: int) -> pd.DataFrame:
    """The member's entries, oldest first, with the running balance."""
    rows = session.exec(
        select(LedgerEntry).where(LedgerEntry.member_id == member_id).order_by(LedgerEntry.occurred_at, LedgerEntry.id)
    ).all()
    frame = pd.DataFrame(
        [
            {
                "occurred_at": r.occurred_at,
                "kind": r.kind,
                "points": r.points,
                "expires_at": r.expires_at,
                "purchase_id": r.purchase_id,
                "redemption_id": r.redemption_id,
                "campaign_id": r.campaign_id,
                "reason": r.reason,
                "actor": r.actor,
            }
            for r in rows
        ],
        columns=["occurred_at", "kind", "points", "expires_at", "purchase_id", "redemption_id",
                 "campaign_id", "reason", "actor"],
    )
    frame["balance"] = frame["points"].cumsum() if not frame.empty else pd.Series(dtype="int64")
    return frame


@dataclass(frozen=True)
class Lot:
    earned_at: datetime
    expires_at: datetime | None
    points: int
    remaining: int


def open_lots(session: Session, member_id: int) -> list[Lot]:
    """The member's lots with what remains of each after FIFO consumption.

    Used to show "points expiring soon"; the same rule as :func:`expire_points`.
    """
    entries = session.exec(
        select(LedgerEntry.occurred_at, LedgerEntry.expires_at, LedgerEntry.points)
        .where(LedgerEntry.member_id == member_id)
    ).all()
    return fifo_lots(entries)


def fifo_lots(entries: Iterable[tuple[datetime, datetime | None, int]]) -> list[Lot]:
    """Allocate every debit to lots soonest-expiring first (never-expiring lots last)."""
    lots = sorted(
        ((at, exp, pts) for at, exp, pts in entries if pts > 0),
        key=lambda lot: (lot[1] is None, lot[1] or lot[0], lot[0]),
    )
    consumed = -sum(pts for _, _, pts in entries if pts < 0)
    result = []
    for at, exp, pts in lots:
        used = min(pts, max(consumed, 0))
        consumed -= used
        result.append(Lot(earned_at=at, expires_at=exp, points=pts, remaining=pts - used))
    return result


_EXPIRY_SQL = """
SELECT member_id, expired - consumed AS points
FROM (
    SELECT member_id,
           SUM(CASE WHEN points > 0 AND expires_at IS NOT NULL AND expires_at <= :as_of
                    THEN points ELSE 0 END) AS expired,
           SUM(CASE WHEN points < 0 THEN -points ELSE 0 END) AS consumed
    FROM ledger_entry
    {where}
    GROUP BY member_id
) AS per_member
WHERE expired > consumed
"""


def expire_points(
    *,
    session: Session,
    as_of: datetime | None = None,
    member_ids: Sequence[int] | None = None,
    actor: Actor,
    read_last_commit: bool = False,
) -> int:
    """Expire every lot past its date, for all members or the given ones.

    Returns the number of members whose points expired. Idempotent: a second run at the
    same moment finds nothing left to expire. Runs inside the caller's transaction if
    there is one (a redemption expires the member's stale lots first), otherwise in its
    own. ``read_last_commit`` (every member, SQLite): sum the ledger from a read of the
    last commit in the analytics reader process, for a caller that has written nothing
    in its transaction yet (the nightly job); much faster at ten million entries.
    """
    if member_ids is None:
        require(actor, "evaluations.run")
    as_of = as_of or utcnow()
    params: dict[str, object] = {"as_of": _db_time(session, as_of)}
    where = ""
    if member_ids is not None:
        if not member_ids:
            return 0
        where = "WHERE member_id IN (" + ",".join(str(int(m)) for m in member_ids) + ")"
    with write_transaction(session):
        _hold_ledger_lock(session, exclusive=member_ids is None)
        if read_last_commit and member_ids is None and session.get_bind().dialect.name == "sqlite":
            due = _due_everyone_sqlite(session, as_of)
        else:
            due = session.execute(text(_EXPIRY_SQL.format(where=where)), params).all()
        if len(due):
            from db.bulk import insert_frame

            frame = pd.DataFrame(due, columns=["member_id", "points"])
            frame["points"] = -frame["points"].astype("int64")
            frame["kind"] = EXPIRE
            frame["occurred_at"] = pd.Timestamp(as_of).tz_convert("UTC") if pd.Timestamp(as_of).tzinfo else pd.Timestamp(as_of, tz="UTC")
            frame["reason"] = "lots past their expiry date"
            frame["actor"] = actor.username
            frame["created_at"] = pd.Timestamp(utcnow())
            insert_frame(session, "ledger_entry", frame)
    return len(due)


def _due_everyone_sqlite(session: Session, as_of: datetime) -> list[tuple[int, int]]:
    """:data:`_EXPIRY_SQL` for every member, summed in Polars from one read of the ledger.

    SQLite's ``GROUP BY member_id`` over the whole ledger takes 40 s at 10M entries;
    reading the three columns through the analytics reader and summing in Polars takes
    a few. The read sees the last commit, which is this transaction's state: it holds
    SQLite's write lock and has written nothing yet.
    """
    import polars as pl

    from loyalty.analytics.data import fetch_frame, sql_moment

    entries = fetch_frame(
        session,
        "SELECT member_id, points, CASE WHEN points > 0 AND expires_at IS NOT NULL AND expires_at <= "
        f"{sql_moment(session, as_of)} THEN 1 ELSE 0 END AS due FROM ledger_entry",
        {"member_id": pl.Int64, "points": pl.Int64, "due": pl.Int8},
    )
    per_member = entries.group_by("member_id").agg(
        expired=pl.when(pl.col("due") == 1).then(pl.col("points")).otherwise(0).sum(),
        consumed=pl.when(pl.col("points") < 0).then(-pl.col("points")).otherwise(0).sum(),
    ).filter(pl.col("expired") > pl.col("consumed"))
    return list(zip(per_member["member_id"].to_list(), (per_member["expired"] - per_member["consumed"]).to_list()))


def _db_time(session: Session, moment: datetime) -> object:
    """A bind value comparable with stored timestamps in a raw SQL string."""
    if moment.tzinfo is None:
        raise InvalidInput("Timestamps must carry a time zone (UTC).")
    utc = pd.Timestamp(moment).tz_convert("UTC")
    if session.get_bind().dialect.name == "sqlite":
        return utc.strftime("%Y-%m-%d %H:%M:%S.%f")
    return utc.to_pydatetime()


def adjust_points(
    *, session: Session, member_id: int, points: int, reason: str, actor: Actor, now: datetime | None = None
) -> LedgerEntry:
    """A manual correction by operations, with a reason; never below a zero balance."""
    require(actor, "points.adjust")
    if not reason or not reason.strip():
        raise InvalidInput("An adjustment needs a reason (it is shown to auditors).")
    if points == 0:
        raise InvalidInput("An adjustment of 0 points changes nothing.")
    with write_transaction(session):
        member = lock_member(session, member_id)
        now = now or utcnow()
        if points < 0:
            expire_points(session=session, as_of=now, member_ids=[member.id], actor=actor)
            current = balance(session, member.id)
            if current + points < 0:
                raise InsufficientPoints(
                    f"Member {member.external_id} has {current:,} points; cannot remove {-points:,}."
                )
        settings = get_settings(session)
        entry = LedgerEntry(
            member_id=member.id, kind=ADJUST, points=points, occurred_at=now,
            expires_at=expiry_date(now, settings.expiry_months) if points > 0 else None,
            reason=reason.strip(), actor=actor.username,
        )
        session.add(entry)
        session.flush()
        record_audit(
            session, actor=actor, action="points.adjust", entity="member", entity_id=member.external_id,
            after={"points": points, "reason": reason.strip(), "entry_id": entry.id},
        )
    return entry


def reverse_purchase(
    *, session: Session, purchase_id: int, actor: Actor, reason: str = "refund", now: datetime | None = None
) -> int:
    """Take back the points a refunded purchase earned, exactly once.

    Points of the purchase that have already expired are not taken again. Returns the
    points reversed. A second refund of the same purchase is refused.
    """
    require(actor, "purchases.refund")
    with write_transaction(session):
        purchase = session.get(Purchase, purchase_id)
        if purchase is None:
            raise NotFound(f"No purchase with id {purchase_id}.")
        lock_member(session, purchase.member_id)
        now = now or utcnow()
        expire_points(session=session, as_of=now, member_ids=[purchase.member_id], actor=actor)
        marked = session.execute(
            update(Purchase)
            .where(Purchase.id == purchase_id, Purchase.refunded_at.is_(None))
            .values(refunded_at=now)
        ).rowcount
        if marked == 0:
            raise AlreadyDone(f"Purchase {purchase.external_id} was already refunded; its points were taken back then.")
        earned = session.exec(
            select(func.coalesce(func.sum(LedgerEntry.points), 0)).where(
                LedgerEntry.purchase_id == purchase_id, LedgerEntry.kind.in_([EARN, BONUS])
            )
        ).one()
        earned = int(earned)
        already_expired = _expired_share(session, purchase.member_id, purchase_id)
        reversed_points = earned - already_expired
        if reversed_points:
            session.add(
                LedgerEntry(
                    member_id=purchase.member_id, kind=REVERSE, points=-reversed_points, occurred_at=now,
                    purchase_id=purchase_id, reason=reason, actor=actor.username,
                )
            )
        record_audit(
            session, actor=actor, action="purchase.refund", entity="purchase", entity_id=purchase.external_id,
            after={"points_reversed": reversed_points, "points_already_expired": already_expired, "reason": reason},
        )
    return reversed_points


def _expired_share(session: Session, member_id: int, purchase_id: int) -> int:
    """Points of the purchase's lots that expiry has already taken.

    The FIFO rule lines lots up soonest-expiring first and lets the debits, in the order
    they were written, fill them from the front; the expired share is where ``expire``
    debits overlap the purchase's earn and bonus lots.
    """
    rows = session.exec(
        select(LedgerEntry.id, LedgerEntry.kind, LedgerEntry.points, LedgerEntry.occurred_at,
               LedgerEntry.expires_at, LedgerEntry.purchase_id)
        .where(LedgerEntry.member_id == member_id)
    ).all()
    expired_spans, filled = [], 0
    for row in sorted((r for r in rows if r.points < 0), key=lambda r: r.id):
        if row.kind == EXPIRE:
            expired_spans.append((filled, filled - row.points))
        filled -= row.points
    lots = sorted(
        (r for r in rows if r.points > 0),
        key=lambda r: (r.expires_at is None, r.expires_at or r.occurred_at, r.occurred_at, r.id),
    )
    share, start = 0, 0
    for lot in lots:
        end = start + lot.points
        if lot.purchase_id == purchase_id and lot.kind in (EARN, BONUS):
            share += sum(max(0, min(end, b) - max(start, a)) for a, b in expired_spans)
        start = end
    return share


def negative_balances(session: Session) -> pd.DataFrame:
    """Members whose balance is below zero (refunds after spending), most negative first."""
    rows = session.exec(
        select(Member.external_id, func.sum(LedgerEntry.points).label("balance"))
        .join(Member, Member.id == LedgerEntry.member_id)
        .group_by(Member.external_id)
        .having(func.sum(LedgerEntry.points) < 0)
        .order_by(func.sum(LedgerEntry.points))
    ).all()
    return pd.DataFrame(rows, columns=["member", "balance"])


def lock_member(session: Session, member_id: int) -> Member:
    """Lock the member's row for this transaction (PostgreSQL; SQLite holds the db lock).

    Takes the ledger lock shared first (see the module notes), then the row, and reads
    the row afresh: an object this session loaded earlier may be out of date.
    """
    _hold_ledger_lock(session, exclusive=False)
    member = session.exec(
        select(Member).where(Member.id == member_id).with_for_update().execution_options(populate_existing=True)
    ).one_or_none()
    if member is None:
        raise NotFound(f"No member with id {member_id}.")
    return member


# An advisory lock per schema: (this key, hash of the schema name).
_LEDGER_LOCK_KEY = 20_240_301


def _hold_ledger_lock(session: Session, *, exclusive: bool) -> None:
    """PostgreSQL: hold the ledger lock until the transaction ends (no-op on SQLite)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    session.execute(text(f"SELECT {function}(:key, hashtext(current_schema()))"), {"key": _LEDGER_LOCK_KEY})
