"""Exports to CSV (python -m loyalty export, and every download): cells a spreadsheet would run
are inert, the asking role's masking applies, a failed export leaves no file, and each export
is audited once."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pandas as pd
import pytest
from sqlmodel import Session, select

from db.models import AuditLog, Member
from loyalty.access.roles import SYSTEM_CLI, Actor
from loyalty.errors import InvalidInput, NotFound, PermissionDenied
from loyalty.ledger.entries import adjust_points
from loyalty.ledger.exports import export_csv
from loyalty.ledger.imports import import_csv
from loyalty.program.segments import save_segment

MANAGER = Actor("max", "manager")
ANALYST = Actor("ann", "analyst")
FORMULAS = ['=HYPERLINK("http://evil","click")', "+1+1", "-2+3", "@SUM(A1)", "\tTAB", "\rCR"]


def quoted(value: str) -> str:
    return value.replace('"', '""')


def inert_as_imported(value: str) -> str:
    """The import strips values; what is left and starts like a formula gets a leading quote."""
    value = value.strip()
    return "'" + value if value.startswith(("=", "+", "-", "@")) else value


@pytest.fixture
def program(session: Session) -> Session:
    members = "member_id,name,email,joined_at,acquisition_channel,phone\n" + "".join(
        f'M{i},"{quoted(name)}",m{i}@example.com,2025-01-0{i},web,+351 900 000 00{i}\n' for i, name in enumerate(FORMULAS, start=1)
    )
    import_csv(session, "members", io.BytesIO(members.encode()), actor=SYSTEM_CLI)
    purchases = "purchase_id,member_id,occurred_at,amount,channel,store,category\n" + "".join(
        f'P{i},M{i},2026-10-0{i},{10 * i},web,"{quoted(store)}",food\n' for i, store in enumerate(FORMULAS, start=1)
    )
    import_csv(session, "purchases", io.BytesIO(purchases.encode()), actor=SYSTEM_CLI)
    return session


def read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def test_no_exported_cell_starts_like_a_formula(program: Session, tmp_path: Path):
    for what in ("members", "purchases", "ledger"):
        out = tmp_path / f"{what}.csv"
        export_csv(program, what, out, actor=SYSTEM_CLI)
        for row in read(out):
            for column, value in row.items():
                assert not value.startswith(("=", "+", "@", "\t", "\r")), (what, column, value)
                if value.startswith("-"):
                    assert column in {"points", "amount", "returned"}, (what, column, value)  # a number, not text
    names = [row["name"] for row in read(tmp_path / "members.csv")]
    assert names == [inert_as_imported(name) for name in FORMULAS]  # kept, readable, inert
    stores = [row["store"] for row in read(tmp_path / "purchases.csv")]
    assert stores == [inert_as_imported(name) for name in FORMULAS]


def test_an_export_is_masked_as_the_asking_role_may_see_it(program: Session, tmp_path: Path):
    member_id = program.exec(select(Member.id).where(Member.external_id == "M1")).one()
    adjust_points(session=program, member_id=member_id, points=5, reason="goodwill, called +351 912 345 678 / ana@example.com", actor=SYSTEM_CLI)
    export_csv(program, "members", tmp_path / "analyst.csv", actor=ANALYST)
    export_csv(program, "ledger", tmp_path / "ledger.csv", actor=ANALYST)
    export_csv(program, "members", tmp_path / "manager.csv", actor=MANAGER)
    analyst, manager = read(tmp_path / "analyst.csv"), read(tmp_path / "manager.csv")
    assert analyst[0]["email"] == "m***@example.com" and analyst[0]["phone"] == "'+***"
    assert manager[0]["email"] == "m1@example.com" and manager[0]["phone"] == "'+351 900 000 001"
    reasons = [row["reason"] for row in read(tmp_path / "ledger.csv") if row["kind"] == "adjust"]
    assert reasons == ["goodwill, called [phone] / a***@example.com"]


def test_a_segment_is_exported_by_name_and_an_unknown_one_is_named_with_the_others(program: Session, tmp_path: Path):
    save_segment(session=program, actor=MANAGER, name="Web joiners", rules={"acquisition_channel": ["web"]})
    result = export_csv(program, "segment", tmp_path / "segment.csv", actor=MANAGER, segment="Web joiners")
    assert (result["rows"], result["segment"]) == (6, "Web joiners")
    with pytest.raises(NotFound, match="the segments are: Web joiners"):
        export_csv(program, "segment", tmp_path / "other.csv", actor=MANAGER, segment="Champions")
    with pytest.raises(InvalidInput, match="Name the segment"):
        export_csv(program, "segment", tmp_path / "other.csv", actor=MANAGER)
    assert not (tmp_path / "other.csv").exists()


def test_chunks_write_the_same_file_as_one_piece_and_each_export_is_audited_once(program: Session, tmp_path: Path):
    one = export_csv(program, "purchases", tmp_path / "one.csv", actor=SYSTEM_CLI)
    chunked = export_csv(program, "purchases", tmp_path / "chunked.csv", actor=SYSTEM_CLI, chunk_rows=4)
    assert one["rows"] == chunked["rows"] == 6
    assert (tmp_path / "one.csv").read_text() == (tmp_path / "chunked.csv").read_text()
    audits = program.exec(select(AuditLog).where(AuditLog.action == "data.export")).all()
    assert [a.entity for a in audits] == ["purchases", "purchases"]


def test_a_failed_export_leaves_no_file_and_an_executive_may_not_export(program: Session, tmp_path: Path, monkeypatch):
    from loyalty.ledger import exports

    def broken(frame: pd.DataFrame, header: bool = True) -> str:
        raise OSError("No space left on device")

    monkeypatch.setattr(exports, "csv_text", broken)
    folder = tmp_path / "out"
    folder.mkdir()
    with pytest.raises(OSError):
        export_csv(program, "members", folder / "members.csv", actor=SYSTEM_CLI)
    assert list(folder.iterdir()) == []
    with pytest.raises(PermissionDenied):
        export_csv(program, "members", tmp_path / "members.csv", actor=Actor("eve", "executive"))


def test_the_command_line_exports_with_its_json_output(program: Session, tmp_path: Path, capsys):
    from loyalty.cli import main

    assert main(["export", "purchases", "--out", str(tmp_path / "p.csv"), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == {"export": "purchases", "file": str(tmp_path / "p.csv"), "rows": 6, "columns": list(printed["columns"])}
    assert printed["columns"][:2] == ["purchase_id", "member_id"]
    assert main(["export", "segment", "Nope", "--out", str(tmp_path / "s.csv")]) == NotFound.exit_code
