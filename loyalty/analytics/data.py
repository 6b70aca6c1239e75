"""Columnar reads for analytics: the tables analytics needs, as Polars frames, fast.

Every analysis starts from a handful of narrow frames read in one pass each:

* purchases: ``member_id, occurred_on`` (UTC day) ``, amount`` and on request
  ``occurred_at, category, channel, store, purchase_id``; refunded purchases are left
  out (a refunded purchase is not revenue and not a visit);
* members: ``member_id, external_id, joined_on, acquisition_channel, tier, city,
  marketing_consent``;
* the points ledger summed in the database (``SUM(CASE ...)`` with an optional
  ``GROUP BY member_id``), never shipped row by row;
* NPS answers of a period.

How the rows travel
-------------------
SQLite: ADBC (``adbc-driver-sqlite``) returns Arrow columns straight from the file
(measured here: 10M purchases in about 3 s, against 31 s for ``pandas.read_sql``). It
runs in a reader process of its own (two copies of SQLite in one process corrupt each
other's WAL: see ``_READER_PROGRAM``), so it sees committed data only. Without ADBC,
or for an in-memory database, the session's own ``sqlite3`` connection is read in
chunks.
PostgreSQL: ADBC (``adbc-driver-postgresql``) when installed, otherwise ``COPY (...) TO
STDOUT`` through the session's psycopg connection, parsed by Polars' CSV reader.
Timestamps travel as integer epoch seconds (``unixepoch()`` / ``EXTRACT(EPOCH ...)``):
cheaper than text and the same on both databases.

Dates
-----
``start`` is inclusive and ``end`` exclusive, both UTC calendar days: ``start=2024-01-01,
end=2024-02-01`` is January 2024.
"""

from __future__ import annotations

import atexit
import importlib.util
import io
import os
import select
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, overload

import pandas as pd
import polars as pl
import pyarrow as pa
from sqlmodel import Session

from loyalty.errors import InvalidInput

__all__ = [
    "DEFAULT_MEMBER_COLUMNS",
    "DEFAULT_PURCHASE_COLUMNS",
    "MEMBER_COLUMNS",
    "PURCHASE_COLUMNS",
    "READER_QUERY_SECONDS",
    "Reader",
    "ReaderTimeout",
    "close_readers",
    "fetch_frame",
    "ledger_totals",
    "ledger_totals_for_periods",
    "load_feedback",
    "load_ledger_entries",
    "load_members",
    "load_purchases",
    "members_frame",
    "purchases_frame",
    "sql_moment",
]

Reader = Literal["auto", "adbc", "dbapi"]

PURCHASE_COLUMNS = ("purchase_id", "member_id", "occurred_at", "occurred_on", "amount", "category", "channel", "store")
DEFAULT_PURCHASE_COLUMNS = ("member_id", "occurred_on", "amount")
MEMBER_COLUMNS = (
    "member_id", "external_id", "joined_on", "acquisition_channel", "tier", "tier_rank", "city",
    "marketing_consent", "erased",
)
DEFAULT_MEMBER_COLUMNS = MEMBER_COLUMNS
NO_TIER = "(none)"
SECONDS_PER_DAY = 86_400
DBAPI_CHUNK_ROWS = 250_000

# The ledger kinds (loyalty.ledger.entries); repeated as SQL literals below.
EARN_KINDS = ("earn", "bonus")


# --- frames from callers ------------------------------------------------------------------


def _to_polars(frame: pl.DataFrame | pd.DataFrame, what: str) -> pl.DataFrame:
    if isinstance(frame, pl.DataFrame):
        return frame
    if isinstance(frame, pd.DataFrame):
        return pl.from_pandas(frame)
    raise InvalidInput(f"{what} must be a pandas or Polars DataFrame, not {type(frame).__name__}.")


