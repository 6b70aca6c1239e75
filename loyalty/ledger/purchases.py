"""Purchases arriving from the company's systems, and the points they earn.

:func:`add_purchases` is the one path by which purchases enter the program (the CSV
import, the demo and :func:`record_purchase` all use it): the purchases and the ledger
entries they earn are written together, in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import pandas as pd
from sqlalchemy import func
from sqlmodel import Session, col, select

from db.bulk import allocate_ids, insert_frame
from db.engine import write_transaction
from db.models import Challenge, LedgerEntry, Member, Purchase, stored_id, utcnow
from loyalty.access.roles import Actor, require
from loyalty.bounds import Bounds
from loyalty.errors import AlreadyDone, InvalidInput, LoyaltyError, NotFound
from loyalty.ledger.challenges import challenges_during, evaluate_purchases
from loyalty.ledger.earning import EarnRule, earn_entries, member_multipliers
from loyalty.ledger.entries import PurchaseReturn, lock_members, return_purchase, spendable_balances
from loyalty.ledger.outbox import emit_entries
from loyalty.ledger.referrals import pay_referrals, pending_referees
from loyalty.settings import get_settings

__all__ = ["PURCHASE_COLUMNS", "RecordedPurchase", "add_purchases", "record_purchase", "record_purchases", "refund_purchase"]

PURCHASE_COLUMNS = ["external_id", "member_id", "occurred_at", "amount", "channel", "store", "category"]
ProgressFn = Callable[[int, int], None]
# Up to this many purchases at once, the multipliers of their members alone are read.
FEW_PURCHASES = 1000


def campaign_rules(session: Session, purchases: pd.DataFrame) -> tuple[EarnRule, ...]:
    """The earn rules of campaigns active over these purchases (``loyalty.program.campaigns``)."""
    try:
        from loyalty.ledger.campaign_earning import earn_rules_for
    except ImportError:  # campaigns arrive with the planning workspace
        return ()
    return earn_rules_for(session, purchases)


def engaged_members(session: Session, purchases: pd.DataFrame, active: list[Challenge]) -> list[int]:
    """The members of ``purchases`` a challenge (of ``active``) or a referral may pay now (on
    PostgreSQL only: SQLite writes one transaction at a time)."""
    if purchases.empty or session.get_bind().dialect.name != "postgresql":
        return []
    members = purchases["member_id"].unique()
    if active:
        return [int(m) for m in members]
    return pending_referees(session, members)


def add_purchases(
    session: Session, purchases: pd.DataFrame, *, actor: Actor, progress: ProgressFn | None = None, chunk_rows: int = 200_000
) -> tuple[int, int]:
    """Insert new purchases (``PURCHASE_COLUMNS``, ``member_id`` internal) and earn their points.

    The caller owns the transaction and has checked the rows. An ``actor`` column, if any,
    names who recorded each row (ledger entries' actor); otherwise ``actor`` did. Returns
    ``(purchases inserted, ledger entries inserted)``. Emits ``points.changed`` per member
    and kind per chunk of ``chunk_rows`` purchases (:mod:`loyalty.ledger.outbox`).
    """
    if purchases.empty:
        return 0, 0
    settings = get_settings(session)
    few = purchases["member_id"].unique() if len(purchases) <= FEW_PURCHASES else None
    multipliers = member_multipliers(session, None if few is None else few.tolist())
    now = pd.Timestamp(utcnow())
    total, entries_written = len(purchases), 0
    for start in range(0, total, chunk_rows):
        rows = purchases.iloc[start : start + chunk_rows]
        chunk = rows[PURCHASE_COLUMNS].copy()
        chunk["id"] = allocate_ids(session, "purchase", len(chunk))
        chunk["imported_at"] = now
        insert_frame(session, "purchase", chunk)
        entries = earn_entries(chunk, settings=settings, multipliers=multipliers, rules=campaign_rules(session, chunk), actor=actor.username)
        if "actor" in rows.columns:  # purchases from several API keys in one transaction: each its own actor
            entries["actor"] = entries["purchase_id"].map(dict(zip(chunk["id"], rows["actor"]))).to_numpy()
        entries["created_at"] = now
        entries_written += insert_frame(session, "ledger_entry", entries)
        emit_entries(session, entries, purchases=pd.Series(chunk["external_id"].to_numpy(), index=chunk["id"].to_numpy()))
        # Challenges met by these purchases are paid now, and the referrals whose first purchase this is.
        # On PostgreSQL another transaction may be adding purchases of the same members: their rows are
        # locked first, so each sees the other's purchases and completions (no reward twice, none missed).
        active = challenges_during(session, chunk)
        lock_members(session, engaged_members(session, chunk, active))
        evaluate_purchases(session, chunk, actor="system", active=active)
        pay_referrals(session, chunk, actor="system")
        if progress:
            progress(min(start + chunk_rows, total), total)
    return total, entries_written


@dataclass(frozen=True)
class RecordedPurchase:
    """A purchase recorded as it happened: the points it earned and the member's balance after it."""

    purchase: str
    member: str
    points_earned: int
    balance: int


def record_purchases(session: Session, rows: Sequence[dict[str, Any]], *, actors: Sequence[Actor]) -> list[RecordedPurchase | LoyaltyError]:
    """Record purchases arriving one by one (the API), several in one transaction.

    Each row has ``purchase_id`` and ``member_id`` (the company's ids), ``occurred_at``,
    ``amount`` and may have ``channel, store, category``; ``actors[i]`` recorded row ``i``.
    Each row is checked on its own (the bounds of every way in, a known member not erased,
    a purchase id not seen before); a refused row gets its error in its place and does not
    stop the others. The accepted rows earn through :func:`add_purchases`, as the import's do.
    """
    if len(rows) != len(actors):
        raise ValueError("one actor per row")
    for actor in set(actors):
        require(actor, "data.import")
    bounds = Bounds.of(get_settings(session), utcnow())
    outcomes: list[RecordedPurchase | LoyaltyError | None] = [None] * len(rows)
    with write_transaction(session):
        known: dict[str, tuple[int, datetime | None]] = {
            external: (int(member_id or 0), erased)
            for member_id, external, erased in session.exec(
                select(Member.id, Member.external_id, Member.erased_at).where(col(Member.external_id).in_({r["member_id"] for r in rows}))
            )
        }
        stored = {
            purchase: (member, amount, at)
            for purchase, member, amount, at in session.exec(
                select(Purchase.external_id, Member.external_id, Purchase.amount, Purchase.occurred_at)
                .join(Member, col(Member.id) == Purchase.member_id)
                .where(col(Purchase.external_id).in_({r["purchase_id"] for r in rows}))
            )
        }
        accepted: list[int] = []
        for i, row in enumerate(rows):
            outcomes[i] = _refusal(row, bounds, known, stored)
            if outcomes[i] is None:
                stored[row["purchase_id"]] = (row["member_id"], float(row["amount"]), row["occurred_at"])  # a copy later in the batch
                accepted.append(i)
        if accepted:
            member_ids = sorted({known[rows[i]["member_id"]][0] for i in accepted})
            lock_members(session, member_ids)
            frame = pd.DataFrame(
                [
                    {
                        "external_id": rows[i]["purchase_id"],
                        "member_id": known[rows[i]["member_id"]][0],
                        "occurred_at": pd.Timestamp(rows[i]["occurred_at"]).tz_convert("UTC"),
                        "amount": float(rows[i]["amount"]),
                        "channel": rows[i].get("channel") or "",
                        "store": rows[i].get("store") or "",
                        "category": rows[i].get("category") or "",
                        "actor": actors[i].username,
                    }
                    for i in accepted
                ]
            )
            add_purchases(session, frame, actor=actors[accepted[0]])
            earned = dict(
                session.exec(
                    select(Purchase.external_id, func.coalesce(func.sum(LedgerEntry.points), 0))
                    .join(LedgerEntry, col(LedgerEntry.purchase_id) == Purchase.id, isouter=True)
                    .where(col(Purchase.external_id).in_(frame["external_id"].tolist()))
                    .group_by(col(Purchase.external_id))
                ).all()
            )
            balances = spendable_balances(session, member_ids)
            for i in accepted:
                row = rows[i]
                member_id = known[row["member_id"]][0]
                outcomes[i] = RecordedPurchase(row["purchase_id"], row["member_id"], int(earned.get(row["purchase_id"], 0)), balances[member_id])
    return [o for o in outcomes if o is not None]


def _refusal(
    row: dict[str, Any], bounds: Bounds, known: dict[str, tuple[int, datetime | None]], stored: dict[str, tuple[str, float, datetime]]
) -> LoyaltyError | None:
    if problem := bounds.amount_problem(row["amount"]):
        return InvalidInput(f"The purchase amount {problem}.")
    if problem := bounds.moment_problem(row["occurred_at"]):
        return InvalidInput(f"The purchase time {problem}.")
    member = known.get(row["member_id"])
    if member is None:
        return NotFound(f"No member with id {row['member_id']}.")
    if member[1] is not None:
        return NotFound(f"Member {row['member_id']} was erased.")
    if (before := stored.get(row["purchase_id"])) is not None:
        owner, amount, at = before
        return AlreadyDone(
            f"Purchase {row['purchase_id']} was already recorded (member {owner}, amount {amount:,.2f}, at "
            f"{pd.Timestamp(at).tz_convert('UTC'):%Y-%m-%d %H:%M:%S} UTC); its points were earned then."
        )
    return None


def record_purchase(
    *,
    session: Session,
    member_id: int,
    amount: float,
    occurred_at: datetime,
    actor: Actor,
    external_id: str | None = None,
    channel: str = "",
    store: str = "",
    category: str = "",
) -> int:
    """Record one purchase as it happens and earn its points (:func:`record_purchases` for one)."""
    require(actor, "data.import")
    member = session.get(Member, member_id)
    if member is None:
        raise NotFound(f"No member with id {member_id}.")
    key = external_id or f"api:{utcnow().timestamp():.6f}:{member_id}"
    row = {"purchase_id": key, "member_id": member.external_id, "occurred_at": occurred_at, "amount": amount}
    (outcome,) = record_purchases(session, [{**row, "channel": channel, "store": store, "category": category}], actors=[actor])
    if isinstance(outcome, LoyaltyError):
        raise outcome
    return stored_id(session.exec(select(Purchase).where(Purchase.external_id == key)).one())


def refund_purchase(
    *, session: Session, purchase: str, actor: Actor, reason: str = "refund", amount: Decimal | float | str | None = None
) -> PurchaseReturn:
    """Return ``amount`` of a purchase by its company id (``None``: refund all that is left).

    Takes back that share of the points the purchase earned, rounded half up; see
    :func:`loyalty.ledger.entries.return_purchase` for the rules (over-returns refused, expired
    points not taken twice, spent points taken back as a debt).
    """
    purchase_id = session.exec(select(Purchase.id).where(Purchase.external_id == purchase)).first()
    if purchase_id is None:
        raise NotFound(f"No purchase with id {purchase}.")
    return return_purchase(session=session, purchase_id=purchase_id, actor=actor, amount=amount, reason=reason)
