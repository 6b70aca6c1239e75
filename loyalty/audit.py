"""The audit trail: who changed what, when, with the before and after."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from db.models import AuditLog
from loyalty.access import Actor


def record_audit(
    session: Session,
    *,
    actor: Actor,
    action: str,
    entity: str,
    entity_id: object = "",
    before: Any = None,
    after: Any = None,
) -> None:
    """Add an audit row to the caller's transaction (it commits or rolls back with it)."""
    session.add(
        AuditLog(
            actor=actor.username,
            action=action,
            entity=entity,
            entity_id=str(entity_id),
            before=before,
            after=after,
        )
    )