def purchases_frame(purchases: pl.DataFrame | pd.DataFrame, *, need_amount: bool = True) -> pl.DataFrame:
    """Check and normalise a purchases frame for the pure analytics functions.

    Parameters
    ----------
    purchases
        pandas or Polars frame with ``member_id``, ``amount`` and either ``occurred_on``
        (dates, UTC days) or ``occurred_at`` (timestamps; naive ones are taken as UTC).
        Other columns are kept.
    need_amount
        Whether ``amount`` is required (cohorts only need who bought when).

    Returns
    -------
    polars.DataFrame
        ``member_id`` Int64, ``occurred_on`` Date, ``amount`` Float64, then the rest.
    """
    frame = _to_polars(purchases, "purchases")
    missing = {"member_id", "amount"} - set(frame.columns)
    if not need_amount:
        missing.discard("amount")
    if "occurred_on" not in frame.columns and "occurred_at" not in frame.columns:
        missing.add("occurred_on (or occurred_at)")
    if missing:
        raise InvalidInput(
            f"The purchases frame lacks column(s) {', '.join(sorted(missing))}; "
            f"it has {', '.join(frame.columns) or 'none'}. Load it with load_purchases()."
        )
    if "occurred_on" not in frame.columns:
        at = frame.schema["occurred_at"]
        column = pl.col("occurred_at")
        if isinstance(at, pl.Datetime) and at.time_zone is not None:
            column = column.dt.convert_time_zone("UTC")
        elif at == pl.String:
            column = column.str.to_datetime()
        frame = frame.with_columns(occurred_on=column.dt.date())
    elif frame.schema["occurred_on"] != pl.Date:
        frame = frame.with_columns(pl.col("occurred_on").cast(pl.Date))
    frame = frame.with_columns(pl.col("member_id").cast(pl.Int64))
    first = ["member_id", "occurred_on"]
    if "amount" in frame.columns:
        frame = frame.with_columns(pl.col("amount").cast(pl.Float64))
        first.append("amount")
    return frame.select(first + [c for c in frame.columns if c not in first])


def members_frame(members: pl.DataFrame | pd.DataFrame) -> pl.DataFrame:
    """Check and normalise a members frame (``member_id`` required; ``id`` is accepted for it)."""
    frame = _to_polars(members, "members")
    if "member_id" not in frame.columns and "id" in frame.columns:
        frame = frame.rename({"id": "member_id"})
    if "member_id" not in frame.columns:
        raise InvalidInput("The members frame needs a member_id column; load it with load_members().")
    frame = frame.with_columns(pl.col("member_id").cast(pl.Int64))
    if "joined_on" not in frame.columns and "joined_at" in frame.columns:
        frame = frame.with_columns(joined_on=pl.col("joined_at").dt.date())
    return frame


# --- SQL helpers --------------------------------------------------------------------------


def _dialect(session: Session) -> str:
    name = session.get_bind().dialect.name
    if name not in ("sqlite", "postgresql"):
        raise InvalidInput(f"Analytics reads SQLite and PostgreSQL databases, not {name}.")
    return name


@overload
def _check_day(value: date, name: str) -> date: ...
@overload
def _check_day(value: None, name: str) -> None: ...
@overload
def _check_day(value: date | None, name: str) -> date | None: ...
def _check_day(value: date | None, name: str) -> date | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.date()
    if not isinstance(value, date):
        raise InvalidInput(f"{name} must be a date (YYYY-MM-DD), not {value!r}.")
    return value


def _moment(dialect: str, day: date) -> str:
    """A SQL literal for UTC midnight starting ``day`` (``day`` is a checked date)."""
    if dialect == "sqlite":
        # Stored as 'YYYY-MM-DD HH:MM:SS[.ffffff]' UTC text: compare as text.
        return f"'{day.isoformat()}'"
    return f"TIMESTAMPTZ '{day.isoformat()} 00:00:00+00'"


def sql_moment(session: Session, moment: datetime) -> str:
    """A SQL literal for the instant ``moment`` (timezone-aware), comparable with stored timestamps."""
    if moment.tzinfo is None:
        raise InvalidInput("Timestamps must carry a time zone (UTC).")
    utc = pd.Timestamp(moment).tz_convert("UTC")
    if _dialect(session) == "sqlite":
        # SQLAlchemy's SQLite text, 'YYYY-MM-DD HH:MM:SS.ffffff': compared as text.
        return f"'{utc.strftime('%Y-%m-%d %H:%M:%S.%f')}'"
    return f"TIMESTAMPTZ '{utc.isoformat()}'"


def _epoch(dialect: str, column: str) -> str:
    """Integer UTC epoch seconds of a timestamp column."""
    if dialect == "sqlite":
        if sqlite3.sqlite_version_info >= (3, 38, 0):
            return f"unixepoch({column})"
        return f"CAST(strftime('%s', {column}) AS INTEGER)"
    return f"CAST(FLOOR(EXTRACT(EPOCH FROM {column})) AS BIGINT)"


