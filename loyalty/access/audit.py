"""The audit trail: who changed what, when, with the before and after.

Append-only from the app: nothing in ``loyalty`` updates or deletes an audit row.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlmodel import Session, col, select

from db.models import AuditLog
from loyalty.access.roles import Actor, require

if TYPE_CHECKING:  # imported where used: every audited command imports this module
    import pandas as pd


def record_audit(session: Session, *, actor: Actor, action: str, entity: str, entity_id: object = "", before: Any = None, after: Any = None) -> None:
    """Add an audit row to the caller's transaction (it commits or rolls back with it)."""
    session.add(AuditLog(actor=actor.username, action=action, entity=entity, entity_id=str(entity_id), before=before, after=after))


def audit_entries(
    session: Session,
    *,
    actor: Actor,
    since: datetime | None = None,
    until: datetime | None = None,
    who: str = "",
    entity: str = "",
    action: str = "",
    limit: int = 5000,
) -> pd.DataFrame:
    """The audit trail, newest first, filtered (admin and manager)."""
    require(actor, "audit.view")
    query = select(AuditLog).order_by(col(AuditLog.at).desc()).limit(limit)
    if since:
        query = query.where(AuditLog.at >= since)
    if until:
        query = query.where(AuditLog.at < until)
    if who:
        query = query.where(AuditLog.actor == who)
    if entity:
        query = query.where(AuditLog.entity == entity)
    if action:
        query = query.where(AuditLog.action == action)
    rows = session.exec(query).all()
    import pandas as pd

    return pd.DataFrame(
        [
            {
                "at": r.at,
                "actor": r.actor,
                "action": r.action,
                "entity": r.entity,
                "entity_id": r.entity_id,
                "before": json.dumps(r.before, default=str) if r.before is not None else "",
                "after": json.dumps(r.after, default=str) if r.after is not None else "",
            }
            for r in rows
        ],
        columns=["at", "actor", "action", "entity", "entity_id", "before", "after"],
    )


def audit_facets(session: Session) -> dict[str, list[str]]:
    """Distinct actors, entities and actions, for filter choices."""
    return {
        "actor": sorted(session.exec(select(AuditLog.actor).distinct()).all()),
        "entity": sorted(session.exec(select(AuditLog.entity).distinct()).all()),
        "action": sorted(session.exec(select(AuditLog.action).distinct()).all()),
    }
