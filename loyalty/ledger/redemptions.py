"""The rewards catalogue and redemptions.

A redemption is one transaction: lock the member and the reward, expire the member's
stale lots, check balance and stock, take one unit of stock with a conditional UPDATE,
write the ``redeem`` entry. Balance and stock never go below zero, whatever number of
processes redeem at once (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: row locks).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import pandas as pd
from sqlalchemy import update
from sqlmodel import Session, col, select

from db.engine import write_transaction
from db.models import LedgerEntry, Member, Redemption, Reward, Tier, utcnow
from loyalty.access.audit import record_audit
from loyalty.access.roles import Actor, require
from loyalty.errors import AlreadyDone, InsufficientPoints, InvalidInput, OutOfStock, RewardUnavailable
from loyalty.ledger.entries import REDEEM, REVERSE, balance, expire_points, expiry_date, lock_member
from loyalty.ledger.outbox import emit_entry, emit_redemption
from loyalty.records import locked
from loyalty.settings import get_settings

__all__ = [
    "HandledRedemptions",
    "RedemptionResult",
    "cancel_redemption",
    "cancel_redemptions",
    "fulfil_redemption",
    "fulfil_redemptions",
    "list_rewards",
    "redeem_reward",
    "redemption_queue",
]


@dataclass(frozen=True)
class RedemptionResult:
    redemption_id: int
    balance: int


def list_rewards(session: Session, *, active_only: bool = False, include_archived: bool = False) -> list[dict]:
    """The catalogue, cheapest first; archived rewards only with ``include_archived``."""
    query = select(Reward).order_by(col(Reward.points_cost), col(Reward.id))
    if active_only:
        query = query.where(col(Reward.active).is_(True))
    if not include_archived:
        query = query.where(col(Reward.archived_at).is_(None))
    return [
        {
            "id": r.id,
            "name": r.name,
            "kind": r.kind,
            "points_cost": r.points_cost,
            "stock": r.stock,
            "active": r.active,
            "partner": r.partner,
            "min_tier_id": r.min_tier_id,
            "available_from": r.available_from,
            "available_until": r.available_until,
            "archived": r.archived_at is not None,
        }
        for r in session.exec(query)
    ]


def redeem_reward(*, session: Session, member_id: int, reward_id: int, actor: Actor, now: datetime | None = None) -> RedemptionResult:
    """Exchange a member's points for a reward; raises if points, stock or eligibility fall short."""
    require(actor, "redemptions.request")
    now = now or utcnow()
    with write_transaction(session):
        member = lock_member(session, member_id)
        assert member.id is not None  # a locked member is a stored row
        reward = locked(session, Reward, reward_id, "reward")
        assert reward.id is not None  # a locked reward is a stored row
        _check_available(session, reward, member, now)
        expire_points(session=session, as_of=now, member_ids=[member.id], actor=actor)
        current = balance(session, member.id)
        if current < reward.points_cost:
            raise InsufficientPoints(f"Member {member.external_id} has {current:,} points; {reward.name} costs {reward.points_cost:,}.")
        if reward.stock is not None:
            taken = session.execute(
                update(Reward).where(col(Reward.id) == reward.id, col(Reward.stock) > 0).values(stock=col(Reward.stock) - 1)
            ).rowcount  # type: ignore[attr-defined]  # an UPDATE returns a CursorResult; SQLModel types execute() as Result
            if taken == 0:
                raise OutOfStock(f"{reward.name} is out of stock.")
        redemption = Redemption(member_id=member.id, reward_id=reward.id, points=reward.points_cost, requested_at=now)
        session.add(redemption)
        session.flush()
        entry = LedgerEntry(
            member_id=member.id,
            kind=REDEEM,
            points=-reward.points_cost,
            occurred_at=now,
            redemption_id=redemption.id,
            reason=f"redeemed {reward.name}",
            actor=actor.username,
        )
        session.add(entry)
        emit_entry(session, entry)
        emit_redemption(session, redemption, member=member.external_id)
        record_audit(
            session,
            actor=actor,
            action="redemption.request",
            entity="redemption",
            entity_id=redemption.id,
            after={"member": member.external_id, "reward": reward.name, "points": reward.points_cost},
        )
        assert redemption.id is not None  # flushed above
        result = RedemptionResult(redemption_id=int(redemption.id), balance=current - reward.points_cost)
    return result


def _check_available(session: Session, reward: Reward, member: Member, now: datetime) -> None:
    if reward.archived_at is not None:
        raise RewardUnavailable(f"{reward.name} is archived (no longer in the catalogue).")
    if not reward.active:
        raise RewardUnavailable(f"{reward.name} is not active.")
    if reward.available_from and now < reward.available_from:
        raise RewardUnavailable(f"{reward.name} is available from {reward.available_from:%Y-%m-%d}.")
    if reward.available_until and now > reward.available_until:
        raise RewardUnavailable(f"{reward.name} was available until {reward.available_until:%Y-%m-%d}.")
    if reward.min_tier_id is not None:
        required = session.get(Tier, reward.min_tier_id)
        current = session.get(Tier, member.tier_id) if member.tier_id else None
        if required and (current is None or current.rank < required.rank):
            raise RewardUnavailable(f"{reward.name} is for {required.name} members and above.")


def fulfil_redemption(*, session: Session, redemption_id: int, actor: Actor, note: str = "") -> None:
    require(actor, "redemptions.fulfil")
    with write_transaction(session):
        redemption = _pending(session, redemption_id)
        redemption.status, redemption.fulfilled_at, redemption.handled_by = "fulfilled", utcnow(), actor.username
        redemption.note = note
        session.add(redemption)
        emit_redemption(session, redemption)
        record_audit(
            session,
            actor=actor,
            action="redemption.fulfil",
            entity="redemption",
            entity_id=redemption_id,
            before={"status": "requested"},
            after={"status": "fulfilled", "note": note},
        )


