"""The analytics readers: the SQLite reader process, the DB-API read and PostgreSQL COPY, with bound parameters."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from sqlmodel import Session

from loyalty.analytics import reader as analytics_reader_module
from loyalty.analytics.data import fetch_frame, load_members
from loyalty.analytics.reader import ReaderQueryError, ReaderTimeout, analytics_reader, read_sqlite
from tests.factories import make_member, make_purchase, make_tier, utc

SCHEMA = {"member_id": pl.Int64, "store": pl.String, "tier": pl.String, "amount": pl.Float64}
# Values only as parameters: a moment, a day, a text with a quote in it and a NULL (ann has no tier).
WINDOW_SQL = (
    "SELECT p.member_id, p.store, t.name AS tier, CAST(p.amount AS REAL) AS amount FROM purchase p "
    "JOIN member m ON m.id = p.member_id LEFT JOIN tier t ON t.id = m.tier_id "
    "WHERE p.occurred_at >= :since AND p.occurred_at < :until AND (:store IS NULL OR p.store = :store) ORDER BY p.id"
)
CEST = timezone(timedelta(hours=2))


@pytest.fixture
def purchases(session: Session) -> dict[str, int]:
    ann, bob = make_member(session, external_id="ann"), make_member(session, external_id="bob", tier_id=make_tier(session, name="Gold").id)
    make_purchase(session, ann, 10.0, utc(2024, 6, 1, 10), store="O'Brien's")
    make_purchase(session, ann, 20.0, utc(2024, 6, 1, 12), store="S1")
    make_purchase(session, bob, 40.0, utc(2024, 6, 2, 0), store="S1")
    make_purchase(session, bob, 80.0, utc(2024, 6, 3, 9), store="S2")
    return {"ann": int(ann.id), "bob": int(bob.id)}


def _sqlite_only(session: Session) -> None:
    if session.get_bind().dialect.name != "sqlite":
        pytest.skip("the reader process serves SQLite")
    pytest.importorskip("adbc_driver_sqlite", reason="pip install adbc-driver-sqlite (requirements.txt)")


def _path(session: Session) -> str:
    return os.path.abspath(session.get_bind().url.database)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        # 13:00 in UTC+2 is 11:00 UTC: the 10:00 purchase is before it.
        (
            {"since": datetime(2024, 6, 1, 13, tzinfo=CEST), "until": date(2024, 6, 3), "store": None},
            [("ann", "S1", None, 20.0), ("bob", "S1", "Gold", 40.0)],
        ),
        # A day is its first moment (UTC): the purchase at midnight of June 2 is not before it.
        ({"since": date(2024, 6, 1), "until": date(2024, 6, 2), "store": None}, [("ann", "O'Brien's", None, 10.0), ("ann", "S1", None, 20.0)]),
        ({"since": date(2024, 1, 1), "until": date(2025, 1, 1), "store": "O'Brien's"}, [("ann", "O'Brien's", None, 10.0)]),
    ],
    ids=["an aware moment in another time zone", "days as UTC midnights", "a text with a quote is bound, not spliced"],
)
def test_the_reader_process_reads_what_the_session_s_driver_reads(
    session: Session, purchases: dict[str, int], params: dict, expected: list[tuple]
) -> None:
    _sqlite_only(session)
    through_process = fetch_frame(session, WINDOW_SQL, SCHEMA, params=params, reader="adbc")
    through_driver = fetch_frame(session, WINDOW_SQL, SCHEMA, params=params, reader="dbapi")
    assert_frame_equal(through_process, through_driver)
    by_id = {number: name for name, number in purchases.items()}
    rows = [(by_id[m], s, c, a) for m, s, c, a in through_process.iter_rows()]
    assert rows == expected


def test_the_reader_process_binds_parameters_in_order_even_when_one_repeats(session: Session, purchases: dict[str, int]) -> None:
    _sqlite_only(session)
    table = read_sqlite(
        _path(session), "SELECT ? AS a, ? AS b, ? AS c, ? AS d, COUNT(*) AS n FROM purchase WHERE store = ?", ["text", 7, 2.5, None, "S1"]
    )
    assert table.to_pylist() == [{"a": "text", "b": 7, "c": 2.5, "d": None, "n": 2}]


def test_a_sql_error_in_the_reader_process_comes_back_as_a_clear_error(session: Session, purchases: dict[str, int]) -> None:
    _sqlite_only(session)
    with pytest.raises(ReaderQueryError, match="SQLite query failed in the reader process: .*no such column: nope"):
        read_sqlite(_path(session), "SELECT nope FROM purchase", [])
    with pytest.raises(ReaderQueryError, match="no such table: nowhere"):
        fetch_frame(session, "SELECT 1 FROM nowhere WHERE 1 = :one", {"x": pl.Int64}, params={"one": 1}, reader="adbc")
    assert load_members(session, columns=("member_id",), reader="adbc").height == 2, "the same reader answers the next query"


def test_a_missing_parameter_is_refused_before_anything_runs(session: Session, purchases: dict[str, int]) -> None:
    with pytest.raises(Exception, match="since"):
        fetch_frame(session, WINDOW_SQL, SCHEMA, params={"until": date(2025, 1, 1), "store": None}, reader="dbapi")


def test_a_reader_process_that_died_is_replaced(session: Session, purchases: dict[str, int]) -> None:
    _sqlite_only(session)
    assert load_members(session, columns=("member_id",), reader="adbc").height == 2
    for process in list(analytics_reader_module._readers.values()):
        process.process.kill()
        process.process.wait()
    assert load_members(session, columns=("member_id",), reader="adbc").height == 2


def test_a_reader_process_that_does_not_answer_in_time_is_killed_with_a_clear_error(
    session: Session, purchases: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    _sqlite_only(session)
    usual = analytics_reader_module.READER_QUERY_SECONDS
    monkeypatch.setattr(analytics_reader_module, "READER_QUERY_SECONDS", 1.0)
    endless = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT MAX(x) FROM n WHERE x > :floor"
    started = time.monotonic()
    with pytest.raises(ReaderTimeout, match="did not answer within 1 s; it was stopped"):
        fetch_frame(session, endless, {"x": pl.Int64}, params={"floor": 0}, reader="adbc")
    assert time.monotonic() - started < 5
    stuck = analytics_reader_module._readers[(_path(session), 0)]
    assert stuck.process.wait(timeout=5) == -signal.SIGKILL, "the stuck reader was killed"
    # The usual time limit again: a new reader's start may take over 1 s on a busy machine.
    monkeypatch.setattr(analytics_reader_module, "READER_QUERY_SECONDS", usual)
    assert load_members(session, columns=("member_id",), reader="adbc").height == 2, "a new reader answers"


def test_jobs_read_sqlite_through_the_reader_process_and_postgresql_through_copy(session: Session) -> None:
    expected = "auto" if session.get_bind().dialect.name == "sqlite" else "dbapi"
    assert analytics_reader(session) == expected


@pytest.fixture
def postgres_session(postgres_url: str) -> Iterator[Session]:
    from db.engine import get_engine, new_session

    with new_session(get_engine(postgres_url)) as session:
        yield session


def test_postgresql_copy_binds_parameters_on_the_client(postgres_session: Session) -> None:
    session = postgres_session
    ann, bob = make_member(session, external_id="ann"), make_member(session, external_id="bob", tier_id=make_tier(session, name="Gold").id)
    make_purchase(session, ann, 10.0, utc(2024, 6, 1, 10), store="O'Brien's")
    make_purchase(session, ann, 20.0, utc(2024, 6, 1, 12), store="S1")
    make_purchase(session, bob, 40.0, utc(2024, 6, 2, 0), store="S1")
    sql = WINDOW_SQL.replace("AS REAL", "AS DOUBLE PRECISION").replace("(:store IS NULL", "(CAST(:store AS TEXT) IS NULL")
    params = {"since": datetime(2024, 6, 1, 11, 59, tzinfo=CEST), "until": date(2024, 6, 2), "store": None}
    through_copy = fetch_frame(session, sql, SCHEMA, params=params, reader="dbapi")
    expected = pl.DataFrame(
        {"member_id": [ann.id, ann.id], "store": ["O'Brien's", "S1"], "tier": [None, None], "amount": [10.0, 20.0]}, schema=SCHEMA
    )
    assert_frame_equal(through_copy, expected)
    quoted = fetch_frame(session, sql, SCHEMA, params={**params, "store": "O'Brien's", "until": date(2025, 1, 1)}, reader="dbapi")
    assert quoted["store"].to_list() == ["O'Brien's"]
    percent = fetch_frame(session, "SELECT :n AS n WHERE 'a%b' LIKE 'a%'", {"n": pl.Int64}, params={"n": 5}, reader="dbapi")
    assert percent["n"].to_list() == [5], "a literal % survives psycopg's client-side binding"
    try:
        import adbc_driver_postgresql  # noqa: F401
    except ImportError:
        return
    assert_frame_equal(fetch_frame(session, sql, SCHEMA, params=params, reader="adbc"), expected)


def test_one_reader_answers_many_bound_queries_of_more_than_one_batch(tmp_path):
    """Regression: with a parameter bound to a bare ADBC statement the reader process died
    (SIGSEGV) on its second or third query once an answer spanned several Arrow batches."""
    import sqlite3

    path = tmp_path / "many.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, day TEXT, amount REAL)")
        db.executemany(
            "INSERT INTO t (day, amount) VALUES (?, ?)",
            ((f"2026-{1 + i % 12:02d}-01", i * 0.5) for i in range(3 * analytics_reader_module.BATCH_ROWS)),
        )
    pid = None
    for month in (12, 11, 11, 10, 9):
        table = read_sqlite(str(path), "SELECT id, amount FROM t WHERE day < ?", [f"2026-{month:02d}-01"])
        assert table.num_rows == sum(1 for i in range(3 * analytics_reader_module.BATCH_ROWS) if 1 + i % 12 < month)
        reader = analytics_reader_module._readers[(os.path.abspath(path), 0)]
        assert pid in (None, reader.process.pid), "the same reader process answered every query"
        pid = reader.process.pid


def test_a_large_table_is_read_in_parts_at_once_with_the_same_rows(
    session: Session, purchases: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Purchases and the ledger are read in id ranges by several reader processes at once
    (here two parts, whatever the machine's cores); the rows are those of one read."""
    _sqlite_only(session)
    from loyalty.analytics import data

    make_purchase(session, make_member(session, external_id="cy"), 5.0, utc(2024, 6, 4, 8))
    whole = (data.load_purchases(session, reader="dbapi"), data.load_ledger_entries(session, date(2024, 7, 1), reader="dbapi"))
    monkeypatch.setattr(data, "READ_PARTS", 2)
    monkeypatch.setattr(analytics_reader_module, "READ_PARTS", 2)
    monkeypatch.setattr(data, "SPLIT_MIN_ROWS", 2)
    assert data.id_parts(session, "purchase", "auto") is not None
    assert data.id_parts(session, "purchase", "dbapi") is None, "the session's own connection reads in one query"
    assert data.id_parts(session, "purchase", "auto", since=date(2024, 1, 1)) is not None, "from before every purchase: in parts"
    assert data.id_parts(session, "purchase", "auto", since=date(2024, 6, 4)) is None, "the last day only: one query by the day's index"
    assert data.id_parts(session, "purchase", "auto", since=date(2025, 1, 1)) is None, "nothing to read after it"
    parts = data.id_parts(session, "ledger_entry", "auto")
    assert parts is not None and len(parts) == 2 and parts[0]["part_to"] == parts[1]["part_from"], "two ranges, end to end"
    in_parts = (data.load_purchases(session), data.load_ledger_entries(session, date(2024, 7, 1)))
    for one, split in zip(whole, in_parts):
        assert split.height == one.height == 5
        assert_frame_equal(split.sort(split.columns), one.sort(one.columns))
    slots = {slot for path, slot in analytics_reader_module._readers if path == _path(session)}
    assert slots == {0, 1}, "each part had a reader process of its own"


def test_shared_reads_read_each_table_once_per_set_of_arguments(session: Session, purchases: dict[str, int], monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside shared_reads() the same read is made once and its frame handed to every caller;
    other arguments are another read; outside the block every call reads."""
    from loyalty.analytics import data

    reads: list[str] = []
    real_purchases, real_members = data._read_purchases, data._read_members
    monkeypatch.setattr(data, "_read_purchases", lambda *a: reads.append("purchases") or real_purchases(*a))
    monkeypatch.setattr(data, "_read_members", lambda *a: reads.append("members") or real_members(*a))
    with data.shared_reads():
        first = data.load_purchases(session, end=date(2024, 6, 3))
        assert data.load_purchases(session, end=date(2024, 6, 3)) is first
        assert data.load_purchases(session, end=date(2024, 6, 4)).height == 4 and first.height == 3
        assert data.load_members(session, columns=("member_id",)) is data.load_members(session, columns=("member_id",))
    assert reads == ["purchases", "purchases", "members"]
    assert data.load_purchases(session, end=date(2024, 6, 3)) is not first
    assert reads[-1] == "purchases", "outside the block every call reads"
