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
other's WAL: see :mod:`loyalty.analytics.reader`), so it sees committed data only. Without ADBC,
or for an in-memory database, the session's own ``sqlite3`` connection is read in
chunks.
PostgreSQL: ADBC (``adbc-driver-postgresql``) when installed, otherwise ``COPY (...) TO
STDOUT`` through the session's psycopg connection, parsed by Polars' CSV reader.
Timestamps travel as integer epoch seconds (``unixepoch()`` / ``EXTRACT(EPOCH ...)``):
cheaper than text and the same on both databases. Values (days, moments, ids) travel
as bound parameters (``:name`` in the text, a ``params`` dict beside it), never inside
the statement.

Dates
-----
``start`` is inclusive and ``end`` exclusive, both UTC calendar days: ``start=2024-01-01,
end=2024-02-01`` is January 2024.
"""

from __future__ import annotations

import importlib.util
import io
import os
import sqlite3
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, overload

import polars as pl
import pyarrow as pa
from sqlalchemy import text
from sqlalchemy.dialects import postgresql as postgresql_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlmodel import Session

from loyalty.analytics.reader import READ_PARTS, ReaderTimeout, close_readers, read_sqlite, read_sqlite_parts
from loyalty.errors import InvalidInput

if TYPE_CHECKING:  # pandas is imported by callers that hand over pandas frames, not by every analysis
    import pandas as pd

__all__ = [
    "load_referrals",
    "DEFAULT_MEMBER_COLUMNS",
    "NO_TIER",
    "DEFAULT_PURCHASE_COLUMNS",
    "MEMBER_COLUMNS",
    "PURCHASE_COLUMNS",
    "Reader",
    "ReaderTimeout",
    "close_readers",
    "dialect_of",
    "epoch_sql",
    "moment_text_sql",
    "parse_moments",
    "fetch_frame",
    "id_parts",
    "PART_CONDITION",
    "INDEX_SHARE",
    "ledger_totals",
    "ledger_totals_for_periods",
    "load_feedback",
    "load_ledger_entries",
    "load_members",
    "load_purchases",
    "range_conditions",
    "where_clause",
    "members_frame",
    "purchases_frame",
]

Reader = Literal["auto", "adbc", "dbapi"]

PURCHASE_COLUMNS = ("purchase_id", "member_id", "occurred_at", "occurred_on", "amount", "category", "channel", "store")
DEFAULT_PURCHASE_COLUMNS = ("member_id", "occurred_on", "amount")
MEMBER_COLUMNS = ("member_id", "external_id", "joined_on", "acquisition_channel", "tier", "tier_rank", "city", "marketing_consent", "erased")
DEFAULT_MEMBER_COLUMNS = MEMBER_COLUMNS
NO_TIER = "(none)"
SECONDS_PER_DAY = 86_400
DBAPI_CHUNK_ROWS = 250_000

# The ledger kinds (loyalty.ledger.entries); bound as :kind_<name> in the reads below.
EARN_KINDS = ("earn", "bonus")


# --- frames from callers ------------------------------------------------------------------


def _to_polars(frame: pl.DataFrame | pd.DataFrame, what: str) -> pl.DataFrame:
    if isinstance(frame, pl.DataFrame):
        return frame
    pandas = sys.modules.get("pandas")  # a pandas frame exists only once pandas is imported
    if pandas is not None and isinstance(frame, pandas.DataFrame):
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


def dialect_of(session: Session) -> str:
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


# Timestamp columns the reads here convert or filter on: epoch_sql and _range take no others,
# so nothing but these names is ever formatted into a statement.
_TIMESTAMP_COLUMNS = frozenset(
    {"occurred_at", "submitted_at", "requested_at", "expires_at", "m.joined_at", "r.referred_at", "r.rewarded_at", "joined_at", "tier_since"}
)
# Paramstyles of the statements the readers run: `?` for SQLite (sqlite3 and the ADBC
# reader process bind by position), `$1` for ADBC PostgreSQL. COPY uses the session's own
# dialect (psycopg's `%(name)s`).
_SQLITE_STATEMENTS = sqlite_dialect.dialect()
_ADBC_POSTGRESQL_STATEMENTS = postgresql_dialect.dialect(paramstyle="numeric_dollar")


def moment_text_sql(dialect: str, column: str) -> str:
    """A timestamp column as UTC text to the microsecond, ``YYYY-MM-DD HH:MM:SS.ffffff``, on both
    databases (SQLite stores that text; PostgreSQL formats it): exact where epoch seconds
    would drop the fraction. :func:`parse_moments` reads it back.

    Wrap a nullable column in ``COALESCE(..., '')`` when SQLite's reader process reads it: its
    driver takes a column's type from the first 65,536 rows, and a column NULL in all of them
    is read as integers, so the first text after them fails the query."""
    column = _timestamp_column(column)
    if dialect == "sqlite":
        return column
    return f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"


def parse_moments(values: pd.Series) -> pd.Series:
    """UTC timestamps from :func:`moment_text_sql`'s text (NaT for null or ``''``)."""
    import pandas

    return pandas.to_datetime(values.mask(values == ""), utc=True, format="ISO8601")


