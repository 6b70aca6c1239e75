"""A database that cannot be reached, or one that turns read-only, is said in words on the page."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from tests.pages.conftest import APP_PATH, APP_TIMEOUT, open_page


def test_a_database_that_is_down_shows_a_message_not_a_traceback(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LOYALTY_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:1/test?connect_timeout=3")
    monkeypatch.setenv("LOYALTY_DEMO", "0")
    monkeypatch.setenv("LOYALTY_WORKER", "0")
    st.cache_resource.clear()
    at = AppTest.from_file(APP_PATH, default_timeout=APP_TIMEOUT).run()
    assert not at.exception
    assert [e.value for e in at.error][0].startswith("The database cannot be reached")


def test_a_read_only_database_refuses_a_change_in_words(app, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    if not db_url.startswith("sqlite"):
        pytest.skip("a read-only copy is made of the SQLite file")
    at = open_page(app, "admin", "pages/settings.py")
    copy = tmp_path / "ro.db"
    with sqlite3.connect(db_url.removeprefix("sqlite:///")) as source, sqlite3.connect(copy) as target:
        source.backup(target)  # with what is still in the write-ahead log
    monkeypatch.setenv("LOYALTY_DATABASE_URL", f"sqlite:///file:{copy}?mode=ro&uri=true")
    st.cache_resource.clear()
    at.number_input(key="settings_expiry_months").set_value(18)
    at.button(key="settings_save").click().run()
    assert not at.exception
    assert any("read-only" in e.value for e in at.error), [e.value for e in at.error]
