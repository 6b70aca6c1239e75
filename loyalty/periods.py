"""The calendar of periods: month arithmetic, calendar periods, and what a run "as of" a day sees.

Every period in the product is ``[start, end)``: ``start`` is the first day in it, ``end`` the
first day after it. A run *as of* a day sees everything before the end of that day (UTC).
One definition of each, used by analytics, jobs, reports, alerts, forecasts and the simulator.
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, timedelta
from typing import Literal

from loyalty.errors import InvalidInput

__all__ = [
    "add_months",
    "as_utc",
    "check_period",
    "cutoff_of",
    "default_as_of",
    "is_complete",
    "last_complete_month",
    "month_start",
    "period_bounds",
    "period_info",
    "previous_period",
]

Period = Literal["week", "month", "quarter", "year"]


def as_utc(moment: datetime | date | str) -> datetime:
    """A moment as an aware UTC datetime: a naive one (or SQLite's stored text) is taken as UTC, a day as its start."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    if not isinstance(moment, datetime):
        return datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def add_months(day: date, months: int) -> date:
    """The same day ``months`` months later (earlier if negative), clamped to the month's last day.

    >>> add_months(date(2026, 1, 31), 1), add_months(date(2028, 3, 1), -1)
    (datetime.date(2026, 2, 28), datetime.date(2028, 2, 1))
    """
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def month_start(day: date) -> date:
    """The first day of ``day``'s month."""
    return date(day.year, day.month, 1)


def check_period(start: date, end: date) -> None:
    """Raise :class:`InvalidInput` unless ``[start, end)`` is two dates and not empty."""
    if not isinstance(start, date) or not isinstance(end, date):
        raise InvalidInput(f"A period is two dates (YYYY-MM-DD); got {start!r} and {end!r}.")
    if start >= end:
        raise InvalidInput(f"The period must end after it starts: from {start} to {end} is empty (the end is exclusive).")


def previous_period(start: date, end: date) -> tuple[date, date]:
    """The period just before ``[start, end)``: same months if both are month starts, else same days."""
    check_period(start, end)
    if start.day == 1 and end.day == 1:
        months = (end.year - start.year) * 12 + end.month - start.month
        return add_months(start, -months), start
    return start - (end - start), start


def period_bounds(period: Period, day: date) -> tuple[date, date]:
    """``[start, end)`` of the calendar week (Monday first), month, quarter or year holding ``day``."""
    if period == "week":
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=7)
    if period == "month":
        start = day.replace(day=1)
        return start, add_months(start, 1)
    if period == "quarter":
        start = date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)
        return start, add_months(start, 3)
    if period == "year":
        return date(day.year, 1, 1), date(day.year + 1, 1, 1)
    raise InvalidInput(f"Unknown period {period!r}; choose week, month, quarter or year.")


def cutoff_of(as_of: date) -> datetime:
    """The end of ``as_of`` (UTC): what a run as of that day sees is everything before it."""
    following = as_of + timedelta(days=1)
    return datetime(following.year, following.month, following.day, tzinfo=UTC)


def default_as_of(now: datetime) -> date:
    """Yesterday in UTC as seen at ``now``: the last complete day."""
    return now.astimezone(UTC).date() - timedelta(days=1)


def is_complete(end: date, now: datetime) -> bool:
    """Whether a period ending (exclusive) at ``end`` is over at ``now``: its last day has ended in UTC."""
    return end <= now.astimezone(UTC).date()


def period_info(start: date, end: date, now: datetime) -> dict[str, str | bool]:
    """``{"from", "to", "complete"}``: how every JSON output names its period (``to`` exclusive)."""
    return {"from": start.isoformat(), "to": end.isoformat(), "complete": is_complete(end, now)}


def last_complete_month(now: datetime) -> tuple[date, date]:
    """``[start, end)`` of the last calendar month that has ended at ``now`` (UTC)."""
    end = month_start(now.astimezone(UTC).date())
    return add_months(end, -1), end
