"""Imports: members, purchases and NPS answers arriving as CSV exports.

One function, :func:`import_csv`, serves the command line (``python -m loyalty import``)
and the app's Import page; :func:`preview_csv` shows a file before anything is written.

Rules every import follows
--------------------------
* **Canonical columns** (``REQUIRED_COLUMNS`` and ``OPTIONAL_COLUMNS``); a ``mapping``
  renames the file's own column names to them. ``member_id`` in a file is the company's
  member id (``Member.external_id``), never our internal key.
* **All or nothing.** If any row is invalid the import is refused with
  :class:`ImportRefused`, listing each problem with its line, column and reason (all are
  counted; the first ``MAX_PROBLEMS_KEPT`` are kept), and nothing is written. With
  ``skip_invalid`` the valid rows are imported and the rejected ones are written, with
  their reasons, beside the input.
* **Streamed.** The file is read, checked and written a chunk at a time
  (``IMPORT_CHUNK_BYTES`` of text) inside the one transaction, so memory does not grow
  with the file; once a problem refuses the file, the rest is only checked. What a chunk
  needs of the earlier ones (each row's key and content as hashes, and its line: 16 bytes
  a row) is kept in :class:`_Carry`. One difference with a file read in one piece: a key repeated with
  other content in a *later* chunk is a problem of that later row only (with
  ``skip_invalid`` the first one is imported).
* **Idempotent.** Importing the same file twice changes nothing. Purchases are keyed by
  ``purchase_id`` or, without one, by a hash of their content plus the occurrence of
  identical rows in the file (``h:<hex>:<n>``); members by their id; NPS answers by
  ``(member_id, submitted_at)``. A key already present with the same content is
  skipped; with different content it is a problem (members: an update).
* **One transaction**, through :func:`db.engine.write_transaction`; purchases enter
  through :func:`loyalty.ledger.purchases.add_purchases`, which earns their points.
* **Vectorised.** Parsing and checks run column by column in pandas and the database
  is asked once per chunk of keys; on the happy path no Python loop runs per row (only
  rows with problems, and members being updated, are handled one by one).

Timestamps are ISO 8601; a timestamp without an offset is UTC. Everything is stored as
timezone-aware UTC.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
from sqlalchemy import bindparam, func, select, text, update
from sqlmodel import Session

from db.bulk import allocate_ids, id_batches, insert_frame, sqlite_page_cache, table_name
from db.engine import write_transaction
from db.models import Member, Purchase, table_of, utcnow
from loyalty.access.audit import record_audit
from loyalty.access.roles import Actor, require
from loyalty.bounds import Bounds, birth_date_problems
from loyalty.errors import InvalidInput
from loyalty.formatting import csv_text
from loyalty.ledger.csv_files import SEPARATORS, UnreadableFile, read_csv_chunks, read_header
from loyalty.ledger.purchases import PURCHASE_COLUMNS, add_purchases
from loyalty.settings import get_settings

__all__ = [
    "IMPORT_KINDS",
    "MAX_PROBLEMS_SHOWN",
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "SEPARATORS",
    "ImportKind",
    "ImportRefused",
    "ImportResult",
    "Problem",
    "column_mapping",
    "import_csv",
    "preview_csv",
]

ImportKind = Literal["members", "purchases", "feedback"]
IMPORT_KINDS: tuple[str, ...] = ("members", "purchases", "feedback")

REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "members": ("member_id", "name", "email", "joined_at", "acquisition_channel"),
    "purchases": ("member_id", "occurred_at", "amount", "channel", "store", "category"),
    "feedback": ("member_id", "submitted_at", "score", "comment"),
}
OPTIONAL_COLUMNS: dict[str, tuple[str, ...]] = {
    "members": ("birth_date", "city", "marketing_consent", "phone", "referred_by"),
    "purchases": ("purchase_id",),
    "feedback": (),
}

MAX_PROBLEMS_SHOWN = 50
# Problems kept in memory (all are counted): a file of a million bad rows must not hold a million messages.
MAX_PROBLEMS_KEPT = 10_000
# An import reads, checks and writes the file a chunk of about this much text at a time (about
# 130,000 purchase rows), so its memory does not grow with the file's text.
IMPORT_CHUNK_BYTES = int(os.environ.get("LOYALTY_IMPORT_CHUNK_BYTES", 8 << 20))
# The separators a CSV export may use, named as people call them. A comma comes first: it
# wins a tie. Spreadsheets set to a decimal comma (most of Europe) export with ";".
NPS_MIN, NPS_MAX = 0, 10
# Members created from a purchase file: nothing is known of how they were acquired.
UNKNOWN_CHANNEL = "unknown"
# Rows checked against the database per query, and written per progress step.
LOOKUP_CHUNK = 200_000
WRITE_CHUNK = 100_000
# A bigger SQLite page cache for the duration of an import: updating the indexes of a
# large table row by row spills the default 2 MB cache to the WAL every few hundred rows
# (measured: 1M purchases into random-order indexes, 9.6 s with the default, 5.9 s with 512 MB).
# It counts in the import's memory (peak RSS of one process importing 2.4M purchases, a 147 MB
# file, on 2026-12-06): 682 MB and 135 s with 128 MB, 822 MB and 137 s with 256 MB, 1.8 GB with 1 GB;
# 596 MB with 128 MB once the carry between chunks took 16 bytes a row in per-chunk blocks.
SQLITE_IMPORT_CACHE_KIB = 128 * 1024
# From this many new purchases, and when they outnumber those already stored, SQLite's
# secondary indexes are rebuilt after the load instead of updated row by row.
DEFER_INDEXES_MIN_ROWS = 100_000
# Fixed so a content hash (the key of a purchase without purchase_id) never changes.
_HASH_KEY = "loyaltyconsole01"
_TRUE = ("true", "t", "yes", "y", "1", "on")
_FALSE = ("false", "f", "no", "n", "0", "off", "")
_DATE_HINT = "use ISO 8601, e.g. 2025-03-01 or 2025-03-01T14:30:00Z"
_SHOWN_VALUE_CHARS = 60

ProgressFn = Callable[[int, int], None]
Source = str | Path | IO[bytes] | IO[str]


# --- results and errors -----------------------------------------------------------------


@dataclass
class Problem:
    """One thing wrong with a file: where (line, column as the file names it) and why.

    ``line`` counts lines of the file, the header being line 1; ``column`` is empty for
    a problem with the whole line or file.
    """

    line: int
    column: str
    reason: str

    def __str__(self) -> str:
        where = f"line {self.line}, column {self.column}" if self.column else f"line {self.line}"
        return f"{where}: {self.reason}"


class ImportRefused(InvalidInput):
    """The file has invalid rows and ``skip_invalid`` was not given: nothing was written."""

    def __init__(self, problems: list[Problem], rejected: int, file: str = "the file", *, count: int | None = None) -> None:
        self.problems = problems  # the first MAX_PROBLEMS_KEPT of them
        self.rejected = rejected
        self.file = file
        self.count = count = len(problems) if count is None else count
        if rejected == 0:  # the file as a whole: no row can be imported, skipping bad rows does not help
            message = f"Nothing was imported: {file} cannot be imported as it is ({count:,} problem{'s' if count != 1 else ''})."
        else:
            message = (
                f"Nothing was imported: {file} has {count:,} problem{'s' if count != 1 else ''}"
                f" in {rejected:,} row{'s' if rejected != 1 else ''}. Fix them, or import the valid rows"
                " and set the rest aside (--skip-invalid)."
            )
        super().__init__(message)

    def report(self, limit: int = MAX_PROBLEMS_SHOWN) -> str:
        """The message, then the first ``limit`` problems one per line, then how many more."""
        lines = [str(self)] + [str(p) for p in self.problems[:limit]]
        if self.count > limit:
            more = self.count - limit
            lines.append(f"... and {more:,} more problem{'s' if more != 1 else ''}")
        return "\n".join(lines)


@dataclass
class ImportResult:
    """What an import did. ``imported`` counts new rows and updated members."""

    imported: int
    skipped: int
    rejected: int
    problems: list[Problem]
    rejected_path: Path | None
    seconds: float
    rows_per_second: float
    # When the input was an upload (no folder to write beside), the rejected rows as CSV.
    rejected_csv: bytes | None = None
    members_created: int = 0
    kind: str = ""
    file: str = ""


class _FileRefused(Exception):
    """A problem with the whole file (unreadable, missing column): no row can be imported."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(problems)
        self.problems = problems


# --- reading ----------------------------------------------------------------------------


@dataclass
class _Table:
    """A CSV file read as text (:class:`loyalty.ledger.csv_files.CsvTable`) and its name."""

    raw: pd.DataFrame
    lines: np.ndarray
    name: str
    separator: str = ","
    bom: bool = False  # the file starts with a UTF-8 byte-order mark (Excel's "CSV UTF-8")
    width_problems: dict[int, str] = field(default_factory=dict)  # row position -> why its values do not fit the header


