"""Purchases arriving from the company's systems, and the points they earn.

:func:`add_purchases` is the one path by which purchases enter the program (the CSV
import, the demo and :func:`record_purchase` all use it): the purchases and the ledger
entries they earn are written together, in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

import pandas as pd
from sqlmodel import Session, select

from db.bulk import allocate_ids, insert_frame
from db.engine import write_transaction
from db.models import Member, Purchase, utcnow
from loyalty.access.roles import Actor, require
from loyalty.bounds import Bounds
from loyalty.errors import InvalidInput, NotFound
from loyalty.ledger.earning import EarnRule, earn_entries, member_multipliers
from loyalty.ledger.entries import PurchaseReturn, return_purchase
from loyalty.ledger.outbox import emit_entries
from loyalty.settings import get_settings

__all__ = ["PURCHASE_COLUMNS", "add_purchases", "record_purchase", "refund_purchase"]

PURCHASE_COLUMNS = ["external_id", "member_id", "occurred_at", "amount", "channel", "store", "category"]
ProgressFn = Callable[[int, int], None]


def campaign_rules(session: Session, purchases: pd.DataFrame) -> tuple[EarnRule, ...]:
    """The earn rules of campaigns active over these purchases (``loyalty.program.campaigns``)."""
    try:
        from loyalty.ledger.campaign_earning import earn_rules_for
    except ImportError:  # campaigns arrive with the planning workspace
        return ()
    return earn_rules_for(session, purchases)


def add_purchases(
    session: Session, purchases: pd.DataFrame, *, actor: Actor, progress: ProgressFn | None = None, chunk_rows: int = 200_000
) -> tuple[int, int]:
    """Insert new purchases (``PURCHASE_COLUMNS``, ``member_id`` internal) and earn their points.

    The caller owns the transaction and has checked the rows. Returns
    ``(purchases inserted, ledger entries inserted)``. Emits ``points.changed`` per member
    and kind per chunk of ``chunk_rows`` purchases (:mod:`loyalty.ledger.outbox`).
    """
    if purchases.empty:
        return 0, 0
    settings = get_settings(session)
    multipliers = member_multipliers(session)
    now = pd.Timestamp(utcnow())
    total, entries_written = len(purchases), 0
    for start in range(0, total, chunk_rows):
        chunk = purchases.iloc[start : start + chunk_rows][PURCHASE_COLUMNS].copy()
        chunk["id"] = allocate_ids(session, "purchase", len(chunk))
        chunk["imported_at"] = now
        insert_frame(session, "purchase", chunk)
        entries = earn_entries(chunk, settings=settings, multipliers=multipliers, rules=campaign_rules(session, chunk), actor=actor.username)
        entries["created_at"] = now
        entries_written += insert_frame(session, "ledger_entry", entries)
        emit_entries(session, entries, purchases=pd.Series(chunk["external_id"].to_numpy(), index=chunk["id"].to_numpy()))
        if progress:
            progress(min(start + chunk_rows, total), total)
    return total, entries_written


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
    """Record one purchase as it happens (the API path) and earn its points."""
    require(actor, "data.import")
    bounds = Bounds.of(get_settings(session), utcnow())
    if problem := bounds.amount_problem(amount):
        raise InvalidInput(f"The purchase amount {problem}.")
    if problem := bounds.moment_problem(occurred_at):
        raise InvalidInput(f"The purchase time {problem}.")
    with write_transaction(session):
        if session.get(Member, member_id) is None:
            raise NotFound(f"No member with id {member_id}.")
        key = external_id or f"api:{utcnow().timestamp():.6f}:{member_id}"
        if session.exec(select(Purchase.id).where(Purchase.external_id == key)).first() is not None:
            raise InvalidInput(f"Purchase {key} was already recorded.")
        frame = pd.DataFrame(
            [
                {
                    "external_id": key,
                    "member_id": member_id,
                    "occurred_at": pd.Timestamp(occurred_at).tz_convert("UTC"),
                    "amount": float(amount),
                    "channel": channel,
                    "store": store,
                    "category": category,
                }
            ]
        )
        add_purchases(session, frame, actor=actor)
        purchase_id = session.exec(select(Purchase.id).where(Purchase.external_id == key)).one()
    assert purchase_id is not None  # the purchase was just stored
    return int(purchase_id)


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