def _range(dialect: str, column: str, start: date | None, end: date | None) -> list[str]:
    conditions = []
    if start is not None:
        conditions.append(f"{column} >= {_moment(dialect, start)}")
    if end is not None:
        conditions.append(f"{column} < {_moment(dialect, end)}")
    return conditions


def _where(conditions: Sequence[str]) -> str:
    return ("WHERE " + " AND ".join(conditions)) if conditions else ""


# --- reading ------------------------------------------------------------------------------


# SQLite through ADBC runs in a reader process of its own. ADBC links its own copy of
# SQLite, and two copies in one process do not see each other's POSIX locks: when the
# ADBC connection closed it believed it was the last one and deleted the WAL file
# under the process's other connections (their next query: "disk I/O error"; see
# sqlite.org/howtocorrupt.html, "multiple copies of SQLite in the same program").
# Across processes SQLite's locking works as designed. The reader starts once per
# process and database (about 0.3 s) and answers each query with an Arrow IPC stream.
_READER_PROGRAM = r"""
import itertools, os, struct, sys
import adbc_driver_manager as manager
import adbc_driver_sqlite as driver
import pyarrow as pa

database = driver.connect(sys.argv[1])
folder = sys.argv[2]
source, sink = sys.stdin.buffer, sys.stdout.buffer
for number in itertools.count():
    head = source.read(8)
    if len(head) < 8:
        break
    sql = source.read(struct.unpack("<Q", head)[0]).decode()
    try:
        connection = manager.AdbcConnection(database)
        try:
            statement = manager.AdbcStatement(connection)
            try:
                statement.set_options(**{"adbc.sqlite.query.batch_rows": "65536"})
                statement.set_sql_query(sql)
                stream, _ = statement.execute_query()
                reader = pa.RecordBatchReader._import_from_c(stream.address)
                # An Arrow file in shared memory: the parent maps it without a copy.
                path = os.path.join(folder, f"loyalty-analytics-{os.getpid()}-{number}.arrow")
                with pa.OSFile(path, "wb") as out, pa.ipc.new_file(out, reader.schema) as writer:
                    for batch in reader:
                        writer.write_batch(batch)
            finally:
                statement.close()
        finally:
            connection.close()
        reply = b"\x00" + path.encode()
    except Exception as error:
        reply = b"\x01" + f"{type(error).__name__}: {error}".encode()
    sink.write(struct.pack("<Q", len(reply)) + reply)
    sink.flush()
"""
# Where the reader leaves its answers: memory-backed when the system has it.
_ANSWER_FOLDER = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()


# The longest read measured (ten million purchases) takes about 5 s: a reader silent this
# long is stuck, and is stopped rather than waited for.
READER_QUERY_SECONDS = 300.0


class _ReaderStopped(RuntimeError):
    pass


class ReaderTimeout(RuntimeError):
    """The SQLite reader process did not answer (or stayed busy) within its time limit."""


def _read_exactly(fd: int, size: int, deadline: float) -> bytes:
    """``size`` bytes from the pipe ``fd``, or fewer if it closes; ReaderTimeout after ``deadline``."""
    parts, remaining = [], size
    while remaining:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise ReaderTimeout(f"The SQLite reader process did not answer within {READER_QUERY_SECONDS:.0f} s; it was stopped.")
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            break
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


