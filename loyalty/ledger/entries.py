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
* A return takes back the returned share of the points its purchase earned (earn and
  bonus entries): after returns totalling ``R`` of an amount ``A``, the purchase has
  given back ``round_half_up(earned * R / A)`` points in all, so several partial
  returns never take more than one full refund would, and a return of everything left
  (a full refund) takes back exactly what remains. Returns never exceed the amount; a
  fully returned purchase refuses another return.
* Points of the purchase that have already expired are not taken again (expiry took
  those; taking them again would count them twice): all returns of a purchase take
  back at most ``earned - expired share``, the expired points counting first against
  the part the member keeps.
* **Points already spent** are taken back all the same: the balance may go below zero,
  a debt that the member's next earnings repay first (FIFO), and the negative-balance
  report lists it. A member in debt cannot redeem. Redemptions and adjustments never
  make a balance negative.
* The balance a member can spend *now* leaves out lots past their expiry date even
  before the nightly expiry job writes them off (:func:`member_balance`,
  :func:`spendable_balances`); :func:`balance` is the plain sum of the entries.
* On PostgreSQL, use cases that work on one member's ledger hold the ledger lock
  shared and the all-member expiry run holds it exclusively, so the run never
  computes from a snapshot that misses a redemption's own expiry (SQLite's
  ``BEGIN IMMEDIATE`` already serialises every writer).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from numbers import Integral
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Integer, case, cast, func, text, update
from sqlmodel import Session, col, select

from db.bulk import id_batches
from db.engine import write_transaction
from db.models import Campaign, LedgerEntry, Member, Purchase, Redemption, Reward, utcnow
from loyalty.access.audit import record_audit
from loyalty.access.roles import Actor, require
from loyalty.bounds import MAX_ADJUSTMENT_POINTS
from loyalty.errors import AlreadyDone, InsufficientPoints, InvalidInput, NotFound
from loyalty.ledger.kinds import ADJUST, BONUS, EARN, EXPIRE, KINDS, REDEEM, REVERSE, expiry_date, expiry_dates
from loyalty.ledger.outbox import emit_entries, emit_entry
from loyalty.periods import as_utc
from loyalty.records import locked
from loyalty.settings import get_settings

__all__ = [
    "KINDS",
    "Lot",
    "MemberBalance",
    "PurchaseReturn",
    "adjust_points",
    "balance",
    "check_adjustment_points",
    "describe_entry",
    "expire_points",
    "expiry_date",
    "expiry_dates",
    "lock_member",
    "lock_members",
    "member_balance",
    "member_ledger",
    "negative_balances",
    "open_lots",
    "return_purchase",
    "reverse_purchase",
    "spendable_balances",
]


def balance(session: Session, member_id: int) -> int:
    """The member's balance: the sum of the member's ledger entries."""
    total = session.exec(select(func.coalesce(func.sum(LedgerEntry.points), 0)).where(LedgerEntry.member_id == member_id)).one()
    return int(total)


def spendable_balances(session: Session, member_ids: Sequence[int], *, as_of: datetime | None = None) -> dict[int, int]:
    """What each member can spend at ``as_of`` (default now), in one ``GROUP BY``.

    The sum of the entries less the points still sitting in lots past their expiry
    date (``max(0, P - D)``, see the module notes), so a balance never shows points
    the nightly expiry job simply has not written off yet.
    """
    if not member_ids:
        return {}
    as_of = as_of or utcnow()
    due = func.sum(
        case(
            ((col(LedgerEntry.points) > 0) & col(LedgerEntry.expires_at).is_not(None) & (col(LedgerEntry.expires_at) <= as_of), LedgerEntry.points),
            else_=0,
        )
    )
    consumed = func.sum(case((col(LedgerEntry.points) < 0, -LedgerEntry.points), else_=0))
    ids, found = [int(m) for m in member_ids], {}
    for start in range(0, len(ids), 10_000):  # a statement binds a limited number of values
        rows = session.exec(
            select(LedgerEntry.member_id, func.sum(LedgerEntry.points), due, consumed)
            .where(col(LedgerEntry.member_id).in_(ids[start : start + 10_000]))
            .group_by(col(LedgerEntry.member_id))
        ).all()
        found.update({int(m): int(total) - max(0, int(d) - int(c)) for m, total, d, c in rows})
    return {m: found.get(m, 0) for m in ids}


