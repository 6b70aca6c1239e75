"""How values read: money and numbers in words, the same everywhere (pages, reports, messages), and the CSV the product writes."""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["csv_text", "inert", "json_records", "json_value", "money", "number", "percent", "progress_words"]


def money(value: float | None, currency: str, *, decimals: int = 2) -> str:
    """``EUR 1,234.50``: the currency code, then the amount with thousands separators; ``n/a`` for no value.

    >>> money(1234.5, "EUR"), money(-3, "EUR", decimals=0), money(None, "EUR")
    ('EUR 1,234.50', 'EUR -3', 'n/a')
    """
    if value is None:
        return "n/a"
    return f"{currency} {value:,.{decimals}f}"


def percent(share: float | None, *, decimals: int = 1) -> str:
    """A share (0-1) as ``44.7%``; ``n/a`` for no value (a ratio over nobody).

    >>> percent(0.4471), percent(None), percent(float("nan"))
    ('44.7%', 'n/a', 'n/a')
    """
    if share is None or share != share:
        return "n/a"
    return f"{share:.{decimals}%}"


def number(value: float) -> str:
    """A count or limit as people read it: ``1,000,000``, ``2.5``, ``1e+300`` only when it is that large."""
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:,.6g}"


# A spreadsheet reads a cell starting with one of these as a formula (OWASP, "CSV Injection").
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def inert(value: str) -> str:
    """``value`` as a spreadsheet cell that cannot run: a leading ``'`` when it starts like a formula.

    >>> inert("=HYPERLINK(\\"http://x\\")"), inert("-5"), inert("Porto")
    ('\\'=HYPERLINK("http://x")', "'-5", 'Porto')
    """
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def csv_text(frame: pd.DataFrame, *, header: bool = True) -> str:
    """The CSV the product hands to people (downloads, exports, rejected rows): every text cell made
    :func:`inert`; numbers, dates and booleans are written as they are (a negative number stays one)."""
    safe = frame.copy(deep=False)
    for column in safe.columns:
        values = safe[column]
        if pd.api.types.is_string_dtype(values) or values.dtype == object:
            safe[column] = values.map(lambda v: inert(v) if isinstance(v, str) else v)
    return safe.to_csv(index=False, header=header)


def progress_words(done: int, total: int, seconds: float, unit: str = "rows") -> str:
    """``120,000 of 2,400,000 rows · 35,000 rows/s · about 1 min left`` (rate and time left once there is a rate).

    >>> progress_words(120_000, 2_400_000, 3.4)
    '120,000 of 2,400,000 rows · 35,294 rows/s · about 1 min 5 s left'
    """
    words = f"{done:,} of {total:,} {unit}"
    if done <= 0 or seconds <= 0:
        return words
    rate = done / seconds
    left = max(total - done, 0) / rate
    minutes, secs = divmod(round(left), 60)
    remaining = f"{minutes} min {secs} s" if minutes else f"{secs} s"
    return f"{words} · {rate:,.0f} {unit}/s · about {remaining} left"


def json_value(value: Any) -> Any:
    """``value`` as JSON has it: numpy and pandas scalars as Python ones, NaN as None, days and
    moments as ISO text (what the command line's ``--json`` outputs print).

    >>> import numpy as np
    >>> json_value(np.int64(3)), json_value(float("nan")), json_value(pd.Timestamp("2026-11-01"))
    (3, None, '2026-11-01T00:00:00')
    """
    from datetime import date

    if value is None:
        return None
    if isinstance(value, (pd.Timestamp, date)):
        return value.isoformat()
    item = getattr(value, "item", None)
    if callable(item):
        value = item()
    if isinstance(value, float) and value != value:
        return None
    return value


def json_records(frame: pd.DataFrame, columns: list[str] | None = None) -> list[dict[str, Any]]:
    """The rows of ``frame`` (only ``columns`` when given) as JSON objects of :func:`json_value`s."""
    keys = list(frame.columns) if columns is None else columns
    return [{str(k): json_value(row.get(k)) for k in keys} for row in frame.to_dict("records")]