class _SqliteReader:
    """A child process that runs read-only queries on one SQLite file through ADBC."""

    def __init__(self, path: str) -> None:
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.process = subprocess.Popen(
            [sys.executable, "-c", _READER_PROGRAM, path, _ANSWER_FOLDER],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )

    def alive(self) -> bool:
        return self.pid == os.getpid() and self.process.poll() is None

    def fetch(self, sql: str, *, time_limit: float | None = None) -> pa.Table:
        assert self.process.stdin is not None and self.process.stdout is not None
        limit = READER_QUERY_SECONDS if time_limit is None else time_limit
        query = sql.encode()
        # Another thread's query goes first; its own wait is limited too.
        if not self.lock.acquire(timeout=2 * limit):
            raise ReaderTimeout(f"The SQLite reader process stayed busy with another query for {2 * limit:.0f} s.")
        try:
            deadline = time.monotonic() + limit
            self.process.stdin.write(struct.pack("<Q", len(query)) + query)
            self.process.stdin.flush()
            stdout = self.process.stdout.fileno()  # raw reads only: select() must see every unread byte
            head = _read_exactly(stdout, 8, deadline)
            if len(head) < 8:
                raise _ReaderStopped("The SQLite reader process stopped; the query was not answered.")
            reply = _read_exactly(stdout, struct.unpack("<Q", head)[0], deadline)
        except BrokenPipeError:
            raise _ReaderStopped("The SQLite reader process stopped; the query was not sent.") from None
        except BaseException:
            # Half a reply left in the pipe would answer the next query: start afresh.
            self.process.kill()
            raise
        finally:
            self.lock.release()
        if reply[:1] != b"\x00":
            raise RuntimeError(f"SQLite query failed in the reader process: {reply[1:].decode(errors='replace')}")
        path = reply[1:].decode()
        try:
            with pa.memory_map(path) as source:
                return pa.ipc.open_file(source).read_all()
        finally:
            os.unlink(path)  # the mapping stays valid until the table is gone

    def close(self) -> None:
        # After any query in flight, but not longer than a query may take: then it is stopped anyway.
        waited = self.lock.acquire(timeout=READER_QUERY_SECONDS)
        try:
            if self.pid == os.getpid() and self.process.poll() is None:
                if not waited:
                    self.process.kill()
                    return
                assert self.process.stdin is not None
                self.process.stdin.close()
                try:
                    self.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.process.kill()
        finally:
            if waited:
                self.lock.release()


# Reader processes kept alive, most recently used last; beyond this many the oldest
# stops (a test suite opens a database per test).
MAX_READERS = 2
_readers: OrderedDict[str, _SqliteReader] = OrderedDict()
_readers_lock = threading.Lock()


def close_readers() -> None:
    """Stop the SQLite reader processes of this process (also done at exit)."""
    with _readers_lock:
        for reader in _readers.values():
            reader.close()
        _readers.clear()


atexit.register(close_readers)


def _adbc_sqlite(session: Session, sql: str) -> pa.Table | None:
    database = session.get_bind().engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    if importlib.util.find_spec("adbc_driver_sqlite") is None:
        return None
    path = os.path.abspath(database)
    for attempt in range(2):
        with _readers_lock:
            reader = _readers.pop(path, None)
            if reader is None or not reader.alive():
                reader = _SqliteReader(path)
            _readers[path] = reader
            while len(_readers) > MAX_READERS:
                _readers.popitem(last=False)[1].close()
        try:
            return reader.fetch(sql)
        except _ReaderStopped:
            # Closed by another thread in between, or crashed: once more with a new one.
            if attempt:
                raise
    return None


def _adbc_postgresql(session: Session, sql: str) -> pa.Table | None:
    try:
        import adbc_driver_postgresql.dbapi as adbc
    except ImportError:
        return None
    url = session.get_bind().engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with adbc.connect(url) as connection, connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetch_arrow_table()


def _dbapi_sqlite(session: Session, sql: str, schema: dict[str, Any]) -> pl.DataFrame:
    raw = session.connection().connection.driver_connection
    assert raw is not None  # a checked-out connection always has its driver connection
    cursor = raw.cursor()
    try:
        cursor.execute(sql)
        chunks = []
        while rows := cursor.fetchmany(DBAPI_CHUNK_ROWS):
            chunks.append(pl.DataFrame(rows, schema=schema, orient="row"))
    finally:
        cursor.close()
    return pl.concat(chunks) if chunks else pl.DataFrame(schema=schema)


def _copy_postgresql(session: Session, sql: str, schema: dict[str, Any]) -> pl.DataFrame:
    raw = session.connection().connection.driver_connection
    assert raw is not None  # a checked-out connection always has its driver connection
    buffer = io.BytesIO()
    with raw.cursor() as cursor, cursor.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)") as copy:
        for block in copy:
            buffer.write(block)
    if buffer.tell() == 0:
        return pl.DataFrame(schema=schema)
    buffer.seek(0)
    return pl.read_csv(buffer, has_header=False, new_columns=list(schema), schema=schema)