@dataclass(frozen=True)
class MemberBalance:
    """A member's balance as the member sees it.

    ``points``: what can be spent now; ``past_expiry``: points in lots past their date
    that the expiry job has not written off yet (not spendable); ``next_expiry_on`` and
    ``next_expiry_points``: the next day (UTC) on which points expire, and how many.
    """

    points: int
    past_expiry: int
    next_expiry_on: date | None
    next_expiry_points: int


def member_balance(session: Session, member_id: int, *, as_of: datetime | None = None) -> MemberBalance:
    """The member's spendable balance at ``as_of`` (default now) and the next expiry."""
    as_of = as_of or utcnow()
    lots = open_lots(session, member_id)
    past = sum(lot.remaining for lot in lots if lot.expires_at is not None and lot.expires_at <= as_of)
    ahead = sorted(  # (expiry, points) of the lots still to expire, soonest first
        ((lot.expires_at, lot.remaining) for lot in lots if lot.remaining > 0 and lot.expires_at is not None and lot.expires_at > as_of),
        key=lambda due: due[0],
    )
    next_on = _utc_day(ahead[0][0]) if ahead else None
    return MemberBalance(
        points=balance(session, member_id) - past,
        past_expiry=past,
        next_expiry_on=next_on,
        next_expiry_points=sum(remaining for expires_at, remaining in ahead if _utc_day(expires_at) == next_on),
    )


def _utc_day(moment: datetime) -> date:
    return pd.Timestamp(moment).tz_convert("UTC").date()


LEDGER_COLUMNS = ["occurred_at", "kind", "points", "description", "reason", "expires_at", "actor", "balance"]


def member_ledger(session: Session, member_id: int) -> pd.DataFrame:
    """The member's entries, oldest first, each named in words, with the running balance.

    ``description`` names what the points came from or went to ("Redeemed: Free
    coffee", "Campaign: Double points weekend", "Purchase #P123 (EUR 45.00,
    2026-03-02)"), read with one join rather than a query per line.
    """
    rows = session.exec(
        select(
            LedgerEntry.occurred_at,
            LedgerEntry.kind,
            LedgerEntry.points,
            LedgerEntry.reason,  # type: ignore[call-overload]  # typed for at most 4 columns
            LedgerEntry.expires_at,
            LedgerEntry.actor,
            Purchase.external_id,
            Purchase.amount,
            Purchase.occurred_at,
            Reward.name,
            Campaign.name,
            col(LedgerEntry.redemption_id).is_not(None),
        )
        .join(Purchase, Purchase.id == LedgerEntry.purchase_id, isouter=True)
        .join(Redemption, Redemption.id == LedgerEntry.redemption_id, isouter=True)
        .join(Reward, Reward.id == Redemption.reward_id, isouter=True)
        .join(Campaign, Campaign.id == LedgerEntry.campaign_id, isouter=True)
        .where(LedgerEntry.member_id == member_id)
        .order_by(LedgerEntry.occurred_at, LedgerEntry.id)
    ).all()
    currency = get_settings(session).currency
    frame = pd.DataFrame(
        [
            (
                at,
                kind,
                points,
                describe_entry(kind, reason, purchase, amount, bought_at, reward, campaign, cancelled, currency),
                reason,
                expires_at,
                actor,
            )
            for at, kind, points, reason, expires_at, actor, purchase, amount, bought_at, reward, campaign, cancelled in rows
        ],
        columns=LEDGER_COLUMNS[:-1],
    )
    frame["balance"] = frame["points"].cumsum() if not frame.empty else pd.Series(dtype="int64")
    return frame