def _read_bytes(source: Source) -> tuple[bytes, str, Path | None]:
    """The file's bytes, its name and its path (None for an upload)."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        return path.read_bytes(), path.name, path
    return _upload_bytes(source, limit=None), _upload_name(source), None


def _open_source(source: Source, *, limit_megabytes: int) -> tuple[Path | bytes, str, Path | None]:
    """What the reader streams from (a file's path, an upload's bytes), its name, and its path; a file above the limit is refused unread."""
    limit = limit_megabytes * 1024 * 1024
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.stat().st_size > limit:
            raise _too_large(path.name, path.stat().st_size, limit)
        return path, path.name, path
    return _upload_bytes(source, limit=limit), _upload_name(source), None


def _upload_name(upload: IO[bytes] | IO[str]) -> str:
    return Path(str(getattr(upload, "name", "") or "upload.csv")).name


def _upload_bytes(upload: IO[bytes] | IO[str], *, limit: int | None) -> bytes:
    """An upload's bytes; one above ``limit`` is refused after reading one byte past it."""
    data = upload.read() if limit is None else upload.read(limit + 1)
    if limit is not None and len(data) > limit:
        raise _too_large(_upload_name(upload), None, limit)
    return data.encode("utf-8") if isinstance(data, str) else data


def _too_large(name: str, size: int | None, limit: int) -> ImportRefused:
    shown = "larger" if size is None else f"{size / 1024 / 1024:,.0f} MB"
    reason = f"the file is {shown}; at most {limit // 1024 // 1024:,} MB can be imported (Largest import file, in the settings)"
    return ImportRefused([Problem(1, "", reason)], rejected=0, file=name)


def _nul_characters(checks: _Checks, values: pd.DataFrame) -> None:
    """A NUL character is no text (PostgreSQL cannot even store it): a sign of a binary or damaged file."""
    for column in values.columns:
        checks.add(values[column].str.contains("\x00", regex=False).to_numpy(dtype=bool), column, "holds a NUL character (a binary or damaged file?)")


def _canonical(table: _Table, kind: str, mapping: dict[str, str] | None) -> tuple[pd.DataFrame, dict[str, str], np.ndarray]:
    """The canonical columns of ``kind`` present in the file, stripped, without blank rows.

    Returns the values (canonical names), the file's name of each canonical column, and
    the positions in ``table.raw`` of the rows kept. File-level problems (a missing
    column, a mapping naming no column) raise :class:`_FileRefused`.
    """
    mapping = {str(k).strip(): str(v).strip() for k, v in (mapping or {}).items() if str(k).strip() and str(v).strip()}
    problems = [
        Problem(1, source, f"is not a column of this file (mapping {source}={target})")
        for source, target in mapping.items()
        if source not in table.raw.columns
    ]
    renamed = [mapping.get(c, c) for c in table.raw.columns]
    file_name: dict[str, str] = {}  # canonical -> the file's column
    wanted = REQUIRED_COLUMNS[kind] + OPTIONAL_COLUMNS[kind]
    for original, new in zip(table.raw.columns, renamed):
        if new in wanted:
            if new in file_name:
                problems.append(Problem(1, original, f"and column {file_name[new]} both give {new}; keep one"))
            else:
                file_name[new] = original
    has = ", ".join(map(str, table.raw.columns)) or "none"
    for column in REQUIRED_COLUMNS[kind]:
        if column not in file_name:
            problems.append(Problem(1, column, f"required column is missing (the file's columns: {has})"))
    if problems:
        raise _FileRefused(problems)
    values = pd.DataFrame({c: table.raw[file_name[c]].str.strip() for c in wanted if c in file_name})
    # A line with no value in any column we read (a blank or ",,,," line) is not a row.
    blank = np.ones(len(values), dtype=bool)
    for column in values.columns:
        blank &= values[column].eq("").to_numpy()
    keep = np.flatnonzero(~blank)
    if len(keep) != len(values):
        values = values.iloc[keep].reset_index(drop=True)
    return values, file_name, keep


# --- checks -----------------------------------------------------------------------------


class _Checks:
    """The problems found so far, recorded a column at a time (no loop over rows)."""

    def __init__(self, lines: np.ndarray, file_name: dict[str, str], bounds: Bounds) -> None:
        self.lines = lines
        self.file_name = file_name
        self.bounds = bounds
        self.bad = np.zeros(len(lines), dtype=bool)
        self.whole = np.zeros(len(lines), dtype=bool)  # rows refused as a whole: their values say nothing
        self._parts: list[pd.DataFrame] = []

    def refuse_rows(self, rows: np.ndarray, reasons: list[str]) -> None:
        """Refuse these rows as a whole (their values do not fit the header): no other problem is reported for them."""
        if len(rows):
            self.add(np.isin(np.arange(len(self.lines)), rows), "", np.asarray(reasons, dtype=object)[np.argsort(rows, kind="stable")])
            self.whole[rows] = True

    def add_reasons(self, reasons: np.ndarray, column: str, values: pd.Series) -> None:
        """Record, for each row with a reason (``""``: none), the value and its reason."""
        flagged = reasons != ""
        if flagged.any():
            self.add(flagged, column, (_quoted(values[flagged]) + " " + pd.Series(reasons[flagged], dtype="str").to_numpy()).to_numpy())

    def add(self, mask: np.ndarray | pd.Series, column: str, reason: str | pd.Series | np.ndarray) -> None:
        """Record ``reason`` for every row where ``mask`` holds.

        ``reason`` is one text for all, or one text per flagged row (in row order).
        """
        mask = np.asarray(mask, dtype=bool)
        if self.whole.any() and mask.any():
            if not isinstance(reason, str):
                reason = np.asarray(reason, dtype=object)[~self.whole[mask]]
            mask = mask & ~self.whole
        if not mask.any():
            return
        rows = np.flatnonzero(mask)
        reasons = np.full(len(rows), reason, dtype=object) if isinstance(reason, str) else np.asarray(reason, dtype=object)
        self.bad[rows] = True
        self._parts.append(pd.DataFrame({"row": rows, "order": len(self._parts), "column": self.file_name.get(column, column), "reason": reasons}))

    @property
    def ok(self) -> np.ndarray:
        return ~self.bad

    def frame(self) -> pd.DataFrame:
        """Every problem, by line: ``row, line, column, reason``."""
        if not self._parts:
            return pd.DataFrame({"row": [], "line": [], "column": [], "reason": []})
        found = pd.concat(self._parts, ignore_index=True).sort_values(["row", "order"], kind="stable")
        found["line"] = self.lines[found["row"].to_numpy()]
        return found[["row", "line", "column", "reason"]].reset_index(drop=True)

    def problems(self) -> list[Problem]:
        found = self.frame()
        return [Problem(int(line), str(column), str(reason)) for line, column, reason in zip(found["line"], found["column"], found["reason"])]


def _quoted(values: pd.Series) -> pd.Series:
    shown = values.str.slice(0, _SHOWN_VALUE_CHARS)
    return "'" + shown + "'" + np.where(values.str.len() > _SHOWN_VALUE_CHARS, "…", "")


def _text(checks: _Checks, values: pd.DataFrame, column: str, limit: int | None, *, required: bool = False) -> pd.Series:
    """A text column; too long for the database, or empty when required, is a problem."""
    if column not in values:
        return pd.Series("", index=values.index, dtype="str")
    series = values[column]
    if required:
        checks.add(series.eq(""), column, "is empty")
    if limit is not None:
        lengths = series.str.len().to_numpy()
        too_long = lengths > limit
        if too_long.any():
            checks.add(too_long, column, pd.Series(lengths[too_long]).map(lambda n: f"is {n} characters long; at most {limit} fit"))
    return series


def _moments(series: pd.Series) -> pd.Series:
    """ISO 8601 text as UTC timestamps (a value without an offset is taken as UTC); NaT where it is no date.

    Pandas refuses a whole column for one value such as year 0000 ("year 0 is out of
    range"): then each value is read on its own.
    """
    try:
        return pd.to_datetime(series, errors="coerce", utc=True, format="ISO8601").dt.as_unit("us")
    except (ValueError, OverflowError):
        return pd.Series([_moment(value) for value in series], index=series.index, dtype="datetime64[us, UTC]")


def _moment(value: str) -> pd.Timestamp:
    try:
        return pd.to_datetime(value, utc=True, format="ISO8601")
    except (ValueError, OverflowError):
        return pd.NaT


def _timestamps(checks: _Checks, values: pd.DataFrame, column: str, *, required: bool = True, in_program: bool = True) -> pd.Series:
    """When something happened: ISO 8601 and, ``in_program``, not before the program's start nor in the future (:class:`Bounds`)."""
    series = values[column]
    parsed = _moments(series)
    empty = series.eq("").to_numpy()
    if required:
        checks.add(empty, column, "is empty")
    unparsed = parsed.isna().to_numpy() & ~empty
    if unparsed.any():
        checks.add(unparsed, column, _quoted(series[unparsed]) + f" is not a date ({_DATE_HINT})")
    if in_program:
        checks.add_reasons(checks.bounds.moment_problems(parsed), column, series)
    return parsed


def _numbers(checks: _Checks, values: pd.DataFrame, column: str) -> pd.Series:
    series = values[column]
    parsed = pd.to_numeric(series, errors="coerce")
    empty = series.eq("").to_numpy()
    checks.add(empty, column, "is empty")
    # "nan" and "inf" parse as floats but are no amount or score.
    unparsed = ~np.isfinite(parsed.to_numpy(dtype="float64")) & ~empty
    if unparsed.any():
        decimal_comma = np.where(series[unparsed].str.contains(",", regex=False), " (write decimals with a point, e.g. 42.50)", "")
        checks.add(unparsed, column, _quoted(series[unparsed]) + " is not a number" + decimal_comma)
    return parsed.astype("float64")


def _column_length(model: type, column: str) -> int | None:
    return getattr(model.__table__.c[column].type, "length", None)  # type: ignore[attr-defined]  # set by SQLModel at class creation, not in its stubs


