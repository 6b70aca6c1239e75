"""A big file is imported a chunk at a time (memory does not grow with the file) with the same
results as in one piece: repeats and conflicts across chunks, purchases without an id, members
created at their first purchase, every problem with its line, rejected rows from every chunk."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlmodel import Session, select

from db.models import LedgerEntry, Member, Purchase
from loyalty.access.roles import SYSTEM_CLI
from loyalty.ledger import imports
from loyalty.ledger.imports import ImportRefused, import_csv

HEADER = "purchase_id,member_id,occurred_at,amount,channel,store,category\n"


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imports, "IMPORT_CHUNK_BYTES", 512)  # about 8 rows a chunk


@pytest.fixture
def members(session: Session) -> Session:
    rows = "".join(f"M{i},Name {i},m{i}@example.com,2025-01-01,web\n" for i in range(20))
    import_csv(session, "members", io.BytesIO(("member_id,name,email,joined_at,acquisition_channel\n" + rows).encode()), actor=SYSTEM_CLI)
    return session


def rows(n: int, start: int = 0) -> str:
    return "".join(f"P{i},M{i % 20},2026-0{1 + i % 9}-1{i % 9}T10:00:00Z,{10 + i % 7}.50,web,S{i % 3},food\n" for i in range(start, start + n))


def totals(session: Session) -> tuple[int, int]:
    session.rollback()
    return session.exec(select(func.count()).select_from(Purchase)).one(), session.exec(select(func.sum(LedgerEntry.points))).one()


def test_a_clean_file_in_chunks_gives_what_one_piece_gives(session: Session, members: Session, small_chunks, monkeypatch, tmp_path: Path):
    data = (HEADER + rows(200)).encode()
    chunked = import_csv(session, "purchases", io.BytesIO(data), actor=SYSTEM_CLI)
    first = totals(session)
    again = import_csv(session, "purchases", io.BytesIO(data), actor=SYSTEM_CLI)  # idempotent across chunks too
    assert (chunked.imported, chunked.skipped, again.imported, again.skipped) == (200, 0, 0, 200)
    assert totals(session) == first == (200, sum(10 + i % 7 for i in range(200)))


def test_repeats_and_conflicts_across_chunks_are_found_with_both_lines(session: Session, members: Session, small_chunks):
    same = "P5,M5,2026-06-15T10:00:00Z,15.50,web,S2,food\n"
    text = HEADER + same + rows(60, start=100) + same + rows(20, start=200) + "P5,M5,2026-06-15T10:00:00Z,99.00,web,S2,food\n"
    with pytest.raises(ImportRefused) as refused:
        import_csv(session, "purchases", io.BytesIO(text.encode()), actor=SYSTEM_CLI)
    (problem,) = refused.value.problems
    # Line 63 repeats line 2 (skipped); line 84 is P5 again with another amount.
    assert (problem.line, problem.column) == (84, "purchase_id") and "appears on lines 2, 84 with different content" in problem.reason
    assert totals(session)[0] == 0  # nothing written, though the first chunks had been


def test_purchases_without_an_id_stay_as_many_across_chunks(session: Session, members: Session, small_chunks):
    coffee = "M1,2026-03-01T09:00:00Z,2.50,store,S1,coffee\n"
    text = "member_id,occurred_at,amount,channel,store,category\n" + coffee * 30
    assert import_csv(session, "purchases", io.BytesIO(text.encode()), actor=SYSTEM_CLI).imported == 30
    assert import_csv(session, "purchases", io.BytesIO(text.encode()), actor=SYSTEM_CLI).skipped == 30


def test_members_created_from_a_file_join_at_their_first_purchase_in_any_chunk(session: Session, small_chunks):
    text = HEADER + rows(40).replace(",M", ",N") + "P999,N3,2025-02-01T08:00:00Z,5.00,web,S1,food\n"
    import_csv(session, "purchases", io.BytesIO(text.encode()), actor=SYSTEM_CLI, create_members=True)
    session.rollback()
    joined = session.exec(select(Member.joined_at).where(Member.external_id == "N3")).one()
    assert joined.isoformat().startswith("2025-02-01T08:00")


def test_every_problem_of_every_chunk_is_reported_and_set_aside(session: Session, members: Session, small_chunks, tmp_path: Path):
    bad = (
        HEADER
        + rows(20)
        + "P500,M1,2099-01-01,10,web,S1,food\n"
        + rows(30, start=20)
        + "P501,M1\n"
        + rows(10, start=50)
        + "P502,M404,2026-01-01,1,web,S1,food\n"
    )
    path = tmp_path / "feed.csv"
    path.write_text(bad)
    with pytest.raises(ImportRefused) as refused:
        import_csv(session, "purchases", path, actor=SYSTEM_CLI)
    assert [(p.line, p.column) for p in refused.value.problems] == [(22, "occurred_at"), (53, ""), (64, "member_id")]
    result = import_csv(session, "purchases", path, actor=SYSTEM_CLI, skip_invalid=True)
    assert (result.imported, result.rejected) == (60, 3)
    set_aside = result.rejected_path.read_text().splitlines()
    assert [line.split(",")[0] for line in set_aside] == ["line", "22", "53", "64"]
    assert not list(tmp_path.glob(".*partial"))