def describe_entry(
    kind: str,
    reason: str,
    purchase: str | None,
    amount: float | None,
    bought_at: datetime | None,
    reward: str | None,
    campaign: str | None,
    redemption: bool,
    currency: str,
) -> str:
    """A ledger line in the loyalty team's words, naming its purchase, reward or campaign."""
    bought = f"Purchase #{purchase} ({currency} {amount:,.2f}, {_utc_day(bought_at):%Y-%m-%d})" if purchase and bought_at else ""
    if campaign:
        return f"Campaign: {campaign}" + (f" · {bought}" if bought else "")
    if kind == REDEEM:
        return f"Redeemed: {reward}" if reward else f"Redeemed: {reason}"
    if kind == REVERSE and redemption:
        return f"Redemption cancelled: {reward}" if reward else "Redemption cancelled"
    if kind == REVERSE and bought:
        return f"Returned: {bought}"
    if kind == EXPIRE:
        return "Expired: points past their expiry date"
    if kind == ADJUST:
        return f"Adjustment: {reason}"
    return bought or reason


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
        select(LedgerEntry.occurred_at, LedgerEntry.expires_at, LedgerEntry.points).where(LedgerEntry.member_id == member_id)
    ).all()
    return fifo_lots(entries)


def fifo_lots(entries: Iterable[tuple[datetime, datetime | None, int]]) -> list[Lot]:
    """Allocate every debit to lots soonest-expiring first (never-expiring lots last)."""
    lots = sorted(((at, exp, pts) for at, exp, pts in entries if pts > 0), key=lambda lot: (lot[1] is None, lot[1] or lot[0], lot[0]))
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
    *, session: Session, as_of: datetime | None = None, member_ids: Sequence[int] | None = None, actor: Actor, read_last_commit: bool = False
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
        due: Sequence[Any]
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
            emit_entries(session, frame)
    return len(due)


def _due_everyone_sqlite(session: Session, as_of: datetime) -> list[tuple[int, int]]:
    """:data:`_EXPIRY_SQL` for every member, summed in Polars from one read of the ledger.

    SQLite's ``GROUP BY member_id`` over the whole ledger takes 40 s at 10M entries;
    reading the three columns through the analytics reader and summing in Polars takes
    a few. The read sees the last commit, which is this transaction's state: it holds
    SQLite's write lock and has written nothing yet.
    """
    import polars as pl

    from loyalty.analytics.data import fetch_frame

    entries = fetch_frame(
        session,
        "SELECT member_id, points, CASE WHEN points > 0 AND expires_at IS NOT NULL AND expires_at <= "
        ":as_of THEN 1 ELSE 0 END AS due FROM ledger_entry",
        {"member_id": pl.Int64, "points": pl.Int64, "due": pl.Int8},
        params={"as_of": as_of},
    )
    per_member = (
        entries.group_by("member_id")
        .agg(
            expired=pl.when(pl.col("due") == 1).then(pl.col("points")).otherwise(0).sum(),
            consumed=pl.when(pl.col("points") < 0).then(-pl.col("points")).otherwise(0).sum(),
        )
        .filter(pl.col("expired") > pl.col("consumed"))
    )
    return list(zip(per_member["member_id"].to_list(), (per_member["expired"] - per_member["consumed"]).to_list()))


def _db_time(session: Session, moment: datetime) -> object:
    """A bind value comparable with stored timestamps in a raw SQL string."""
    if moment.tzinfo is None:
        raise InvalidInput("Timestamps must carry a time zone (UTC).")
    utc = pd.Timestamp(moment).tz_convert("UTC")
    if session.get_bind().dialect.name == "sqlite":
        return utc.strftime("%Y-%m-%d %H:%M:%S.%f")
    return utc.to_pydatetime()


