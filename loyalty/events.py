"""Events for webhooks, written to the transactional outbox in the caller's transaction (issue 18).

A change and the event that tells the company's systems about it commit or roll back
together: :func:`emit` and :func:`emit_many` add one ``outbox_event`` row per event and
one pending ``webhook_delivery`` row per active endpoint subscribed to its type, and
never commit. :mod:`loyalty.integrations.webhooks` delivers them.

Cost when nobody listens
------------------------
The active endpoints are read once per transaction (a few rows, cached on the
transaction); when none subscribes to a type nothing is written and the caller can skip
building the events at all (:func:`subscribed`), so the bulk import pays one tiny query
per transaction. Many events at once go through the bulk writer (``db.bulk.insert_frame``).
"""

from __future__ import annotations

import json
import os
import uuid
import weakref
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert
from sqlalchemy.orm import SessionTransaction
from sqlmodel import Session, col, select

if TYPE_CHECKING:  # pandas and numpy are imported where used: the command line imports this module to name the events
    import numpy as np
    import pandas as pd

from db.models import Member, OutboxEvent, WebhookDelivery, WebhookEndpoint, table_of, utcnow

__all__ = [
    "EVENT_TYPES",
    "POINTS_CHANGED",
    "POINTS_EXPIRING",
    "REDEMPTION_UPDATED",
    "TIER_CHANGED",
    "emit",
    "emit_many",
    "forget_subscribers",
    "iso",
    "iso_column",
    "member_external_ids",
    "new_event_id",
    "stable_event_id",
    "subscribed",
]

POINTS_CHANGED, TIER_CHANGED, REDEMPTION_UPDATED, POINTS_EXPIRING = "points.changed", "tier.changed", "redemption.updated", "points.expiring"
EVENT_TYPES = (POINTS_CHANGED, TIER_CHANGED, REDEMPTION_UPDATED, POINTS_EXPIRING)
# Above this many rows (events + deliveries) the bulk writer beats an executemany.
BULK_ROWS = 1_000
_ID_NAMESPACE = uuid.UUID("5b0c4a8e-2f0e-4d61-9a53-6c1f3b7e9d20")

# Active endpoints by event type, per root transaction: read once, forgotten with it.
_subscribers: weakref.WeakKeyDictionary[SessionTransaction, dict[str, list[int]]] = weakref.WeakKeyDictionary()


def new_event_id() -> str:
    return "evt_" + uuid.uuid4().hex


def _new_event_ids(count: int) -> list[str]:
    """``count`` ids like :func:`new_event_id` (128 random bits each), drawn at once."""
    random_hex = os.urandom(16 * count).hex()
    return ["evt_" + random_hex[32 * i : 32 * (i + 1)] for i in range(count)]


def stable_event_id(event_type: str, key: str) -> str:
    """The same id for the same ``(event_type, key)``: an event emitted under it twice is written once."""
    return "evt_" + uuid.uuid5(_ID_NAMESPACE, f"{event_type}:{key}").hex


def iso_column(moments: pd.Series) -> pd.Series:
    """:func:`iso` of a column of instants, vectorised (the same text)."""
    import numpy as np
    import pandas as pd

    utc = pd.to_datetime(moments, utc=True)
    fraction = pd.Series(np.where(utc.dt.microsecond.to_numpy() != 0, utc.dt.strftime(".%f"), ""), index=moments.index)
    return utc.dt.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "+00:00"


def iso(moment: datetime | date | pd.Timestamp) -> str:
    """An instant in ISO 8601, UTC (a stored time without a zone is UTC)."""
    if isinstance(moment, date) and not isinstance(moment, datetime):
        return moment.isoformat()
    if type(moment) is not datetime:  # a pandas Timestamp: to whole microseconds, as Python's
        moment = moment.to_pydatetime()
    return (moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)).isoformat()


def _check_type(event_type: str) -> None:
    if event_type not in EVENT_TYPES:
        raise ValueError(f"{event_type!r} is not an event type ({', '.join(EVENT_TYPES)}).")


def _endpoints_by_type(session: Session) -> dict[str, list[int]]:
    transaction = session.get_transaction()
    if transaction is not None and (cached := _subscribers.get(transaction)) is not None:
        return cached
    rows = session.execute(
        select(WebhookEndpoint.id, WebhookEndpoint.events).where(
            col(WebhookEndpoint.disabled_at).is_(None), col(WebhookEndpoint.removed_at).is_(None)
        )
    ).all()
    by_type: dict[str, list[int]] = {event_type: [] for event_type in EVENT_TYPES}
    for endpoint_id, events in rows:
        for event_type in events or []:
            if event_type in by_type:
                by_type[event_type].append(int(endpoint_id))
    transaction = session.get_transaction()  # the read above began one if there was none
    if transaction is not None:
        _subscribers[transaction] = by_type
    return by_type