def _content_hash(frame: pd.DataFrame) -> np.ndarray:
    """A 64-bit hash of each row's values (stable across runs: fixed key)."""
    return pd.util.hash_pandas_object(frame, index=False, hash_key=_HASH_KEY).to_numpy()


def _hex(hashes: np.ndarray) -> np.ndarray:
    """16 lower-case hex digits per uint64, without a Python loop."""
    digits = np.array([f"{i:02x}" for i in range(256)], dtype="<U2")
    as_bytes = hashes.astype(">u8").view(np.uint8).reshape(-1, 8)
    return np.ascontiguousarray(digits[as_bytes]).view("<U16").ravel()


def _in_file_duplicates(checks: _Checks, key: pd.DataFrame, content: Callable[[np.ndarray], np.ndarray], column: str, what: str) -> np.ndarray:
    """Among valid rows, repeats of a key: same content -> repeat (skipped), else a problem.

    ``content(rows)`` hashes the content of the given rows; it is only called for rows
    whose key repeats. Returns the mask of rows that merely repeat an earlier row.
    """
    ok = checks.ok
    repeat = np.zeros(len(ok), dtype=bool)
    rows = np.flatnonzero(ok)
    if len(rows) == 0:
        return repeat
    keys = key.iloc[rows].reset_index(drop=True)
    dup = keys.duplicated(keep=False).to_numpy()
    if not dup.any():
        return repeat
    sub = keys[dup].copy()
    sub["_content"] = content(rows[dup])
    sub["_row"] = rows[dup]
    key_columns = list(key.columns)
    variants = sub.groupby(key_columns, sort=False)["_content"].transform("nunique").to_numpy()
    conflicting = variants > 1
    if conflicting.any():
        clash = sub[conflicting].copy()
        clash["_line"] = checks.lines[clash["_row"].to_numpy()]
        others = clash.groupby(key_columns, sort=False)["_line"].transform(lambda s: ", ".join(map(str, s)))
        mask = np.zeros(len(ok), dtype=bool)
        mask[clash["_row"].to_numpy()] = True
        shown = clash[key_columns[0]].astype(str)
        checks.add(mask, column, (f"{what} '" + shown + "' appears on lines " + others + " with different content").to_numpy())
    same = ~conflicting & sub.duplicated(key_columns, keep="first").to_numpy()
    repeat[sub["_row"].to_numpy()[same]] = True
    return repeat


# --- database look-ups ------------------------------------------------------------------


def _keys_table(session: Session, keys: Sequence[str] | Sequence[int]) -> tuple[str, dict[str, Any]]:
    """A one-column table ``(import_key)`` of ``keys`` as SQL, bound as a single parameter.

    One parameter whatever the number of keys: SQLite's ``json_each`` and PostgreSQL's
    ``unnest`` sidestep the limit on bound variables and the cost of huge ``IN`` lists.
    """
    numeric = len(keys) > 0 and isinstance(keys[0], (int, np.integer))
    if session.get_bind().dialect.name == "sqlite":
        payload = [int(k) for k in keys] if numeric else [str(k) for k in keys]
        return "(SELECT value AS import_key FROM json_each(:keys))", {"keys": json.dumps(payload)}
    if numeric:
        return "(SELECT unnest(CAST(:keys AS bigint[])) AS import_key)", {"keys": [int(k) for k in keys]}
    return "(SELECT unnest(CAST(:keys AS text[])) AS import_key)", {"keys": [str(k) for k in keys]}


def _select_by_keys(session: Session, sql: str, keys: Sequence[str] | Sequence[int], columns: list[str]) -> pd.DataFrame:
    """Run ``sql`` (``{keys}`` stands for :func:`_keys_table`) over ``keys``, in chunks.

    ``FROM {keys} k CROSS JOIN table`` makes SQLite walk the keys and probe the table's
    index for each, instead of scanning a table of millions of rows.
    """
    parts = []
    for start in range(0, len(keys), LOOKUP_CHUNK):
        table, params = _keys_table(session, keys[start : start + LOOKUP_CHUNK])
        rows = session.execute(text(sql.format(keys=table)), params).all()
        if rows:
            # Column by column: pandas would otherwise probe each Row object's attributes.
            parts.append(pd.DataFrame(dict(zip(columns, map(list, zip(*rows))))))
    if not parts:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in columns})
    return pd.concat(parts, ignore_index=True)


def _resolve_members(session: Session, member: pd.Series, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Our id (NaN when unknown) and erasure flag of each row's member, looked up for ``wanted`` rows.

    The company's ids are factorised first, so the database is asked once per member
    and the answer spread back to a million rows by array indexing.
    """
    codes, uniques = pd.factorize(member)
    needed = np.unique(codes[wanted & (codes >= 0)])
    found = _select_by_keys(
        session,
        "SELECT m.external_id, m.id, CASE WHEN m.erased_at IS NULL THEN 0 ELSE 1 END"
        " FROM {keys} k CROSS JOIN member m WHERE m.external_id = k.import_key",
        [str(v) for v in np.asarray(uniques, dtype=object)[needed]],
        ["external_id", "id", "erased"],
    )
    member_pk = np.full(len(uniques) + 1, np.nan)  # the extra slot answers code -1
    erased = np.zeros(len(uniques) + 1, dtype=bool)
    if not found.empty:
        at = pd.Index(uniques).get_indexer(found["external_id"].astype(str))
        member_pk[at] = found["id"].to_numpy(dtype="float64")
        erased[at] = found["erased"].to_numpy(dtype=np.int64).astype(bool)
    return member_pk[codes], erased[codes]


def _as_utc(values: pd.Series) -> pd.Series:
    """Timestamps read back from the database (SQLite text or driver datetimes) as UTC."""
    if len(values) and isinstance(values.dropna().iloc[0] if values.notna().any() else None, str):
        return pd.to_datetime(values, utc=True, format="ISO8601").dt.as_unit("us")
    return pd.to_datetime(values, utc=True).dt.as_unit("us")


def _table_is_empty(session: Session, table: str) -> bool:
    return session.execute(text(f"SELECT 1 FROM {table_name(table)} LIMIT 1")).first() is None


def _values(series: pd.Series) -> np.ndarray:
    """A column as a numpy array; timezone-aware timestamps as UTC ``datetime64[us]``.

    (``Series.to_numpy()`` would give an object array of Timestamps, slow to compare.)
    """
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        return series.to_numpy(dtype="datetime64[us]")
    return series.to_numpy()


def _utc(values: np.ndarray) -> pd.Series:
    """UTC ``datetime64`` values as a timezone-aware column (what ``insert_frame`` stores)."""
    return pd.Series(values).dt.tz_localize("UTC")


def _differs(mine: np.ndarray, stored: np.ndarray) -> np.ndarray:
    """Elementwise "not equal" where two missing values are equal."""
    mine_missing, stored_missing = pd.isna(mine), pd.isna(stored)
    with np.errstate(invalid="ignore"):
        unequal = np.asarray(mine != stored, dtype=bool)
    return np.where(mine_missing | stored_missing, mine_missing != stored_missing, unequal)


def _first_difference(differs: dict[str, np.ndarray], stored: dict[str, np.ndarray], rows: np.ndarray) -> pd.Series:
    """For each of ``rows``, "<column> was '<stored value>'" for its first differing column."""
    names = np.select([differs[c][rows] for c in differs], list(differs), default="")
    was = np.select([differs[c][rows] for c in differs], [pd.Series(stored[c][rows]).astype(str).to_numpy() for c in differs], default="")
    return pd.Series(names) + " was '" + pd.Series(was) + "'"


# --- the planner ----------------------------------------------------------------------------
#
# Every kind of file is planned in the same four steps: parse its columns (each parser
# records its own problems), check the rows against each other (a key repeated in the
# file), check them against the database, and plan the writes. A kind is described by
# :class:`_FileKind`; :func:`_plan` runs the steps. The order of the steps, and of the
# columns within a step, is the order in which a row's problems are listed.


@dataclass
class _Plan:
    """What an import will write, decided (and checked) before anything is written."""

    skipped: int
    to_write: Callable[[], int]
    write: Callable[[ProgressFn], tuple[int, int]]  # -> (rows imported, members created)


_Parser = Callable[[_Checks, pd.DataFrame, str], pd.Series]


@dataclass(frozen=True)
class _Field:
    """A canonical column and how it is parsed; an optional column absent from the file is left out."""

    column: str
    parse: _Parser
    left_out_when_absent: bool = False


class _Carry:
    """What the earlier chunks of a file leave for the later ones, 16 bytes a row: each row's key
    (a 64-bit hash), content (32 bits of its hash) and line, one sorted block per chunk (no block
    is ever copied to merge it); and how often each content without an id was seen."""

    def __init__(self) -> None:
        self.blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (sorted keys, contents, lines) per chunk
        self.hashes = np.empty(0, dtype=np.uint64)  # sorted content hashes of rows without an id
        self.counts = np.empty(0, dtype=np.int64)
        self.created: list[np.ndarray] = []  # ids of the members created from purchases

    @staticmethod
    def short(contents: np.ndarray) -> np.ndarray:
        return (contents & np.uint64(0xFFFFFFFF)).astype(np.uint32)

    def find(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Which ``keys`` an earlier chunk had: a mask, and their (short) content and line there."""
        found = np.zeros(len(keys), dtype=bool)
        contents, lines = np.zeros(len(keys), dtype=np.uint32), np.zeros(len(keys), dtype=np.int32)
        for block_keys, block_contents, block_lines in self.blocks:
            at = np.minimum(np.searchsorted(block_keys, keys), len(block_keys) - 1)
            hit = ~found & (block_keys[at] == keys)
            found |= hit
            contents[hit], lines[hit] = block_contents[at[hit]], block_lines[at[hit]]
        return found, contents, lines

    def remember(self, keys: np.ndarray, contents: np.ndarray, lines: np.ndarray) -> None:
        if len(keys):
            order = np.argsort(keys, kind="stable")
            self.blocks.append((keys[order], self.short(contents[order]), lines[order].astype(np.int32)))

    def seen_before(self, hashes: np.ndarray) -> np.ndarray:
        """How often each content hash was seen in earlier chunks (rows without an id: their occurrence goes on)."""
        if not len(self.hashes) or not len(hashes):
            return np.zeros(len(hashes), dtype=np.int64)
        at = np.minimum(np.searchsorted(self.hashes, hashes), len(self.hashes) - 1)
        return np.where(self.hashes[at] == hashes, self.counts[at], 0)

    def count(self, hashes: np.ndarray) -> None:
        if len(hashes):
            merged, inverse = np.unique(np.concatenate([self.hashes, hashes]), return_inverse=True)
            weights = np.concatenate([self.counts, np.ones(len(hashes), dtype=np.int64)])
            self.hashes, self.counts = merged, np.bincount(inverse, weights=weights, minlength=len(merged)).astype(np.int64)


@dataclass
class _Batch:
    """The rows of one chunk of a file as the planning steps see them."""

    session: Session
    checks: _Checks
    fields: dict[str, pd.Series]  # canonical column -> parsed values, in the order of the kind's fields
    actor: Actor
    create_members: bool
    key: pd.DataFrame = field(default_factory=pd.DataFrame)  # what identifies a row (step 2)
    repeat: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))  # rows repeating an earlier one
    carry: _Carry = field(default_factory=_Carry)  # what the file's earlier chunks left

    def __len__(self) -> int:
        return len(self.checks.lines)

    def content(self, rows: np.ndarray, columns: Sequence[str]) -> np.ndarray:
        """A hash of ``columns`` of ``rows`` (timestamps as integers)."""
        return _content_hash(
            pd.DataFrame(
                {
                    c: self.fields[c].iloc[rows].astype("int64")
                    if pd.api.types.is_datetime64_any_dtype(self.fields[c])
                    else self.fields[c].iloc[rows]
                    for c in columns
                }
            )
        )