def check_adjustment_points(points: Any) -> None:
    """An adjustment is a whole number of points, not 0, at most :data:`MAX_ADJUSTMENT_POINTS` either way."""
    if isinstance(points, bool) or not isinstance(points, Integral):
        raise InvalidInput(f"An adjustment is a whole number of points, not {points!r}.")
    if points == 0:
        raise InvalidInput("An adjustment of 0 points changes nothing.")
    if abs(int(points)) > MAX_ADJUSTMENT_POINTS:
        raise InvalidInput(f"An adjustment can be at most {MAX_ADJUSTMENT_POINTS:,} points either way (got {points:+,}).")


def adjust_points(*, session: Session, member_id: int, points: int, reason: str, actor: Actor, now: datetime | None = None) -> LedgerEntry:
    """A manual correction by operations, with a reason; never below a zero balance."""
    require(actor, "points.adjust")
    if not reason or not reason.strip():
        raise InvalidInput("An adjustment needs a reason (it is shown to auditors).")
    check_adjustment_points(points)
    with write_transaction(session):
        member = lock_member(session, member_id)
        assert member.id is not None  # a locked member is a stored row
        now = now or utcnow()
        if points < 0:
            expire_points(session=session, as_of=now, member_ids=[member.id], actor=actor)
            current = balance(session, member.id)
            if current + points < 0:
                raise InsufficientPoints(f"Member {member.external_id} has {current:,} points; cannot remove {-points:,}.")
        settings = get_settings(session)
        entry = LedgerEntry(
            member_id=member.id,
            kind=ADJUST,
            points=points,
            occurred_at=now,
            expires_at=expiry_date(now, settings.expiry_months) if points > 0 else None,
            reason=reason.strip(),
            actor=actor.username,
        )
        session.add(entry)
        session.flush()
        emit_entry(session, entry)
        record_audit(
            session,
            actor=actor,
            action="points.adjust",
            entity="member",
            entity_id=member.external_id,
            after={"points": points, "reason": reason.strip(), "entry_id": entry.id},
        )
    return entry


@dataclass(frozen=True)
class PurchaseReturn:
    """What one return of a purchase did; amounts in cents, points taken back."""

    purchase: str
    returned_cents: int
    total_returned_cents: int
    purchase_cents: int
    points_reversed: int
    points_already_expired: int

    @property
    def fully_returned(self) -> bool:
        return self.total_returned_cents >= self.purchase_cents

    def summary(self, currency: str) -> str:
        """In words, e.g. "Returned EUR 20.00 of purchase P12 (EUR 45.00): 20 points taken back."."""
        if self.returned_cents == self.purchase_cents:
            what = f"Refunded purchase {self.purchase} in full"
        else:
            what = (
                f"Returned {'the last ' if self.fully_returned else ''}{currency} {self.returned_cents / 100:,.2f} "
                f"of purchase {self.purchase} ({currency} {self.purchase_cents / 100:,.2f})"
            )
        expired = f" ({self.points_already_expired:,} of its points had already expired)" if self.points_already_expired else ""
        return f"{what}: {self.points_reversed:,} points taken back{expired}."


