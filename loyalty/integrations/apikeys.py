"""API keys: what the company's tills, shop and app send as ``Authorization: Bearer KEY``.

A key is shown once, when it is made; the database keeps its SHA-256 (the key is 32 random
bytes, so a slow password hash would add nothing) and its first characters, so people can
tell keys apart. Each key has scopes; the API refuses a request outside them (403). Every
write made with a key is audited with ``api:<key name>`` as the actor.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, or_, update
from sqlmodel import Session, col, select

from db.engine import new_session, write_transaction
from db.models import ApiKey, stored_id, utcnow
from loyalty.access.audit import record_audit
from loyalty.access.roles import Actor, require
from loyalty.errors import InvalidInput, NotFound

__all__ = [
    "KEY_PREFIX",
    "SCOPES",
    "ApiCaller",
    "KeyUseNotes",
    "active_key_ids",
    "authenticate",
    "create_key",
    "key_hash",
    "list_keys",
    "note_key_use",
    "revoke_key",
]

log = logging.getLogger(__name__)

SCOPES: dict[str, str] = {
    "members:read": "read a member's balance, tier and next expiry",
    "members:write": "create and update members",
    "purchases:write": "record purchases (earning points) and their returns",
    "redemptions:write": "redeem rewards and read redemptions",
}
KEY_PREFIX = "lk_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$")
# last_used_at is written at most this often per key: a write per request would slow every till.
LAST_USED_EVERY = timedelta(minutes=1)


@dataclass(frozen=True)
class ApiCaller:
    """The key behind a request: who acts (``actor``) and what it may do (``scopes``)."""

    key_id: int
    name: str
    scopes: frozenset[str]

    @property
    def actor(self) -> Actor:
        return Actor(f"api:{self.name}", "integration")


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _check_scopes(scopes: list[str] | tuple[str, ...]) -> list[str]:
    chosen = list(dict.fromkeys(s.strip() for s in scopes if s.strip()))
    if not chosen:
        raise InvalidInput(f"Give the key at least one scope: {', '.join(SCOPES)}.")
    unknown = [s for s in chosen if s not in SCOPES]
    if unknown:
        raise InvalidInput(f"Unknown scope {', '.join(map(repr, unknown))}: choose from {', '.join(SCOPES)}.")
    return chosen


def create_key(session: Session, *, name: str, scopes: list[str] | tuple[str, ...], actor: Actor) -> dict[str, Any]:
    """Make a key; returns ``{"name", "key", "scopes"}``, the only time the key is shown."""
    require(actor, "settings.manage")
    name = (name or "").strip()
    if not _NAME.match(name):
        raise InvalidInput("A key's name is 1 to 100 letters, digits, spaces, dots, dashes or underscores, starting with a letter or digit.")
    chosen = _check_scopes(scopes)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    with write_transaction(session):
        if session.exec(select(ApiKey.id).where(ApiKey.name == name, col(ApiKey.revoked_at).is_(None))).first() is not None:
            raise InvalidInput(f"A key named {name!r} already exists; revoke it first or choose another name.")
        row = ApiKey(name=name, prefix=key[:10], key_hash=key_hash(key), scopes=chosen, created_by=actor.username)
        session.add(row)
        session.flush()
        record_audit(session, actor=actor, action="apikey.create", entity="api_key", entity_id=name, after={"scopes": chosen, "prefix": row.prefix})
    return {"name": name, "key": key, "scopes": chosen}


def list_keys(session: Session, *, include_revoked: bool = True) -> list[dict[str, Any]]:
    """Every key, newest first, without the key itself: name, prefix, scopes, made, last used, revoked."""
    query = select(ApiKey).order_by(col(ApiKey.created_at).desc(), col(ApiKey.id).desc())
    if not include_revoked:
        query = query.where(col(ApiKey.revoked_at).is_(None))
    return [
        {
            "name": k.name,
            "prefix": k.prefix,
            "scopes": list(k.scopes or []),
            "created_at": k.created_at,
            "created_by": k.created_by,
            "last_used_at": k.last_used_at,
            "revoked_at": k.revoked_at,
        }
        for k in session.exec(query)
    ]


def revoke_key(session: Session, name: str, *, actor: Actor) -> dict[str, Any]:
    """Revoke the active key of that name: from now on it gets 401."""
    require(actor, "settings.manage")
    with write_transaction(session):
        row = session.exec(select(ApiKey).where(ApiKey.name == name.strip(), col(ApiKey.revoked_at).is_(None))).first()
        if row is None:
            raise NotFound(f"No active key named {name!r}.")
        row.revoked_at = utcnow()
        session.add(row)
        record_audit(session, actor=actor, action="apikey.revoke", entity="api_key", entity_id=row.name, before={"scopes": row.scopes})
    return {"name": row.name, "revoked_at": row.revoked_at}


def authenticate(session: Session, key: str) -> ApiCaller | None:
    """The caller of an active key, or None (unknown or revoked). Reads only: when a key was
    last used is noted apart (:class:`KeyUseNotes`), so checking a key never waits for a write."""
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    row = session.exec(select(ApiKey).where(ApiKey.key_hash == key_hash(key), col(ApiKey.revoked_at).is_(None))).first()
    if row is None:
        return None
    return ApiCaller(key_id=stored_id(row), name=row.name, scopes=frozenset(row.scopes or []))


def active_key_ids(session: Session, ids: set[int]) -> set[int]:
    """Those of ``ids`` whose keys are not revoked (one query)."""
    if not ids:
        return set()
    return {int(i) for i in session.exec(select(ApiKey.id).where(col(ApiKey.id).in_(ids), col(ApiKey.revoked_at).is_(None))) if i is not None}


def note_key_use(session: Session, used: dict[int, datetime]) -> None:
    """Store when each key (by id) was last used, in one transaction; a later time already stored stays."""
    if not used:
        return
    with write_transaction(session):
        for key_id, at in used.items():
            session.execute(
                update(ApiKey)
                .where(col(ApiKey.id) == key_id, or_(col(ApiKey.last_used_at).is_(None), col(ApiKey.last_used_at) < at))
                .values(last_used_at=at)
            )


class KeyUseNotes:
    """When this process's keys were last used, written by a thread of its own.

    A request only notes the time in memory (:meth:`saw`); a daemon thread stores the times at
    most once per :data:`LAST_USED_EVERY` per key (the first use at once). Under load on SQLite
    a request that wrote ``last_used_at`` itself waited seconds for the write lock behind the
    purchase writer; now no request waits for it. A failed write is tried again later.
    """

    def __init__(self, engine: Engine, *, every: timedelta = LAST_USED_EVERY, poll_seconds: float = 1.0) -> None:
        self.engine, self.every, self.poll_seconds = engine, every, poll_seconds
        self.stored: dict[int, datetime] = {}  # last time written per key
        self.pending: dict[int, datetime] = {}
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None

    def saw(self, key_id: int, at: datetime | None = None) -> None:
        at = at or utcnow()
        before = self.stored.get(key_id)
        if before is not None and at - before < self.every:
            return
        with self.lock:
            self.pending[key_id] = at
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="api-key-use", daemon=True)
                self.thread.start()
        self.wake.set()

    def flush(self) -> None:
        """Write what is pending now (the thread does this; tests and shutdown call it)."""
        with self.lock:
            pending, self.pending = self.pending, {}
            for key_id, at in pending.items():  # no second note for this key until `every` has passed
                self.stored[key_id] = at
        if not pending:
            return
        try:
            with new_session(self.engine) as session:
                note_key_use(session, pending)
        except Exception:
            log.warning("could not note when %d API key(s) were last used; trying again later", len(pending), exc_info=True)
            with self.lock:
                for key_id, at in pending.items():
                    self.stored.pop(key_id, None)
                    self.pending.setdefault(key_id, at)

    def stop(self) -> None:
        self.stopped.set()
        self.wake.set()
        if self.thread is not None:
            self.thread.join(timeout=10)
        self.flush()

    def _run(self) -> None:
        while not self.stopped.is_set():
            self.wake.wait(timeout=self.poll_seconds)
            self.wake.clear()
            self.flush()
