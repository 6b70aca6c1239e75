"""The benchmark's parts: the generated feeds import cleanly, steps are measured, the scaling table."""

from __future__ import annotations

import csv
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from sqlmodel import Session

from loyalty.access.roles import SYSTEM_CLI
from loyalty.devtools.bench import configure_program, generate_files, run_measured, scaling_table
from loyalty.ledger.imports import import_csv


def test_the_generated_feeds_import_without_a_rejected_row_and_earn_points(session: Session, tmp_path: Path, now: datetime) -> None:
    # Generated up to the tests' clock: an import refuses what is dated more than a day ahead of it.
    files = generate_files(300, 5, tmp_path, now=now)
    assert 1_200 <= files["purchases"] <= 1_800  # about members x purchases per member
    assert len(files["purchase_files"]) >= 24  # one feed per calendar month of the two years
    with open(files["purchase_files"][-1]) as feed:
        rows = list(csv.DictReader(feed))
    assert list(rows[0]) == ["member_id", "occurred_at", "amount", "channel", "store", "category", "purchase_id"]
    assert all(datetime.fromisoformat(r["occurred_at"].replace("Z", "+00:00")) <= now for r in rows)
    assert [r["purchase_id"] for r in rows] == sorted(r["purchase_id"] for r in rows)  # in time order, as a feed

    assert import_csv(session, "members", Path(files["members_file"]), actor=SYSTEM_CLI).imported == 300
    configured = configure_program(session, now=now)
    assert configured == {"tiers": 4, "rewards": 17, "campaigns": 3, "segments": 6}
    imported = sum(import_csv(session, "purchases", Path(p), actor=SYSTEM_CLI).imported for p in files["purchase_files"])
    assert imported == files["purchases"]
    points = session.connection().exec_driver_sql("SELECT COUNT(*), SUM(points) FROM ledger_entry WHERE kind = 'earn'").one()
    assert points[0] == imported and points[1] > 0


def test_a_measured_step_reports_its_time_memory_and_json_output() -> None:
    program = "import json, time; data = bytearray(80 * 1024 * 1024); time.sleep(0.3); print(json.dumps({'rows': 3}))"
    result = run_measured([sys.executable, "-c", program], env={"PATH": "/usr/bin:/bin"})
    assert result.output == {"rows": 3}
    assert result.seconds >= 0.3
    assert result.peak_mb >= 80  # the 80 MB it held


def test_a_failing_step_stops_the_benchmark_with_its_error() -> None:
    with pytest.raises(RuntimeError, match="boom"):
        run_measured([sys.executable, "-c", "raise SystemExit('boom')"], env={"PATH": "/usr/bin:/bin"})


def test_a_step_over_its_time_limit_is_stopped_with_its_child_processes(tmp_path) -> None:
    pid_file = tmp_path / "child.pid"
    program = (
        f"import subprocess, sys, time; child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"open({str(pid_file)!r}, 'w').write(str(child.pid)); time.sleep(60)"
    )
    started = time.monotonic()
    with pytest.raises(RuntimeError, match=r"did not finish within 2 s and was stopped"):
        run_measured([sys.executable, "-c", program], env={"PATH": "/usr/bin:/bin"}, time_limit=2.0)
    assert time.monotonic() - started < 10
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # killed; reaped by init
    assert not Path(f"/proc/{child}").exists() or "zombie" in Path(f"/proc/{child}/status").read_text()


def test_the_scaling_table_gives_the_growth_exponent_between_the_two_largest_sizes() -> None:
    results = [
        {"members": 10_000, "steps": {"evaluate-all": {"seconds": 2.0}, "analyze:clv": {"seconds": 1.0}}},
        {"members": 1_000_000, "steps": {"evaluate-all": {"seconds": 100.0}, "analyze:clv": {"seconds": 4.0}}},
        {"members": 100_000, "steps": {"evaluate-all": {"seconds": 10.0}, "analyze:clv": {"seconds": 2.0}}},
    ]
    table = scaling_table(results, steps=("evaluate-all", "analyze:clv")).splitlines()
    assert table[0].startswith("| step | 10,000 members | 100,000 members | 1,000,000 members |")
    assert table[2] == "| evaluate-all | 2.00 s | 10.00 s | 100.00 s | 1.00 |"  # 10x the members, 10x the time
    assert table[3] == "| analyze:clv | 1.00 s | 2.00 s | 4.00 s | 0.30 |"  # log 2 / log 10


def test_the_api_step_loads_a_real_server_and_checks_every_purchase_it_answered(tmp_path: Path, now: datetime) -> None:
    from loyalty.devtools.bench import BenchConfig, run_bench

    config = BenchConfig(members=150, purchases_per_member=2, workdir=tmp_path, steps=("api",), api_connections=4, api_seconds=3, now=now)
    result = run_bench(config, echo=lambda line: None)
    api = result["details"]["api"]
    assert api["server_errors"] == 0 and api["statuses"].keys() == {"201"}, api
    assert api["purchases"] > 0 and api["retries_sent"] == api["replayed"]
    check = api["check"]
    assert check["answered_201"] == check["stored"] == check["earned_once"] == check["points_as_answered"] == api["purchases"]
    assert check["stored_without_answer"] == 0
    assert "api:1-workers" in result["steps"]
