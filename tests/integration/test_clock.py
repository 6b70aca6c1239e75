"""The tests' frozen clock (tests/clock) holds in the subprocesses a test starts: a command
line run evaluates as of the test's yesterday, and a child reads the very same instant."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import time_machine

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _run(*argv: str) -> str:
    result = subprocess.run([sys.executable, *argv], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.calendar
def test_the_command_line_in_a_subprocess_evaluates_as_of_the_tests_yesterday(db_url, today):
    before = datetime.now(UTC)
    summary = json.loads(_run("-m", "loyalty", "evaluate", "--job", "kpi-snapshot", "--json").splitlines()[-1])
    after = datetime.now(UTC)
    assert summary["status"] == "succeeded", summary["error"]
    assert date.fromisoformat(summary["as_of"]) == today - timedelta(days=1)
    assert before <= datetime.fromisoformat(summary["started_at"]) <= after


def test_a_subprocess_reads_the_same_ticking_clock_as_the_test():
    # The offset of the frozen clock from the real one, read after a pause such as slow
    # imports: a worker's lease is 2 s, so the two processes must agree to the moment.
    program = (
        "import time; import time_machine; from datetime import date; time.sleep(1); "
        "print(time.time() - time_machine.escape_hatch.time.time(), date.today().isoformat())"
    )
    child_offset, child_today = _run("-c", program).split()
    offset = time.time() - time_machine.escape_hatch.time.time()
    assert float(child_offset) == pytest.approx(offset, abs=0.1)
    assert child_today == date.today().isoformat()
