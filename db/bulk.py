"""Bulk writes for imports and the demo: columnar frames in, rows in the table out.

The ORM inserts one object at a time (75 s for 1M rows on these machines); this goes
through the driver directly: ``executemany`` with tuples on SQLite, ``COPY`` on
PostgreSQL. Callers hold the transaction; nothing here commits.
"""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
from sqlalchemy import text
from sqlmodel import Session, SQLModel

CHUNK_ROWS = 100_000


def allocate_ids(session: Session, table: str, count: int) -> np.ndarray:
    """Reserve ``count`` primary keys of ``table`` for rows the caller inserts next."""
    if count == 0:
        return np.empty(0, dtype=np.int64)
    if session.get_bind().dialect.name == "sqlite":
        # The caller holds SQLite's write lock (BEGIN IMMEDIATE), so MAX(id) is stable.
        start = session.execute(text(f"SELECT COALESCE(MAX(id), 0) FROM {table_name(table)}")).scalar_one()
        return np.arange(start + 1, start + 1 + count, dtype=np.int64)
    ids = (
        session.execute(
            text("SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)"), {"table": table_name(table), "n": count}
        )
        .scalars()
        .all()
    )
    return np.asarray(ids, dtype=np.int64)


def _arrow_column(series: pd.Series) -> pa.Array:
    """A column for COPY (PostgreSQL) or for binding (SQLite: never called with datetimes)."""
    if _is_datetime(series):
        values = series.dt.tz_convert("UTC") if isinstance(series.dtype, pd.DatetimeTZDtype) else series.dt.tz_localize("UTC")
        array = pa.array(values.dt.tz_localize(None).astype("datetime64[us]"), type=pa.timestamp("us"))
        # Written with a "Z": COPY reads a time without an offset in the session's
        # TimeZone (PGTZ, ALTER DATABASE ... SET timezone), which need not be UTC.
        return array.cast(pa.timestamp("us", tz="UTC"))
    if series.dtype == object and len(series) and isinstance(series.dropna().iloc[0] if series.notna().any() else None, (dict, list)):
        return pa.array([None if v is None else json.dumps(v) for v in series], type=pa.string())
    return pa.array(series, from_pandas=True)


# Temporary work tables some use cases create before a bulk insert (kpis.py: tier_change).
WORK_TABLES = frozenset({"tier_change"})


def table_name(table: str) -> str:
    """``table`` itself if it is a table of the schema (:mod:`db.models`) or a :data:`WORK_TABLES`
    name, else ValueError.

    Table names are the only names formatted into SQL text here; values are bound.
    """
    import db.models  # noqa: F401 - the tables register themselves in SQLModel.metadata

    if table not in SQLModel.metadata.tables and table not in WORK_TABLES:
        raise ValueError(f"{table!r} is not a table of the schema.")
    return table


def _column_list(table: str, columns: list[str]) -> str:
    schema_table = SQLModel.metadata.tables.get(table_name(table))
    unknown = [c for c in columns if not c.isidentifier() or (schema_table is not None and c not in schema_table.columns)]
    if unknown:
        raise ValueError(f"{table} has no column(s) {unknown}.")
    # Quoted: some column names are SQL keywords ("group").
    return ",".join(f'"{c}"' for c in columns)


def _placeholders(expressions: list[str]) -> str:
    # Each is a numbered parameter (?N) or _sqlite_datetime_sql(N): no value is spliced in.
    return ",".join(expressions)


