"""How numbers read in words: money, the same everywhere (pages, reports, messages)."""

from __future__ import annotations

__all__ = ["money", "number"]


def money(value: float | None, currency: str, *, decimals: int = 2) -> str:
    """``EUR 1,234.50``: the currency code, then the amount with thousands separators; ``n/a`` for no value.

    >>> money(1234.5, "EUR"), money(-3, "EUR", decimals=0), money(None, "EUR")
    ('EUR 1,234.50', 'EUR -3', 'n/a')
    """
    if value is None:
        return "n/a"
    return f"{currency} {value:,.{decimals}f}"


def number(value: float) -> str:
    """A count or limit as people read it: ``1,000,000``, ``2.5``, ``1e+300`` only when it is that large."""
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:,.6g}"