def return_purchase(
    *,
    session: Session,
    purchase_id: int,
    actor: Actor,
    amount: Decimal | float | str | None = None,
    reason: str = "refund",
    now: datetime | None = None,
) -> PurchaseReturn:
    """Take back the points for ``amount`` of a purchase returned (``None``: all that is left).

    The purchase has then given back ``round_half_up(earned * returned / amount)`` of
    the points it earned, counting every return so far (see the module notes); less
    what had already expired, which is not taken twice. If the member already spent
    those points, they are taken back all the same and the balance goes below zero: a
    debt the member's next earnings repay first. Returns of one purchase never add up to
    more than its amount, even when two run at once (the member's row lock, and a
    conditional UPDATE on the purchase); a fully returned purchase refuses another.
    """
    require(actor, "purchases.refund")
    with write_transaction(session):
        found = session.get(Purchase, purchase_id)
        if found is None:
            raise NotFound(f"No purchase with id {purchase_id}.")
        lock_member(session, found.member_id)
        purchase = locked(session, Purchase, purchase_id, "purchase")
        settings = get_settings(session)
        currency = settings.currency
        total = _cents(purchase.amount)
        left = total - purchase.returned_cents
        if purchase.refunded_at is not None:
            raise AlreadyDone(
                f"Purchase {purchase.external_id} was already refunded in full ({currency} {total / 100:,.2f}); its points were taken back then."
            )
        returned = left if amount is None else _amount_in_cents(amount)
        if returned > left:
            raise InvalidInput(
                f"Purchase {purchase.external_id} was {currency} {total / 100:,.2f} and {currency} "
                f"{purchase.returned_cents / 100:,.2f} of it was returned before: at most {currency} {left / 100:,.2f} "
                f"can be returned now, not {currency} {returned / 100:,.2f}."
            )
        now = now or utcnow()
        expire_points(session=session, as_of=now, member_ids=[purchase.member_id], actor=actor)
        after = purchase.returned_cents + returned
        marked = session.execute(
            update(Purchase)
            .where(
                col(Purchase.id) == purchase_id,
                col(Purchase.refunded_at).is_(None),
                Purchase.returned_cents + returned <= cast(func.round(Purchase.amount * 100), Integer),
            )
            .values(returned_cents=Purchase.returned_cents + returned, refunded_at=now if after >= total else None)
        ).rowcount  # type: ignore[attr-defined]  # an UPDATE returns a CursorResult; SQLModel types execute() as Result
        if marked == 0:  # the locks make this unreachable; the condition is the last guard
            raise AlreadyDone(f"Purchase {purchase.external_id} was returned by someone else just now; look again.")
        earned, taken_before = _purchase_points(session, purchase_id)
        already_expired = _expired_share(session, purchase.member_id, purchase_id)
        due = earned if after >= total else (2 * earned * after + total) // (2 * total)  # round half up
        reversed_points = max(0, min(due, earned - already_expired) - taken_before)
        note = reason.strip() or "refund"
        if returned != total:  # a partial return, or the rest after earlier ones
            note = f"{currency} {returned / 100:,.2f} returned: {note}"
        if reversed_points:
            entry = LedgerEntry(
                member_id=purchase.member_id,
                kind=REVERSE,
                points=-reversed_points,
                occurred_at=now,
                purchase_id=purchase_id,
                reason=note[:500],
                actor=actor.username,
            )
            session.add(entry)
            emit_entry(session, entry, purchase=purchase.external_id)
        challenge_points = referral_points = 0
        # Refunded in full within the return window: the challenges and the referral it paid are taken back too.
        if after >= total and now - as_utc(purchase.occurred_at) <= timedelta(days=settings.return_window_days):
            from loyalty.ledger import challenges, referrals

            challenge_points = challenges.reverse_for_refund(
                session, purchase_id=purchase_id, purchase_at=purchase.occurred_at, refunded_at=now, actor=actor
            )
            referral_points = referrals.reverse_for_refund(session, purchase_id=purchase_id, refunded_at=now, actor=actor)
        record_audit(
            session,
            actor=actor,
            action="purchase.refund",
            entity="purchase",
            entity_id=purchase.external_id,
            after={
                "amount_returned": returned / 100,
                "returned_total": after / 100,
                "points_reversed": reversed_points,
                "points_already_expired": already_expired,
                "challenge_points_reversed": challenge_points,
                "referral_points_reversed": referral_points,
                "reason": reason,
            },
        )
    return PurchaseReturn(
        purchase=purchase.external_id,
        returned_cents=returned,
        total_returned_cents=after,
        purchase_cents=total,
        points_reversed=reversed_points,
        points_already_expired=already_expired,
    )