def _is_datetime(series: pd.Series) -> bool:
    return isinstance(series.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(series)


def _datetime_us(series: pd.Series) -> pa.Array:
    """UTC microseconds since the epoch as int64 (null for NaT)."""
    values = series.dt.tz_convert("UTC") if isinstance(series.dtype, pd.DatetimeTZDtype) else series.dt.tz_localize("UTC")
    us = values.dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
    return pa.array(us.astype("int64"), mask=np.isnat(us), type=pa.int64())


def _sqlite_datetime_sql(i: int) -> str:
    # SQLAlchemy's SQLite DATETIME text, 'YYYY-MM-DD HH:MM:SS.ffffff', built by SQLite
    # from integer microseconds: binding integers and formatting in SQL costs less than
    # binding strings formatted in Python, even by Polars (measured here). Floor
    # division keeps pre-1970 instants right.
    micro = f"((?{i} % 1000000 + 1000000) % 1000000)"
    return f"strftime('%Y-%m-%d %H:%M:%S', (?{i} - {micro}) / 1000000, 'unixepoch') || printf('.%06d', {micro})"


# What _constant_value returns for a column whose values differ.
_VARIES = object()


def _constant_value(series: pd.Series) -> Any:
    """The value of a column holding one value in every row (an import's own time,
    actor, kind...), so it is converted once and bound from a repeat instead of per row;
    :data:`_VARIES` when the values differ or the column is not worth checking."""
    if len(series) < 1_000:
        return _VARIES
    missing = series.isna()
    if missing.all():
        return None
    if missing.any():
        return _VARIES
    if _is_datetime(series):
        us = _datetime_us(series).to_numpy()
        # SQLAlchemy's SQLite text for the one instant (as _sqlite_datetime_sql builds per row).
        text_value = pd.Timestamp(int(us[0]), unit="us").strftime("%Y-%m-%d %H:%M:%S.%f")
        return text_value if (us == us[0]).all() else _VARIES
    first = series.iloc[0]
    if isinstance(first, (bool, np.bool_, int, np.integer)):
        value: Any = int(first)
    elif isinstance(first, (float, np.floating)) and np.isfinite(first):
        value = float(first)
    elif isinstance(first, str):
        value = first
    else:
        return _VARIES
    return value if bool((series == first).all()) else _VARIES


def insert_frame(session: Session, table: str, frame: pd.DataFrame) -> int:
    """Insert every row of ``frame`` (columns named as the table's) into ``table``."""
    if frame.empty:
        return 0
    sqlite = session.get_bind().dialect.name == "sqlite"
    columns = list(frame.columns)
    raw = session.connection().connection.driver_connection
    assert raw is not None  # a checked-out connection always has its driver connection
    for start in range(0, len(frame), CHUNK_ROWS):
        chunk = frame.iloc[start : start + CHUNK_ROWS]
        if sqlite:
            bound, values_sql = [], []
            for column in columns:
                constant = _constant_value(chunk[column])
                if constant is not _VARIES:
                    bound.append(itertools.repeat(constant, len(chunk)))
                    values_sql.append(f"?{len(bound)}")
                elif _is_datetime(chunk[column]):
                    bound.append(_datetime_us(chunk[column]).to_pylist())
                    values_sql.append(_sqlite_datetime_sql(len(bound)))
                else:
                    bound.append(_arrow_column(chunk[column]).to_pylist())
                    values_sql.append(f"?{len(bound)}")
            sql = f"INSERT INTO {table_name(table)} ({_column_list(table, columns)}) VALUES ({_placeholders(values_sql)})"
            if bound:
                raw.executemany(sql, zip(*bound))
            else:
                raw.executemany(sql, ((),) * len(chunk))
        else:
            arrays = [_arrow_column(chunk[c]) for c in columns]
            _copy_postgres(raw, table, columns, pa.table(arrays, names=columns))
    return len(frame)


def _copy_postgres(raw, table: str, columns: list[str], batch: pa.Table) -> None:
    # Arrow writes a null as an empty unquoted field and an empty string as "", which
    # is exactly how COPY's CSV format tells NULL from ''.
    buffer = io.BytesIO()
    pacsv.write_csv(batch, buffer, write_options=pacsv.WriteOptions(include_header=False, quoting_style="needed"))
    with raw.cursor() as cursor, cursor.copy(f"COPY {table_name(table)} ({_column_list(table, columns)}) FROM STDIN WITH (FORMAT csv)") as copy:
        copy.write(buffer.getvalue())


@contextmanager
def sqlite_page_cache(session: Session, kib: int) -> Iterator[None]:
    """On SQLite, a ``kib`` page cache on the connection the transaction holds, put back afterwards.

    The default 2 MB cache thrashes once the purchase and ledger indexes hold millions of
    rows; other use cases on the pooled connection keep the default. No-op elsewhere.
    """
    if session.get_bind().dialect.name != "sqlite":
        yield
        return
    driver = session.connection().connection.driver_connection
    assert driver is not None  # a checked-out connection always has its driver connection
    previous = driver.execute("PRAGMA cache_size").fetchone()[0]
    driver.execute(f"PRAGMA cache_size=-{int(kib)}")
    try:
        yield
    finally:
        driver.execute(f"PRAGMA cache_size={int(previous)}")


def id_batches(ids: np.ndarray, size: int = 10_000) -> list[list[int]]:
    """Ids in lists short enough for one SQL IN (SQLite binds 32,766 values, PostgreSQL 65,535)."""
    values = [int(i) for i in ids]
    return [values[start : start + size] for start in range(0, len(values), size)]
