"""Sign-in, idle time-out and sign-out for the app."""

from __future__ import annotations

import time

import streamlit as st

from loyalty.access import Actor
from loyalty.errors import LoyaltyError
from loyalty.settings import get_settings
from loyalty.ui.core import db_session

_KEY = "auth_actor"
_SEEN = "auth_last_seen"


def _oidc_enabled() -> bool:
    try:
        return bool(st.secrets.get("auth", {}).get("client_id"))
    except (FileNotFoundError, KeyError, AttributeError, st.errors.StreamlitSecretNotFoundError):
        return False


def current_actor() -> Actor | None:
    """The signed-in user, or None (the app then shows :func:`sign_in_page`)."""
    actor: Actor | None = st.session_state.get(_KEY)
    if actor is not None:
        from loyalty.users import current_role

        with db_session() as session:
            timeout = get_settings(session).idle_timeout_minutes * 60
            # Read the user again: a disabled user or a changed role takes effect at once.
            role = current_role(session, actor.username)
        if role is None:
            sign_out(message="Your account was disabled. Ask an administrator.")
            return None
        if time.time() - st.session_state.get(_SEEN, 0) > timeout:
            sign_out(message="You were signed out after a period of inactivity.")
            return None
        st.session_state[_SEEN] = time.time()
        if role != actor.role:
            actor = Actor(actor.username, role)
            st.session_state[_KEY] = actor
        return actor
    if _oidc_enabled() and getattr(st.user, "is_logged_in", False):
        from loyalty.users import actor_for_email

        try:
            with db_session() as session:
                actor = actor_for_email(session, st.user.email)
        except LoyaltyError as error:
            st.error(str(error))
            return None
        _remember(actor)
        return actor
    return None


def _remember(actor: Actor) -> None:
    st.session_state[_KEY] = actor
    st.session_state[_SEEN] = time.time()


def sign_in_page() -> None:
    """The only page shown until someone signs in."""
    from loyalty.users import authenticate

    st.title("Loyalty Console")
    if message := st.session_state.pop("auth_message", None):
        st.info(message)
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
        _remember(actor)
        st.rerun()


def sign_out(message: str | None = None) -> None:
    for key in (_KEY, _SEEN):
        st.session_state.pop(key, None)
    if message:
        st.session_state["auth_message"] = message
    # The sidebar button's callback can run after app.py has read the actor: the
    # page then reruns the app, which now shows the sign-in page.
    st.session_state["auth_signed_out"] = True
    if _oidc_enabled() and getattr(st.user, "is_logged_in", False):
        st.logout()


def sidebar_user(actor: Actor) -> None:
    with st.sidebar:
        st.caption(f"Signed in as **{actor.username}** ({actor.role})")
        st.button("Sign out", on_click=sign_out)


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
