"""Faults of the environment: a read-only database, a full disk, a database that is down, a NUL
character on PostgreSQL. The command line prints one clear line and exits 1 (environment) or
2 (input), never a traceback, and nothing is half-written."""

from __future__ import annotations

import errno
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlmodel import Session, select

from db.models import LedgerEntry
from loyalty.access.roles import SYSTEM_CLI
from loyalty.cli import main
from loyalty.errors import describe_fault
from loyalty.ledger.imports import import_csv

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, url: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LOYALTY_DATABASE_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "loyalty", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


@pytest.fixture
def members(session: Session) -> Session:
    data = b"member_id,name,email,joined_at,acquisition_channel\nM1,Ann,a@x.com,2025-01-01,web\n"
    import_csv(session, "members", io.BytesIO(data), actor=SYSTEM_CLI)
    return session


def test_a_read_only_database_is_one_line_and_exit_1(sqlite_url: str, tmp_path: Path):
    copy = tmp_path / "copy.db"
    shutil.copy(sqlite_url.removeprefix("sqlite:///"), copy)
    done = cli("adjust", "--member", "M1", "--points", "5", "--reason", "x", url=f"sqlite:///file:{copy}?mode=ro&uri=true")
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]  # one line
    assert "read-only" in done.stderr and "Traceback" not in done.stderr


def test_a_database_that_is_down_is_one_line_and_exit_1():
    done = cli("jobs", "history", url="postgresql+psycopg://postgres@127.0.0.1:1/test?connect_timeout=5")
    assert done.returncode == 1
    assert done.stderr.startswith("error: The database cannot be reached") and "Traceback" not in done.stderr


def test_a_full_disk_is_one_line_and_exit_1_and_leaves_no_file(members: Session, tmp_path: Path, monkeypatch, capsys):
    from loyalty.ledger import exports

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(exports, "csv_text", full)
    out = tmp_path / "out"
    out.mkdir()
    assert main(["export", "members", "--out", str(out / "m.csv")]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == "error: The disk is full. Nothing was written."
    assert list(out.iterdir()) == []


def test_a_nul_character_on_postgresql_is_bad_input_exit_2_and_changes_nothing(postgres_url: str, monkeypatch, capsys):
    from db.engine import get_engine, new_session

    monkeypatch.setenv("LOYALTY_DATABASE_URL", postgres_url)
    with new_session(get_engine(postgres_url)) as session:
        import_csv(
            session, "members", io.BytesIO(b"member_id,name,email,joined_at,acquisition_channel\nM1,Ann,a@x.com,2025-01-01,web\n"), actor=SYSTEM_CLI
        )
    assert main(["adjust", "--member", "M1", "--points", "5", "--reason", "bad\x00reason"]) == 2
    assert "NUL character" in capsys.readouterr().err
    with new_session(get_engine(postgres_url)) as session:
        assert session.exec(select(LedgerEntry)).all() == []


def test_a_fault_that_is_no_environment_fault_is_left_to_surface():
    assert describe_fault(KeyError("x")) is None
    assert describe_fault(OSError(errno.EACCES, "Permission denied", "/x.csv")) == ("No permission to write: /x.csv (Permission denied).", 1)