def reverse_purchase(*, session: Session, purchase_id: int, actor: Actor, reason: str = "refund", now: datetime | None = None) -> int:
    """Refund a purchase in full (what is left of it): :func:`return_purchase`; returns the points taken back."""
    return return_purchase(session=session, purchase_id=purchase_id, actor=actor, reason=reason, now=now).points_reversed


def _cents(amount: float) -> int:
    return int(Decimal(str(amount)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP) * 100)


def _amount_in_cents(amount: Decimal | float | str) -> int:
    try:
        value = Decimal(str(amount).strip())
    except InvalidOperation:
        raise InvalidInput(f"{amount!r} is not an amount of money (write it like 12.50).") from None
    if not value.is_finite() or value <= 0:
        raise InvalidInput("A returned amount must be above zero.")
    if value != value.quantize(Decimal("0.01")):
        raise InvalidInput(f"A returned amount has at most two decimals, not {amount}.")
    return int(value * 100)


def _purchase_points(session: Session, purchase_id: int) -> tuple[int, int]:
    """(points the purchase earned, points its returns have taken back so far)."""
    earned, taken = session.exec(
        select(
            func.coalesce(func.sum(case((col(LedgerEntry.kind).in_([EARN, BONUS]), LedgerEntry.points), else_=0)), 0),
            func.coalesce(func.sum(case((col(LedgerEntry.kind) == REVERSE, -LedgerEntry.points), else_=0)), 0),
        ).where(LedgerEntry.purchase_id == purchase_id)
    ).one()
    return int(earned), int(taken)


def _expired_share(session: Session, member_id: int, purchase_id: int) -> int:
    """Points of the purchase's lots that expiry has already taken.

    The FIFO rule lines lots up soonest-expiring first and lets the debits, in the order
    they were written, fill them from the front; the expired share is where ``expire``
    debits overlap the purchase's earn and bonus lots.
    """
    rows: Sequence[Any] = session.exec(  # Rows, read by column name
        select(
            LedgerEntry.id,
            LedgerEntry.kind,
            LedgerEntry.points,
            LedgerEntry.occurred_at,  # type: ignore[call-overload]  # typed for at most 4 columns
            LedgerEntry.expires_at,
            LedgerEntry.purchase_id,
        ).where(LedgerEntry.member_id == member_id)
    ).all()
    expired_spans, filled = [], 0
    for row in sorted((r for r in rows if r.points < 0), key=lambda r: r.id):
        if row.kind == EXPIRE:
            expired_spans.append((filled, filled - row.points))
        filled -= row.points
    lots = sorted((r for r in rows if r.points > 0), key=lambda r: (r.expires_at is None, r.expires_at or r.occurred_at, r.occurred_at, r.id))
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
        .join(Member, col(Member.id) == LedgerEntry.member_id)
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
    return locked(session, Member, member_id, "member")


def lock_members(session: Session, member_ids: Sequence[int]) -> None:
    """:func:`lock_member` for several members in one statement, in id order (two callers never
    wait for each other in a circle). On SQLite the write transaction already holds the database."""
    if session.get_bind().dialect.name != "postgresql" or not member_ids:
        return
    _hold_ledger_lock(session, exclusive=False)
    for batch in id_batches(np.asarray(sorted(set(member_ids)), dtype=np.int64)):  # ascending across batches too
        session.execute(select(Member.id).where(col(Member.id).in_(batch)).order_by(col(Member.id)).with_for_update())


# An advisory lock per schema: (this key, hash of the schema name).
_LEDGER_LOCK_KEY = 20_240_301


def _hold_ledger_lock(session: Session, *, exclusive: bool) -> None:
    """PostgreSQL: hold the ledger lock until the transaction ends (no-op on SQLite)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    if exclusive:
        statement = text("SELECT pg_advisory_xact_lock(:key, hashtext(current_schema()))")
    else:
        statement = text("SELECT pg_advisory_xact_lock_shared(:key, hashtext(current_schema()))")
    session.execute(statement, {"key": _LEDGER_LOCK_KEY})
