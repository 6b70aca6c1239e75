"""Users of the console: sign-in, lock-out, roles, and their administration.

Passwords are hashed with argon2id (argon2-cffi). Five failed attempts lock an account
for fifteen minutes. Changes to users are audited; a password never appears in the
audit log.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import func, or_, update
from sqlmodel import Session, col, select

from db.engine import begin_write
from db.models import User, table_of, utcnow
from loyalty.access.audit import record_audit
from loyalty.access.roles import ROLES, Actor, require
from loyalty.access.sessions import end_user_sessions
from loyalty.errors import AlreadyDone, InvalidInput, LoyaltyError, NotFound

__all__ = [
    "DEMO_USERS",
    "LOCKOUT",
    "MAX_FAILED_ATTEMPTS",
    "AuthenticationFailed",
    "CreatedUser",
    "actor_for_email",
    "authenticate",
    "create_demo_users",
    "create_user",
    "current_role",
    "disable_user",
    "enable_user",
    "ensure_admin",
    "list_users",
    "reset_password",
    "set_role",
]

MAX_FAILED_ATTEMPTS = 5
LOCKOUT = timedelta(minutes=15)
MIN_PASSWORD_LENGTH = 10
_hasher = PasswordHasher()
# Verified when the username is unknown, so a wrong username costs as much time as a
# wrong password and does not reveal which usernames exist.
_DUMMY_HASH = _hasher.hash("not-a-real-password")

# One demo user per role; passwords are for the demo program only (listed in README).
DEMO_USERS = {"demo-admin": "admin", "manager": "manager", "analyst": "analyst", "operations": "operations", "executive": "executive"}


class AuthenticationFailed(LoyaltyError):
    exit_code = 5


@dataclass(frozen=True)
class CreatedUser:
    username: str
    role: str
    password: str


def _user_dict(user: User) -> dict:
    return {"username": user.username, "role": user.role, "active": user.active, "email": user.email}


def _random_password() -> str:
    return secrets.token_urlsafe(12)


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"A password needs at least {MIN_PASSWORD_LENGTH} characters.")


def _get(session: Session, username: str) -> User:
    user = session.exec(select(User).where(User.username == username)).one_or_none()
    if user is None:
        raise NotFound(f"No user named {username!r}.")
    return user


def authenticate(session: Session, username: str, password: str, *, now: datetime | None = None) -> Actor:
    """Check a username and password; count every failure and lock the account at the fifth in a row.

    Safe under concurrency: each failure is counted by one atomic ``UPDATE ... SET
    failed_attempts = failed_attempts + 1``, and only the failure that takes the lock
    records it, so 40 wrong passwords at once count 40 and lock once. An unknown user, a
    disabled or locked account and a wrong password all cost one password hash check, so
    their answers take the same time.
    """
    now = now or utcnow()
    begin_write(session)  # a sign-in writes (attempts, lock-out, last login)
    user = session.exec(select(User).where(User.username == username.strip())).one_or_none()
    if user is None or not user.active or (user.locked_until and user.locked_until > now):
        with contextlib.suppress(VerificationError):
            _hasher.verify(_DUMMY_HASH, password)
        if user is None:
            raise AuthenticationFailed("Wrong username or password.")
        if not user.active:
            raise AuthenticationFailed("This account is disabled. Ask an administrator.")
        _count_failure(session, user, now)
        session.commit()
        assert user.locked_until is not None
        minutes = max(1, int((user.locked_until - now).total_seconds() // 60) + 1)
        raise AuthenticationFailed(f"Too many failed attempts: this account is locked for {minutes} more minute(s).")
    try:
        _hasher.verify(user.password_hash, password)
    except (VerifyMismatchError, InvalidHashError, VerificationError):
        locked = _count_failure(session, user, now)
        session.commit()
        if locked:
            raise AuthenticationFailed("Too many failed attempts: this account is locked for 15 minutes.") from None
        raise AuthenticationFailed("Wrong username or password.") from None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    user.failed_attempts, user.locked_until, user.last_login_at = 0, None, now
    session.add(user)
    session.commit()
    return Actor(user.username, user.role)


def _count_failure(session: Session, user: User, now: datetime) -> bool:
    """Count one failed attempt atomically; at each fifth in a row lock the account (once). True if this one locked it."""
    table = table_of(User)
    failures = session.execute(
        update(table).where(table.c.id == user.id).values(failed_attempts=table.c.failed_attempts + 1).returning(table.c.failed_attempts)
    ).scalar_one()
    locked = False
    if failures % MAX_FAILED_ATTEMPTS == 0:
        until = now + LOCKOUT
        not_locked = or_(table.c.locked_until.is_(None), table.c.locked_until <= now)
        locked = session.execute(update(table).where(table.c.id == user.id, not_locked).values(locked_until=until)).rowcount == 1  # type: ignore[attr-defined]
        if locked:
            record_audit(
                session,
                actor=Actor(user.username, user.role),
                action="user.locked",
                entity="user",
                entity_id=user.username,
                after={"locked_until": until.isoformat(), "failed_attempts": failures},
            )
    session.expire(user)  # the row changed underneath: read it again when needed
    return locked


def current_role(session: Session, username: str) -> str | None:
    """The user's role now, or None if the user no longer exists or is disabled."""
    user = session.exec(select(User).where(User.username == username)).one_or_none()
    return user.role if user is not None and user.active else None


def actor_for_email(session: Session, email: str) -> Actor:
    """The console user behind an identity-provider login (OIDC), matched by e-mail."""
    user = session.exec(select(User).where(func.lower(User.email) == email.strip().lower())).one_or_none()
    if user is None or not user.active:
        raise AuthenticationFailed(f"{email} has no active Loyalty Console account. Ask an administrator.")
    return Actor(user.username, user.role)


