"""The bounds every way in holds a value to (loyalty.bounds): one test per bound, and the
import's column checks agree with the single-value ones."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from loyalty.bounds import MAX_POINTS_PER_ENTRY, Bounds, birth_date_problems, currency_decimals
from loyalty.settings import ProgramSettings

NOW = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)


def bounds(**settings) -> Bounds:
    return Bounds.of(ProgramSettings(**settings), NOW)


@pytest.mark.parametrize(
    "amount,reason",
    [
        ("12.50", None),
        ("1000000", None),
        ("0.01", None),
        ("12.500", None),  # trailing zeros are no decimals
        ("0", "must be above zero"),
        ("-3", "is negative: record a refund instead"),
        ("1000000.01", "is above the largest purchase accepted (EUR 1,000,000.00, in the settings)"),
        ("900000000000000000", "is above the largest purchase accepted"),
        ("1e300", "is above the largest purchase accepted"),
        ("10.123", "has more decimals than EUR has (2)"),
        ("1e-3", "has more decimals than EUR has (2)"),
        ("nan", "is not an amount of money"),
        ("inf", "is not an amount of money"),
        ("twelve", "is not an amount of money"),
    ],
)
def test_an_amount_is_above_zero_at_most_the_largest_purchase_with_the_currencys_decimals(amount, reason):
    problem = bounds().amount_problem(amount)
    assert problem == reason if reason is None else problem.startswith(reason) or reason in problem


@pytest.mark.parametrize(
    "currency,decimals,accepted,refused", [("JPY", 0, "1200", "1200.5"), ("KWD", 3, "1.125", "1.1255"), ("EUR", 2, "1.25", "1.255")]
)
def test_decimals_follow_the_currency(currency, decimals, accepted, refused):
    assert currency_decimals(currency) == decimals
    assert bounds(currency=currency).amount_problem(accepted) is None
    assert bounds(currency=currency).amount_problem(refused) == f"has more decimals than {currency} has ({decimals})"


def test_the_largest_purchase_is_a_setting():
    assert bounds(max_purchase_amount=500.0).amount_problem("500.01").startswith("is above the largest purchase accepted (EUR 500.00")
    assert bounds(max_purchase_amount=500.0).amount_problem("500") is None


@pytest.mark.parametrize(
    "at,reason",
    [
        (NOW, None),
        (NOW + timedelta(hours=23), None),  # a till's clock a little fast
        (NOW + timedelta(days=1, seconds=1), "is in the future (after 2026-11-17 12:00 UTC)"),
        (datetime(2099, 1, 1, tzinfo=UTC), "is in the future"),
        (datetime(2000, 1, 1, tzinfo=UTC), None),
        (datetime(1999, 12, 31, 23, 59, tzinfo=UTC), "is before the program's start (2000-01-01, in the settings)"),
        (datetime(2025, 1, 1), "needs a time zone (UTC)"),
    ],
)
def test_a_moment_is_not_before_the_program_nor_more_than_a_day_ahead(at, reason):
    problem = bounds().moment_problem(at)
    assert problem == reason if reason is None or problem is None else problem.startswith(reason)


def test_the_program_start_is_a_setting():
    assert (
        bounds(program_start=date(2020, 6, 1))
        .moment_problem(datetime(2020, 5, 31, tzinfo=UTC))
        .startswith("is before the program's start (2020-06-01")
    )


def test_the_column_checks_of_the_import_agree_with_the_single_value_ones():
    text = pd.Series(["12.50", "0", "-3", "1000000.01", "10.123", "1e-3", "1e2", "7", "12.500"], dtype="str")
    parsed = pd.to_numeric(text, errors="coerce")
    column = bounds().amount_problems(text, parsed)
    single = [bounds().amount_problem(v) or "" for v in text]
    assert list(column) == single
    moments = pd.Series(pd.to_datetime(["2026-11-16", "2099-01-01", "1999-12-31", None], utc=True))
    reasons = bounds().moment_problems(moments)
    assert [bool(r) for r in reasons] == [False, True, True, False]


def test_a_birth_date_is_neither_in_the_future_nor_before_1900():
    born = pd.Series(pd.to_datetime(["1980-05-01", "2030-01-01", "1850-01-01", None]))
    assert list(birth_date_problems(born, date(2026, 11, 16))) == ["", "is in the future", "is before 1900", ""]


def test_one_movement_fits_a_32_bit_column_and_no_sum_of_them_can_overflow_64_bits():
    assert MAX_POINTS_PER_ENTRY < 2**31
    assert np.iinfo(np.int64).max // MAX_POINTS_PER_ENTRY > 4_000_000_000
