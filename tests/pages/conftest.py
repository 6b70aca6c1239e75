"""Page tests with Streamlit's AppTest, signed in as a given role."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from loyalty.access.roles import Actor

APP_TIMEOUT = 60
APP_PATH = str(Path(__file__).resolve().parents[2] / "app.py")


@pytest.fixture
def app(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Callable[..., AppTest]:
    """An AppTest of app.py on the test database; ``app(role=...)`` signs in first."""
    monkeypatch.setenv("LOYALTY_DEMO", "0")
    monkeypatch.setenv("LOYALTY_WORKER", "0")
    st.cache_data.clear()
    st.cache_resource.clear()

    def make(role: str | None = None, username: str | None = None) -> AppTest:
        at = AppTest.from_file(APP_PATH, default_timeout=APP_TIMEOUT)
        if role:
            username_ = username or f"test-{role}"
            _ensure_user(db_url, username_, role)  # the app re-reads the signed-in user on every run
            at.session_state["auth_session_id"] = signed_in_session(db_url, Actor(username_, role))
        return at

    return make


def signed_in_session(db_url: str, actor: Actor) -> str:
    """A session for ``actor`` as a sign-in makes it, its cookie already handed out; returns its id."""
    from db.engine import get_engine, new_session
    from loyalty.access.sessions import exchange_grant, start_session

    with new_session(get_engine(db_url)) as session:
        started = start_session(session=session, actor=actor)
        exchange_grant(session=session, grant=started.grant)
    return started.id


def _decode(value):
    """Plotly 7 writes NumPy arrays as {"dtype", "bdata" (base64), "shape"}: turn them back into lists."""
    import base64

    import numpy as np

    if isinstance(value, dict):
        if isinstance(value.get("bdata"), str) and "dtype" in value:
            array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
            if "shape" in value:
                array = array.reshape([int(n) for n in str(value["shape"]).split(",")])
            return array.tolist()
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _ensure_user(db_url: str, username: str, role: str) -> None:
    from sqlmodel import select

    from db.engine import get_engine, new_session
    from db.models import User
    from loyalty.access.roles import SYSTEM_CLI
    from loyalty.access.users import create_user

    with new_session(get_engine(db_url)) as session:
        if session.exec(select(User).where(User.username == username)).first() is None:
            create_user(session=session, username=username, role=role, actor=SYSTEM_CLI)


def figure(at: AppTest, index: int = 0) -> dict:
    """The index-th Plotly chart of the page as plain JSON (data and layout), arrays decoded."""
    import json

    return _decode(json.loads(at.get("plotly_chart")[index].proto.spec))


def form_key_of(at: AppTest, page: str, record_id=None) -> str:
    """The key prefix of ``page``'s record form as :func:`loyalty.ui.forms.form_key` makes it (``None``: a new record)."""
    generation_key = f"{page}_form_generation"
    generation = at.session_state[generation_key] if generation_key in at.session_state else 0  # noqa: SIM401 (AppTest's session state has no .get)
    return f"{page}_form_{'new' if record_id is None else record_id}_{generation}"


def open_page(app, role: str, page: str) -> AppTest:
    """Sign in as ``role``, go to ``page`` and check it ran without an exception."""
    at = app(role=role).run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at
