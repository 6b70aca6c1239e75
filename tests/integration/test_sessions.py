"""Server-side sign-in sessions: grant, cookie, checks, and every way a session ends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from db.models import SignInSession
from loyalty.access.roles import SYSTEM_CLI, Actor
from loyalty.access.sessions import GRANT_SECONDS, TOUCH_SECONDS, check_session, end_session, exchange_grant, resume_session, start_session
from loyalty.access.users import create_user, disable_user, reset_password

T0 = datetime(2026, 3, 15, 9, 0, tzinfo=UTC)
OLGA = Actor("olga", "operations")


@pytest.fixture
def olga(session):
    create_user(session=session, username="olga", role="operations", password="olga-password-1", actor=SYSTEM_CLI)
    create_user(session=session, username="root2", role="admin", password="root2-password-1", actor=SYSTEM_CLI)
    return OLGA


def _signed_in(session, actor, now=T0) -> tuple[str, str]:
    started = start_session(session=session, actor=actor, now=now)
    cookie = exchange_grant(session=session, grant=started.grant, now=now)
    assert cookie is not None
    return started.id, cookie


def test_a_grant_gives_one_cookie_once_and_only_in_time(session, olga):
    started = start_session(session=session, actor=olga, now=T0)
    assert exchange_grant(session=session, grant="not-the-grant", now=T0) is None
    cookie = exchange_grant(session=session, grant=started.grant, now=T0 + timedelta(seconds=5))
    assert cookie and cookie.startswith(started.id + ".")
    assert exchange_grant(session=session, grant=started.grant, now=T0 + timedelta(seconds=6)) is None  # used up

    late = start_session(session=session, actor=olga, now=T0)
    assert exchange_grant(session=session, grant=late.grant, now=T0 + timedelta(seconds=GRANT_SECONDS + 1)) is None


def test_the_database_keeps_only_hashes(session, olga):
    started = start_session(session=session, actor=olga, now=T0)
    row = session.get(SignInSession, started.id)
    assert row.grant_hash and started.grant not in row.grant_hash
    cookie = exchange_grant(session=session, grant=started.grant, now=T0)
    token = cookie.split(".")[1]
    session.refresh(row)
    assert row.token_hash and token not in row.token_hash and row.grant_hash is None


def test_a_cookie_brings_the_user_back_and_a_forged_one_does_not(session, olga):
    session_id, cookie = _signed_in(session, olga)
    check = resume_session(session=session, cookie=cookie, now=T0 + timedelta(minutes=5))
    assert check.actor == olga and check.session_id == session_id

    sid, token, signature = cookie.split(".")
    other_id, _ = _signed_in(session, olga)
    forged = [
        f"{sid}.{token}.{'0' * len(signature)}",  # a made-up signature
        f"{other_id}.{token}.{signature}",  # another session's id with this token
        f"{sid}.{token[:-2]}xy.{signature}",  # a changed token
        "garbage",
        "",
    ]
    for value in forged:
        assert resume_session(session=session, cookie=value, now=T0).actor is None, value


def test_idle_sessions_end_and_activity_is_written_at_most_every_half_minute(session, olga):
    session_id, cookie = _signed_in(session, olga)
    check_session(session=session, session_id=session_id, now=T0 + timedelta(seconds=TOUCH_SECONDS - 1))
    session.expire_all()
    assert session.get(SignInSession, session_id).last_seen_at == T0  # not written yet
    check_session(session=session, session_id=session_id, now=T0 + timedelta(minutes=50))
    session.expire_all()
    assert session.get(SignInSession, session_id).last_seen_at == T0 + timedelta(minutes=50)
    # 60 minutes (the default idle limit) after the last activity, not after the sign-in.
    assert check_session(session=session, session_id=session_id, now=T0 + timedelta(minutes=109)).actor == olga
    with time_machine.travel(T0 + timedelta(minutes=109 + 61), tick=False):
        check = resume_session(session=session, cookie=cookie)
    assert check.actor is None and check.message == "You were signed out after a period of inactivity."
    # Ended for good: activity afterwards does not revive it.
    assert check_session(session=session, session_id=session_id, now=T0 + timedelta(minutes=110)).actor is None


def test_sign_out_password_reset_and_disabling_end_sessions_for_good(session, olga):
    signed_out, _ = _signed_in(session, olga)
    end_session(session=session, session_id=signed_out)
    assert check_session(session=session, session_id=signed_out, now=T0).actor is None

    before_reset, reset_cookie = _signed_in(session, olga)
    reset_password(session=session, username="olga", actor=SYSTEM_CLI, password="a-new-password-1")
    check = resume_session(session=session, cookie=reset_cookie, now=T0)
    assert check.actor is None and "password was reset" in check.message

    before_disable, _ = _signed_in(session, olga)
    disable_user(session=session, username="olga", actor=SYSTEM_CLI)
    check = check_session(session=session, session_id=before_disable, now=T0)
    assert check.actor is None and "disabled" in check.message
    from sqlmodel import select

    from db.models import User

    user = session.exec(select(User).where(User.username == "olga")).one()
    user.active = True  # enabled again by an admin: the old sessions stay ended
    session.add(user)
    session.commit()
    assert check_session(session=session, session_id=before_disable, now=T0).actor is None
    assert check_session(session=session, session_id=before_reset, now=T0).actor is None
    fresh, _ = _signed_in(session, olga)
    assert check_session(session=session, session_id=fresh, now=T0).actor == olga


def test_a_new_role_applies_to_an_open_session_at_once(session, olga):
    from loyalty.access.users import set_role

    session_id, _ = _signed_in(session, olga)
    set_role(session=session, username="olga", role="analyst", actor=SYSTEM_CLI)
    assert check_session(session=session, session_id=session_id, now=T0).actor == Actor("olga", "analyst")
