"""Webhooks: endpoints that receive the program's events, signed, at least once (issue 18).

Events are written to the outbox with one pending delivery per subscribed endpoint, in the
transaction of the change (:mod:`loyalty.events`). :func:`deliver_due`, which the worker
runs every couple of seconds, posts them.

Delivery
--------
* Body ``{"id", "type", "created", "data"}`` (JSON, ``created`` ISO 8601 UTC), headers
  ``Content-Type: application/json``, ``Loyalty-Event-Id`` and ``Loyalty-Signature:
  t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`` (:func:`sign`,
  :func:`verify_signature`).
* A 2xx answer within ``timeout`` seconds delivers it. Anything else (another status, a
  refused connection, a time-out; redirects are not followed) is a failed attempt: the
  next one comes after ``10 s * 2^(attempts - 1)``, at most 1 hour, less up to a fifth at
  random (:func:`retry_delay`). A delivery whose event is 24 hours old is given up
  (status ``failed``) instead of being retried.
* An endpoint is disabled (``disabled_at``, ``disabled_reason``) after
  :data:`DISABLE_AFTER_FAILURES` failed attempts in a row once it has also been failing for
  :data:`DISABLE_AFTER_FAILING_FOR` (its oldest undelivered, already attempted event is
  that old): a burst of events during a one-minute outage does not disable it, an endpoint
  down for an hour does. A success resets the count. A disabled endpoint gets no new
  events; its pending deliveries wait, and :func:`enable_endpoint` sends them again
  (those still younger than 24 hours).
* Claims: a worker takes up to :data:`CLAIM_BATCH` due deliveries in one short transaction
  (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, SQLite's writer lock) and moves their next
  attempt :data:`CLAIM_LEASE` ahead, so no other worker takes them meanwhile; it posts
  outside any transaction and records each outcome in its own. A worker that dies
  mid-batch leaves them to be retried when the lease ends: delivery is **at least once**,
  receivers dedupe on the event id.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import Engine, func, update
from sqlmodel import Session, col, select

from db.engine import new_session, write_transaction
from db.models import OutboxEvent, WebhookDelivery, WebhookEndpoint, stored_id, utcnow
from loyalty.access.audit import record_audit
from loyalty.access.roles import Actor, require
from loyalty.errors import AlreadyDone, InvalidInput, NotFound
from loyalty.events import EVENT_TYPES, forget_subscribers, iso
from loyalty.records import locked

__all__ = [
    "CLAIM_BATCH",
    "CLAIM_LEASE",
    "DISABLE_AFTER_FAILING_FOR",
    "DISABLE_AFTER_FAILURES",
    "EVENT_ID_HEADER",
    "RETRY_FOR",
    "SIGNATURE_HEADER",
    "add_endpoint",
    "deliver_due",
    "delivery_log",
    "enable_endpoint",
    "list_endpoints",
    "remove_endpoint",
    "retry_delay",
    "sign",
    "verify_signature",
]

SIGNATURE_HEADER, EVENT_ID_HEADER = "Loyalty-Signature", "Loyalty-Event-Id"
SIGNATURE_TOLERANCE_SECONDS = 300
RETRY_FOR = timedelta(hours=24)
FIRST_RETRY = timedelta(seconds=10)
LONGEST_RETRY = timedelta(hours=1)
RETRY_JITTER = 0.2  # each wait is shortened by up to this share, at random (retries of many deliveries spread out)
DISABLE_AFTER_FAILURES = 10
DISABLE_AFTER_FAILING_FOR = timedelta(hours=1)
CLAIM_BATCH = 10
CLAIM_LEASE = timedelta(minutes=5)  # longer than a batch of CLAIM_BATCH time-outs
DELIVERY_TIMEOUT_SECONDS = 5.0
MAX_URL_LENGTH = 500
_random = random.Random()


# --- endpoints ----------------------------------------------------------------------------


def _checked_url(url: str) -> str:
    url = (url or "").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"A webhook URL starts with http:// or https:// and names a host, not {url!r}.")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidInput(f"A webhook URL has at most {MAX_URL_LENGTH} characters.")
    return url


def _checked_events(events: Sequence[str] | str) -> list[str]:
    names = [e.strip() for e in (events.split(",") if isinstance(events, str) else events) if e and e.strip()]
    if not names:
        raise InvalidInput(f"Choose at least one event: {', '.join(EVENT_TYPES)}.")
    unknown = [e for e in names if e not in EVENT_TYPES]
    if unknown:
        raise InvalidInput(f"Unknown event(s) {', '.join(unknown)}: the events are {', '.join(EVENT_TYPES)}.")
    return list(dict.fromkeys(names))


def add_endpoint(session: Session, *, url: str, events: Sequence[str] | str, actor: Actor) -> dict[str, Any]:
    """A new endpoint receiving ``events``; returns ``{"id", "secret"}`` (the secret is shown this once)."""
    require(actor, "settings.manage")
    checked_url, checked_events = _checked_url(url), _checked_events(events)
    secret = "whsec_" + secrets.token_hex(32)
    with write_transaction(session):
        endpoint = WebhookEndpoint(url=checked_url, events=checked_events, secret=secret, created_by=actor.username)
        session.add(endpoint)
        session.flush()
        record_audit(
            session,
            actor=actor,
            action="webhook.add",
            entity="webhook_endpoint",
            entity_id=endpoint.id,
            after={"url": checked_url, "events": checked_events},
        )
        forget_subscribers(session)
    return {"id": stored_id(endpoint), "secret": secret}


def _endpoint(session: Session, endpoint_id: int) -> WebhookEndpoint:
    endpoint = locked(session, WebhookEndpoint, endpoint_id, "webhook endpoint")
    if endpoint.removed_at is not None:
        raise NotFound(f"Webhook endpoint {endpoint_id} was removed.")
    return endpoint


def remove_endpoint(session: Session, endpoint_id: int, actor: Actor) -> dict[str, Any]:
    """Remove an endpoint (kept for the delivery log): no new events, its pending deliveries fail."""
    require(actor, "settings.manage")
    with write_transaction(session):
        endpoint = _endpoint(session, endpoint_id)
        now = utcnow()
        endpoint.removed_at = now
        session.add(endpoint)
        dropped = session.execute(
            update(WebhookDelivery)
            .where(col(WebhookDelivery.endpoint_id) == endpoint_id, col(WebhookDelivery.status) == "pending")
            .values(status="failed", last_error="the endpoint was removed")
        ).rowcount  # type: ignore[attr-defined]  # an UPDATE returns a CursorResult; SQLModel types execute() as Result
        record_audit(
            session,
            actor=actor,
            action="webhook.remove",
            entity="webhook_endpoint",
            entity_id=endpoint_id,
            after={"url": endpoint.url, "pending_dropped": dropped},
        )
        forget_subscribers(session)
    return {"id": endpoint_id, "removed_at": now, "pending_dropped": int(dropped)}


def enable_endpoint(session: Session, endpoint_id: int, actor: Actor) -> dict[str, Any]:
    """Enable a disabled endpoint again: the failure count restarts and its waiting deliveries go out at once."""
    require(actor, "settings.manage")
    with write_transaction(session):
        endpoint = _endpoint(session, endpoint_id)
        if endpoint.disabled_at is None:
            raise AlreadyDone(f"Webhook endpoint {endpoint_id} is enabled.")
        before = {"disabled_at": iso(endpoint.disabled_at), "disabled_reason": endpoint.disabled_reason}
        now = utcnow()
        endpoint.disabled_at, endpoint.disabled_reason, endpoint.consecutive_failures = None, "", 0
        session.add(endpoint)
        waiting = session.execute(
            update(WebhookDelivery)
            .where(col(WebhookDelivery.endpoint_id) == endpoint_id, col(WebhookDelivery.status) == "pending")
            .values(next_attempt_at=now)
        ).rowcount  # type: ignore[attr-defined]  # an UPDATE returns a CursorResult; SQLModel types execute() as Result
        record_audit(
            session, actor=actor, action="webhook.enable", entity="webhook_endpoint", entity_id=endpoint_id, before=before, after={"pending": waiting}
        )
        forget_subscribers(session)
    return {"id": endpoint_id, "pending": int(waiting)}


def list_endpoints(session: Session, *, include_removed: bool = False) -> list[dict[str, Any]]:
    """The endpoints, oldest first, with their pending deliveries; never their secret."""
    pending = dict(
        session.execute(
            select(WebhookDelivery.endpoint_id, func.count())
            .where(col(WebhookDelivery.status) == "pending")
            .group_by(col(WebhookDelivery.endpoint_id))
        ).all()
    )
    query = select(WebhookEndpoint).order_by(col(WebhookEndpoint.id))
    if not include_removed:
        query = query.where(col(WebhookEndpoint.removed_at).is_(None))
    return [
        {
            "id": e.id,
            "url": e.url,
            "events": list(e.events or []),
            "created_at": e.created_at,
            "created_by": e.created_by,
            "disabled_at": e.disabled_at,
            "disabled_reason": e.disabled_reason,
            "consecutive_failures": e.consecutive_failures,
            "pending": int(pending.get(e.id, 0)),
            **({"removed_at": e.removed_at} if include_removed else {}),
        }
        for e in session.exec(query)
    ]


def delivery_log(session: Session, limit: int = 100, endpoint_id: int | None = None) -> list[dict[str, Any]]:
    """The latest deliveries, newest first: event, endpoint, status, attempts, last answer."""
    query = (
        select(WebhookDelivery, OutboxEvent.type, OutboxEvent.created_at, WebhookEndpoint.url)
        .join(OutboxEvent, col(OutboxEvent.id) == WebhookDelivery.event_id)
        .join(WebhookEndpoint, col(WebhookEndpoint.id) == WebhookDelivery.endpoint_id)
        .order_by(col(WebhookDelivery.id).desc())
        .limit(limit)
    )
    if endpoint_id is not None:
        query = query.where(col(WebhookDelivery.endpoint_id) == endpoint_id)
    return [
        {
            "id": d.id,
            "event_id": d.event_id,
            "type": event_type,
            "created": created,
            "endpoint_id": d.endpoint_id,
            "url": url,
            "status": d.status,
            "attempts": d.attempts,
            "next_attempt_at": d.next_attempt_at,
            "last_attempt_at": d.last_attempt_at,
            "delivered_at": d.delivered_at,
            "last_status_code": d.last_status_code,
            "last_error": d.last_error,
        }
        for d, event_type, created, url in session.exec(query).all()
    ]


# --- signatures ---------------------------------------------------------------------------


def _unix(timestamp: int | float | datetime) -> int:
    return int(timestamp.timestamp()) if isinstance(timestamp, datetime) else int(timestamp)


def _raw(body: bytes | str) -> bytes:
    return body.encode() if isinstance(body, str) else body


def sign(secret: str, timestamp: int | float | datetime, raw_body: bytes | str) -> str:
    """``t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>``."""
    t = _unix(timestamp)
    digest = hmac.new(secret.encode(), f"{t}.".encode() + _raw(raw_body), hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def verify_signature(
    secret: str, header: str, raw_body: bytes | str, tolerance_seconds: float = SIGNATURE_TOLERANCE_SECONDS, *, now: datetime | float | None = None
) -> bool:
    """Whether ``header`` signs ``raw_body`` with ``secret`` at a time within ``tolerance_seconds`` of ``now``.

    For receivers (and the tests): a changed body, another secret or a replay of an old
    delivery (older than the tolerance) fail.
    """
    fields: dict[str, list[str]] = {}
    for part in (header or "").split(","):
        key, sep, value = part.strip().partition("=")
        if sep:
            fields.setdefault(key, []).append(value)
    try:
        t = int(fields["t"][0])
    except (KeyError, ValueError):
        return False
    current = time.time() if now is None else (now.timestamp() if isinstance(now, datetime) else float(now))
    if abs(current - t) > tolerance_seconds:
        return False
    expected = sign(secret, t, raw_body).partition(",v1=")[2]
    return any(hmac.compare_digest(expected, given) for given in fields.get("v1", []))


# --- delivery -----------------------------------------------------------------------------


def retry_delay(attempts: int, *, rng: random.Random | None = None) -> timedelta:
    """The wait after the ``attempts``-th failed attempt: 10 s, 20 s, 40 s ... at most 1 h, less up to a fifth at random."""
    exponent = min(max(attempts - 1, 0), 20)
    base = min(FIRST_RETRY * (2**exponent), LONGEST_RETRY)
    return base * (1 - RETRY_JITTER * (rng or _random).random())


@dataclass(frozen=True)
class _Claimed:
    delivery_id: int
    endpoint_id: int
    url: str
    secret: str
    event_id: str
    event_type: str
    created_at: datetime
    data: Any


@dataclass(frozen=True)
class _Outcome:
    ok: bool
    status_code: int | None
    error: str


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _any_due(engine: Engine, now: datetime) -> bool:
    """A read without the writer lock: is anything due? (The worker asks every two seconds.)"""
    with new_session(engine) as session:
        return (
            session.exec(
                select(WebhookDelivery.id).where(col(WebhookDelivery.status) == "pending", col(WebhookDelivery.next_attempt_at) <= now).limit(1)
            ).first()
            is not None
        )


def _claim(engine: Engine, now: datetime, count: int) -> tuple[list[_Claimed], int]:
    """Take up to ``count`` due deliveries for this worker (their next attempt moves a lease ahead); give up
    due ones whose event is older than :data:`RETRY_FOR`. Returns the claimed ones and how many were given up."""
    with new_session(engine) as session, write_transaction(session):
        old_events = select(OutboxEvent.id).where(col(OutboxEvent.created_at) < now - RETRY_FOR)
        given_up = session.execute(
            update(WebhookDelivery)
            .where(
                col(WebhookDelivery.status) == "pending",
                col(WebhookDelivery.next_attempt_at) <= now,
                col(WebhookDelivery.event_id).in_(old_events.scalar_subquery()),
            )
            .values(status="failed", last_error=func.substr("gave up after 24 hours; " + col(WebhookDelivery.last_error), 1, 500))
            .execution_options(synchronize_session=False)
        ).rowcount  # type: ignore[attr-defined]  # an UPDATE returns a CursorResult; SQLModel types execute() as Result
        rows = session.execute(
            select(  # type: ignore[call-overload]  # typed for at most 4 columns
                WebhookDelivery.id,
                WebhookDelivery.endpoint_id,
                WebhookEndpoint.url,
                WebhookEndpoint.secret,
                OutboxEvent.id,
                OutboxEvent.type,
                OutboxEvent.created_at,
                OutboxEvent.data,
            )
            .join(WebhookEndpoint, col(WebhookEndpoint.id) == WebhookDelivery.endpoint_id)
            .join(OutboxEvent, col(OutboxEvent.id) == WebhookDelivery.event_id)
            .where(
                col(WebhookDelivery.status) == "pending",
                col(WebhookDelivery.next_attempt_at) <= now,
                col(WebhookEndpoint.disabled_at).is_(None),
                col(WebhookEndpoint.removed_at).is_(None),
            )
            .order_by(col(WebhookDelivery.next_attempt_at), col(WebhookDelivery.id))
            .limit(count)
            # PostgreSQL: a second worker skips these rows instead of waiting for them (SQLite: its writer lock).
            .with_for_update(skip_locked=True, of=WebhookDelivery)
        ).all()
        if rows:
            session.execute(
                update(WebhookDelivery)
                .where(col(WebhookDelivery.id).in_([r[0] for r in rows]), col(WebhookDelivery.status) == "pending")
                .values(next_attempt_at=now + CLAIM_LEASE)
                .execution_options(synchronize_session=False)
            )
    claimed = [_Claimed(int(r[0]), int(r[1]), r[2], r[3], r[4], r[5], _aware(r[6]), r[7]) for r in rows]
    return claimed, int(given_up)


def _post(client: httpx.Client, claim: _Claimed, now: datetime) -> _Outcome:
    body = json.dumps(
        {"id": claim.event_id, "type": claim.event_type, "created": iso(claim.created_at), "data": claim.data}, separators=(",", ":")
    ).encode()
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(claim.secret, now, body), EVENT_ID_HEADER: claim.event_id}
    try:
        response = client.post(claim.url, content=body, headers=headers)
    except httpx.HTTPError as error:
        return _Outcome(False, None, f"{type(error).__name__}: {error}"[:500] or type(error).__name__)
    if 200 <= response.status_code < 300:
        return _Outcome(True, response.status_code, "")
    return _Outcome(False, response.status_code, f"HTTP {response.status_code}: {response.text[:200]}"[:500])


def _record(engine: Engine, claim: _Claimed, outcome: _Outcome, now: datetime) -> str:
    """Store one attempt's outcome; ``delivered``, ``retry``, ``failed`` (given up) or ``disabled`` (its endpoint)."""
    delivery, endpoint_table = WebhookDelivery, WebhookEndpoint
    with new_session(engine) as session, write_transaction(session):
        attempted = {"attempts": col(delivery.attempts) + 1, "last_attempt_at": now, "last_status_code": outcome.status_code}
        if outcome.ok:
            session.execute(
                update(delivery)
                .where(col(delivery.id) == claim.delivery_id)
                .values(status="delivered", delivered_at=now, last_error="", **attempted)
                .execution_options(synchronize_session=False)
            )
            session.execute(
                update(endpoint_table)
                .where(col(endpoint_table.id) == claim.endpoint_id)
                .values(consecutive_failures=0)
                .execution_options(synchronize_session=False)
            )
            return "delivered"
        row = locked(session, delivery, claim.delivery_id, "webhook delivery")
        if row.status != "pending":  # the endpoint was removed meanwhile
            return "failed"
        attempts = row.attempts + 1
        too_old = now - claim.created_at >= RETRY_FOR
        row.attempts, row.last_attempt_at, row.last_status_code = attempts, now, outcome.status_code
        row.last_error = outcome.error[:500]
        if too_old:
            row.status = "failed"
            row.last_error = f"gave up after 24 hours; {outcome.error}"[:500]
        else:
            row.next_attempt_at = now + retry_delay(attempts)
        session.add(row)
        endpoint = locked(session, endpoint_table, claim.endpoint_id, "webhook endpoint")
        endpoint.consecutive_failures += 1
        disabled = False
        if endpoint.disabled_at is None and endpoint.consecutive_failures >= DISABLE_AFTER_FAILURES:
            session.flush()
            oldest = session.exec(
                select(func.min(OutboxEvent.created_at))
                .join(delivery, col(delivery.event_id) == OutboxEvent.id)
                .where(col(delivery.endpoint_id) == claim.endpoint_id, col(delivery.status) == "pending", col(delivery.attempts) > 0)
            ).one()
            failing_since = _aware(oldest) if oldest is not None else claim.created_at
            if now - failing_since >= DISABLE_AFTER_FAILING_FOR:
                endpoint.disabled_at = now
                endpoint.disabled_reason = (
                    f"{endpoint.consecutive_failures} failed attempts in a row, failing since {failing_since:%Y-%m-%d %H:%M} UTC; last: {outcome.error}"
                )[:300]
                disabled = True
        session.add(endpoint)
    return "disabled" if disabled else ("failed" if too_old else "retry")