def _timestamp_column(column: str) -> str:
    if column not in _TIMESTAMP_COLUMNS:
        raise ValueError(f"{column!r} is not one of the timestamp columns analytics reads: {sorted(_TIMESTAMP_COLUMNS)}.")
    return column


def _bind_value(dialect: str, value: Any) -> Any:
    """A parameter as the database compares it with stored timestamps.

    * ``datetime`` (timezone-aware): SQLite gets SQLAlchemy's stored text,
      ``'YYYY-MM-DD HH:MM:SS.ffffff'`` in UTC (compared as text); PostgreSQL the instant.
    * ``date``: the first moment of that UTC day; SQLite gets ``'YYYY-MM-DD'``, which
      sorts before every stored time of that day.
    * ``bool`` on SQLite: 0 or 1. Anything else as given.
    """
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidInput("Timestamps must carry a time zone (UTC).")
        utc = value.astimezone(UTC)
        return utc.strftime("%Y-%m-%d %H:%M:%S.%f") if dialect == "sqlite" else utc
    if isinstance(value, date):
        return value.isoformat() if dialect == "sqlite" else datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, bool) and dialect == "sqlite":
        return int(value)
    return value


def epoch_sql(dialect: str, column: str) -> str:
    """Integer UTC epoch seconds of a timestamp column (one of :data:`_TIMESTAMP_COLUMNS`)."""
    column = _timestamp_column(column)
    if dialect == "sqlite":
        if sqlite3.sqlite_version_info >= (3, 38, 0):
            return f"unixepoch({column})"
        return f"CAST(strftime('%s', {column}) AS INTEGER)"
    return f"CAST(FLOOR(EXTRACT(EPOCH FROM {column})) AS BIGINT)"


def range_conditions(column: str, start: date | None, end: date | None) -> tuple[list[str], dict[str, date]]:
    """Conditions ``start <= column < end`` on UTC days, bound as ``:start`` and ``:end``."""
    column = _timestamp_column(column)
    conditions, params = [], {}
    if start is not None:
        conditions.append(f"{column} >= :start")
        params["start"] = start
    if end is not None:
        conditions.append(f"{column} < :end")
        params["end"] = end
    return conditions, params


def where_clause(conditions: Sequence[str]) -> str:
    """``WHERE`` and the conditions; each is written in code, values only as ``:name`` parameters."""
    return ("WHERE " + " AND ".join(conditions)) if conditions else ""


def _select_list(columns: Sequence[tuple[str, str]]) -> str:
    """``expression AS name, ...`` from ``(expression, name)`` pairs written in code."""
    for _, name in columns:
        if not name.isidentifier():
            raise ValueError(f"{name!r} is not a column name.")
    return ", ".join(f"{expression} AS {name}" for expression, name in columns)


def _positional(sql: str, params: dict[str, Any], statements: Any) -> tuple[str, list[Any]]:
    """``sql`` with ``:name`` parameters as the positional statement of ``statements``' paramstyle, and its values."""
    compiled = text(sql).compile(dialect=statements)
    values = compiled.construct_params(params)
    return compiled.string, [values[name] for name in compiled.positiontup or ()]


# --- reading ------------------------------------------------------------------------------


def _sqlite_file(session: Session) -> str | None:
    """The database file the ADBC reader process can read, if there is one and the driver is installed."""
    database = session.get_bind().engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    if importlib.util.find_spec("adbc_driver_sqlite") is None:
        return None
    return os.path.abspath(database)


