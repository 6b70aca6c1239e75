"""The engine and session factory.

``LOYALTY_DATABASE_URL`` names the database; the default is a SQLite file under
``data/``. The same code runs on PostgreSQL through ``postgresql+psycopg://``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlmodel import Session

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "sqlite:///data/loyalty.db"
SQLITE_BUSY_TIMEOUT_MS = 30_000
POSTGRES_CONNECT_TIMEOUT_SECONDS = 10
POSTGRES_LOCK_TIMEOUT_MS = SQLITE_BUSY_TIMEOUT_MS

_IN_WRITE_TRANSACTION = "loyalty_in_write_transaction"
_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def database_url() -> str:
    return os.environ.get("LOYALTY_DATABASE_URL") or DEFAULT_DATABASE_URL


def _normalise(url: str) -> str:
    """Resolve a relative SQLite path against the project root; PostgreSQL: psycopg 3 and a connect timeout."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        db = parsed.database
        if db and db != ":memory:" and not db.startswith("file:") and not os.path.isabs(db):
            path = PROJECT_ROOT / db
            path.parent.mkdir(parents=True, exist_ok=True)
            parsed = parsed.set(database=str(path))
        elif db and os.path.isabs(db):
            Path(db).parent.mkdir(parents=True, exist_ok=True)
    elif parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        if "connect_timeout" not in parsed.query:
            # libpq waits for an unreachable server as long as the OS lets TCP try (minutes).
            parsed = parsed.update_query_dict({"connect_timeout": str(POSTGRES_CONNECT_TIMEOUT_SECONDS)})
    return parsed.render_as_string(hide_password=False)


def _configure_sqlite(engine: Engine) -> None:
    """Foreign keys on, WAL, a busy timeout, and explicit BEGIN control.

    pysqlite's own implicit BEGIN is switched off so that a write use case can open
    its transaction with ``BEGIN IMMEDIATE`` (see :func:`write_transaction`): it then
    holds SQLite's single writer lock from its first read, which is what makes
    check-then-write sequences (redemptions) safe across processes.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # noqa: ANN001
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:  # noqa: ANN001
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


def _configure_postgresql(engine: Engine) -> None:
    """A lock wait (a row lock, an advisory lock) ends after :data:`POSTGRES_LOCK_TIMEOUT_MS`.

    PostgreSQL waits for a lock without limit by default; SQLite gives up after its busy
    timeout. Both now give up after the same time, with "lock timeout" / "database is locked".
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # noqa: ANN001
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True  # a SET outside any transaction: it lasts for the connection
        try:
            with dbapi_connection.cursor() as cursor:
                cursor.execute(f"SET lock_timeout = {int(POSTGRES_LOCK_TIMEOUT_MS)}")
        finally:
            dbapi_connection.autocommit = autocommit


def get_engine(url: str | None = None) -> Engine:
    """The engine for ``url`` (default: ``LOYALTY_DATABASE_URL``), created once per process."""
    resolved = _normalise(url or database_url())
    with _engines_lock:
        engine = _engines.get(resolved)
        if engine is None:
            if resolved.startswith("sqlite"):
                engine = create_engine(resolved, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
                _configure_sqlite(engine)
            else:
                engine = create_engine(resolved, pool_pre_ping=True)
                _configure_postgresql(engine)
            _engines[resolved] = engine
    return engine


def dispose_engines() -> None:
    """Forget every engine (tests and forked processes)."""
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def new_session(engine: Engine | None = None) -> Session:
    """A session for one unit of work: ``with new_session() as session: ...``."""
    return Session(engine or get_engine(), expire_on_commit=False)


def is_sqlite(session_or_engine: Session | Engine) -> bool:
    bind = session_or_engine.get_bind() if isinstance(session_or_engine, Session) else session_or_engine
    return bind.dialect.name == "sqlite"


def begin_write(session: Session) -> None:
    """Start a write use case that commits itself: end any read transaction, take the write lock.

    On SQLite a transaction that reads and then writes must hold the lock from its start:
    upgrading a read transaction fails at once ("database is locked") if another process
    wrote in between, without waiting for the busy timeout.
    """
    if session.info.get(_IN_WRITE_TRANSACTION):
        return
    if session.in_transaction():
        session.commit()
    session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})


def sql_moment(session: Session, moment: datetime | None) -> object:
    """A moment bound into a raw SQL text query: on SQLite the text the UTC column stores
    (``YYYY-MM-DD HH:MM:SS.ffffff``, so comparisons are exact), elsewhere the datetime itself."""
    if moment is None or session.get_bind().dialect.name != "sqlite":
        return moment
    utc = moment.astimezone(UTC) if moment.tzinfo else moment
    return utc.strftime("%Y-%m-%d %H:%M:%S.%f")


@contextmanager
def write_transaction(session: Session) -> Iterator[Session]:
    """Run one use case as one transaction that holds the write lock from its start.

    On SQLite the transaction begins with ``BEGIN IMMEDIATE``; on PostgreSQL callers
    take row locks (``SELECT ... FOR UPDATE``). Commits on success, rolls back
    everything on any exception. A use case called from inside another joins the
    outer transaction. A read-only transaction the session had opened for earlier
    queries is ended first, so the write lock is really taken at the start.
    """
    if session.info.get(_IN_WRITE_TRANSACTION):
        yield session
        return
    if session.in_transaction():
        session.commit()
    session.info[_IN_WRITE_TRANSACTION] = True
    try:
        session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.info.pop(_IN_WRITE_TRANSACTION, None)


MIGRATIONS = PROJECT_ROOT / "db" / "migrations"


def head_revision() -> str:
    """The newest migration's revision, read from the file names (``0013_stored_views.py``: the
    revisions are numbered in order, one after the other; a test checks it is Alembic's head)."""
    return max(path.name.split("_", 1)[0] for path in (MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))


def upgrade_to_head(engine: Engine | None = None) -> None:
    """Bring the schema to the newest Alembic revision."""
    from sqlalchemy import inspect, text

    engine = engine or get_engine()
    with engine.connect() as connection:
        # Already at head (every start after the first): skip Alembic, whose import and
        # reading of the migrations cost a good part of a command's start-up.
        if inspect(connection).has_table("alembic_version"):
            current = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
            if current == [head_revision()]:
                return
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.connect() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
        connection.commit()
