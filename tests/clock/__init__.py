"""The tests' clock: every test runs at a fixed instant, never at today's date.

:func:`frozen_clock` travels to an instant with time-machine (ticking, so timeouts and
sleeps still work) and exports that instant, with the real time it was read at, for
subprocesses: the ``sitecustomize`` module in this folder, put on PYTHONPATH, makes a
child Python read the same clock. tests/conftest.py uses it for the whole session and for
each test; tests marked ``calendar`` run once at each of :data:`CALENDAR_DATES`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from datetime import time as clock_time
from pathlib import Path

import pytest
import time_machine

__all__ = ["CALENDAR_DATES", "CLOCK_FOLDER", "DEFAULT_INSTANT", "at_noon", "frozen_clock", "parse_instant"]

CLOCK_FOLDER = Path(__file__).resolve().parent
NOW_VARIABLE, SINCE_VARIABLE = "LOYALTY_TEST_NOW", "LOYALTY_TEST_NOW_SINCE"

#: A month's first day, its middle, the last day every month has, the year's end and a leap day;
#: LOYALTY_TEST_DATES (comma-separated ISO dates) overrides them.
CALENDAR_DATES = tuple(
    date.fromisoformat(day) for day in (os.environ.get("LOYALTY_TEST_DATES") or "2026-03-01,2026-03-15,2026-03-28,2026-12-31,2028-02-29").split(",")
)


def at_noon(day: date) -> datetime:
    """Noon UTC: a whole test run stays on that day in every time zone from UTC-11 to UTC+11."""
    return datetime.combine(day, clock_time(12), tzinfo=UTC)


def parse_instant(text: str) -> datetime:
    """``2026-12-05`` (noon UTC) or an ISO 8601 instant (UTC when it names no offset)."""
    if len(text) == 10:
        return at_noon(date.fromisoformat(text))
    instant = datetime.fromisoformat(text)
    return instant if instant.tzinfo else instant.replace(tzinfo=UTC)


#: The instant of tests that are not run at each calendar date; LOYALTY_TEST_CLOCK overrides it.
DEFAULT_INSTANT = parse_instant(os.environ.get("LOYALTY_TEST_CLOCK") or "2026-11-16")


@contextmanager
def frozen_clock(instant: datetime, environment: pytest.MonkeyPatch) -> Iterator[None]:
    """This process at ``instant`` (ticking) and, through ``environment``, the subprocesses it starts."""
    with time_machine.travel(instant, tick=True):
        # Read both clocks together: a child adds the real time elapsed since to the instant.
        now, real = time.time(), time_machine.escape_hatch.time.time()
        environment.setenv(NOW_VARIABLE, datetime.fromtimestamp(now, UTC).isoformat())
        environment.setenv(SINCE_VARIABLE, repr(real))
        paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
        if str(CLOCK_FOLDER) not in paths:
            environment.setenv("PYTHONPATH", os.pathsep.join([str(CLOCK_FOLDER), *filter(None, paths)]))
        yield