def deliver_due(
    engine: Engine,
    *,
    now: datetime | None = None,
    limit: int = 100,
    timeout: float = DELIVERY_TIMEOUT_SECONDS,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, int]:
    """Post up to ``limit`` due deliveries, each with a ``timeout`` in seconds (see the module notes).

    ``now``: the moment to act at (tests drive time with it; default the clock). ``should_stop``:
    asked between deliveries, so a worker stopping waits for one request at most. Returns
    counts: ``delivered``, ``retry`` (failed, tried again later), ``failed`` (given up),
    ``disabled`` (endpoints disabled).
    """
    counts = {"delivered": 0, "retry": 0, "failed": 0, "disabled": 0}
    moment = now or utcnow()
    if not _any_due(engine, moment):
        return counts
    handled = 0
    with httpx.Client(timeout=httpx.Timeout(timeout), follow_redirects=False) as client:
        while handled < limit and not (should_stop and should_stop()):
            moment = now or utcnow()
            claimed, given_up = _claim(engine, moment, min(CLAIM_BATCH, limit - handled))
            counts["failed"] += given_up
            if not claimed:
                break
            for claim in claimed:
                if should_stop and should_stop():
                    break  # the rest go out when their lease ends
                outcome = _post(client, claim, now or utcnow())
                counts[_record(engine, claim, outcome, now or utcnow())] += 1
                handled += 1
    return counts