def cancel_redemption(*, session: Session, redemption_id: int, actor: Actor, reason: str) -> int:
    """Cancel a requested redemption: the points go back to the member, the stock back to the reward."""
    require(actor, "redemptions.fulfil")
    if not reason.strip():
        raise InvalidInput("Give a cancellation reason: the member and the auditors will see it.")
    with write_transaction(session):
        redemption = _pending(session, redemption_id)
        # Member before reward, the order redeem_reward locks them in (else a deadlock).
        lock_member(session, redemption.member_id)
        now = utcnow()
        redemption.status, redemption.cancelled_at, redemption.handled_by = "cancelled", now, actor.username
        redemption.note = reason
        session.add(redemption)
        session.execute(
            update(Reward).where(col(Reward.id) == redemption.reward_id, col(Reward.stock).is_not(None)).values(stock=col(Reward.stock) + 1)
        )
        # Returned points are a new lot with a fresh expiry period.
        entry = LedgerEntry(
            member_id=redemption.member_id,
            kind=REVERSE,
            points=redemption.points,
            occurred_at=now,
            expires_at=expiry_date(now, get_settings(session).expiry_months),
            redemption_id=redemption.id,
            reason=f"redemption cancelled: {reason}",
            actor=actor.username,
        )
        session.add(entry)
        emit_entry(session, entry)
        emit_redemption(session, redemption)
        record_audit(
            session,
            actor=actor,
            action="redemption.cancel",
            entity="redemption",
            entity_id=redemption_id,
            before={"status": "requested"},
            after={"status": "cancelled", "reason": reason, "points_returned": redemption.points},
        )
    return redemption.points


@dataclass(frozen=True)
class HandledRedemptions:
    """Redemptions fulfilled or cancelled together: each one's id, member, reward and points."""

    outcome: str  # "fulfilled" or "cancelled"
    redemptions: list[dict]
    points_returned: int = 0

    @property
    def summary(self) -> str:
        """What was done, in the operations team's words, naming each redemption."""
        count = len(self.redemptions)
        done = f"{self.outcome.capitalize()} {count} redemption{'s' if count != 1 else ''}"
        if self.points_returned:
            done += f" and returned {self.points_returned:,} points"
        return done + ": " + "; ".join(f"#{r['id']} {r['reward']} for {r['member']}" for r in self.redemptions) + "."


def fulfil_redemptions(*, session: Session, redemption_ids: Sequence[int], actor: Actor, note: str = "") -> HandledRedemptions:
    """Fulfil the chosen requested redemptions, by id, in one transaction: all of them or none.

    Raises :class:`AlreadyDone` (nothing written) when one was fulfilled or cancelled meanwhile.
    """
    require(actor, "redemptions.fulfil")
    ids = _chosen(redemption_ids)
    with write_transaction(session):
        for redemption_id in ids:
            fulfil_redemption(session=session, redemption_id=redemption_id, actor=actor, note=note)
        handled = _described(session, ids)
    return HandledRedemptions("fulfilled", handled)


def cancel_redemptions(*, session: Session, redemption_ids: Sequence[int], actor: Actor, reason: str) -> HandledRedemptions:
    """Cancel the chosen requested redemptions, by id, in one transaction: all of them or none.

    Each returns its points to its member and its unit of stock to its reward.
    """
    require(actor, "redemptions.fulfil")
    ids = _chosen(redemption_ids)
    with write_transaction(session):
        returned = sum(cancel_redemption(session=session, redemption_id=rid, actor=actor, reason=reason) for rid in ids)
        handled = _described(session, ids)
    return HandledRedemptions("cancelled", handled, points_returned=returned)


def _chosen(redemption_ids: Sequence[int]) -> list[int]:
    ids = list(dict.fromkeys(int(rid) for rid in redemption_ids))
    if not ids:
        raise InvalidInput("Choose at least one redemption.")
    return ids


def _described(session: Session, ids: list[int]) -> list[dict]:
    rows = session.exec(
        select(Redemption.id, Member.external_id, Reward.name, Redemption.points)
        .join(Member, col(Member.id) == Redemption.member_id)
        .join(Reward, col(Reward.id) == Redemption.reward_id)
        .where(col(Redemption.id).in_(ids))
    ).all()
    by_id = {row[0]: {"id": row[0], "member": row[1], "reward": row[2], "points": row[3]} for row in rows}
    return [by_id[rid] for rid in ids]


def _pending(session: Session, redemption_id: int) -> Redemption:
    redemption = locked(session, Redemption, redemption_id, "redemption")
    if redemption.status != "requested":
        raise AlreadyDone(f"Redemption {redemption_id} is already {redemption.status}.")
    return redemption


def redemption_queue(session: Session, *, status: str = "requested", limit: int = 500) -> pd.DataFrame:
    rows = session.exec(
        select(Redemption.id, Redemption.requested_at, Member.external_id, Reward.name, Redemption.points, Redemption.status)  # type: ignore[call-overload]  # typed for at most 4 columns
        .join(Member, Member.id == Redemption.member_id)
        .join(Reward, Reward.id == Redemption.reward_id)
        .where(Redemption.status == status)
        .order_by(Redemption.requested_at)
        .limit(limit)
    ).all()
    return pd.DataFrame(rows, columns=["redemption_id", "requested_at", "member", "reward", "points", "status"])
