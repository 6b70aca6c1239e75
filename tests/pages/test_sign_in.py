"""The sign-in flow: form, wrong password, lock-out, idle time-out, sign-out."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from db.models import SignInSession, User
from loyalty.access.roles import SYSTEM_CLI
from loyalty.access.users import create_user

PASSWORD = "correct-horse-battery"


def _sign_in(at, username: str, password: str):
    inputs = {ti.label: ti for ti in at.text_input}
    inputs["Username"].input(username)
    inputs["Password"].input(password)
    next(b for b in at.get("button") if b.label == "Sign in").click()
    return at.run()


def _same_tab(app, at):
    """The next run of the tab ``at`` is (AppTest does not rerun a finished run by itself)."""
    again = app()
    again.session_state["auth_session_id"] = at.session_state["auth_session_id"]
    return again.run()


def test_the_app_shows_only_the_sign_in_form_until_someone_signs_in(app, session):
    at = app().run()
    assert not at.exception
    labels = [ti.label for ti in at.text_input]
    assert labels == ["Username", "Password"]
    assert [b.label for b in at.get("button")] == ["Sign in"]
    assert "Sign out" not in [b.label for b in at.sidebar.button]


def test_a_user_signs_in_and_sees_the_pages_of_their_role(app, session):
    create_user(session=session, username="maria", role="operations", password=PASSWORD, actor=SYSTEM_CLI)
    at = _sign_in(app().run(), "maria", PASSWORD)
    assert not at.exception
    assert at.session_state["auth_actor"].role == "operations"
    assert "Sign out" in [b.label for b in at.sidebar.button]


def test_a_wrong_password_is_refused_without_saying_which_part_was_wrong(app, session):
    create_user(session=session, username="maria", role="analyst", password=PASSWORD, actor=SYSTEM_CLI)
    at = _sign_in(app().run(), "maria", "not-the-password")
    assert [e.value for e in at.error] == ["Wrong username or password."]
    at = _sign_in(app().run(), "nobody", "whatever-password")
    assert [e.value for e in at.error] == ["Wrong username or password."]


def test_five_failed_attempts_lock_the_account_even_against_the_right_password(app, session):
    create_user(session=session, username="maria", role="analyst", password=PASSWORD, actor=SYSTEM_CLI)
    at = app().run()
    for _ in range(5):
        at = _sign_in(at, "maria", "wrong-password-x")
    assert "locked for 15 minutes" in at.error[0].value
    at = _sign_in(at, "maria", PASSWORD)
    assert "locked" in at.error[0].value
    assert "auth_actor" not in at.session_state
    session.expire_all()
    assert session.exec(select(User).where(User.username == "maria")).one().locked_until is not None


def test_an_idle_session_is_signed_out_and_told_why(app, session):
    at = app(role="manager")
    row = session.get(SignInSession, at.session_state["auth_session_id"])
    row.last_seen_at -= timedelta(minutes=61)  # the default idle limit is 60 minutes
    session.add(row)
    session.commit()
    at.run()
    assert "auth_actor" not in at.session_state
    assert [ti.label for ti in at.text_input] == ["Username", "Password"]
    assert [i.value for i in at.info] == ["You were signed out after a period of inactivity."]


def test_each_sign_in_starts_a_new_server_side_session(app, session):
    create_user(session=session, username="maria", role="operations", password=PASSWORD, actor=SYSTEM_CLI)
    first = _sign_in(app().run(), "maria", PASSWORD).session_state["auth_session_id"]
    second = _sign_in(app().run(), "maria", PASSWORD).session_state["auth_session_id"]
    assert first != second
    rows = session.exec(select(SignInSession).where(SignInSession.username == "maria")).all()
    assert {r.id for r in rows} == {first, second}
    assert all(r.grant_hash and r.token_hash is None and r.ended_at is None for r in rows)


def test_sign_out_ends_the_session_on_the_server(app, session):
    at = app(role="admin").run()
    session_id = at.session_state["auth_session_id"]
    next(b for b in at.sidebar.button if b.label == "Sign out").click()
    at.run()
    session.expire_all()
    row = session.get(SignInSession, session_id)
    assert row.ended_at is not None and row.end_reason == "signed out"


def test_a_password_reset_ends_the_users_sessions(app, session):
    from loyalty.access.users import reset_password

    create_user(session=session, username="olga", role="operations", password=PASSWORD, actor=SYSTEM_CLI)
    at = _sign_in(app().run(), "olga", PASSWORD)
    assert at.session_state["auth_actor"].username == "olga"
    reset_password(session=session, username="olga", actor=SYSTEM_CLI, password="a-new-password-123")
    at = _same_tab(app, at)
    assert "auth_actor" not in at.session_state
    assert [i.value for i in at.info] == ["Your password was reset. Please sign in with the new one."]


def test_sign_out_forgets_the_user_and_shows_no_page_content(app, session):
    # AppTest keeps requesting the page the last run finished on, so it cannot follow
    # the real app back to the sign-in page; the browser test checks that part.
    at = app(role="admin").run()
    assert at.title[0].value == "Overview"
    next(b for b in at.sidebar.button if b.label == "Sign out").click()
    at.run()
    assert "auth_actor" not in at.session_state
    assert not at.metric and "Overview" not in [t.value for t in at.title]


def test_a_disabled_user_is_signed_out_and_a_new_role_applies_at_once(app, session):
    from loyalty.access.users import disable_user, set_role

    create_user(session=session, username="olga", role="operations", password=PASSWORD, actor=SYSTEM_CLI)
    create_user(session=session, username="mark", role="manager", password=PASSWORD, actor=SYSTEM_CLI)
    at = app(role="operations", username="olga").run()
    at.switch_page("pages/members.py").run()
    assert at.title[0].value == "Members"
    set_role(session=session, username="olga", role="executive", actor=SYSTEM_CLI)
    at = app(role="operations", username="olga").run()  # the session still says operations
    with pytest.raises(ValueError):
        at.switch_page("pages/members.py")  # an executive's navigation has no Members page
    disable_user(session=session, username="olga", actor=SYSTEM_CLI)
    at = app(role="executive", username="olga").run()  # her browser session still holds the sign-in
    assert "auth_actor" not in at.session_state
    assert [ti.label for ti in at.text_input] == ["Username", "Password"]
