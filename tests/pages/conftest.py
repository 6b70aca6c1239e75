"""Page tests with Streamlit's AppTest, signed in as a given role."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from loyalty.access import Actor

APP_TIMEOUT = 60
APP_PATH = str(Path(__file__).resolve().parents[2] / "app.py")


@pytest.fixture
def app(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Callable[..., AppTest]:
    """An AppTest of app.py on the test database; ``app(role=...)`` signs in first."""
    monkeypatch.setenv("LOYALTY_DEMO", "0")
    st.cache_data.clear()
    st.cache_resource.clear()

    def make(role: str | None = None, username: str | None = None) -> AppTest:
        at = AppTest.from_file(APP_PATH, default_timeout=APP_TIMEOUT)
        if role:
            at.session_state["auth_actor"] = Actor(username or f"test-{role}", role)
            at.session_state["auth_last_seen"] = time.time()
        return at

    return make
