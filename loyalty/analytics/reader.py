"""The SQLite reader process: analytics reads through ADBC, in a child process of their own.

Why a child
-----------
ADBC (``adbc-driver-sqlite``) returns Arrow columns straight from the file (10M
purchases in about 3 s, against 31 s for ``pandas.read_sql``), but it links its own copy
of SQLite, and two copies in one process do not see each other's POSIX locks: when the
ADBC connection closed it believed it was the last one and deleted the WAL file under
the process's other connections (their next query: "disk I/O error"; see
sqlite.org/howtocorrupt.html, "multiple copies of SQLite in the same program"). Across
processes SQLite's locking works as designed. A reader starts once per process and
database (about 0.3 s), runs as ``python -m loyalty.analytics.reader DATABASE FOLDER``
and sees committed data only.

Protocol
--------
Both ways a message is an 8-byte little-endian length followed by that many bytes.

* request: UTF-8 JSON ``{"sql": "SELECT ... ?", "params": [value, ...]}``; the
  statement uses ``?`` placeholders, bound in order (values: str, int, float, bool or
  null: the parent turns timestamps into SQLite's stored text first);
* reply: one status byte, then ``\\x00`` + the path of an Arrow IPC file the parent maps
  and deletes, or ``\\x01`` + ``"ErrorType: message"``.

The child stops when its standard input closes. A query that takes longer than
:data:`READER_QUERY_SECONDS` gets the child killed and :class:`ReaderTimeout` raised.
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import select
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

import pyarrow as pa

if TYPE_CHECKING:
    from sqlmodel import Session

__all__ = [
    "MAX_READERS",
    "READ_PARTS",
    "READER_QUERY_SECONDS",
    "ReaderQueryError",
    "ReaderTimeout",
    "analytics_reader",
    "close_readers",
    "main",
    "read_sqlite",
    "read_sqlite_parts",
]

# The longest read measured (ten million purchases) takes about 5 s: a reader silent this
# long is stuck, and is stopped rather than waited for.
READER_QUERY_SECONDS = 300.0
# How many reader processes read one large table at once, each a range of its rows
# (read_sqlite_parts): one per core, at most four. SQLite runs a query on one core, and
# while the readers work this process only waits.
READ_PARTS = max(1, min(4, os.cpu_count() or 1))
# Reader processes kept alive, most recently used last; beyond this many the oldest
# stops (a test suite opens a database per test).
MAX_READERS = 2 * READ_PARTS
# Rows per Arrow batch the driver hands over.
BATCH_ROWS = 65_536

_OK, _FAILED = b"\x00", b"\x01"
_LENGTH = struct.Struct("<Q")
# Where the reader leaves its answers: memory-backed when the system has it.
_ANSWER_FOLDER = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
# The folder that holds the `loyalty` package: the child imports this module from it.
_PROJECT_ROOT = str(Path(__file__).resolve().parents[2])


def analytics_reader(session: Session) -> Literal["auto", "dbapi"]:
    """The analytics reader jobs and reports use.

    * SQLite: ``"auto"``, the ADBC reader process of this module (reading 10M
      purchases: 3.3 s against 31 s through the DB-API). It reads the last commit,
      which is what a job reads: every job reads before it writes. ADBC never runs in
      the calling process (it links its own copy of SQLite, which deleted the WAL file
      under the process's other connections when it did).
    * PostgreSQL: ``"dbapi"``, ``COPY`` on the session's connection. ADBC would open a
      connection per read (measured here: 2.0 s for the four KPI splits of a small
      program, against 0.07 s with ``COPY``).
    """
    return "auto" if session.get_bind().dialect.name == "sqlite" else "dbapi"


class ReaderTimeout(RuntimeError):
    """The SQLite reader process did not answer (or stayed busy) within its time limit."""


class ReaderQueryError(RuntimeError):
    """The SQLite reader process answered with an error (bad SQL, a missing table, ...)."""


class _ReaderStopped(RuntimeError):
    pass


# --- the child ----------------------------------------------------------------------------


def _read_message(source: BinaryIO) -> bytes | None:
    head = source.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    return source.read(_LENGTH.unpack(head)[0])


def _write_message(sink: BinaryIO, message: bytes) -> None:
    sink.write(_LENGTH.pack(len(message)) + message)
    sink.flush()


class _NoDataFrameLibraries:
    """An import finder for the child that refuses pandas and Polars, as if not installed."""

    @staticmethod
    def find_spec(name: str, path: Any = None, target: Any = None) -> None:
        if name.partition(".")[0] in ("pandas", "polars"):
            raise ModuleNotFoundError(f"No module named {name!r} in the reader process", name=name)
        return None


def main(argv: Sequence[str] | None = None) -> int:
    """The child: answer queries on the SQLite file ``argv[0]``, leaving Arrow files in ``argv[1]``."""
    # The DB-API layer looks for pandas and Polars (through pyarrow.dataset) to offer them
    # as results; the reader hands over Arrow only. Refused here, the child starts in 0.16 s
    # instead of 0.5 s (measured 2026-12-07), a start paid by every job and command that reads.
    sys.meta_path.insert(0, _NoDataFrameLibraries)
    # ADBC's DB-API layer, not its low-level statements: binding a parameter batch to a bare
    # AdbcStatement crashed this process (SIGSEGV) on the second or third query with ADBC 1.13
    # and pyarrow 26 (seen 2026-12-07: three reads of a 100k-row table); the cursor keeps what it
    # binds alive for the statement's life. Autocommit: no read transaction stays open between
    # queries, so each query sees what was committed before it.
    import adbc_driver_sqlite.dbapi as dbapi

    path, folder = argv if argv is not None else sys.argv[1:]
    connection = dbapi.connect(path, autocommit=True)
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    for number in itertools.count():
        request = _read_message(source)
        if request is None:
            break
        answer = None
        try:
            query = json.loads(request)
            with connection.cursor() as cursor:
                cursor.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(BATCH_ROWS)})
                cursor.execute(query["sql"], query["params"] or None)
                reader = cursor.fetch_record_batch()
                # An Arrow file in shared memory: the parent maps it without a copy.
                answer = os.path.join(folder, f"loyalty-analytics-{os.getpid()}-{number}.arrow")
                with pa.OSFile(answer, "wb") as out, pa.ipc.new_file(out, reader.schema) as writer:
                    for batch in reader:
                        writer.write_batch(batch)
            reply = _OK + answer.encode()
        except Exception as error:  # noqa: BLE001 - every failure goes back to the parent as its answer
            reply = _FAILED + f"{type(error).__name__}: {error}".encode()
            if answer is not None and os.path.exists(answer):  # half written: nobody will read it
                os.unlink(answer)
        _write_message(sink, reply)
    return 0


# --- the parent ---------------------------------------------------------------------------


def _read_exactly(fd: int, size: int, deadline: float, limit: float) -> bytes:
    """``size`` bytes from the pipe ``fd``, or fewer if it closes; ReaderTimeout after ``deadline``."""
    parts, remaining = [], size
    while remaining:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise ReaderTimeout(f"The SQLite reader process did not answer within {limit:.0f} s; it was stopped.")
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            break
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


def _request(sql: str, params: Sequence[Any]) -> bytes:
    for value in params:
        if value is not None and not isinstance(value, (str, int, float)):
            raise TypeError(f"The SQLite reader binds text, numbers and NULL, not {type(value).__name__} ({value!r}).")
    return json.dumps({"sql": sql, "params": list(params)}).encode()


class _SqliteReader:
    """A child process that runs read-only queries on one SQLite file through ADBC."""

    def __init__(self, path: str) -> None:
        self.pid = os.getpid()
        self.lock = threading.Lock()
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [_PROJECT_ROOT, environment.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "loyalty.analytics.reader", path, _ANSWER_FOLDER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=environment,
        )

    def alive(self) -> bool:
        return self.pid == os.getpid() and self.process.poll() is None

    def fetch(self, sql: str, params: Sequence[Any] = (), *, time_limit: float | None = None) -> pa.Table:
        assert self.process.stdin is not None and self.process.stdout is not None
        limit = READER_QUERY_SECONDS if time_limit is None else time_limit
        query = _request(sql, params)
        # Another thread's query goes first; its own wait is limited too.
        if not self.lock.acquire(timeout=2 * limit):
            raise ReaderTimeout(f"The SQLite reader process stayed busy with another query for {2 * limit:.0f} s.")
        try:
            deadline = time.monotonic() + limit
            self.process.stdin.write(_LENGTH.pack(len(query)) + query)
            self.process.stdin.flush()
            stdout = self.process.stdout.fileno()  # raw reads only: select() must see every unread byte
            head = _read_exactly(stdout, _LENGTH.size, deadline, limit)
            if len(head) < _LENGTH.size:
                # Its pipe closed: wait for the end, so the next read starts a new reader, not this one.
                self.process.kill()
                self.process.wait(timeout=10)
                raise _ReaderStopped("The SQLite reader process stopped; the query was not answered.")
            reply = _read_exactly(stdout, _LENGTH.unpack(head)[0], deadline, limit)
        except BrokenPipeError:
            raise _ReaderStopped("The SQLite reader process stopped; the query was not sent.") from None
        except BaseException:
            # Half a reply left in the pipe would answer the next query: start afresh.
            self.process.kill()
            raise
        finally:
            self.lock.release()
        if reply[:1] != _OK:
            raise ReaderQueryError(f"SQLite query failed in the reader process: {reply[1:].decode(errors='replace')}")
        answer = reply[1:].decode()
        try:
            with pa.memory_map(answer) as source:
                return pa.ipc.open_file(source).read_all()
        finally:
            os.unlink(answer)  # the mapping stays valid until the table is gone

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


# (database file, slot) -> its reader; slot 0 answers single queries, slots 1.. the other
# parts of read_sqlite_parts.
_readers: OrderedDict[tuple[str, int], _SqliteReader] = OrderedDict()
_readers_lock = threading.Lock()


def close_readers() -> None:
    """Stop the SQLite reader processes of this process (also done at exit)."""
    with _readers_lock:
        for reader in _readers.values():
            reader.close()
        _readers.clear()


atexit.register(close_readers)


def _reader(path: str, slot: int) -> _SqliteReader:
    """The live reader of ``slot`` on ``path``, started when there is none."""
    with _readers_lock:
        reader = _readers.pop((path, slot), None)
        if reader is None or not reader.alive():
            reader = _SqliteReader(path)
        _readers[(path, slot)] = reader
        while len(_readers) > MAX_READERS:
            _readers.popitem(last=False)[1].close()
    return reader


def _fetch(path: str, slot: int, sql: str, params: Sequence[Any], time_limit: float | None) -> pa.Table:
    for attempt in range(2):
        reader = _reader(path, slot)
        try:
            return reader.fetch(sql, params, time_limit=time_limit)
        except _ReaderStopped:
            # Closed by another thread in between, or crashed: once more with a new one.
            if attempt:
                raise
    raise AssertionError("unreachable")


def read_sqlite(path: str, sql: str, params: Sequence[Any] = (), *, time_limit: float | None = None) -> pa.Table:
    """Rows of a read-only ``sql`` (``?`` placeholders bound to ``params`` in order) on the SQLite file ``path``.

    Runs in this process's reader for ``path`` (started on first use). Raises
    :class:`ReaderTimeout` when it does not answer within ``time_limit`` seconds (default
    :data:`READER_QUERY_SECONDS`; the reader is killed) and :class:`ReaderQueryError`
    when the query fails.
    """
    return _fetch(os.path.abspath(path), 0, sql, params, time_limit)


def read_sqlite_parts(path: str, queries: Sequence[tuple[str, Sequence[Any]]], *, time_limit: float | None = None) -> list[pa.Table]:
    """The rows of several read-only queries on ``path``, run at the same time, each by a reader of its own.

    For one large table read in ranges of its rows (at most :data:`READ_PARTS` queries):
    each reader is a process, so the ranges are read on as many cores. Each query sees
    what was committed when it started; the time limit and errors are those of
    :func:`read_sqlite`, and the first error is raised once every query has ended.
    """
    path = os.path.abspath(path)
    if len(queries) > READ_PARTS:
        raise ValueError(f"At most {READ_PARTS} queries at once, not {len(queries)}.")
    if len(queries) == 1:
        return [_fetch(path, 0, *queries[0], time_limit)]
    with ThreadPoolExecutor(len(queries), thread_name_prefix="sqlite-reader") as pool:
        answers = [pool.submit(_fetch, path, slot, sql, params, time_limit) for slot, (sql, params) in enumerate(queries)]
        return [answer.result() for answer in answers]


if __name__ == "__main__":
    sys.exit(main())
