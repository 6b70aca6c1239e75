"""Four-eyes approval of large point adjustments.

An adjustment whose size (in either direction) is above the settings' approval limit
(``adjustment_approval_limit``, 10,000 points by default) is not posted: it waits as a
*pending adjustment* until a second person with the admin role approves it (then it is
posted to the ledger exactly as a direct adjustment would be) or rejects it. The person
who asked can never decide on their own request. Every step is audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, col, select

from db.engine import write_transaction
from db.models import LedgerEntry, Member, PendingAdjustment, utcnow
from loyalty.access.audit import record_audit
from loyalty.access.roles import Actor, require
from loyalty.errors import AlreadyDone, InvalidInput, NotFound, PermissionDenied
from loyalty.ledger.entries import adjust_points, check_adjustment_points, lock_member
from loyalty.settings import get_settings

__all__ = ["AdjustmentOutcome", "approve_adjustment", "decided_adjustments", "pending_adjustments", "reject_adjustment", "request_adjustment"]


@dataclass(frozen=True)
class AdjustmentOutcome:
    """What became of an adjustment: posted at once, or waiting for approval."""

    entry: LedgerEntry | None
    pending_id: int | None
    limit: int

    @property
    def pending(self) -> bool:
        return self.pending_id is not None


def _check(points: int, reason: str) -> str:
    if not reason or not reason.strip():
        raise InvalidInput("An adjustment needs a reason (it is shown to auditors).")
    check_adjustment_points(points)
    return reason.strip()


def request_adjustment(*, session: Session, member_id: int, points: int, reason: str, actor: Actor, now: datetime | None = None) -> AdjustmentOutcome:
    """Adjust a member's points, or, above the approval limit, file the adjustment for approval."""
    require(actor, "points.adjust")
    reason = _check(points, reason)
    limit = get_settings(session).adjustment_approval_limit
    if abs(points) <= limit:
        return AdjustmentOutcome(adjust_points(session=session, member_id=member_id, points=points, reason=reason, actor=actor, now=now), None, limit)
    with write_transaction(session):
        member = lock_member(session, member_id)
        assert member.id is not None  # a locked member is a stored row
        pending = PendingAdjustment(member_id=member.id, points=points, reason=reason, requested_by=actor.username, requested_at=now or utcnow())
        session.add(pending)
        session.flush()
        record_audit(
            session,
            actor=actor,
            action="points.adjust_requested",
            entity="member",
            entity_id=member.external_id,
            after={"points": points, "reason": reason, "pending_id": pending.id, "limit": limit},
        )
    return AdjustmentOutcome(None, pending.id, limit)


def _decide(session: Session, adjustment_id: int, actor: Actor, status: str, note: str) -> PendingAdjustment:
    if not actor.can("points.approve"):
        raise PermissionDenied("Only an admin can approve or reject a large adjustment.")
    pending = session.get(PendingAdjustment, adjustment_id)
    if pending is None:
        raise NotFound(f"No pending adjustment {adjustment_id}.")
    if pending.requested_by == actor.username:
        raise PermissionDenied("A second person must decide: you asked for this adjustment yourself.")
    # Conditional update: of two admins deciding at once, exactly one wins.
    decided = session.execute(
        update(PendingAdjustment)
        .where(col(PendingAdjustment.id) == adjustment_id, col(PendingAdjustment.status) == "pending")
        .values(status=status, decided_by=actor.username, decided_at=utcnow(), decision_note=note.strip())
    ).rowcount  # type: ignore[attr-defined]  # an UPDATE returns a CursorResult; SQLModel types execute() as Result
    if decided == 0:
        session.refresh(pending)
        raise AlreadyDone(f"This adjustment was already {pending.status} by {pending.decided_by}.")
    session.refresh(pending)
    return pending


def approve_adjustment(*, session: Session, adjustment_id: int, actor: Actor, note: str = "") -> LedgerEntry:
    """Post a pending adjustment (a second admin); refused for the requester, twice, or without the points."""
    with write_transaction(session):
        pending = _decide(session, adjustment_id, actor, "approved", note)
        entry = adjust_points(
            session=session,
            member_id=pending.member_id,
            points=pending.points,
            reason=f"{pending.reason} (asked by {pending.requested_by}, approved by {actor.username})",
            actor=actor,
        )
        pending.ledger_entry_id = entry.id
        session.add(pending)
        record_audit(
            session,
            actor=actor,
            action="points.adjust_approved",
            entity="pending_adjustment",
            entity_id=str(pending.id),
            after={"points": pending.points, "entry_id": entry.id, "note": note.strip()},
        )
    return entry


def reject_adjustment(*, session: Session, adjustment_id: int, actor: Actor, note: str = "") -> PendingAdjustment:
    """Refuse a pending adjustment (a second admin); nothing is posted. Returns it as decided."""
    with write_transaction(session):
        pending = _decide(session, adjustment_id, actor, "rejected", note)
        record_audit(
            session,
            actor=actor,
            action="points.adjust_rejected",
            entity="pending_adjustment",
            entity_id=str(pending.id),
            after={"points": pending.points, "note": note.strip()},
        )
    return pending


def pending_adjustments(session: Session, *, member_external_id: str | None = None) -> list[dict]:
    """Adjustments waiting for approval, oldest first, with their member."""
    query = _listing().where(PendingAdjustment.status == "pending")
    if member_external_id is not None:
        query = query.where(Member.external_id == member_external_id)
    return _rows(session, query.order_by(PendingAdjustment.requested_at, PendingAdjustment.id))


def decided_adjustments(session: Session, *, limit: int = 20) -> list[dict]:
    """The latest approved or rejected adjustments, newest decision first."""
    query = _listing().where(PendingAdjustment.status != "pending")
    return _rows(session, query.order_by(col(PendingAdjustment.decided_at).desc(), col(PendingAdjustment.id).desc()).limit(limit))


def _listing():
    return select(PendingAdjustment, Member.external_id, Member.name).join(Member, Member.id == PendingAdjustment.member_id)


def _rows(session: Session, query) -> list[dict]:
    return [
        {
            "id": p.id,
            "member": external_id,
            "name": name,
            "points": p.points,
            "reason": p.reason,
            "requested_by": p.requested_by,
            "requested_at": p.requested_at,
            "status": p.status,
            "decided_by": p.decided_by,
            "decided_at": p.decided_at,
            "decision_note": p.decision_note,
        }
        for p, external_id, name in session.exec(query).all()
    ]
