"""Sign-in sessions that survive a reload: server-side, revocable, one per sign-in.

A sign-in creates a session row with a one-time *grant* (valid :data:`GRANT_SECONDS`).
The browser exchanges the grant for the session cookie on the app's ``/auth/session``
route (see ``loyalty/ui/session_routes.py``), which sets it ``HttpOnly`` and
``SameSite=Strict``: the token never passes through JavaScript or the page.

The cookie holds ``<session id>.<token>.<signature>``. The token is 256 random bits and
the database keeps only its SHA-256, so a copy of the database cannot sign anyone in;
the signature is an HMAC-SHA256 with the server's key (``LOYALTY_SECRET_KEY``, else a
random key made once and kept in the database), so a made-up cookie is refused before
any lookup. Every run of the app checks the session again: it ends at sign-out, after
the idle limit of the settings, at a password reset and when the account is disabled,
and an ended session never comes back (a new sign-in makes a new one).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import Session, col, select

from db.engine import begin_write
from db.models import ProgramSetting, SignInSession, User, utcnow
from loyalty.access.roles import Actor

__all__ = [
    "GRANT_SECONDS",
    "SESSION_COOKIE",
    "TOUCH_SECONDS",
    "SessionCheck",
    "StartedSession",
    "check_session",
    "end_session",
    "end_user_sessions",
    "exchange_grant",
    "resume_session",
    "start_session",
]

SESSION_COOKIE = "loyalty_session"
GRANT_SECONDS = 60
# A session's last activity is written at most this often (each rerun would be a write).
TOUCH_SECONDS = 30
_KEY_SETTING = "session_signing_key"

IDLE_MESSAGE = "You were signed out after a period of inactivity."
DISABLED_MESSAGE = "Your account was disabled. Ask an administrator."
# Sign a session out after this many minutes without activity, unless the settings say otherwise.
DEFAULT_IDLE_MINUTES = 60
ENDED_MESSAGES = {"password reset": "Your password was reset. Please sign in with the new one.", "disabled": DISABLED_MESSAGE, "idle": IDLE_MESSAGE}


@dataclass(frozen=True)
class StartedSession:
    id: str
    grant: str  # handed to the browser once, exchanged for the cookie


@dataclass(frozen=True)
class SessionCheck:
    """The outcome of checking a session: the signed-in actor, or why there is none."""

    actor: Actor | None
    session_id: str | None = None
    message: str | None = None  # for the sign-in page, when the session just ended
    cookie_pending: bool = False  # the browser has not yet exchanged its grant


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _signing_key(session: Session, *, create: bool) -> bytes | None:
    if key := os.environ.get("LOYALTY_SECRET_KEY"):
        return key.encode()
    row = session.get(ProgramSetting, _KEY_SETTING)
    if row is None and create:
        row = ProgramSetting(key=_KEY_SETTING, value=secrets.token_hex(32), updated_by="system")
        session.add(row)
        session.flush()
    return str(row.value).encode() if row is not None else None


def _sign(key: bytes, payload: str) -> str:
    return hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()


def start_session(*, session: Session, actor: Actor, now: datetime | None = None) -> StartedSession:
    """A new session for ``actor`` (just authenticated), with its one-time grant."""
    now = now or utcnow()
    grant = secrets.token_urlsafe(32)
    row = SignInSession(
        id=secrets.token_hex(16),
        username=actor.username,
        grant_hash=_digest(grant),
        grant_expires_at=now + timedelta(seconds=GRANT_SECONDS),
        created_at=now,
        last_seen_at=now,
    )
    begin_write(session)
    session.add(row)
    session.commit()
    return StartedSession(row.id, grant)


def exchange_grant(*, session: Session, grant: str, now: datetime | None = None) -> str | None:
    """The cookie value for a valid, unused grant (which is used up); None otherwise."""
    now = now or utcnow()
    if not grant or len(grant) > 100:
        return None
    begin_write(session)
    row = session.exec(select(SignInSession).where(SignInSession.grant_hash == _digest(grant))).one_or_none()
    if row is None or row.ended_at is not None or row.grant_expires_at is None or row.grant_expires_at < now:
        session.rollback()
        return None
    token = secrets.token_urlsafe(32)
    key = _signing_key(session, create=True)
    assert key is not None  # create=True makes one when there is none
    row.token_hash, row.grant_hash, row.grant_expires_at, row.last_seen_at = _digest(token), None, None, now
    session.add(row)
    session.commit()
    payload = f"{row.id}.{token}"
    return f"{payload}.{_sign(key, payload)}"


def _parse_cookie(session: Session, cookie: str) -> tuple[str, str] | None:
    parts = (cookie or "").split(".")
    if len(parts) != 3:
        return None
    session_id, token, signature = parts
    key = _signing_key(session, create=False)
    if key is None or not hmac.compare_digest(_sign(key, f"{session_id}.{token}"), signature):
        return None
    return session_id, token


def resume_session(*, session: Session, cookie: str, now: datetime | None = None, idle_minutes: int = DEFAULT_IDLE_MINUTES) -> SessionCheck:
    """The session a browser's cookie names, checked (signature, token, idle limit, account).

    ``idle_minutes`` is the program's setting (:mod:`loyalty.settings`), which the caller reads.
    """
    parsed = _parse_cookie(session, cookie)
    if parsed is None:
        return SessionCheck(None)
    session_id, token = parsed
    row = session.get(SignInSession, session_id)
    if row is None or row.token_hash is None or not hmac.compare_digest(row.token_hash, _digest(token)):
        return SessionCheck(None)
    return _check(session, row, now or utcnow(), idle_minutes)


def check_session(*, session: Session, session_id: str, now: datetime | None = None, idle_minutes: int = DEFAULT_IDLE_MINUTES) -> SessionCheck:
    """Check the session this browser tab signed in with (by id, the tab holds no cookie)."""
    row = session.get(SignInSession, session_id)
    if row is None:
        return SessionCheck(None)
    return _check(session, row, now or utcnow(), idle_minutes)


def _check(session: Session, row: SignInSession, now: datetime, idle_minutes: int) -> SessionCheck:
    if row.ended_at is not None:
        return SessionCheck(None, row.id, ENDED_MESSAGES.get(row.end_reason))
    user = session.exec(select(User).where(User.username == row.username)).one_or_none()
    if user is None or not user.active:
        _end(session, [row.id], "disabled", now)
        return SessionCheck(None, row.id, DISABLED_MESSAGE)
    idle_limit = timedelta(minutes=idle_minutes)
    if now - row.last_seen_at > idle_limit:
        _end(session, [row.id], "idle", now)
        return SessionCheck(None, row.id, IDLE_MESSAGE)
    if now - row.last_seen_at > timedelta(seconds=TOUCH_SECONDS):
        begin_write(session)
        session.execute(update(SignInSession).where(col(SignInSession.id) == row.id).values(last_seen_at=now))
        session.commit()
    pending = row.token_hash is None and row.grant_expires_at is not None and row.grant_expires_at > now
    return SessionCheck(Actor(user.username, user.role), row.id, cookie_pending=pending)


def _end(session: Session, ids: list[str], reason: str, now: datetime) -> None:
    begin_write(session)
    session.execute(
        update(SignInSession)
        .where(col(SignInSession.id).in_(ids), col(SignInSession.ended_at).is_(None))
        .values(ended_at=now, end_reason=reason, grant_hash=None)
    )
    session.commit()


def end_session(*, session: Session, session_id: str, reason: str = "signed out") -> None:
    """End one session (sign-out). Ending an ended or unknown session does nothing."""
    _end(session, [session_id], reason, utcnow())


def end_user_sessions(session: Session, username: str, reason: str) -> None:
    """End every open session of ``username`` inside the caller's transaction (no commit).

    Called by the user administration's use cases (password reset, disabling).
    """
    session.execute(
        update(SignInSession)
        .where(col(SignInSession.username) == username, col(SignInSession.ended_at).is_(None))
        .values(ended_at=utcnow(), end_reason=reason, grant_hash=None)
    )