def fetch_frame(session: Session, sql: str, schema: dict[str, Any], *, reader: Reader = "auto") -> pl.DataFrame:
    """Run a read-only ``sql`` and return its rows as a Polars frame of ``schema``.

    Parameters
    ----------
    session
        Any session on the database; its connection URL is reused.
    sql
        One ``SELECT`` in the session's dialect, with columns in ``schema``'s order.
    schema
        Column name -> Polars type of the result.
    reader
        ``"adbc"`` (Arrow straight from the driver), ``"dbapi"`` (the session's own
        connection: ``sqlite3`` chunks or PostgreSQL ``COPY``), or ``"auto"``: ADBC when
        its driver is installed and the database is a file or a server.
    """
    if reader not in ("auto", "adbc", "dbapi"):
        raise InvalidInput(f"reader must be 'auto', 'adbc' or 'dbapi', not {reader!r}.")
    dialect = _dialect(session)
    if reader != "dbapi":
        table = _adbc_sqlite(session, sql) if dialect == "sqlite" else _adbc_postgresql(session, sql)
        if table is not None:
            frame = pl.from_arrow(table)
            assert isinstance(frame, pl.DataFrame)
            frame.columns = list(schema)
            # ADBC hands over thousands of small batches; one contiguous block per
            # column makes every later pass (and to_numpy) cheaper.
            return frame.cast(schema).rechunk() if frame.height else pl.DataFrame(schema=schema)  # type: ignore[arg-type]  # polars types the keys as names or selectors
        if reader == "adbc":
            raise InvalidInput(
                f"The ADBC reader needs `pip install adbc-driver-{dialect}` and a database file or server "
                "(not an in-memory SQLite database); use reader='dbapi' otherwise."
            )
    if dialect == "sqlite":
        return _dbapi_sqlite(session, sql, schema)
    return _copy_postgresql(session, sql, schema)