@dataclass(frozen=True)
class _FileKind:
    """One kind of file, declared: its columns, what identifies a row, and its own two last steps.

    ``content`` lists the columns that make a row's content (``None``: every parsed column
    but ``member_id``); ``key`` builds the key of each row from the batch; ``duplicate``
    names the column a repeated key with different content is reported on, and how the
    key is called in that message. ``check_stored`` compares the rows with the database
    (recording problems) and returns what it found; ``plan_writes`` turns that into a
    :class:`_Plan`.
    """

    fields: tuple[_Field, ...]
    content: tuple[str, ...] | None
    key: Callable[[_Batch], pd.DataFrame]
    duplicate: tuple[str, str]
    check_stored: Callable[[_Batch], Any]
    plan_writes: Callable[[_Batch, Any], _Plan]

    def content_columns(self, batch: _Batch) -> list[str]:
        """The columns that make a row's content, in the order they are hashed."""
        return list(self.content) if self.content is not None else [c for c in batch.fields if c != "member_id"]


def _plan(
    kind: _FileKind, session: Session, values: pd.DataFrame, checks: _Checks, *, actor: Actor, create_members: bool, carry: _Carry | None = None
) -> _Plan:
    """Plan the import of ``values`` (one chunk): parse, check rows, check against the database, plan writes."""
    batch = _Batch(session, checks, _parse_fields(kind, values, checks), actor, create_members, carry=carry or _Carry())
    _check_rows(kind, batch)
    found = kind.check_stored(batch)
    return kind.plan_writes(batch, found)


def _parse_fields(kind: _FileKind, values: pd.DataFrame, checks: _Checks) -> dict[str, pd.Series]:
    """Step 1: each column parsed in the kind's order, its invalid values recorded as problems."""
    return {f.column: f.parse(checks, values, f.column) for f in kind.fields if f.column in values or not f.left_out_when_absent}


def _check_rows(kind: _FileKind, batch: _Batch) -> None:
    """Step 2: the rows' keys, and the rows repeating a key of the file (skipped, or a problem if they differ)."""
    columns = kind.content_columns(batch)
    batch.key = kind.key(batch)
    column, what = kind.duplicate
    batch.repeat = _in_file_duplicates(batch.checks, batch.key, lambda rows: batch.content(rows, columns), column, what)
    _repeats_of_earlier_chunks(batch, columns, column, what)


def _repeats_of_earlier_chunks(batch: _Batch, columns: list[str], column: str, what: str) -> None:
    """A key an earlier chunk of the file had: the same content is a repeat (skipped), other content a problem; then remember this chunk's keys."""
    rows = np.flatnonzero(batch.checks.ok & ~batch.repeat)
    if not len(rows):
        return
    keys = _content_hash(batch.key.iloc[rows].reset_index(drop=True))
    contents = batch.content(rows, columns)
    found, earlier_contents, earlier_lines = batch.carry.find(keys)
    if found.any():
        same = found & (earlier_contents == batch.carry.short(contents))
        batch.repeat[rows[same]] = True
        clash = found & ~same
        if clash.any():
            shown = batch.key.iloc[rows[clash], 0].astype(str).to_numpy()
            earlier, here = earlier_lines[clash], batch.checks.lines[rows[clash]]
            mask = np.zeros(len(batch), dtype=bool)
            mask[rows[clash]] = True
            reasons = [f"{what} '{k}' appears on lines {e}, {h} with different content" for k, e, h in zip(shown, earlier, here)]
            batch.checks.add(mask, column, np.asarray(reasons, dtype=object))
    new = ~found
    batch.carry.remember(keys[new], contents[new], batch.checks.lines[rows[new]])


def _chunked_insert(session: Session, table: str, frame: pd.DataFrame, progress: ProgressFn) -> int:
    """Insert ``frame`` into ``table`` a chunk at a time, telling ``progress``; the rows inserted."""
    for start in range(0, len(frame), WRITE_CHUNK):
        insert_frame(session, table, frame.iloc[start : start + WRITE_CHUNK])
        progress(min(start + WRITE_CHUNK, len(frame)), len(frame))
    return len(frame)


def _text_field(model: type, column: str, *, required: bool = False) -> _Parser:
    """A text column that must fit ``model.column`` (and be filled, when ``required``)."""
    limit = _column_length(model, column)
    return lambda checks, values, name: _text(checks, values, name, limit, required=required)


def _member_id_field() -> _Field:
    """The company's member id: required, and it must fit ``Member.external_id``."""
    return _Field("member_id", _text_field(Member, "external_id", required=True))


# --- purchases ------------------------------------------------------------------------------

_PURCHASE_CONTENT = ("member_id", "occurred_at", "amount", "channel", "store", "category")


def _amounts(checks: _Checks, values: pd.DataFrame, column: str) -> pd.Series:
    """Amounts: numbers above zero, at most the largest purchase, with the currency's decimals (:class:`Bounds`)."""
    amount = _numbers(checks, values, column)
    checks.add_reasons(checks.bounds.amount_problems(values[column], amount), column, values[column])
    return amount


def _purchase_key(batch: _Batch) -> pd.DataFrame:
    """``purchase_id``, or without one ``h:<hash of the content>:<occurrence in the file>``.

    Without a purchase_id the content is the identity; identical rows in one file are
    distinct purchases (two coffees at once), told apart by their occurrence number.
    """
    purchase_id = batch.fields["purchase_id"]
    key = purchase_id
    no_id = purchase_id.eq("").to_numpy()
    if no_id.any():
        hashes = batch.content(np.flatnonzero(no_id), _PURCHASE_CONTENT)
        # The occurrence goes on from the file's earlier chunks: two coffees stay two purchases.
        occurrence = pd.Series(pd.Series(hashes).groupby(hashes).cumcount().to_numpy() + batch.carry.seen_before(hashes)).astype(str)
        batch.carry.count(hashes)
        key_values = purchase_id.to_numpy(dtype=object)
        key_values[no_id] = ("h:" + pd.Series(_hex(hashes)) + ":" + occurrence).to_numpy(dtype=object)
        key = pd.Series(key_values, dtype="str")
    return pd.DataFrame({"purchase_id": key})


@dataclass
class _StoredPurchases:
    already: np.ndarray  # rows imported before with the same content: skipped
    new: np.ndarray  # rows neither repeated nor imported before (and valid when found)
    member_pk: np.ndarray  # our member id per row, NaN when unknown


def _check_stored_purchases(batch: _Batch) -> _StoredPurchases:
    """Step 3: purchases imported before (same content: skipped; different: a problem), then members.

    Unknown members are reported on rows with other problems too, so one round of fixes
    is enough; with ``create_members`` they are created from their first purchase instead.
    """
    already = _purchases_already_imported(batch)
    new = batch.checks.ok & ~batch.repeat & ~already
    member = batch.fields["member_id"]
    named = member.ne("").to_numpy() & ~batch.repeat & ~already
    member_pk, _ = _resolve_members(batch.session, member, named)
    unknown = named & np.isnan(member_pk)
    if unknown.any() and not batch.create_members:
        batch.checks.add(
            unknown,
            "member_id",
            _quoted(member[unknown]) + " is not a known member: import members first, or create them from this file (--create-members)",
        )
    return _StoredPurchases(already=already, new=new, member_pk=member_pk)


