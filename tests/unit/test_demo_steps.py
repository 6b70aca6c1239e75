"""The demo's shared pieces: its clock of month boundaries, shop hours, and its parameters.

The whole simulation is exercised in tests/integration/test_demo.py; these are the pure
helpers its steps (loyalty/demo/*.py) share.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from loyalty.demo.parameters import (
    ACQUISITION_CHANNELS,
    CATEGORIES,
    CATEGORY_SHARE,
    CLOSING,
    DAY,
    ECO_SHARE_FOR_ECO_MEMBERS,
    OPENING,
    eco_category_shares,
)
from loyalty.demo.timeline import as_datetime, as_seconds, month_boundaries, shop_times


def test_the_history_runs_from_its_start_over_each_first_of_the_month_to_now():
    now = datetime(2025, 3, 15, 10, 30, tzinfo=UTC)

    boundaries = [as_datetime(s) for s in month_boundaries(now, 3)]

    assert boundaries == [
        datetime(2024, 12, 15, 10, 30, tzinfo=UTC),
        datetime(2025, 1, 1, tzinfo=UTC),
        datetime(2025, 2, 1, tzinfo=UTC),
        datetime(2025, 3, 1, tzinfo=UTC),
        now,
    ]


def _moments(lo: datetime, hi: datetime, rows: int = 2_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    low = np.full(rows, as_seconds(lo), dtype=np.int64)
    high = np.full(rows, as_seconds(hi), dtype=np.int64)
    return low, high, shop_times(np.random.default_rng(7), low, high)


def test_purchases_over_a_week_fall_in_shop_hours():
    low, high, moments = _moments(datetime(2025, 3, 3, tzinfo=UTC), datetime(2025, 3, 10, tzinfo=UTC))

    assert ((moments > low) & (moments < high)).all()
    time_of_day = moments % DAY
    assert ((time_of_day >= OPENING) & (time_of_day <= CLOSING)).all()


def test_purchases_in_a_window_mostly_outside_shop_hours_stay_inside_the_window():
    low, high, moments = _moments(datetime(2025, 3, 3, 20, tzinfo=UTC), datetime(2025, 3, 4, 9, tzinfo=UTC))

    assert ((moments > low) & (moments < high)).all()


def test_the_same_seed_draws_the_same_moments():
    low = np.arange(0, 100 * DAY, DAY, dtype=np.int64)
    high = low + DAY

    first = shop_times(np.random.default_rng(3), low, high)
    second = shop_times(np.random.default_rng(3), low, high)

    np.testing.assert_array_equal(first, second)


def test_eco_leaning_members_buy_the_eco_range_at_their_share_and_the_rest_in_proportion():
    shares = eco_category_shares()
    eco = CATEGORIES.index("eco-friendly")
    others = np.arange(len(CATEGORIES)) != eco

    assert shares.sum() == pytest.approx(1.0)
    assert shares[eco] == pytest.approx(ECO_SHARE_FOR_ECO_MEMBERS)
    np.testing.assert_allclose(shares[others] / shares[others].sum(), CATEGORY_SHARE[others] / CATEGORY_SHARE[others].sum())


def test_acquisition_channel_and_category_shares_add_up_to_everyone():
    assert sum(profile.share for profile in ACQUISITION_CHANNELS.values()) == pytest.approx(1.0)
    assert CATEGORY_SHARE.sum() == pytest.approx(1.0)
    for profile in ACQUISITION_CHANNELS.values():
        assert sum(profile.purchase_channels) == pytest.approx(1.0)