def _adbc_postgresql(session: Session, sql: str, params: dict[str, Any]) -> pa.Table | None:
    try:
        import adbc_driver_postgresql.dbapi as adbc
    except ImportError:
        return None
    statement, values = _positional(sql, params, _ADBC_POSTGRESQL_STATEMENTS)
    url = session.get_bind().engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with adbc.connect(url) as connection, connection.cursor() as cursor:
        cursor.execute(statement, values or None)
        return cursor.fetch_arrow_table()


def _dbapi_sqlite(session: Session, sql: str, params: dict[str, Any], schema: dict[str, Any]) -> pl.DataFrame:
    statement, values = _positional(sql, params, _SQLITE_STATEMENTS)
    raw = session.connection().connection.driver_connection
    assert raw is not None  # a checked-out connection always has its driver connection
    cursor = raw.cursor()
    try:
        cursor.execute(statement, values)
        chunks = []
        while rows := cursor.fetchmany(DBAPI_CHUNK_ROWS):
            chunks.append(pl.DataFrame(rows, schema=schema, orient="row"))
    finally:
        cursor.close()
    return pl.concat(chunks) if chunks else pl.DataFrame(schema=schema)


def _copy_postgresql(session: Session, sql: str, params: dict[str, Any], schema: dict[str, Any]) -> pl.DataFrame:
    # psycopg binds COPY's parameters on the client (the server takes none in COPY); the
    # session's dialect writes them as `%(name)s` and doubles any literal `%`.
    compiled = text(sql).compile(dialect=session.get_bind().dialect)
    raw = session.connection().connection.driver_connection
    assert raw is not None  # a checked-out connection always has its driver connection
    buffer = io.BytesIO()
    copy_sql = "COPY (" + compiled.string + ") TO STDOUT WITH (FORMAT csv)"
    with raw.cursor() as cursor, cursor.copy(copy_sql, compiled.construct_params(params)) as copy:
        for block in copy:
            buffer.write(block)
    if buffer.tell() == 0:
        return pl.DataFrame(schema=schema)
    buffer.seek(0)
    return pl.read_csv(buffer, has_header=False, new_columns=list(schema), schema=schema)


def fetch_frame(
    session: Session,
    sql: str,
    schema: dict[str, Any],
    *,
    params: Mapping[str, Any] | None = None,
    reader: Reader = "auto",
    parts: Sequence[Mapping[str, Any]] | None = None,
) -> pl.DataFrame:
    """Run a read-only ``sql`` and return its rows as a Polars frame of ``schema``.

    Parameters
    ----------
    session
        Any session on the database; its connection URL is reused.
    sql
        One ``SELECT`` in the session's dialect, with columns in ``schema``'s order and
        every value as a ``:name`` parameter (never formatted into the text).
    schema
        Column name -> Polars type of the result.
    params
        ``name -> value`` for the ``:name`` parameters, bound by each reader (the SQLite
        reader process, ADBC PostgreSQL, ``sqlite3``, psycopg's ``COPY``). Timezone-aware
        datetimes and dates compare with stored timestamps (a date is the first moment of
        that UTC day); ``None`` is NULL.
    reader
        ``"adbc"`` (Arrow straight from the driver), ``"dbapi"`` (the session's own
        connection: ``sqlite3`` chunks or PostgreSQL ``COPY``), or ``"auto"``: ADBC when
        its driver is installed and the database is a file or a server.
    parts
        More parameters, one mapping per part (see :func:`id_parts`): the query runs once
        per part, the rows stacked in order; at the same time in SQLite's reader
        processes, one after the other otherwise.
    """
    if parts is not None:
        return _fetch_parts(session, sql, schema, params or {}, reader, parts)
    if reader not in ("auto", "adbc", "dbapi"):
        raise InvalidInput(f"reader must be 'auto', 'adbc' or 'dbapi', not {reader!r}.")
    dialect = dialect_of(session)
    values = {name: _bind_value(dialect, value) for name, value in (params or {}).items()}
    if reader != "dbapi":
        table: pa.Table | None = None
        if dialect == "sqlite":
            path = _sqlite_file(session)
            if path is not None:
                table = read_sqlite(path, *_positional(sql, values, _SQLITE_STATEMENTS))
        else:
            table = _adbc_postgresql(session, sql, values)
        if table is not None:
            return _arrow_frame(table, schema)
        if reader == "adbc":
            raise InvalidInput(
                f"The ADBC reader needs `pip install adbc-driver-{dialect}` and a database file or server "
                "(not an in-memory SQLite database); use reader='dbapi' otherwise."
            )
    if dialect == "sqlite":
        return _dbapi_sqlite(session, sql, values, schema)
    return _copy_postgresql(session, sql, values, schema)