def _purchases_already_imported(batch: _Batch) -> np.ndarray:
    """The rows whose key is stored with the same content; a stored key with other content is a problem."""
    already = np.zeros(len(batch), dtype=bool)
    candidates = np.flatnonzero(batch.checks.ok & ~batch.repeat)
    if not len(candidates) or _table_is_empty(batch.session, "purchase"):
        return already
    key = batch.key["purchase_id"]
    stored = _select_by_keys(
        batch.session,
        "SELECT p.external_id, m.external_id, p.occurred_at, p.amount, p.channel, p.store, p.category"
        " FROM {keys} k CROSS JOIN purchase p JOIN member m ON m.id = p.member_id"
        " WHERE p.external_id = k.import_key",
        key.iloc[candidates].tolist(),
        ["key", *_PURCHASE_CONTENT],
    )
    if stored.empty:
        return already
    at = pd.Index(stored["key"]).get_indexer(key.iloc[candidates])
    rows, at = candidates[at >= 0], at[at >= 0]
    differs, theirs = _purchase_differences(batch, rows, stored.iloc[at].reset_index(drop=True))
    changed = np.logical_or.reduce(list(differs.values()))
    already[rows[~changed]] = True
    if changed.any():
        mask = np.zeros(len(batch), dtype=bool)
        mask[rows[changed]] = True
        reasons = (
            "purchase '"
            + key.iloc[rows[changed]].reset_index(drop=True)
            + "' was already imported with different content ("
            + _first_difference(differs, theirs, np.flatnonzero(changed))
            + ")"
        )
        batch.checks.add(mask, "purchase_id", reasons.to_numpy())
    return already


def _purchase_differences(batch: _Batch, rows: np.ndarray, stored: pd.DataFrame) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per content column, where ``rows`` differ from their ``stored`` purchase; and the stored values."""
    theirs = {
        "member_id": stored["member_id"].astype(str).to_numpy(),
        "occurred_at": _values(_as_utc(stored["occurred_at"])),
        "amount": stored["amount"].to_numpy(dtype="float64"),
        **{c: stored[c].astype(str).to_numpy() for c in ("channel", "store", "category")},
    }
    ours = {
        "member_id": batch.fields["member_id"].iloc[rows].to_numpy(),
        "occurred_at": _values(batch.fields["occurred_at"].iloc[rows]),
        "amount": batch.fields["amount"].iloc[rows].to_numpy(),
        **{c: batch.fields[c].iloc[rows].to_numpy() for c in ("channel", "store", "category")},
    }
    differs = {c: _differs(ours[c], theirs[c]) for c in _PURCHASE_CONTENT}
    # Amounts travel through float; a difference below a millionth of a cent is none.
    differs["amount"] = ~np.isclose(ours["amount"], theirs["amount"], rtol=0, atol=1e-9)
    return differs, theirs


def _plan_purchase_writes(batch: _Batch, found: _StoredPurchases) -> _Plan:
    """Step 4: the valid new purchases, through ``add_purchases``; members first seen here created first."""

    def rows_to_write() -> np.ndarray:
        return np.flatnonzero(found.new & batch.checks.ok)

    def write(progress: ProgressFn) -> tuple[int, int]:
        rows = rows_to_write()
        member_pk, created = _purchase_members(batch, found, rows)

        def column(series: pd.Series) -> pd.Series:
            # Keeps pandas' Arrow-backed text as it is: no round trip through Python objects.
            return (series if len(rows) == len(series) else series.iloc[rows]).reset_index(drop=True)

        fields = batch.fields
        frame = pd.DataFrame(
            {
                "external_id": column(batch.key["purchase_id"]),
                "member_id": member_pk.astype("int64"),
                **{c: column(fields[c]) for c in ("occurred_at", "amount", "channel", "store", "category")},
            }
        )
        with _deferred_sqlite_indexes(batch.session, ("purchase", "ledger_entry"), len(frame)):
            imported, _ = add_purchases(batch.session, frame[PURCHASE_COLUMNS], actor=batch.actor, progress=progress)
        return imported, created

    return _Plan(skipped=int((batch.repeat | found.already).sum()), to_write=lambda: len(rows_to_write()), write=write)


def _purchase_members(batch: _Batch, found: _StoredPurchases, rows: np.ndarray) -> tuple[np.ndarray, int]:
    """Our member id for each of ``rows``, creating the members not known yet; and how many were created."""
    member, occurred_at = batch.fields["member_id"], batch.fields["occurred_at"]
    pk = found.member_pk[rows]
    missing = np.isnan(pk)
    if not missing.any():
        return pk, 0
    first_purchase = (
        pd.DataFrame({"external_id": member.iloc[rows[missing]].to_numpy(), "joined_at": _values(occurred_at.iloc[rows[missing]])})
        .groupby("external_id", sort=True)["joined_at"]
        .min()
    )
    ids = _create_members_from_purchases(batch.session, first_purchase)
    batch.carry.created.append(ids.to_numpy(dtype=np.int64))
    pk[missing] = ids.reindex(member.iloc[rows[missing]].to_numpy()).to_numpy()
    return pk, len(ids)


def _create_members_from_purchases(session: Session, first_purchase: pd.Series) -> pd.Series:
    """Create the members first seen in a purchase file, joined at their first purchase.

    Returns their new ids indexed by the company's member id.
    """
    ids = allocate_ids(session, "member", len(first_purchase))
    insert_frame(
        session,
        "member",
        pd.DataFrame(
            {
                "id": ids,
                "external_id": first_purchase.index.to_numpy(),
                "name": "",
                "email": "",
                "phone": "",
                "joined_at": _utc(first_purchase.to_numpy()),
                "acquisition_channel": UNKNOWN_CHANNEL,
                "city": "",
                "marketing_consent": False,
                "created_at": pd.Timestamp(utcnow()),
            }
        ),
    )
    return pd.Series(ids, index=first_purchase.index.to_numpy())


# --- members --------------------------------------------------------------------------------


def _acquisition_channels(checks: _Checks, values: pd.DataFrame, column: str) -> pd.Series:
    """Acquisition channels as text; an empty one is ``unknown``."""
    channel = _text(checks, values, column, _column_length(Member, column))
    return channel.where(channel.ne(""), UNKNOWN_CHANNEL)


def _birth_dates(checks: _Checks, values: pd.DataFrame, column: str) -> pd.Series:
    """A date of birth is a calendar date, not in the future nor before 1900: kept as midnight (naive) for comparisons."""
    born = _timestamps(checks, values, column, required=False, in_program=False).dt.tz_localize(None).dt.normalize()
    checks.add_reasons(birth_date_problems(born, checks.bounds.latest.date() - timedelta(days=1)), column, values[column])
    return born


def _consents(checks: _Checks, values: pd.DataFrame, column: str) -> pd.Series:
    """Marketing consent as yes or no (true/false, yes/no, 1/0 ...)."""
    answer = values[column].str.lower()
    valid = answer.isin(_TRUE + _FALSE).to_numpy()
    if not valid.all():
        checks.add(~valid, column, _quoted(values[column][~valid]) + " is not yes or no (use true/false, yes/no or 1/0)")
    return answer.isin(_TRUE)


def _member_key(batch: _Batch) -> pd.DataFrame:
    """A member is their id."""
    return pd.DataFrame({"member_id": batch.fields["member_id"]})


@dataclass
class _StoredMembers:
    exists: np.ndarray  # rows of members already stored
    unchanged: np.ndarray  # ... with the file's values already
    erased: np.ndarray  # ... erased: their personal data is never brought back
    member_pk: np.ndarray  # our id of the stored ones
    referrer: np.ndarray | None = None  # the referrer's id of rows with a valid referral code (0: none)


def _member_columns(batch: _Batch) -> list[str]:
    """The member's columns the file gives (all but their id, and the referral code: a referral of its own)."""
    return [c for c in batch.fields if c not in ("member_id", "referred_by")]


def _check_stored_members(batch: _Batch) -> _StoredMembers:
    """Step 3: members already stored: identical or erased ones are skipped, the others updated."""
    size = len(batch)
    found = _StoredMembers(np.zeros(size, dtype=bool), np.zeros(size, dtype=bool), np.zeros(size, dtype=bool), np.zeros(size, dtype=np.int64))
    candidates = np.flatnonzero(batch.checks.ok & ~batch.repeat)
    present = _member_columns(batch)
    external = batch.fields["member_id"]
    if not len(candidates):
        return found
    if "referred_by" in batch.fields:
        found.referrer = _check_referral_codes(batch, candidates)
    stored = _select_by_keys(
        batch.session,
        "SELECT m.external_id, m.id, CASE WHEN m.erased_at IS NULL THEN 0 ELSE 1 END, "
        + ", ".join(f"m.{c}" for c in present)
        + " FROM {keys} k CROSS JOIN member m WHERE m.external_id = k.import_key",
        external.iloc[candidates].tolist(),
        ["external_id", "id", "erased", *present],
    )
    if stored.empty:
        return found
    at = pd.Index(stored["external_id"]).get_indexer(external.iloc[candidates])
    rows, at = candidates[at >= 0], at[at >= 0]
    stored = stored.iloc[at].reset_index(drop=True)
    found.exists[rows] = True
    found.member_pk[rows] = stored["id"].to_numpy(dtype=np.int64)
    found.erased[rows] = stored["erased"].astype(bool).to_numpy()
    theirs = {column: _stored_member_values(stored[column], column) for column in present}
    changed = np.logical_or.reduce([_differs(_values(batch.fields[c].iloc[rows]), theirs[c]) for c in present])
    found.unchanged[rows[~changed]] = True
    return found