def create_user(
    *, session: Session, username: str, role: str, actor: Actor, password: str | None = None, email: str = "", display_name: str = ""
) -> CreatedUser:
    """Add a user; without a password a random one is generated (and returned once)."""
    require(actor, "users.manage")
    username = username.strip()
    if not username or len(username) > 100 or any(c.isspace() for c in username):
        raise InvalidInput("A username must be 1-100 characters without spaces.")
    if role not in ROLES:
        raise InvalidInput(f"Unknown role {role!r}; choose one of {', '.join(ROLES)}.")
    if session.exec(select(User).where(User.username == username)).first() is not None:
        raise InvalidInput(f"A user named {username!r} already exists.")
    password = _random_password() if password is None else password
    _check_password(password)
    begin_write(session)
    if session.exec(select(User).where(User.username == username)).first() is not None:
        raise InvalidInput(f"A user named {username!r} already exists.")
    user = User(username=username, role=role, email=email.strip(), display_name=display_name or username, password_hash=_hasher.hash(password))
    session.add(user)
    record_audit(session, actor=actor, action="user.create", entity="user", entity_id=username, after=_user_dict(user))
    session.commit()
    return CreatedUser(username, role, password)


def list_users(session: Session) -> list[dict]:
    return [
        {
            **_user_dict(u),
            "display_name": u.display_name,
            "last_login_at": u.last_login_at,
            "locked_until": u.locked_until,
            "created_at": u.created_at,
        }
        for u in session.exec(select(User).order_by(User.username))
    ]


def set_role(*, session: Session, username: str, role: str, actor: Actor) -> None:
    require(actor, "users.manage")
    begin_write(session)
    if role not in ROLES:
        raise InvalidInput(f"Unknown role {role!r}; choose one of {', '.join(ROLES)}.")
    user = _get(session, username)
    before = _user_dict(user)
    _refuse_removing_last_admin(session, user, new_role=role)
    user.role = role
    session.add(user)
    record_audit(session, actor=actor, action="user.set_role", entity="user", entity_id=username, before=before, after=_user_dict(user))
    session.commit()


def disable_user(*, session: Session, username: str, actor: Actor) -> None:
    """Stop a user from signing in (their sessions end); never oneself, never the last enabled admin."""
    require(actor, "users.manage")
    if username == actor.username:
        raise InvalidInput("You cannot disable your own account: ask another admin to do it.")
    begin_write(session)
    user = _get(session, username)
    if not user.active:
        raise AlreadyDone(f"{username} is already disabled.")
    before = _user_dict(user)
    _refuse_removing_last_admin(session, user, disabling=True)
    user.active = False
    session.add(user)
    end_user_sessions(session, username, "disabled")
    record_audit(session, actor=actor, action="user.disable", entity="user", entity_id=username, before=before, after=_user_dict(user))
    session.commit()


def enable_user(*, session: Session, username: str, actor: Actor) -> None:
    """Let a disabled user sign in again, with the role and password they had."""
    require(actor, "users.manage")
    begin_write(session)
    user = _get(session, username)
    if user.active:
        raise AlreadyDone(f"{username} is already enabled.")
    before = _user_dict(user)
    user.active, user.failed_attempts, user.locked_until = True, 0, None
    session.add(user)
    record_audit(session, actor=actor, action="user.enable", entity="user", entity_id=username, before=before, after=_user_dict(user))
    session.commit()


def reset_password(*, session: Session, username: str, actor: Actor, password: str | None = None) -> str:
    """Set a new password (random unless given), unlock the account; returns the password."""
    require(actor, "users.manage")
    begin_write(session)
    user = _get(session, username)
    password = password or _random_password()
    _check_password(password)
    user.password_hash, user.failed_attempts, user.locked_until = _hasher.hash(password), 0, None
    session.add(user)
    end_user_sessions(session, username, "password reset")
    record_audit(session, actor=actor, action="user.reset_password", entity="user", entity_id=username)
    session.commit()
    return password


def _refuse_removing_last_admin(session: Session, user: User, *, new_role: str | None = None, disabling: bool = False) -> None:
    if user.role != "admin" or (new_role == "admin" and not disabling):
        return
    admins = session.exec(select(func.count()).select_from(User).where(User.role == "admin", col(User.active).is_(True))).one()
    if admins <= 1:
        raise InvalidInput(f"{user.username} is the last enabled admin: make another user admin first, or nobody could manage users.")


def ensure_admin(session: Session) -> CreatedUser | None:
    """On first start (no user at all) create the admin.

    From ``LOYALTY_ADMIN_USER`` / ``LOYALTY_ADMIN_PASSWORD`` when set, otherwise with a
    random password that the caller prints once. Never a fixed default password.
    """
    if session.exec(select(func.count()).select_from(User)).one() > 0:
        return None
    from loyalty.access.roles import SYSTEM_CLI

    username = os.environ.get("LOYALTY_ADMIN_USER") or "admin"
    password = os.environ.get("LOYALTY_ADMIN_PASSWORD") or None
    return create_user(session=session, username=username, role="admin", password=password, actor=SYSTEM_CLI)


def create_demo_users(session: Session, *, actor: Actor) -> list[CreatedUser]:
    """One user per role for the demo program, each with a random password (returned once: the caller prints it)."""
    created = []
    for username, role in DEMO_USERS.items():
        if session.exec(select(User).where(User.username == username)).first() is None:
            created.append(create_user(session=session, username=username, role=role, actor=actor, email=f"{username}@loyalty.example"))
    return created
