"""Pure ledger arithmetic: FIFO lots, expiry dates, base points.

Every expectation is computed by hand in the parameter table, not by the code under test.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pandas as pd
import pytest

from loyalty.ledger.earning import base_points, earn_entries
from loyalty.ledger.entries import Lot, expiry_date, expiry_dates, fifo_lots
from loyalty.settings import ProgramSettings


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- expiry dates ------------------------------------------------------------------------

EXPIRY_CASES = [
    (utc(2024, 1, 31), 1, utc(2024, 2, 29)),
    (utc(2023, 1, 31), 1, utc(2023, 2, 28)),
    (utc(2024, 3, 31), 1, utc(2024, 4, 30)),
    (utc(2024, 2, 29), 12, utc(2025, 2, 28)),
    (utc(2024, 8, 31), 6, utc(2025, 2, 28)),
    (utc(2024, 12, 15), 1, utc(2025, 1, 15)),
    (utc(2024, 5, 15, 13, 45, 10, 500_000), 12, utc(2025, 5, 15, 13, 45, 10, 500_000)),
    (utc(2024, 1, 1), 36, utc(2027, 1, 1)),
]
EXPIRY_IDS = [
    "jan-31-plus-1-month-in-a-leap-year-is-feb-29",
    "jan-31-plus-1-month-in-a-common-year-is-feb-28",
    "mar-31-plus-1-month-is-apr-30",
    "feb-29-plus-12-months-is-feb-28",
    "aug-31-plus-6-months-is-feb-28",
    "december-plus-1-month-crosses-the-year",
    "time-of-day-is-kept",
    "three-years",
]


@pytest.mark.parametrize(("earned_at", "months", "expected"), EXPIRY_CASES, ids=EXPIRY_IDS)
def test_a_lot_expires_the_given_number_of_calendar_months_after_it_was_earned(earned_at, months, expected):
    assert expiry_date(earned_at, months) == expected


@pytest.mark.parametrize(("earned_at", "months", "expected"), EXPIRY_CASES, ids=EXPIRY_IDS)
def test_the_vectorised_expiry_of_an_import_agrees_with_the_single_lot_rule(earned_at, months, expected):
    column = pd.Series(pd.to_datetime([earned_at, earned_at], utc=True))
    assert list(expiry_dates(column, months)) == [pd.Timestamp(expected)] * 2


@pytest.mark.parametrize("months", [0, -1], ids=["zero-months", "negative-months"])
def test_points_never_expire_when_the_expiry_period_is_zero(months):
    assert expiry_date(utc(2024, 1, 31), months) is None
    column = pd.Series(pd.to_datetime([utc(2024, 1, 31)], utc=True))
    assert expiry_dates(column, months).isna().all()


@pytest.mark.parametrize(
    ("earned_at", "expected"),
    [
        # 23:00 at UTC-2 on Jan 30 is Jan 31 01:00 UTC; one month later is Feb 29 01:00 UTC
        # (month arithmetic in local time would give Feb 29 23:00 local, Mar 1 01:00 UTC).
        (datetime(2024, 1, 30, 23, 0, tzinfo=timezone(timedelta(hours=-2))), utc(2024, 2, 29, 1, 0)),
        (datetime(2024, 3, 1, 0, 30, tzinfo=timezone(timedelta(hours=2))), utc(2024, 3, 29, 22, 30)),
    ],
    ids=["west-of-utc-crossing-month-end", "east-of-utc-back-into-february"],
)
def test_expiry_is_computed_in_utc_whatever_time_zone_the_moment_was_given_in(earned_at, expected):
    assert expiry_date(earned_at, 1) == expected
    column = pd.Series(pd.to_datetime([earned_at], utc=True))
    assert expiry_dates(column, 1).iloc[0] == pd.Timestamp(expected)


# --- FIFO lots ---------------------------------------------------------------------------

JAN, FEB, MAR, APR = utc(2024, 1, 10), utc(2024, 2, 10), utc(2024, 3, 10), utc(2024, 4, 10)


def lot(earned_at: datetime, points: int, remaining: int, months: int | None = 12) -> Lot:
    expires = None if months is None else expiry_date(earned_at, months)
    return Lot(earned_at=earned_at, expires_at=expires, points=points, remaining=remaining)


def entry(at: datetime, points: int, months: int | None = 12) -> tuple[datetime, datetime | None, int]:
    return (at, expiry_date(at, months) if points > 0 and months is not None else None, points)


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        ([entry(JAN, 100), entry(FEB, 50)], [lot(JAN, 100, 100), lot(FEB, 50, 50)]),
        ([entry(JAN, 100), entry(FEB, 50), entry(MAR, -30)], [lot(JAN, 100, 70), lot(FEB, 50, 50)]),
        ([entry(JAN, 100), entry(FEB, 50), entry(MAR, -120)], [lot(JAN, 100, 0), lot(FEB, 50, 30)]),
        ([entry(JAN, 100), entry(FEB, 50), entry(MAR, -100), entry(APR, -20)], [lot(JAN, 100, 0), lot(FEB, 50, 30)]),
        # A lot earned later with a shorter life (a 1-month bonus) is consumed first.
        ([entry(JAN, 100), entry(FEB, 40, months=1), entry(MAR, -50)], [lot(FEB, 40, 0, months=1), lot(JAN, 100, 90)]),
        # Lots that never expire are consumed last.
        ([entry(JAN, 60, months=None), entry(FEB, 100), entry(MAR, -70)], [lot(FEB, 100, 30), lot(JAN, 60, 60, months=None)]),
        # More taken than ever earned (a refund of spent points): every lot is empty.
        ([entry(JAN, 100), entry(FEB, -100), entry(MAR, -40)], [lot(JAN, 100, 0)]),
        # The order entries arrive in does not matter.
        ([entry(MAR, -30), entry(FEB, 50), entry(JAN, 100)], [lot(JAN, 100, 70), lot(FEB, 50, 50)]),
        ([], []),
    ],
    ids=[
        "no-debits-leave-every-lot-whole",
        "a-debit-takes-from-the-oldest-lot",
        "a-debit-larger-than-the-oldest-lot-spills-into-the-next",
        "successive-debits-add-up",
        "soonest-expiring-first-not-earliest-earned",
        "never-expiring-lots-last",
        "debits-beyond-all-lots-empty-them-all",
        "entries-in-any-order",
        "no-entries",
    ],
)
def test_debits_consume_lots_soonest_expiring_first(entries, expected):
    assert fifo_lots(entries) == expected


def test_expired_points_count_as_consumed_so_a_lot_is_never_expired_twice():
    entries = [entry(JAN, 100), entry(FEB, 50), (utc(2025, 1, 10), None, -100)]
    lots = fifo_lots(entries)
    assert [(x.points, x.remaining) for x in lots] == [(100, 0), (50, 50)]


# --- base points -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "multiplier", "rate", "expected"),
    [
        (19.99, 1.0, 1.0, 19),
        (19.99, 1.0, 100.0, 1999),  # 19.99 x 100 is 1998.9999999999998 in binary
        (0.1 * 3, 1.0, 10.0, 3),  # 0.30000000000000004 x 10
        (2.3, 1.0, 100.0, 230),  # 229.99999999999997
        (1.15, 1.0, 100.0, 115),  # 114.99999999999999
        (4.35, 1.0, 100.0, 435),  # 434.99999999999994
        (0.29, 1.0, 100.0, 29),  # 28.999999999999996
        (0.57, 1.0, 100.0, 57),  # 56.99999999999999
        (0.99, 1.0, 1.0, 0),
        (0.0, 1.0, 1.0, 0),
        (10.0, 1.5, 1.0, 15),
        (9.99, 1.5, 1.0, 14),  # 14.985
        (33.33, 1.5, 3.0, 149),  # 149.98499999999999
        (100.0, 1.25, 1.0, 125),
        (100.0, 1.15, 1.0, 115),  # 114.99999999999999
        (25.0, 1.0, 0.0, 0),
    ],
    ids=[
        "19.99-at-rate-1-floors-to-19",
        "19.99-at-rate-100-is-1999-not-1998",
        "0.1-times-3-at-rate-10-is-3-not-4",
        "2.3-at-rate-100-is-230-not-229",
        "1.15-at-rate-100",
        "4.35-at-rate-100",
        "0.29-at-rate-100",
        "0.57-at-rate-100",
        "under-one-unit-earns-nothing",
        "zero-amount",
        "tier-multiplier-1.5",
        "tier-multiplier-1.5-floors-after-multiplying",
        "rate-and-multiplier-together",
        "tier-multiplier-1.25",
        "tier-multiplier-1.15-is-115-not-114",
        "rate-zero",
    ],
)
def test_base_points_are_the_floor_of_amount_times_rate_times_tier_multiplier(amount, multiplier, rate, expected):
    points = base_points(pd.Series([amount]), pd.Series([multiplier]), rate)
    assert points.tolist() == [expected]


def test_earn_entries_apply_each_members_tier_multiplier_and_skip_purchases_earning_nothing():
    purchases = pd.DataFrame(
        {"id": [1, 2, 3], "member_id": [10, 20, 10], "occurred_at": pd.to_datetime([JAN, FEB, MAR], utc=True), "amount": [19.99, 19.99, 0.5]}
    )
    entries = earn_entries(purchases, settings=ProgramSettings(), multipliers=pd.Series({20: 1.5}))
    assert entries[["purchase_id", "member_id", "kind", "points"]].to_dict("records") == [
        {"purchase_id": 1, "member_id": 10, "kind": "earn", "points": 19},
        {"purchase_id": 2, "member_id": 20, "kind": "earn", "points": 29},  # 29.985
    ]
    assert list(entries["expires_at"]) == [pd.Timestamp(utc(2025, 1, 10)), pd.Timestamp(utc(2025, 2, 10))]