def _check_referral_codes(batch: _Batch, candidates: np.ndarray) -> np.ndarray:
    """The referrer of each row with a referral code; a code that is not valid for the row is a problem of its line."""
    from loyalty.ledger.referrals import code_problems

    codes = batch.fields["referred_by"]
    referrer = np.zeros(len(batch), dtype=np.int64)
    rows = candidates[(codes.iloc[candidates].str.strip() != "").to_numpy()]
    if len(rows):
        emails = batch.fields["email"].iloc[rows] if "email" in batch.fields else None
        found, reasons = code_problems(batch.session, codes.iloc[rows], batch.fields["member_id"].iloc[rows], emails)
        referrer[rows] = found
        every = np.full(len(batch), "", dtype=object)
        every[rows] = reasons
        batch.checks.add_reasons(every, "referred_by", codes)
    return referrer


def _stored_member_values(stored: pd.Series, column: str) -> np.ndarray:
    """A member column as read back from the database, comparable with the parsed file."""
    if column == "joined_at":
        return _values(_as_utc(stored))
    if column == "birth_date":
        dates = pd.to_datetime(stored.astype("str"), errors="coerce", format="ISO8601")
        return dates.dt.as_unit("us").to_numpy()
    if column == "marketing_consent":
        return stored.astype(bool).to_numpy()
    return stored.astype(str).to_numpy()


def _plan_member_writes(batch: _Batch, found: _StoredMembers) -> _Plan:
    """Step 4: new members inserted, changed ones updated (erased ones never)."""
    checks = batch.checks

    def new_rows() -> np.ndarray:
        return np.flatnonzero(checks.ok & ~batch.repeat & ~found.exists)

    def changed_rows() -> np.ndarray:
        return np.flatnonzero(checks.ok & found.exists & ~found.unchanged & ~found.erased)

    def write(progress: ProgressFn) -> tuple[int, int]:
        rows, updates = new_rows(), changed_rows()
        total = len(rows) + len(updates)
        _chunked_insert(batch.session, "member", _new_members(batch, rows), lambda done, _: progress(done, total))
        present = _member_columns(batch)
        _update_members(batch.session, found.member_pk[updates], {c: batch.fields[c].iloc[updates] for c in present})
        if found.referrer is not None:
            _write_referrals(batch, found)
        progress(total, total)
        return total, 0

    return _Plan(
        skipped=int((batch.repeat | (checks.ok & found.exists & (found.unchanged | found.erased))).sum()),
        to_write=lambda: len(new_rows()) + len(changed_rows()),
        write=write,
    )


def _write_referrals(batch: _Batch, found: _StoredMembers) -> None:
    """Referrals of the rows with a valid code (new members, and stored ones not referred yet)."""
    from loyalty.ledger.referrals import record_referrals

    assert found.referrer is not None
    rows = np.flatnonzero(batch.checks.ok & ~batch.repeat & (found.referrer > 0) & ~found.erased)
    if not len(rows):
        return
    ids = _select_by_keys(
        batch.session,
        "SELECT m.external_id, m.id FROM {keys} k CROSS JOIN member m WHERE m.external_id = k.import_key",
        batch.fields["member_id"].iloc[rows].tolist(),
        ["external_id", "id"],
    )
    referee = pd.Series(ids["id"].to_numpy(dtype=np.int64), index=ids["external_id"]).reindex(batch.fields["member_id"].iloc[rows]).to_numpy()
    # A member is referred when they join: the referral counts in the month they joined.
    joined = list(pd.to_datetime(batch.fields["joined_at"].iloc[rows], utc=True).dt.to_pydatetime()) if "joined_at" in batch.fields else None
    record_referrals(batch.session, referee.astype(np.int64), found.referrer[rows], at=joined)


def _new_members(batch: _Batch, rows: np.ndarray) -> pd.DataFrame:
    """The rows of the ``member`` table for ``rows`` (columns the file lacks get their defaults)."""
    fields = batch.fields
    frame = pd.DataFrame(
        {
            "external_id": fields["member_id"].iloc[rows].to_numpy(),
            **{c: _values(fields[c].iloc[rows]) for c in _member_columns(batch) if c != "birth_date"},
        }
    )
    for column, default in (("phone", ""), ("city", ""), ("marketing_consent", False)):
        if column not in frame:
            frame[column] = default
    frame["birth_date"] = _calendar_dates(fields["birth_date"].iloc[rows]) if "birth_date" in fields else None
    frame["joined_at"] = _utc(frame["joined_at"].to_numpy())
    frame["created_at"] = pd.Timestamp(utcnow())
    return frame


def _calendar_dates(values: pd.Series) -> np.ndarray:
    """Midnight timestamps as ``datetime.date`` objects (None when missing), for a DATE column."""
    days = values.to_numpy(dtype="datetime64[D]")
    return np.array(pa.array(days, type=pa.date32(), mask=np.isnat(days)).to_pylist(), dtype=object)


def _update_members(session: Session, member_ids: np.ndarray, fields: dict[str, pd.Series]) -> None:
    """Core ``UPDATE ... WHERE id = ?`` (executemany) with the file's values."""
    if len(member_ids) == 0:
        return
    table = Member.__table__  # type: ignore[attr-defined]  # set by SQLModel at class creation, not in its stubs
    params: dict[str, Any] = {"b_id": member_ids.tolist()}
    for column, series in fields.items():
        if column == "joined_at":
            params[f"b_{column}"] = list(series.dt.to_pydatetime())
        elif column == "birth_date":
            params[f"b_{column}"] = list(_calendar_dates(series))
        elif column == "marketing_consent":
            params[f"b_{column}"] = [bool(v) for v in series]
        else:
            params[f"b_{column}"] = series.tolist()
    rows = [dict(zip(params, values)) for values in zip(*params.values())]
    statement = update(table).where(table.c.id == bindparam("b_id")).values({column: bindparam(f"b_{column}") for column in fields})
    session.execute(statement, rows)


# --- NPS answers ----------------------------------------------------------------------------


def _nps_scores(checks: _Checks, values: pd.DataFrame, column: str) -> pd.Series:
    """Scores: whole numbers from 0 to 10."""
    score = _numbers(checks, values, column)
    finite = np.isfinite(score.to_numpy())
    fraction = finite & (score.to_numpy() != np.round(score.to_numpy()))
    if fraction.any():
        checks.add(fraction, column, _quoted(values[column][fraction]) + " is not a whole number from 0 to 10")
    outside = finite & ~fraction & ((score.to_numpy() < NPS_MIN) | (score.to_numpy() > NPS_MAX))
    if outside.any():
        checks.add(outside, column, _quoted(values[column][outside]) + " is outside 0-10")
    return score


def _free_text(checks: _Checks, values: pd.DataFrame, column: str) -> pd.Series:
    """Text of any length (a comment)."""
    return _text(checks, values, column, None)


def _answer_key(batch: _Batch) -> pd.DataFrame:
    """An answer is the member's at a moment."""
    return pd.DataFrame({"member_id": batch.fields["member_id"], "submitted_at": batch.fields["submitted_at"].astype("int64")})


@dataclass
class _StoredAnswers:
    already: np.ndarray  # answers imported before, the same: skipped
    member_pk: np.ndarray  # our member id per row, NaN when unknown
    member_erased: np.ndarray  # the member was erased (their comments are never stored)


def _check_stored_answers(batch: _Batch) -> _StoredAnswers:
    """Step 3: every answer's member must be known; an answer imported before must be the same."""
    member = batch.fields["member_id"]
    named = member.ne("").to_numpy() & ~batch.repeat
    member_pk, member_erased = _resolve_members(batch.session, member, named)
    unknown = named & np.isnan(member_pk)
    batch.checks.add(unknown, "member_id", _quoted(member[unknown]) + " is not a known member: import members first")
    found = _StoredAnswers(np.zeros(len(batch), dtype=bool), member_pk, member_erased)
    candidates = np.flatnonzero(batch.checks.ok & ~batch.repeat)
    if len(candidates) and not _table_is_empty(batch.session, "feedback"):
        _answers_already_imported(batch, found, candidates)
    return found


