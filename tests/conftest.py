"""Shared fixtures: a fresh database per test, on SQLite or PostgreSQL.

By default each test gets a temporary SQLite file copied from a migrated template.
With ``LOYALTY_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test``
each test gets its own PostgreSQL schema (created, migrated, dropped), so the whole
suite runs on PostgreSQL too.

No test reads today's date: the session and each test run at a fixed instant
(``tests.clock``), and so do the subprocesses they start. Tests marked ``calendar`` run
once at each of ``tests.clock.CALENDAR_DATES``; the ``today`` fixture is the test's date.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlmodel import Session

from tests.clock import CALENDAR_DATES, DEFAULT_INSTANT, at_noon, frozen_clock

PG_URL = os.environ.get("LOYALTY_TEST_DATABASE_URL", "")
PG_SKIP_REASON = "PostgreSQL tests need LOYALTY_TEST_DATABASE_URL (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test); .ci/run sets it"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker("calendar"):
        metafunc.parametrize("now", [at_noon(day) for day in CALENDAR_DATES], indirect=True, ids=[f"on-{day.isoformat()}" for day in CALENDAR_DATES])


@pytest.fixture(scope="session", autouse=True)
def session_clock() -> Iterator[None]:
    """Session fixtures (the e2e database and server) run at the default instant too."""
    with pytest.MonkeyPatch.context() as environment, frozen_clock(DEFAULT_INSTANT, environment):
        yield


@pytest.fixture
def now(request: pytest.FixtureRequest) -> datetime:
    """The instant the test starts at: the default one, or each calendar date for ``calendar`` tests."""
    return getattr(request, "param", DEFAULT_INSTANT)


@pytest.fixture
def today(now: datetime) -> date:
    return now.date()


@pytest.fixture(autouse=True)
def clock(request: pytest.FixtureRequest, now: datetime, session_clock: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts at ``now``, whatever ran before it; a browser test keeps the session's
    clock, which the app server it talks to reads."""
    if "app_url" in request.fixturenames:
        yield
        return
    with frozen_clock(now, monkeypatch):
        yield


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from db.engine import dispose_engines, get_engine, upgrade_to_head

    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade_to_head(get_engine(f"sqlite:///{path}"))
    dispose_engines()
    return path


def _pg_schema_url(schema: str) -> str:
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options=-csearch_path%3D{schema}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A migrated, empty PostgreSQL schema of its own; skipped without a server URL."""
    if not PG_URL:
        pytest.skip(PG_SKIP_REASON)
    from db.engine import dispose_engines, get_engine, upgrade_to_head

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = _pg_schema_url(schema)
    upgrade_to_head(get_engine(url))
    try:
        yield url
    finally:
        dispose_engines()
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@contextmanager
def demo_database(
    sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory, *, members: int, months: int, seed: int, now: datetime
) -> Iterator[tuple[Engine, dict]]:
    """A demo program in a database of its own (a SQLite file, or a PostgreSQL schema under
    ``LOYALTY_TEST_DATABASE_URL``): its engine and ``create_demo``'s summary; dropped after."""
    from db.engine import get_engine, new_session, upgrade_to_head
    from loyalty.access.roles import Actor
    from loyalty.demo.simulation import create_demo

    schema = admin = None
    if PG_URL:
        schema = f"t_demo_{uuid.uuid4().hex[:10]}"
        admin = create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        engine = get_engine(_pg_schema_url(schema))
        upgrade_to_head(engine)
    else:
        path = tmp_path_factory.mktemp("demo") / "demo.db"
        shutil.copy(sqlite_template, path)
        engine = get_engine(f"sqlite:///{path}")
    with new_session(engine) as session:
        summary = create_demo(session, members=members, months=months, seed=seed, actor=Actor("max", "manager"), now=now)
    try:
        yield engine, summary
    finally:
        engine.dispose()
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> Iterator[str]:
    from db.engine import dispose_engines

    path = tmp_path / "loyalty.db"
    shutil.copy(sqlite_template, path)
    yield f"sqlite:///{path}"
    dispose_engines()


@pytest.fixture
def db_url(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The test's database URL (SQLite, or PostgreSQL under LOYALTY_TEST_DATABASE_URL).

    Also exported as LOYALTY_DATABASE_URL so CLI calls and subprocesses use it.
    """
    url = request.getfixturevalue("postgres_url" if PG_URL else "sqlite_url")
    monkeypatch.setenv("LOYALTY_DATABASE_URL", url)
    return url


@pytest.fixture
def session(db_url: str) -> Iterator[Session]:
    from db.engine import get_engine, new_session

    with new_session(get_engine(db_url)) as session:
        yield session