def subscribed(session: Session, event_type: str) -> list[int]:
    """Ids of the active endpoints (not disabled, not removed) that receive ``event_type``."""
    _check_type(event_type)
    return _endpoints_by_type(session)[event_type]


def forget_subscribers(session: Session) -> None:
    """Read the endpoints again on the next emit of this transaction (one was added, removed or enabled)."""
    transaction = session.get_transaction()
    if transaction is not None:
        _subscribers.pop(transaction, None)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (datetime, date)):  # pandas Timestamps too
        return iso(value)
    if type(value).__module__ == "numpy" and hasattr(value, "item"):  # a numpy integer, float or bool
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON")


def emit(session: Session, event_type: str, data: dict[str, Any], *, event_id: str | None = None) -> str | None:
    """Write one event of ``event_type`` for every endpoint that receives it, in the caller's transaction.

    Returns the event's id, or None when no endpoint receives the type (nothing is
    written) or ``event_id`` (see :func:`stable_event_id`) is already in the outbox.
    """
    ids = emit_many(session, event_type, [data], event_ids=[event_id] if event_id else None)
    return ids[0] if ids else None


def emit_many(session: Session, event_type: str, data: Sequence[dict[str, Any]], *, event_ids: Sequence[str] | None = None) -> list[str]:
    """Write one event per item of ``data``, with a delivery to each endpoint that receives the type.

    Never commits. ``event_ids`` (one per item): ids that make a repeated emit write nothing
    (events already in the outbox are left out). Returns the ids written.
    """
    endpoints = subscribed(session, event_type)
    if not endpoints or not data:
        return []
    if event_ids is not None and len(event_ids) != len(data):
        raise ValueError("emit_many: one event id per event.")
    ids = list(event_ids) if event_ids is not None else _new_event_ids(len(data))
    payloads = [json.dumps(item, default=_jsonable, separators=(",", ":")) for item in data]  # JSON text, stored as is
    if event_ids is not None:
        existing: set[str] = set()
        for batch in _text_batches(ids):
            existing.update(session.exec(select(OutboxEvent.id).where(col(OutboxEvent.id).in_(batch))).all())
        kept = [(i, p) for i, p in zip(ids, payloads) if i not in existing]
        ids, payloads = [i for i, _ in kept], [p for _, p in kept]
        if not ids:
            return []
    now = utcnow()
    if len(ids) * (1 + len(endpoints)) < BULK_ROWS:
        session.execute(
            insert(table_of(OutboxEvent)), [{"id": i, "type": event_type, "created_at": now, "data": json.loads(p)} for i, p in zip(ids, payloads)]
        )
        session.execute(insert(table_of(WebhookDelivery)), [_delivery(i, endpoint_id, now) for i in ids for endpoint_id in endpoints])
    else:
        import pandas as pd

        from db.bulk import insert_frame

        events = pd.DataFrame({"id": ids, "type": event_type, "created_at": pd.Timestamp(now), "data": payloads})
        insert_frame(session, "outbox_event", events)
        insert_frame(session, "webhook_delivery", pd.DataFrame([_delivery(i, endpoint_id, now) for endpoint_id in endpoints for i in ids]))
    return ids


def _delivery(event_id: str, endpoint_id: int, now: datetime) -> dict[str, Any]:
    return {"event_id": event_id, "endpoint_id": endpoint_id, "status": "pending", "attempts": 0, "next_attempt_at": now, "last_error": ""}


def _text_batches(values: list[str], size: int = 10_000) -> list[list[str]]:
    return [values[start : start + size] for start in range(0, len(values), size)]


def member_external_ids(session: Session, member_ids: Sequence[int] | np.ndarray) -> dict[int, str]:
    """The company's id of each member (the id events name members by)."""
    import numpy as np

    from db.bulk import id_batches

    found: dict[int, str] = {}
    for batch in id_batches(np.unique(np.asarray(member_ids, dtype=np.int64))):
        found.update({int(i): str(e) for i, e in session.execute(select(Member.id, Member.external_id).where(col(Member.id).in_(batch))).all()})
    return found
