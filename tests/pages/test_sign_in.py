"""The sign-in flow: form, wrong password, lock-out, idle time-out, sign-out."""

from __future__ import annotations

import time

import pytest

from sqlmodel import select

from db.models import User
from loyalty.access import SYSTEM_CLI
from loyalty.users import create_user

PASSWORD = "correct-horse-battery"


def _sign_in(at, username: str, password: str):
    inputs = {ti.label: ti for ti in at.text_input}
    inputs["Username"].input(username)
    inputs["Password"].input(password)
    next(b for b in at.get("button") if b.label == "Sign in").click()
    return at.run()


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


def test_an_idle_session_is_signed_out(app, session):
    at = app(role="manager")
    at.session_state["auth_last_seen"] = time.time() - 24 * 3600
    at.run()
    assert "auth_actor" not in at.session_state
    assert [ti.label for ti in at.text_input] == ["Username", "Password"]


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
    from loyalty.users import disable_user, set_role

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
