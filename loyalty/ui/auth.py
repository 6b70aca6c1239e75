"""Sign-in, sessions that survive a reload, idle time-out and sign-out for the app.

A sign-in starts a server-side session (:mod:`loyalty.access.sessions`). The tab that signed in
keeps the session's id in its Streamlit session state; the browser gets an HttpOnly
cookie through the ``/auth/session`` route, so a reload or a new tab of the same browser
finds the session again (``st.context.cookies``). Every run checks the session in the
database: sign-out, the idle limit, a password reset or a disabled account end it.
"""

from __future__ import annotations

import json

import streamlit as st

from loyalty.access.roles import Actor
from loyalty.access.sessions import SESSION_COOKIE, check_session, end_session, resume_session, start_session
from loyalty.errors import LoyaltyError
from loyalty.settings import get_settings
from loyalty.ui.core import db_session

_KEY = "auth_actor"
_SESSION = "auth_session_id"
_GRANT = "auth_grant"  # the one-time grant the browser still has to exchange for its cookie
_MESSAGE = "auth_message"
_FORGET_COOKIE = "auth_forget_cookie"
_COOKIE_REFUSED = "auth_cookie_refused"

__all__ = ["current_actor", "page_actor", "sidebar_user", "sign_in_page", "sign_out"]


def _oidc_enabled() -> bool:
    try:
        return bool(st.secrets.get("auth", {}).get("client_id"))
    except (FileNotFoundError, KeyError, AttributeError, st.errors.StreamlitSecretNotFoundError):
        return False


def _cookie() -> str | None:
    try:
        return st.context.cookies.get(SESSION_COOKIE)
    except (AttributeError, RuntimeError):  # no browser request behind this run (AppTest)
        return None


def current_actor() -> Actor | None:
    """The signed-in user, or None (the app then shows :func:`sign_in_page`)."""
    session_id = st.session_state.get(_SESSION)
    cookie = _cookie()
    if session_id is None and cookie and st.session_state.get(_COOKIE_REFUSED) != cookie:
        with db_session() as session:
            check = resume_session(session=session, cookie=cookie, idle_minutes=get_settings(session).idle_timeout_minutes)
        if check.actor is None:
            # A cookie of an ended session: say why once, and have the browser drop it.
            st.session_state[_COOKIE_REFUSED] = cookie
            _forget(check.message)
            return None
        session_id = st.session_state[_SESSION] = check.session_id
    if session_id is not None:
        with db_session() as session:
            check = check_session(session=session, session_id=session_id, idle_minutes=get_settings(session).idle_timeout_minutes)
        if check.actor is None:
            _forget(check.message)
            return None
        st.session_state[_KEY] = check.actor
        if not check.cookie_pending:
            st.session_state.pop(_GRANT, None)
        return check.actor
    st.session_state.pop(_KEY, None)
    if _oidc_enabled() and getattr(st.user, "is_logged_in", False):
        from loyalty.access.users import actor_for_email

        try:
            with db_session() as session:
                actor = actor_for_email(session, st.user.email)  # type: ignore[arg-type]  # an OIDC user's email is a str; Streamlit types any claim
        except LoyaltyError as error:
            st.error(str(error))
            return None
        _start(actor)
        return actor
    return None


def _start(actor: Actor) -> None:
    with db_session() as session:
        started = start_session(session=session, actor=actor)
    st.session_state[_KEY] = actor
    st.session_state[_SESSION] = started.id
    st.session_state[_GRANT] = started.grant
    st.session_state.pop(_COOKIE_REFUSED, None)


def _forget(message: str | None) -> None:
    for key in (_KEY, _SESSION, _GRANT):
        st.session_state.pop(key, None)
    if message:
        st.session_state[_MESSAGE] = message
    st.session_state[_FORGET_COOKIE] = True


def _in_browser(script: str) -> None:
    """Run a line of JavaScript in the page (same origin), drawing nothing."""
    st.html(f"<script>{script}</script>", unsafe_allow_javascript=True)


def sign_in_page() -> None:
    """The only page shown until someone signs in, under every page's address.

    So a page's address opened before signing in is where the sign-in leads.
    """
    from loyalty.access.users import authenticate

    st.title("Loyalty Console")
    if message := st.session_state.get(_MESSAGE):
        st.info(message)
    if st.session_state.pop(_FORGET_COOKIE, False):
        _in_browser("fetch('/auth/sign-out', {method: 'POST', credentials: 'same-origin'})")
    with st.form("sign_in"):
        username = st.text_input("Username")
        password = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if _oidc_enabled():
        st.button("Sign in with your company account", on_click=st.login)
    if submitted:
        try:
            with db_session() as session:
                actor = authenticate(session, username, password)
        except LoyaltyError as error:
            st.error(str(error))
            return
        st.session_state.pop(_MESSAGE, None)
        _start(actor)
        st.rerun()


def sign_out(message: str | None = None) -> None:
    if session_id := st.session_state.get(_SESSION):
        with db_session() as session:
            end_session(session=session, session_id=session_id)
    _forget(message)
    # The sidebar button's callback can run after app.py has read the actor: the
    # page then reruns the app, which now shows the sign-in page.
    st.session_state["auth_signed_out"] = True
    if _oidc_enabled() and getattr(st.user, "is_logged_in", False):
        st.logout()


def sidebar_user(actor: Actor) -> None:
    with st.sidebar:
        st.caption(f"Signed in as **{actor.username}** ({actor.role})")
        st.button("Sign out", on_click=sign_out)
        if grant := st.session_state.get(_GRANT):
            # Hand the browser its session cookie (HttpOnly: set by the server route).
            _in_browser(f"fetch('/auth/session', {{method: 'POST', body: {json.dumps(grant)}, credentials: 'same-origin'}})")


def page_actor(permission: str | None = None) -> Actor:
    """The signed-in user of a page; stops the page if nobody is signed in or the role may not use it."""
    actor: Actor | None = st.session_state.get(_KEY)
    if actor is None:
        if st.session_state.pop("auth_signed_out", False):
            st.rerun()
        st.warning("Please sign in.")
        st.stop()
    if permission and not actor.can(permission):
        st.error("Your role cannot use this page.")
        st.stop()
    return actor