def _answers_already_imported(batch: _Batch, found: _StoredAnswers, candidates: np.ndarray) -> None:
    """Mark the ``candidates`` stored with the same score and comment; other content is a problem."""
    stored = _select_by_keys(
        batch.session,
        "SELECT f.member_id, f.submitted_at, f.score, f.comment FROM {keys} k CROSS JOIN feedback f WHERE f.member_id = k.import_key",
        [int(m) for m in pd.unique(found.member_pk[candidates])],
        ["member_pk", "submitted_at", "score", "comment"],
    )
    if stored.empty:
        return
    stored_key = pd.MultiIndex.from_arrays([stored["member_pk"].astype("int64"), _as_utc(stored["submitted_at"]).astype("int64")])
    ours = pd.MultiIndex.from_arrays([found.member_pk[candidates].astype("int64"), batch.key["submitted_at"].iloc[candidates].to_numpy()])
    at = stored_key.get_indexer(ours)
    rows, at = candidates[at >= 0], at[at >= 0]
    stored = stored.iloc[at].reset_index(drop=True)
    score_differs = batch.fields["score"].iloc[rows].to_numpy() != stored["score"].to_numpy(dtype="float64")
    # An erased member's comment was blanked on purpose: only the score is compared.
    comment_differs = (batch.fields["comment"].iloc[rows].to_numpy() != stored["comment"].astype(str).to_numpy()) & ~found.member_erased[rows]
    found.already[rows[~score_differs & ~comment_differs]] = True
    for differs, column in ((score_differs, "score"), (comment_differs & ~score_differs, "comment")):
        if differs.any():
            mask = np.zeros(len(batch), dtype=bool)
            mask[rows[differs]] = True
            was = stored[column][differs].astype(str).reset_index(drop=True)
            batch.checks.add(
                mask, column, ("this member's answer of that time was already imported with a different " + column + " ('" + was + "')").to_numpy()
            )


def _plan_answer_writes(batch: _Batch, found: _StoredAnswers) -> _Plan:
    """Step 4: the valid new answers, inserted (without the comment of an erased member)."""

    def rows_to_write() -> np.ndarray:
        return np.flatnonzero(batch.checks.ok & ~batch.repeat & ~found.already)

    def write(progress: ProgressFn) -> tuple[int, int]:
        rows = rows_to_write()
        fields = batch.fields
        frame = pd.DataFrame(
            {
                "member_id": found.member_pk[rows].astype("int64"),
                "submitted_at": _utc(_values(fields["submitted_at"].iloc[rows])),
                "score": fields["score"].iloc[rows].to_numpy().astype("int64"),
                # Never store free text of a member erased under the right to erasure.
                "comment": np.where(found.member_erased[rows], "", fields["comment"].iloc[rows].to_numpy(dtype=object)),
            }
        )
        return _chunked_insert(batch.session, "feedback", frame, progress), 0

    return _Plan(skipped=int((batch.repeat | found.already).sum()), to_write=lambda: len(rows_to_write()), write=write)


# --- the kinds, declared --------------------------------------------------------------------

_FILE_KINDS: dict[str, _FileKind] = {
    "members": _FileKind(
        fields=(
            _member_id_field(),
            *(_Field(c, _text_field(Member, c), left_out_when_absent=True) for c in ("name", "email")),
            _Field("acquisition_channel", _acquisition_channels, left_out_when_absent=True),
            *(_Field(c, _text_field(Member, c), left_out_when_absent=True) for c in ("phone", "city")),
            _Field("joined_at", _timestamps),
            _Field("birth_date", _birth_dates, left_out_when_absent=True),
            _Field("marketing_consent", _consents, left_out_when_absent=True),
            _Field("referred_by", _text_field(Member, "external_id"), left_out_when_absent=True),
        ),
        content=None,
        key=_member_key,
        duplicate=("member_id", "member_id"),
        check_stored=_check_stored_members,
        plan_writes=_plan_member_writes,
    ),
    "purchases": _FileKind(
        fields=(
            _member_id_field(),
            _Field("occurred_at", _timestamps),
            _Field("amount", _amounts),
            _Field("purchase_id", _text_field(Purchase, "external_id")),
            *(_Field(c, _text_field(Purchase, c)) for c in ("channel", "store", "category")),
        ),
        content=_PURCHASE_CONTENT,
        key=_purchase_key,
        duplicate=("purchase_id", "purchase_id"),
        check_stored=_check_stored_purchases,
        plan_writes=_plan_purchase_writes,
    ),
    "feedback": _FileKind(
        fields=(_member_id_field(), _Field("submitted_at", _timestamps), _Field("score", _nps_scores), _Field("comment", _free_text)),
        content=("score", "comment"),
        key=_answer_key,
        duplicate=("submitted_at", "an answer of member"),
        check_stored=_check_stored_answers,
        plan_writes=_plan_answer_writes,
    ),
}


# --- the use cases ------------------------------------------------------------------------


@contextmanager
def _deferred_sqlite_indexes(session: Session, tables: Sequence[str], incoming: int) -> Iterator[None]:
    """On SQLite, drop the secondary indexes of ``tables`` and rebuild them at the end.

    Inserting a million rows into five random-order B-trees costs more than the rows
    themselves; ``CREATE INDEX`` builds the same index from a sort in a fraction of the
    time. Worth it only when the rows coming in are many compared with the rows already
    there (a first load of history), since a rebuild reads the whole table. Runs inside
    the import's transaction: a failure rolls the indexes back with everything else, and
    other connections never see the table without them (they read the last commit).
    """
    if session.get_bind().dialect.name != "sqlite" or incoming < DEFER_INDEXES_MIN_ROWS:
        yield
        return
    present = max(session.execute(text(f"SELECT COALESCE(MAX(id), 0) FROM {table_name(table)}")).scalar_one() for table in tables)
    if incoming < present:
        yield
        return
    # sql IS NULL for the automatic indexes of UNIQUE constraints: they stay.
    indexes = session.execute(
        text("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name IN :tables AND sql IS NOT NULL").bindparams(
            bindparam("tables", expanding=True)
        ),
        {"tables": list(tables)},
    ).all()
    for name, _ in indexes:
        session.execute(text(f'DROP INDEX "{name}"'))
    yield
    for _, sql in indexes:
        session.execute(text(sql))


def _rejected_rows(table: _Table, kept: np.ndarray, found: pd.DataFrame) -> pd.DataFrame:
    """The rejected rows as they are in the file, with their line and reasons first."""
    if found.empty:
        return pd.DataFrame()
    reasons = (
        ("column " + found["column"].astype(str) + ": " + found["reason"].astype(str))
        .where(found["column"].astype(str).ne(""), found["reason"].astype(str))
        .groupby(found["row"].to_numpy(), sort=True)
        .agg("; ".join)
    )
    rows = reasons.index.to_numpy(dtype=np.int64)
    rejected = table.raw.iloc[kept[rows]].reset_index(drop=True)
    line_column = "line" if "line" not in rejected else "rejected_line"
    reason_column = "reasons" if "reasons" not in rejected else "rejected_reasons"
    rejected.insert(0, reason_column, reasons.to_numpy())
    rejected.insert(0, line_column, table.lines[kept[rows]])
    return rejected


def _rejected_path(source_path: Path) -> Path:
    """Where the rejected rows of a file on disk go: ``<stem>.rejected.csv`` beside it (named in the import's audit entry)."""
    return source_path.resolve().with_name(f"{source_path.stem}.rejected.csv")


def import_csv(
    session: Session,
    kind: ImportKind,
    path: Source,
    *,
    actor: Actor,
    mapping: dict[str, str] | None = None,
    create_members: bool = False,
    skip_invalid: bool = False,
    progress: ProgressFn | None = None,
) -> ImportResult:
    """Import a CSV file of members, purchases or NPS answers, all or nothing.

    Parameters
    ----------
    session
        A session for this unit of work; the import is one transaction on it.
    kind
        ``"members"``, ``"purchases"`` or ``"feedback"``; the columns expected are
        ``REQUIRED_COLUMNS[kind]`` and, if present, ``OPTIONAL_COLUMNS[kind]``.
    path
        The CSV file, or an open binary file (an upload). For an upload the rejected
        rows come back as ``ImportResult.rejected_csv`` instead of a file beside it.
    actor
        Who imports; needs the ``data.import`` permission.
    mapping
        ``{file column: canonical column}`` for files with their own column names.
    create_members
        Purchases only: create members first seen in the file (joined at their first
        purchase in it, acquisition channel ``"unknown"``) instead of refusing them.
    skip_invalid
        Import the valid rows and set the invalid ones aside (``<stem>.rejected.csv``
        beside the input, with line and reasons) instead of refusing the file.
    progress
        Called as ``progress(rows done, rows in the file)`` as chunks are written.

    Returns
    -------
    ImportResult
        Rows imported (new, or members updated), skipped (already there, or repeated
        in the file, or erased members), rejected, and the problems found.

    Raises
    ------
    ImportRefused
        The file has problems and ``skip_invalid`` is false, or the file itself is
        unusable (unreadable, a required column missing). Nothing was written.
    """
    require(actor, "data.import")
    if kind not in _FILE_KINDS:
        raise InvalidInput(f"Unknown import {kind!r}: choose members, purchases or feedback.")
    started = time.perf_counter()
    settings = get_settings(session)
    source, name, source_path = _open_source(path, limit_megabytes=settings.max_import_megabytes)
    try:
        header = read_header(source)
        _canonical(_Table(raw=pd.DataFrame(columns=header.names), lines=np.zeros(0, dtype=np.int64), name=name), kind, mapping)
    except UnreadableFile as unreadable:
        raise ImportRefused([Problem(unreadable.line, "", unreadable.reason)], rejected=0, file=name) from None
    except _FileRefused as refused:
        raise ImportRefused(refused.problems, rejected=max(header.line_breaks - 1, 0), file=name) from None
    estimate = max(header.line_breaks - 1, 1)  # data lines: the progress's total until the end is known
    report = progress or (lambda done, total: None)
    bounds, carry, tally = Bounds.of(settings, utcnow()), _Carry(), _Tally()
    set_aside = _SetAside(source_path)
    try:
        with write_transaction(session), sqlite_page_cache(session, SQLITE_IMPORT_CACHE_KIB):
            for chunk in read_csv_chunks(source, header, block_bytes=IMPORT_CHUNK_BYTES):
                table = _Table(
                    raw=chunk.raw, lines=chunk.lines, name=name, separator=chunk.separator, bom=chunk.bom, width_problems=chunk.width_problems
                )
                _import_chunk(
                    session,
                    kind,
                    table,
                    mapping,
                    bounds,
                    carry,
                    tally,
                    set_aside,
                    actor=actor,
                    create_members=create_members,
                    skip_invalid=skip_invalid,
                    report=lambda done, _: report(min(done, estimate), estimate),
                )
            if tally.problem_count and not skip_invalid:
                raise ImportRefused(tally.problems, rejected=tally.rejected, file=name, count=tally.problem_count)
            _joined_at_first_purchase(session, carry.created)
            record_audit(
                session,
                actor=actor,
                action="data.import",
                entity=kind,
                entity_id=name,
                after={"file": name, "imported": tally.imported, "skipped": tally.skipped, "rejected": tally.rejected}
                | ({"rejected_file": str(set_aside.path)} if tally.rejected and set_aside.path is not None else {}),
            )
    except UnreadableFile as unreadable:  # found in the middle of the file (a quote never closed): nothing was written
        set_aside.discard()
        raise ImportRefused([Problem(unreadable.line, "", unreadable.reason)], rejected=0, file=name) from None
    except BaseException:
        set_aside.discard()
        raise
    report(tally.rows, tally.rows)
    if tally.rejected:
        rejected_path, rejected_csv = set_aside.finish()
    else:
        set_aside.discard()
        rejected_path, rejected_csv = None, None
    seconds = time.perf_counter() - started
    return ImportResult(
        imported=tally.imported,
        skipped=tally.skipped,
        rejected=tally.rejected,
        problems=tally.problems,
        rejected_path=rejected_path,
        seconds=seconds,
        rows_per_second=tally.rows / seconds if seconds > 0 else 0.0,
        rejected_csv=rejected_csv,
        members_created=tally.created,
        kind=kind,
        file=name,
    )


