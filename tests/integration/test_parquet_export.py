"""``export parquet``: Hive-style months, read back whole, and only new or changed months rewritten."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.dataset as ds
import pytest
from sqlalchemy import func, update
from sqlmodel import Session, select

from db.models import LedgerEntry, Member, Purchase
from loyalty.access.roles import Actor
from loyalty.analytics.parquet import MANIFEST, export_parquet
from loyalty.cli import main
from loyalty.errors import PermissionDenied
from tests.factories import make_member, make_purchase, utc

ADMIN = Actor("ada", "admin")


def _read(folder: Path, table: str) -> ds.Dataset:
    return ds.dataset(folder / table, format="parquet", partitioning="hive")


@pytest.fixture
def program(session: Session) -> dict[str, int]:
    """Two members buying in August, September and the running month (the clock is in November 2026)."""
    alice, bob = make_member(session, joined_at=utc(2026, 7, 3)), make_member(session, joined_at=utc(2026, 8, 9))
    ids = {
        "august": make_purchase(session, alice, 20.10, utc(2026, 8, 2)),
        "august_too": make_purchase(session, bob, 12.00, utc(2026, 8, 30, 23, 59)),
        "september": make_purchase(session, alice, 7.25, utc(2026, 9, 1)),
        "running": make_purchase(session, bob, 99.99, utc(2026, 11, 10)),
    }
    return {**ids, "alice": alice.id or 0}


def test_members_purchases_and_the_ledger_are_written_by_month_and_read_back_whole(session: Session, program: dict, tmp_path: Path) -> None:
    result = export_parquet(session, tmp_path, actor=ADMIN)

    assert sorted(p.name for p in (tmp_path / "purchases").iterdir()) == ["month=2026-08", "month=2026-09", "month=2026-11"]
    assert (tmp_path / "purchases" / "month=2026-08" / "part-0.parquet").is_file()
    assert not list(tmp_path.rglob("*.partial"))
    purchases = _read(tmp_path, "purchases").to_table().to_pandas()
    assert len(purchases) == session.exec(select(func.count()).select_from(Purchase)).one() == result["tables"]["purchases"]["rows"]
    assert sorted(purchases.loc[purchases["month"] == "2026-08", "amount"]) == [12.00, 20.10]
    assert _read(tmp_path, "members").count_rows() == session.exec(select(func.count()).select_from(Member)).one()
    assert _read(tmp_path, "ledger").count_rows() == session.exec(select(func.count()).select_from(LedgerEntry)).one()
    assert "email" not in _read(tmp_path, "members").schema.names
    assert set(json.loads((tmp_path / MANIFEST).read_text())["tables"]) == {"members", "purchases", "ledger"}


def test_a_second_export_rewrites_only_new_or_changed_months_and_the_running_one(session: Session, program: dict, tmp_path: Path) -> None:
    export_parquet(session, tmp_path, actor=ADMIN)
    september = tmp_path / "purchases" / "month=2026-09" / "part-0.parquet"
    written_at = september.stat().st_mtime_ns

    again = export_parquet(session, tmp_path, actor=ADMIN)["tables"]["purchases"]
    assert (again["months_written"], again["months_kept"]) == (["2026-11"], ["2026-08", "2026-09"])

    make_purchase(session, session.get(Member, program["alice"]), 5.00, utc(2026, 10, 12))  # a new month
    session.exec(update(Purchase).where(Purchase.id == program["august"]).values(refunded_at=utc(2026, 11, 12)))  # a changed one
    session.commit()
    third = export_parquet(session, tmp_path, actor=ADMIN)["tables"]["purchases"]

    assert (third["months_written"], third["months_kept"]) == (["2026-08", "2026-10", "2026-11"], ["2026-09"])
    assert september.stat().st_mtime_ns == written_at
    assert _read(tmp_path, "purchases").count_rows() == third["rows"] == 4


def test_the_command_line_exports_parquet_as_json(session: Session, program: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "parquet", "--out", str(tmp_path / "lake"), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["out"] == str(tmp_path / "lake")
    assert printed["tables"]["purchases"]["months_written"] == ["2026-08", "2026-09", "2026-11"]


def test_operations_staff_may_not_export_member_data(session: Session, program: dict, tmp_path: Path) -> None:
    with pytest.raises(PermissionDenied):
        export_parquet(session, tmp_path, actor=Actor("otto", "operations"))