def _with_times(frame: pl.DataFrame, column: str, *, keep_at: str | None, day: str | None) -> pl.DataFrame:
    """Turn an epoch-seconds column into a UTC timestamp and/or a UTC date column."""
    seconds = pl.col(column)
    derived = []
    if day:
        derived.append((seconds // SECONDS_PER_DAY).cast(pl.Int32).cast(pl.Date).alias(day))
    if keep_at:
        derived.append(pl.from_epoch(seconds, time_unit="s").dt.replace_time_zone("UTC").cast(pl.Datetime("us", "UTC")).alias(keep_at))
    return frame.with_columns(derived).drop(column)


def load_purchases(
    session: Session,
    *,
    start: date | None = None,
    end: date | None = None,
    columns: Sequence[str] = DEFAULT_PURCHASE_COLUMNS,
    include_refunded: bool = False,
    reader: Reader = "auto",
) -> pl.DataFrame:
    """Purchases as a Polars frame, refunded ones left out.

    Parameters
    ----------
    start, end
        Optional UTC days: purchases with ``start <= occurred_at < end``.
    columns
        Any of :data:`PURCHASE_COLUMNS`; ``occurred_on`` is the UTC day of ``occurred_at``.
    include_refunded
        Keep refunded purchases too (normally they are neither revenue nor a visit).
    reader
        See :func:`fetch_frame`.

    Returns
    -------
    polars.DataFrame
        The requested columns in the requested order (no particular row order).
    """
    unknown = set(columns) - set(PURCHASE_COLUMNS)
    if unknown:
        raise InvalidInput(f"Unknown purchase column(s) {sorted(unknown)}; choose from {list(PURCHASE_COLUMNS)}.")
    start, end = _check_day(start, "start"), _check_day(end, "end")
    dialect = _dialect(session)
    select: list[str] = []
    schema: dict[str, Any] = {}
    sources = {
        "purchase_id": ("id", pl.Int64),
        "member_id": ("member_id", pl.Int64),
        "amount": ("CAST(amount AS DOUBLE PRECISION)" if dialect == "postgresql" else "CAST(amount AS REAL)", pl.Float64),
        "category": ("COALESCE(category, '')", pl.String),
        "channel": ("COALESCE(channel, '')", pl.String),
        "store": ("COALESCE(store, '')", pl.String),
    }
    wants_time = "occurred_at" in columns or "occurred_on" in columns
    for name in columns:
        if name in sources:
            expression, dtype = sources[name]
            select.append(f"{expression} AS {name}")
            schema[name] = dtype
    if wants_time:
        select.append(f"{_epoch(dialect, 'occurred_at')} AS occurred_seconds")
        schema["occurred_seconds"] = pl.Int64
    if not select:
        raise InvalidInput("Ask load_purchases for at least one column.")
    conditions = _range(dialect, "occurred_at", start, end)
    if not include_refunded:
        conditions.append("refunded_at IS NULL")
    sql = f"SELECT {', '.join(select)} FROM purchase {_where(conditions)}"
    frame = fetch_frame(session, sql, schema, reader=reader)
    if wants_time:
        frame = _with_times(
            frame, "occurred_seconds",
            keep_at="occurred_at" if "occurred_at" in columns else None,
            day="occurred_on" if "occurred_on" in columns else None,
        )
    return frame.select(list(columns))


def load_members(
    session: Session, *, columns: Sequence[str] = DEFAULT_MEMBER_COLUMNS, reader: Reader = "auto"
) -> pl.DataFrame:
    """Members as a Polars frame, one row each (erased members included: their history counts).

    ``tier`` is the member's current tier name (``"(none)"`` without one), ``tier_rank``
    its rank (0 without one), ``joined_on`` the UTC day of ``joined_at``.
    """
    unknown = set(columns) - set(MEMBER_COLUMNS)
    if unknown:
        raise InvalidInput(f"Unknown member column(s) {sorted(unknown)}; choose from {list(MEMBER_COLUMNS)}.")
    dialect = _dialect(session)
    sources: dict[str, tuple[str, Any]] = {
        "member_id": ("m.id", pl.Int64),
        "external_id": ("m.external_id", pl.String),
        "joined_on": (_epoch(dialect, "m.joined_at"), pl.Int64),
        "acquisition_channel": ("COALESCE(m.acquisition_channel, '')", pl.String),
        "tier": (f"COALESCE(t.name, '{NO_TIER}')", pl.String),
        "tier_rank": ("COALESCE(t.rank, 0)", pl.Int64),
        "city": ("COALESCE(m.city, '')", pl.String),
        "marketing_consent": ("CASE WHEN m.marketing_consent THEN 1 ELSE 0 END", pl.Int8),
        "erased": ("CASE WHEN m.erased_at IS NULL THEN 0 ELSE 1 END", pl.Int8),
    }
    select = [f"{sources[name][0]} AS {name}" for name in columns]
    schema = {name: sources[name][1] for name in columns}
    join = "LEFT JOIN tier t ON t.id = m.tier_id" if {"tier", "tier_rank"} & set(columns) else ""
    frame = fetch_frame(session, f"SELECT {', '.join(select)} FROM member m {join}", schema, reader=reader)
    conversions = []
    if "joined_on" in columns:
        conversions.append((pl.col("joined_on") // SECONDS_PER_DAY).cast(pl.Int32).cast(pl.Date))
    conversions += [pl.col(c).cast(pl.Boolean) for c in ("marketing_consent", "erased") if c in columns]
    return frame.with_columns(conversions) if conversions else frame


def load_feedback(
    session: Session, *, start: date | None = None, end: date | None = None, reader: Reader = "auto"
) -> pl.DataFrame:
    """NPS answers with ``start <= submitted_at < end``: ``member_id, submitted_at, score``."""
    start, end = _check_day(start, "start"), _check_day(end, "end")
    dialect = _dialect(session)
    sql = (
        f"SELECT member_id, {_epoch(dialect, 'submitted_at')} AS submitted_seconds, score FROM feedback "
        f"{_where(_range(dialect, 'submitted_at', start, end))}"
    )
    frame = fetch_frame(session, sql, {"member_id": pl.Int64, "submitted_seconds": pl.Int64, "score": pl.Int64}, reader=reader)
    return _with_times(frame, "submitted_seconds", keep_at="submitted_at", day=None).select("member_id", "submitted_at", "score")


LEDGER_TOTAL_COLUMNS = (
    "earned", "redeemed", "returned", "expired", "trailing_redeemed", "trailing_returned", "trailing_expired", "balance",
)
OUTFLOW_KINDS = ("redeem", "expire", "reverse")


def _kinds(kinds: Sequence[str]) -> str:
    return "(" + ", ".join(f"'{k}'" for k in kinds) + ")"


def ledger_totals(
    session: Session,
    start: date,
    end: date,
    *,
    trailing_start: date | None = None,
    by_member: bool = False,
    reader: Reader = "auto",
) -> pl.DataFrame:
    """Points movements of a period, summed.

    Columns (numbers of points, all counted positive):

    * ``earned``: ``earn`` + ``bonus`` entries with ``start <= occurred_at < end``;
    * ``redeemed``: points taken by ``redeem`` entries in the period;
    * ``returned``: points given back by cancelled redemptions in the period
      (``reverse`` entries that carry a ``redemption_id``);
    * ``expired``: points taken by ``expire`` entries in the period;
    * ``trailing_redeemed``, ``trailing_returned``, ``trailing_expired``: the same over
      ``trailing_start <= occurred_at < end`` (default: the period);
    * ``balance``: the sum of every entry before ``end`` (points outstanding then).

    Each part is one query the ``(kind, occurred_at)`` index answers, except the
    balance (one sequential ``SUM``); per-member sums are done in Polars, because a
    ``GROUP BY member_id`` over the whole ledger is slow on SQLite (38 s for 10M rows).

    Parameters
    ----------
    by_member
        One row per member with any entry before ``end`` (``member_id`` first), instead
        of one row of totals.
    """
    start, end = _check_day(start, "start"), _check_day(end, "end")
    trailing_start = _check_day(trailing_start, "trailing_start") or start
    if start is None or end is None or start >= end:
        raise InvalidInput(f"The period must have start < end; got {start} to {end}.")
    dialect = _dialect(session)
    lo, hi = _moment(dialect, start), _moment(dialect, end)
    since = _moment(dialect, min(start, trailing_start))
    earn_where = f"WHERE kind IN {_kinds(EARN_KINDS)} AND occurred_at >= {lo} AND occurred_at < {hi}"
    flag = "CASE WHEN {} THEN 1 ELSE 0 END"
    outflows = fetch_frame(
        session,
        f"SELECT member_id, kind, points, {flag.format('redemption_id IS NOT NULL')} AS is_return, "
        f"{flag.format(f'occurred_at >= {lo}')} AS in_period, "
        f"{flag.format(f'occurred_at >= {_moment(dialect, trailing_start)}')} AS in_trailing "
        f"FROM ledger_entry WHERE kind IN {_kinds(OUTFLOW_KINDS)} AND occurred_at >= {since} AND occurred_at < {hi}",
        {"member_id": pl.Int64, "kind": pl.String, "points": pl.Int64, "is_return": pl.Int8, "in_period": pl.Int8, "in_trailing": pl.Int8},
        reader=reader,
    )
    redeem, expire = pl.col("kind") == "redeem", pl.col("kind") == "expire"
    returned = (pl.col("kind") == "reverse") & (pl.col("is_return") == 1)
    period, trailing = pl.col("in_period") == 1, pl.col("in_trailing") == 1

    def points_where(condition: pl.Expr, sign: int) -> pl.Expr:
        return (pl.when(condition).then(pl.col("points") * sign).otherwise(0)).sum()

    outflow_sums = [
        points_where(redeem & period, -1).alias("redeemed"),
        points_where(returned & period, 1).alias("returned"),
        points_where(expire & period, -1).alias("expired"),
        points_where(redeem & trailing, -1).alias("trailing_redeemed"),
        points_where(returned & trailing, 1).alias("trailing_returned"),
        points_where(expire & trailing, -1).alias("trailing_expired"),
    ]
    schema: dict[str, Any] = {name: pl.Int64 for name in LEDGER_TOTAL_COLUMNS}
    if not by_member:
        earned = fetch_frame(session, f"SELECT COALESCE(SUM(points), 0) FROM ledger_entry {earn_where}", {"earned": pl.Int64}, reader=reader)
        balance = fetch_frame(
            session, f"SELECT COALESCE(SUM(points), 0) FROM ledger_entry WHERE occurred_at < {hi}", {"balance": pl.Int64}, reader=reader
        )
        return pl.concat([earned, outflows.select(outflow_sums), balance], how="horizontal").fill_null(0).cast(schema).select(  # type: ignore[arg-type]  # polars types the keys as names or selectors
            list(LEDGER_TOTAL_COLUMNS)
        )
    earned = fetch_frame(session, f"SELECT member_id, points FROM ledger_entry {earn_where}", {"member_id": pl.Int64, "points": pl.Int64}, reader=reader)
    entries = fetch_frame(
        session, f"SELECT member_id, points FROM ledger_entry WHERE occurred_at < {hi}",
        {"member_id": pl.Int64, "points": pl.Int64}, reader=reader,
    )
    return (
        entries.group_by("member_id").agg(balance=pl.col("points").sum())
        .join(earned.group_by("member_id").agg(earned=pl.col("points").sum()), on="member_id", how="left")
        .join(outflows.group_by("member_id").agg(outflow_sums), on="member_id", how="left")
        .fill_null(0)
        .cast({"member_id": pl.Int64, **schema})  # type: ignore[dict-item]  # polars types the keys as names or selectors
        .select("member_id", *LEDGER_TOTAL_COLUMNS)
        .sort("member_id")
    )


def load_ledger_entries(session: Session, end: date, *, reader: Reader = "auto") -> pl.DataFrame:
    """Every ledger entry up to and including the first moment of ``end`` (midnight):
    ``member_id, kind, points, is_return, occurred_seconds``.

    One read for several periods at once (the nightly KPI snapshot): the per-period
    totals then come from :func:`ledger_totals_for_periods`, which cuts at each period's
    end. The entries stamped exactly at midnight ``end`` are the expiry run of that
    cutoff: the Overview's "as of" numbers include them.
    """
    end = _check_day(end, "end")
    dialect = _dialect(session)
    last_second = int(datetime(end.year, end.month, end.day, tzinfo=UTC).timestamp())
    # SQLite compares text ('day 00:00:00' > 'day'), so read to the next day and cut exactly in memory.
    end = end + timedelta(days=1)
    return fetch_frame(
        session,
        f"SELECT member_id, kind, points, CASE WHEN redemption_id IS NOT NULL THEN 1 ELSE 0 END AS is_return, "
        f"{_epoch(dialect, 'occurred_at')} AS occurred_seconds FROM ledger_entry WHERE occurred_at < {_moment(dialect, end)}",
        {"member_id": pl.Int64, "kind": pl.String, "points": pl.Int64, "is_return": pl.Int8, "occurred_seconds": pl.Int64},
        reader=reader,
    ).filter(pl.col("occurred_seconds") <= last_second).with_columns(pl.col("kind").cast(pl.Categorical))


def ledger_totals_for_periods(entries: pl.DataFrame, periods: Sequence[tuple[date, date, date]]) -> list[pl.DataFrame]:
    """Per-member :func:`ledger_totals` of several ``(start, end, trailing_start)`` periods in one pass.

    One group-by over the entries computes every period's sums at once (the grouping,
    the costly part, is done once).
    """
    def seconds(day: date) -> int:
        return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())

    at, kind = pl.col("occurred_seconds"), pl.col("kind").cast(pl.String)
    redeem, expire = kind == "redeem", kind == "expire"
    returned = (kind == "reverse") & (pl.col("is_return") == 1)
    earn = kind.is_in(list(EARN_KINDS))

    def points_where(condition: pl.Expr, sign: int) -> pl.Expr:
        return pl.when(condition).then(pl.col("points") * sign).otherwise(0).sum()

    aggregations, last_hi = [], max(seconds(end) for _, end, _ in periods)
    for i, (start, end, trailing_start) in enumerate(periods):
        lo, hi, trailing = seconds(start), seconds(end), seconds(trailing_start)
        before_end = at < hi
        in_period, in_trailing = (at >= lo) & before_end, (at >= trailing) & before_end
        aggregations += [
            points_where(earn & in_period, 1).alias(f"{i}:earned"),
            points_where(redeem & in_period, -1).alias(f"{i}:redeemed"),
            points_where(returned & in_period, 1).alias(f"{i}:returned"),
            points_where(expire & in_period, -1).alias(f"{i}:expired"),
            points_where(redeem & in_trailing, -1).alias(f"{i}:trailing_redeemed"),
            points_where(returned & in_trailing, 1).alias(f"{i}:trailing_returned"),
            points_where(expire & in_trailing, -1).alias(f"{i}:trailing_expired"),
            points_where(before_end, 1).alias(f"{i}:balance"),
            (before_end.sum() > 0).alias(f"{i}:present"),
        ]
    wide = entries.lazy().filter(at < last_hi).group_by("member_id").agg(aggregations).collect()
    schema: dict[str, Any] = {name: pl.Int64 for name in LEDGER_TOTAL_COLUMNS}
    frames = []
    for i in range(len(periods)):
        frames.append(
            wide.filter(pl.col(f"{i}:present"))
            .select("member_id", *(pl.col(f"{i}:{name}").alias(name) for name in LEDGER_TOTAL_COLUMNS))
            .cast({"member_id": pl.Int64, **schema})  # type: ignore[dict-item]  # polars types the keys as names or selectors
            .sort("member_id")
        )
    return frames