def _arrow_frame(table: pa.Table, schema: dict[str, Any], *, rechunk: bool = True) -> pl.DataFrame:
    frame = pl.from_arrow(table, rechunk=False)
    assert isinstance(frame, pl.DataFrame)
    frame.columns = list(schema)
    if not frame.height:
        return pl.DataFrame(schema=schema)
    frame = frame.cast(schema)  # type: ignore[arg-type]  # polars types the keys as names or selectors
    # ADBC hands over thousands of small batches; one contiguous block per
    # column makes every later pass (and to_numpy) cheaper.
    return frame.rechunk() if rechunk else frame


def _reader_file(session: Session, reader: Reader) -> str | None:
    """The SQLite file the reader processes read for ``reader``, or None when the rows come another way."""
    if reader == "dbapi" or dialect_of(session) != "sqlite":
        return None
    return _sqlite_file(session)


def _fetch_parts(
    session: Session, sql: str, schema: dict[str, Any], params: Mapping[str, Any], reader: Reader, parts: Sequence[Mapping[str, Any]]
) -> pl.DataFrame:
    path = _reader_file(session, reader)
    if path is None or len(parts) < 2:
        frames = [fetch_frame(session, sql, schema, params={**params, **part}, reader=reader) for part in parts]
        return pl.concat(frames) if len(frames) > 1 else frames[0]
    dialect = dialect_of(session)
    queries = []
    for part in parts:
        values = {name: _bind_value(dialect, value) for name, value in {**params, **part}.items()}
        queries.append(_positional(sql, values, _SQLITE_STATEMENTS))
    # Each part's types are the driver's guess from its own rows (a REAL column of whole
    # numbers can come back as integers): each is cast to the schema before they are stacked.
    return pl.concat([_arrow_frame(table, schema, rechunk=False) for table in read_sqlite_parts(path, queries)], rechunk=True)


# The first and last id of the tables read in parts. Two subqueries: SQLite reads a lone
# MIN or MAX off the end of the index, but both in one SELECT scan the table (0.9 s for
# ten million purchases).
_ID_BOUNDS = {
    "purchase": "SELECT (SELECT MIN(id) FROM purchase), (SELECT MAX(id) FROM purchase)",
    "ledger_entry": "SELECT (SELECT MIN(id) FROM ledger_entry), (SELECT MAX(id) FROM ledger_entry)",
}
# The first purchase on or after a day, by the occurred_at index (one seek).
_FIRST_PURCHASE_SINCE = text("SELECT id FROM purchase WHERE occurred_at >= :since ORDER BY occurred_at LIMIT 1")
# Below this share of the table, a read from a day on goes through the occurred_at index in one
# query; above it, in parts. Measured at 10M purchases on two cores (load_purchases, twice each):
# 13 months, 78 % of the rows, 2.8-3.4 s by the index and 2.2-2.4 s in parts; 4 months, 29 %,
# 1.1-1.6 s by the index and 1.4-1.9 s in parts.
INDEX_SHARE = 0.4
# The condition a query read in parts adds, bound to each part's range from id_parts.
PART_CONDITION = "id >= :part_from AND id < :part_to"
# Above any id: the last part reads to the end of the table.
_NO_LAST_ID = 2**62
# Below this many rows a table is read by one query: a part's own start costs more than it saves.
SPLIT_MIN_ROWS = 400_000


