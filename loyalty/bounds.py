"""What a value coming into the program may be: one definition for every way in.

The import, the pages, the command line and the API all hold amounts, moments and points
to these bounds, so a typing error (an amount of 900000000000000000, a purchase dated
2099 or 0000) is refused with its reason instead of breaking balances, expiry and KPIs
for the whole program.

* **Amounts**: above zero, at most the largest purchase in the settings, with at most
  the currency's decimals (ISO 4217 minor units: 2 for EUR, 0 for JPY, 3 for KWD).
* **Moments**: not before the program's start (settings), not more than a day ahead of
  now (a till's clock may run a little fast; a purchase of next year is a typing error).
* **Points**: one ledger movement is at most 2,000,000,000 points, which fits the
  32-bit INTEGER columns of PostgreSQL; PostgreSQL sums INTEGER as BIGINT and SQLite
  stores 64-bit integers and refuses (never wraps) a sum that overflows, so no balance or
  KPI can overflow. (BIGINT columns would make PostgreSQL sum them as NUMERIC, read in
  Python as Decimal, which mixes with no float in the analyses.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation

import numpy as np
import pandas as pd

from loyalty.formatting import money
from loyalty.settings import ProgramSettings

__all__ = [
    "FUTURE_TOLERANCE",
    "MAX_ADJUSTMENT_POINTS",
    "MAX_BONUS_POINTS",
    "MAX_MULTIPLIER",
    "MAX_POINTS_PER_ENTRY",
    "Bounds",
    "birth_date_problems",
    "currency_decimals",
]

# ISO 4217 currencies whose minor unit is not the cent; every other has 2 decimals.
_MINOR_UNITS = {
    **dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3),
    **dict.fromkeys(["BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF"], 0),
}
FUTURE_TOLERANCE = timedelta(days=1)
# One ledger movement fits a 32-bit column (2,147,483,647); 4.6 billion of them would be needed to overflow a 64-bit sum.
MAX_POINTS_PER_ENTRY = 2_000_000_000
MAX_ADJUSTMENT_POINTS = 1_000_000
MAX_BONUS_POINTS = 1_000_000
MAX_MULTIPLIER = 100.0
_PLAIN_NUMBER = re.compile(r"^\d+(?:\.(\d*))?$")


def currency_decimals(currency: str) -> int:
    """How many decimals an amount in ``currency`` may have (ISO 4217 minor unit)."""
    return _MINOR_UNITS.get(currency.upper(), 2)


@dataclass(frozen=True)
class Bounds:
    """The bounds in force for one unit of work (the settings and the clock read once)."""

    currency: str
    max_amount: float
    decimals: int
    earliest: datetime
    latest: datetime

    @classmethod
    def of(cls, settings: ProgramSettings, now: datetime) -> Bounds:
        return cls(
            currency=settings.currency,
            max_amount=float(settings.max_purchase_amount),
            decimals=currency_decimals(settings.currency),
            earliest=datetime.combine(settings.program_start, time(), tzinfo=UTC),
            latest=now.astimezone(UTC) + FUTURE_TOLERANCE,
        )

    # --- one value (pages, command line, API) ---------------------------------------------

    def amount_problem(self, amount: Decimal | float | int | str) -> str | None:
        """Why ``amount`` cannot be a purchase's amount, or None when it can."""
        try:
            value = Decimal(str(amount).strip())
        except InvalidOperation:
            value = Decimal("NaN")
        if not value.is_finite():
            return f"{amount!r} is not an amount of money (write it like 12.50)"
        if value <= 0:
            return "must be above zero" if value == 0 else "is negative: record a refund instead"
        if value > Decimal(str(self.max_amount)):
            return self._too_large
        exponent = value.normalize().as_tuple().exponent
        if isinstance(exponent, int) and -exponent > self.decimals:
            return self._too_precise
        return None

    def moment_problem(self, at: datetime) -> str | None:
        """Why ``at`` cannot be when something happened, or None when it can."""
        if at.tzinfo is None:
            return "needs a time zone (UTC)"
        if at < self.earliest:
            return self._too_early
        if at > self.latest:
            return self._too_late
        return None

    # --- a column of a file (the import) --------------------------------------------------

    def amount_problems(self, text: pd.Series, parsed: pd.Series) -> np.ndarray:
        """Per row of an amount column, why it is refused (``""``: accepted); ``parsed`` is ``text`` as numbers (NaN: not one)."""
        value = parsed.to_numpy(dtype="float64")
        reasons = np.full(len(value), "", dtype=object)
        finite = np.isfinite(value)
        reasons[finite & (value == 0)] = "must be above zero"
        reasons[finite & (value < 0)] = "is negative: record a refund instead"
        reasons[finite & (value > self.max_amount)] = self._too_large
        written = text.str.extract(_PLAIN_NUMBER, expand=False).fillna("").str.rstrip("0").str.len().to_numpy()
        exponent_form = finite & ~text.str.fullmatch(_PLAIN_NUMBER.pattern).fillna(False).to_numpy(dtype=bool)
        too_precise = finite & (reasons == "") & ((written > self.decimals) | (exponent_form & ~_whole_units(value, self.decimals)))
        reasons[too_precise] = self._too_precise
        return reasons

    def moment_problems(self, parsed: pd.Series) -> np.ndarray:
        """Per row of a timestamp column (UTC; NaT: no value), why it is refused (``""``: accepted)."""
        reasons = np.full(len(parsed), "", dtype=object)
        known = parsed.notna().to_numpy()
        if known.any():
            early = known & (parsed < pd.Timestamp(self.earliest)).to_numpy(dtype=bool, na_value=False)
            late = known & (parsed > pd.Timestamp(self.latest)).to_numpy(dtype=bool, na_value=False)
            reasons[early], reasons[late] = self._too_early, self._too_late
        return reasons

    # --- the reasons, worded once for both ------------------------------------------------

    @property
    def _too_large(self) -> str:
        return f"is above the largest purchase accepted ({money(self.max_amount, self.currency, decimals=self.decimals)}, in the settings)"

    @property
    def _too_precise(self) -> str:
        return f"has more decimals than {self.currency} has ({self.decimals})"

    @property
    def _too_early(self) -> str:
        return f"is before the program's start ({self.earliest:%Y-%m-%d}, in the settings)"

    @property
    def _too_late(self) -> str:
        return f"is in the future (after {self.latest:%Y-%m-%d %H:%M} UTC)"


def _whole_units(value: np.ndarray, decimals: int) -> np.ndarray:
    """Whether each value has at most ``decimals`` decimals (up to float precision)."""
    scaled = value * 10**decimals
    return np.isclose(scaled, np.round(scaled), rtol=0, atol=1e-6)


def birth_date_problems(parsed: pd.Series, today: date) -> np.ndarray:
    """Per row of a date-of-birth column (NaT: none given), why it is refused (``""``: accepted)."""
    reasons = np.full(len(parsed), "", dtype=object)
    known = parsed.notna().to_numpy()
    reasons[known & (parsed > pd.Timestamp(today)).to_numpy(dtype=bool, na_value=False)] = "is in the future"
    reasons[known & (parsed < pd.Timestamp(1900, 1, 1)).to_numpy(dtype=bool, na_value=False)] = "is before 1900"
    return reasons