@dataclass
class _Tally:
    """What the chunks of one import add up to."""

    rows: int = 0
    imported: int = 0
    created: int = 0
    skipped: int = 0
    rejected: int = 0
    problem_count: int = 0
    problems: list[Problem] = field(default_factory=list)  # the first MAX_PROBLEMS_KEPT

    def add_problems(self, problems: list[Problem]) -> None:
        self.problem_count += len(problems)
        self.problems.extend(problems[: max(MAX_PROBLEMS_KEPT - len(self.problems), 0)])


def _import_chunk(
    session: Session,
    kind: str,
    table: _Table,
    mapping: dict[str, str] | None,
    bounds: Bounds,
    carry: _Carry,
    tally: _Tally,
    set_aside: _SetAside,
    *,
    actor: Actor,
    create_members: bool,
    skip_invalid: bool,
    report: ProgressFn,
) -> None:
    """Check one chunk and, while the file has no problem (or bad rows are set aside), write it."""
    values, file_name, kept = _canonical(table, kind, mapping)
    checks = _Checks(table.lines[kept], file_name, bounds)
    if table.width_problems:
        position = {int(p): i for i, p in enumerate(kept)}
        misfits = [(position[p], reason) for p, reason in table.width_problems.items() if p in position]
        checks.refuse_rows(np.array([row for row, _ in misfits], dtype=np.int64), [reason for _, reason in misfits])
    _nul_characters(checks, values)
    plan = _plan(_FILE_KINDS[kind], session, values, checks, actor=actor, create_members=create_members, carry=carry)
    found, problems = checks.frame(), checks.problems()
    tally.add_problems(problems)
    tally.rejected += int(checks.bad.sum())
    tally.skipped += plan.skipped
    if skip_invalid or not tally.problem_count:  # once a problem refuses the file, the rest is only checked
        done_before = tally.rows
        imported, created = plan.write(lambda done, total: report(done_before + round(done / max(total, 1) * len(values)), 0))
        tally.imported, tally.created = tally.imported + imported, tally.created + created
    if len(found):
        set_aside.add(_rejected_rows(table, kept, found))
    tally.rows += len(table.raw)
    report(tally.rows, 0)


def _joined_at_first_purchase(session: Session, created: list[np.ndarray]) -> None:
    """A member created from a purchase file joined at their first purchase in it, whichever chunk it came in."""
    if not created:
        return
    member, purchase = table_of(Member), table_of(Purchase)
    first = select(func.min(purchase.c.occurred_at)).where(purchase.c.member_id == member.c.id).scalar_subquery()
    for batch in id_batches(np.concatenate(created)):
        session.execute(update(member).where(member.c.id.in_(batch), member.c.joined_at > first).values(joined_at=first))


class _SetAside:
    """The rejected rows, written as they are found: ``<stem>.rejected.csv`` beside a file on disk, bytes for an upload."""

    def __init__(self, source_path: Path | None) -> None:
        self.path = None if source_path is None else _rejected_path(source_path)
        self.partial = None if self.path is None else self.path.with_name(f".{self.path.name}.partial")
        self.parts: list[str] = []
        self.started = False

    def add(self, rows: pd.DataFrame) -> None:
        text = csv_text(rows, header=not self.started)
        self.started = True
        if self.partial is None:
            self.parts.append(text)
        else:
            with open(self.partial, "a", encoding="utf-8") as file:
                file.write(text)

    def finish(self) -> tuple[Path | None, bytes | None]:
        if self.partial is None or self.path is None:
            return None, "".join(self.parts).encode("utf-8")
        os.replace(self.partial, self.path)
        return self.path, None

    def discard(self) -> None:
        if self.partial is not None:
            self.partial.unlink(missing_ok=True)
        self.parts = []


def preview_csv(path_or_buffer: Source, kind: ImportKind, mapping: dict[str, str] | None = None, rows: int = 20) -> dict[str, Any]:
    """A look at a file before importing it: how it is written, its columns, the first rows.

    Returns
    -------
    dict
        ``columns`` (the file's), ``missing`` (required columns absent after
        ``mapping``), ``mapping`` (:func:`column_mapping`: where each file column goes),
        ``sample`` (the first ``rows`` rows, columns renamed by ``mapping``), ``rows``
        (data rows in the file), ``separator`` (its name: comma, semicolon, tab...),
        ``bom`` (the file starts with a UTF-8 byte-order mark) and ``problems`` (why the
        file cannot be read at all, if it cannot).
    """
    if kind not in REQUIRED_COLUMNS:
        raise InvalidInput(f"Unknown import {kind!r}: choose members, purchases or feedback.")
    data, name, _ = _read_bytes(path_or_buffer)
    try:
        header = read_header(data)
        chunks = read_csv_chunks(data, header)
        first = next(chunks, None)
        count = (len(first.raw) if first is not None else 0) + sum(len(chunk.raw) for chunk in chunks)  # a chunk at a time
        raw = first.raw if first is not None else pd.DataFrame(columns=header.names)
        table = _Table(raw=raw, lines=np.zeros(len(raw), dtype=np.int64), name=name, separator=header.separator, bom=header.bom)
    except UnreadableFile as unreadable:
        return {
            "columns": [],
            "missing": list(REQUIRED_COLUMNS[kind]),
            "mapping": column_mapping([], kind),
            "sample": pd.DataFrame(),
            "rows": 0,
            "separator": "",
            "bom": False,
            "problems": [Problem(unreadable.line, "", unreadable.reason)],
        }
    renames = {str(k).strip(): str(v).strip() for k, v in (mapping or {}).items()}
    renamed = [renames.get(c, c) for c in table.raw.columns]
    return {
        "columns": list(table.raw.columns),
        "missing": [c for c in REQUIRED_COLUMNS[kind] if c not in renamed],
        "mapping": column_mapping(list(table.raw.columns), kind, renames),
        "sample": table.raw.head(rows).rename(columns=renames),
        "rows": count,
        "separator": SEPARATORS[table.separator],
        "bom": table.bom,
        "problems": [],
    }


def column_mapping(columns: Sequence[str], kind: ImportKind, mapping: dict[str, str] | None = None) -> pd.DataFrame:
    """Where each column of a file goes: one row per file column, then one per field the file lacks.

    Columns ``file_column``, ``field`` and ``status``: ``required`` or ``optional`` (the
    column is imported as that field, ``mapped`` when renamed by ``mapping``),
    ``unknown: not imported``, ``duplicate: ...`` (another column already gives the
    field), ``missing: required`` or ``absent: optional`` (no column gives the field).
    """
    required, optional = REQUIRED_COLUMNS[kind], OPTIONAL_COLUMNS[kind]
    renames = mapping or {}
    given: dict[str, str] = {}  # field -> the file column that gives it
    rows = []
    for column in columns:
        field = renames.get(column, column)
        if field not in required and field not in optional:
            rows.append((column, "", "unknown: not imported"))
            continue
        if field in given:
            rows.append((column, field, f"duplicate: column {given[field]} already gives {field}"))
            continue
        given[field] = column
        status = "required" if field in required else "optional"
        rows.append((column, field, f"{status}, mapped" if field != column else status))
    rows += [("", field, "missing: required") for field in required if field not in given]
    rows += [("", field, "absent: optional") for field in optional if field not in given]
    return pd.DataFrame(rows, columns=["file_column", "field", "status"])