def id_parts(session: Session, table: str, reader: Reader, *, since: date | None = None) -> list[dict[str, int]] | None:
    """Ranges of ``table``'s ids, ``{"part_from", "part_to"}`` (:data:`PART_CONDITION`),
    for reading a large table in :data:`~loyalty.analytics.reader.READ_PARTS` parts at once
    (SQLite's reader processes); None when it is read whole.

    The ids are the rowid: the range is a seek, not a scan. The ranges are cut by id, not
    by count: where rows were deleted, the parts are only less even.

    Each part is a query of its own, reading the last commit when it starts: a commit that
    lands between two parts' starts is seen by the later ones only. A job that holds the
    write lock (``write_transaction``) reads one state; other readers get what a read at
    slightly different moments gives, as two queries one after the other always did.
    """
    if READ_PARTS < 2 or table not in _ID_BOUNDS or _reader_file(session, reader) is None:
        return None
    low, high = session.execute(text(_ID_BOUNDS[table])).one()
    if low is None or high - low + 1 < SPLIT_MIN_ROWS:
        return None
    if since is not None and table == "purchase":
        # A read from a day on: the index on occurred_at serves a short range better than a scan of
        # every part (SQLite takes the id range when both are offered). Ids grow with time, mostly:
        # the first purchase of that day tells roughly what share of the table the read covers.
        first = session.execute(_FIRST_PURCHASE_SINCE, {"since": _bind_value(dialect_of(session), since)}).scalar()
        if first is None or (high - first) < INDEX_SHARE * (high - low + 1):
            return None
    edges = [low + (high + 1 - low) * i // READ_PARTS for i in range(READ_PARTS + 1)]
    edges[-1] = _NO_LAST_ID  # the last part open-ended: rows committed since the bounds were read are not lost
    return [{"part_from": edges[i], "part_to": edges[i + 1]} for i in range(READ_PARTS)]


def _with_times(frame: pl.DataFrame, column: str, *, keep_at: str | None, day: str | None) -> pl.DataFrame:
    """Turn an epoch-seconds column into a UTC timestamp and/or a UTC date column."""
    seconds = pl.col(column)
    derived = []
    if day:
        derived.append((seconds // SECONDS_PER_DAY).cast(pl.Int32).cast(pl.Date).alias(day))
    if keep_at:
        derived.append(pl.from_epoch(seconds, time_unit="s").dt.replace_time_zone("UTC").cast(pl.Datetime("us", "UTC")).alias(keep_at))
    return frame.with_columns(derived).drop(column)


# What a shared_reads() block has read: (what, database, arguments) -> the frame.
_shared_frames: ContextVar[dict[tuple[Any, ...], pl.DataFrame] | None] = ContextVar("loyalty_shared_frames", default=None)


@contextmanager
def shared_reads() -> Iterator[None]:
    """Within the block, :func:`load_purchases` and :func:`load_members` read each table once
    per set of arguments and hand the same frame to every later call.

    For a job that computes many views of one moment (the nightly page views: eight reads
    of the same ten million purchases otherwise). The caller promises that the tables do
    not change meanwhile, or that a view of the first read is what it wants. Polars
    frames are not changed in place by their operations, so sharing one is safe.
    """
    token = _shared_frames.set({})
    try:
        yield
    finally:
        _shared_frames.reset(token)


def _shared_read(key: tuple[Any, ...], read: Callable[[], pl.DataFrame]) -> pl.DataFrame:
    frames = _shared_frames.get()
    if frames is None:
        return read()
    if key not in frames:
        frames[key] = read()
    return frames[key]


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
    key = ("purchases", session.get_bind().engine.url, tuple(columns), start, end, include_refunded, reader)
    return _shared_read(key, lambda: _read_purchases(session, start, end, columns, include_refunded, reader))


def _read_purchases(
    session: Session, start: date | None, end: date | None, columns: Sequence[str], include_refunded: bool, reader: Reader
) -> pl.DataFrame:
    dialect = dialect_of(session)
    select: list[tuple[str, str]] = []
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
            select.append((expression, name))
            schema[name] = dtype
    if wants_time:
        select.append((epoch_sql(dialect, "occurred_at"), "occurred_seconds"))
        schema["occurred_seconds"] = pl.Int64
    if not select:
        raise InvalidInput("Ask load_purchases for at least one column.")
    conditions, params = range_conditions("occurred_at", start, end)
    if not include_refunded:
        conditions.append("refunded_at IS NULL")
    parts = id_parts(session, "purchase", reader, since=start)
    if parts:
        conditions.append(PART_CONDITION)
    sql = f"SELECT {_select_list(select)} FROM purchase {where_clause(conditions)}"
    frame = fetch_frame(session, sql, schema, params=params, reader=reader, parts=parts)
    if wants_time:
        frame = _with_times(
            frame,
            "occurred_seconds",
            keep_at="occurred_at" if "occurred_at" in columns else None,
            day="occurred_on" if "occurred_on" in columns else None,
        )
    return frame.select(list(columns))


def load_members(session: Session, *, columns: Sequence[str] = DEFAULT_MEMBER_COLUMNS, reader: Reader = "auto") -> pl.DataFrame:
    """Members as a Polars frame, one row each (erased members included: their history counts).

    ``tier`` is the member's current tier name (``"(none)"`` without one), ``tier_rank``
    its rank (0 without one), ``joined_on`` the UTC day of ``joined_at``.
    """
    unknown = set(columns) - set(MEMBER_COLUMNS)
    if unknown:
        raise InvalidInput(f"Unknown member column(s) {sorted(unknown)}; choose from {list(MEMBER_COLUMNS)}.")
    key = ("members", session.get_bind().engine.url, tuple(columns), reader)
    return _shared_read(key, lambda: _read_members(session, columns, reader))


def _read_members(session: Session, columns: Sequence[str], reader: Reader) -> pl.DataFrame:
    dialect = dialect_of(session)
    sources: dict[str, tuple[str, Any]] = {
        "member_id": ("m.id", pl.Int64),
        "external_id": ("m.external_id", pl.String),
        "joined_on": (epoch_sql(dialect, "m.joined_at"), pl.Int64),
        "acquisition_channel": ("COALESCE(m.acquisition_channel, '')", pl.String),
        "tier": (f"COALESCE(t.name, '{NO_TIER}')", pl.String),
        "tier_rank": ("COALESCE(t.rank, 0)", pl.Int64),
        "city": ("COALESCE(m.city, '')", pl.String),
        "marketing_consent": ("CASE WHEN m.marketing_consent THEN 1 ELSE 0 END", pl.Int8),
        "erased": ("CASE WHEN m.erased_at IS NULL THEN 0 ELSE 1 END", pl.Int8),
    }
    select = [(sources[name][0], name) for name in columns]
    schema = {name: sources[name][1] for name in columns}
    sql = f"SELECT {_select_list(select)} FROM member m"
    if {"tier", "tier_rank"} & set(columns):
        sql += " LEFT JOIN tier t ON t.id = m.tier_id"
    frame = fetch_frame(session, sql, schema, reader=reader)
    conversions = []
    if "joined_on" in columns:
        conversions.append((pl.col("joined_on") // SECONDS_PER_DAY).cast(pl.Int32).cast(pl.Date))
    conversions += [pl.col(c).cast(pl.Boolean) for c in ("marketing_consent", "erased") if c in columns]
    return frame.with_columns(conversions) if conversions else frame


def load_feedback(session: Session, *, start: date | None = None, end: date | None = None, reader: Reader = "auto") -> pl.DataFrame:
    """NPS answers with ``start <= submitted_at < end``: ``member_id, submitted_at, score``."""
    start, end = _check_day(start, "start"), _check_day(end, "end")
    dialect = dialect_of(session)
    conditions, params = range_conditions("submitted_at", start, end)
    sql = f"SELECT member_id, {epoch_sql(dialect, 'submitted_at')} AS submitted_seconds, score FROM feedback {where_clause(conditions)}"
    frame = fetch_frame(session, sql, {"member_id": pl.Int64, "submitted_seconds": pl.Int64, "score": pl.Int64}, params=params, reader=reader)
    return _with_times(frame, "submitted_seconds", keep_at="submitted_at", day=None).select("member_id", "submitted_at", "score")


def load_referrals(session: Session, *, point_value: float, reader: Reader = "auto") -> pl.DataFrame:
    """Referrals by referee: ``member_id, referred_on, rewarded_on`` (UTC days; null when not paid
    or taken back) and ``bonus_value`` (both bonuses x ``point_value``; 0 when not paid)."""
    dialect = dialect_of(session)
    sql = (
        f"SELECT r.referee_id AS member_id, {epoch_sql(dialect, 'r.referred_at')} AS referred_on, "
        f"CASE WHEN r.status = 'rewarded' THEN {epoch_sql(dialect, 'r.rewarded_at')} END AS rewarded_on, "
        "CASE WHEN r.status = 'rewarded' THEN r.referrer_points + r.referee_points ELSE 0 END AS bonus_points FROM referral r"
    )
    schema = {"member_id": pl.Int64, "referred_on": pl.Int64, "rewarded_on": pl.Int64, "bonus_points": pl.Int64}
    frame = fetch_frame(session, sql, schema, reader=reader)
    day = SECONDS_PER_DAY
    return frame.select(
        "member_id",
        (pl.col("referred_on") // day).cast(pl.Int32).cast(pl.Date),
        (pl.col("rewarded_on") // day).cast(pl.Int32).cast(pl.Date),
        bonus_value=pl.col("bonus_points").cast(pl.Float64) * point_value,
    )


LEDGER_TOTAL_COLUMNS = ("earned", "redeemed", "returned", "expired", "trailing_redeemed", "trailing_returned", "trailing_expired", "balance")
OUTFLOW_KINDS = ("redeem", "expire", "reverse")


# The parameters :kind_earn, :kind_bonus, ... of the statements below.
_KIND_PARAMS = {f"kind_{kind}": kind for kind in (*EARN_KINDS, *OUTFLOW_KINDS)}


def ledger_totals(
    session: Session, start: date, end: date, *, trailing_start: date | None = None, by_member: bool = False, reader: Reader = "auto"
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
    dialect_of(session)
    params = {**_KIND_PARAMS, "start": start, "end": end, "trailing_start": trailing_start, "since": min(start, trailing_start)}
    earn_where = "WHERE kind IN (:kind_earn, :kind_bonus) AND occurred_at >= :start AND occurred_at < :end"
    outflows = fetch_frame(
        session,
        "SELECT member_id, kind, points, CASE WHEN redemption_id IS NOT NULL THEN 1 ELSE 0 END AS is_return, "
        "CASE WHEN occurred_at >= :start THEN 1 ELSE 0 END AS in_period, "
        "CASE WHEN occurred_at >= :trailing_start THEN 1 ELSE 0 END AS in_trailing "
        "FROM ledger_entry WHERE kind IN (:kind_redeem, :kind_expire, :kind_reverse) AND occurred_at >= :since AND occurred_at < :end",
        {"member_id": pl.Int64, "kind": pl.String, "points": pl.Int64, "is_return": pl.Int8, "in_period": pl.Int8, "in_trailing": pl.Int8},
        params=params,
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
        earned = fetch_frame(
            session, "SELECT COALESCE(SUM(points), 0) FROM ledger_entry " + earn_where, {"earned": pl.Int64}, params=params, reader=reader
        )
        balance = fetch_frame(
            session, "SELECT COALESCE(SUM(points), 0) FROM ledger_entry WHERE occurred_at < :end", {"balance": pl.Int64}, params=params, reader=reader
        )
        return (
            pl.concat([earned, outflows.select(outflow_sums), balance], how="horizontal")
            .fill_null(0)
            .cast(schema)  # type: ignore[arg-type]  # polars types the keys as names or selectors
            .select(list(LEDGER_TOTAL_COLUMNS))
        )
    earned = fetch_frame(
        session, "SELECT member_id, points FROM ledger_entry " + earn_where, {"member_id": pl.Int64, "points": pl.Int64}, params=params, reader=reader
    )
    entries = fetch_frame(
        session,
        "SELECT member_id, points FROM ledger_entry WHERE occurred_at < :end",
        {"member_id": pl.Int64, "points": pl.Int64},
        params=params,
        reader=reader,
    )
    return (
        entries.group_by("member_id")
        .agg(balance=pl.col("points").sum())
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
    cutoff: read so the Overview's monthly flow can show them; balances, like the
    catalogue's points outstanding, stop before ``end``.
    """
    end = _check_day(end, "end")
    dialect = dialect_of(session)
    last_second = int(datetime(end.year, end.month, end.day, tzinfo=UTC).timestamp())
    # SQLite compares text ('day 00:00:00' > 'day'), so read to the next day and cut exactly in memory.
    end = end + timedelta(days=1)
    parts = id_parts(session, "ledger_entry", reader)
    return (
        fetch_frame(
            session,
            "SELECT member_id, kind, points, CASE WHEN redemption_id IS NOT NULL THEN 1 ELSE 0 END AS is_return, "
            f"{epoch_sql(dialect, 'occurred_at')} AS occurred_seconds FROM ledger_entry WHERE occurred_at < :end"
            + (" AND " + PART_CONDITION if parts else ""),
            {"member_id": pl.Int64, "kind": pl.String, "points": pl.Int64, "is_return": pl.Int8, "occurred_seconds": pl.Int64},
            params={"end": end},
            reader=reader,
            parts=parts,
        )
        .filter(pl.col("occurred_seconds") <= last_second)
        .with_columns(pl.col("kind").cast(pl.Categorical))
    )


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
