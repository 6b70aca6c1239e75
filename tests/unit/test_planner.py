"""Campaign planner arithmetic: holdout sizing against the two-sample formula, and the pooling of past uplifts."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from loyalty.decisions.planner import holdout_size, impact_from_history, length_factor, minimum_detectable_uplift, pool_uplifts, required_sample_size
from loyalty.errors import InvalidInput

# z(0.975) + z(0.80), z(0.95): from any normal table.
Z_5PCT_80PCT = 1.959963985 + 0.841621234
Z_90PCT = 1.644853627


def test_equal_groups_need_1570_members_each_to_detect_1_with_a_spread_of_10():
    # (1.959964 + 0.841621)^2 * 10^2 * (1 + 1/1) / 1^2 = 7.848888 * 200 = 1569.78 (Chow, Shao & Wang, 3.2.1)
    assert required_sample_size(1.0, 10.0, 0.05, 0.80, 1.0) == pytest.approx(1569.78, abs=0.01)


def test_a_treatment_group_twice_the_holdout_needs_three_quarters_of_the_holdout():
    # (1 + 1/2) / (1 + 1/1) = 0.75: 1569.78 * 0.75 = 1177.33 holdout members, 2354.67 treated.
    assert required_sample_size(1.0, 10.0, ratio=2.0) == pytest.approx(1177.33, abs=0.01)


def test_more_power_and_a_stricter_level_need_more_members():
    # (z(0.995) + z(0.90))^2 = (2.575829 + 1.281552)^2 = 14.879388; * 200 = 2975.88
    assert required_sample_size(1.0, 10.0, alpha=0.01, power=0.90) == pytest.approx(2975.88, abs=0.01)


@pytest.mark.parametrize(
    ("holdout_pct", "expected"),
    [
        # se = 10 * sqrt(1/5000 + 1/5000) = 0.2
        (0.5, Z_5PCT_80PCT * 0.2),
        # se = 10 * sqrt(1/9000 + 1/1000) = 10 * sqrt(0.00111...) = 0.33333
        (0.1, Z_5PCT_80PCT * 10 * math.sqrt(1 / 9000 + 1 / 1000)),
    ],
    ids=["even split", "10 % holdout"],
)
def test_the_minimum_detectable_uplift_of_10000_members(holdout_pct, expected):
    assert minimum_detectable_uplift(members=10_000, sigma=10.0, holdout_pct=holdout_pct) == pytest.approx(expected, rel=1e-9)
    assert expected == pytest.approx({0.5: 0.56032, 0.1: 0.93386}[holdout_pct], abs=1e-5)


def test_without_a_holdout_nothing_is_detectable():
    assert minimum_detectable_uplift(members=10_000, sigma=10.0, holdout_pct=0.0) is None
    sizing = holdout_size(members=10_000, sigma=10.0, holdout_pct=0.0)
    assert sizing.mde is None and "cannot be measured" in sizing.message


def test_the_holdout_needed_is_the_smallest_share_that_detects_the_target():
    # At k = 0.2, 1/(k(1-k)) = 6.25: delta = z * 10 * sqrt(6.25 / 10000) = 0.70040 is detected exactly.
    delta = Z_5PCT_80PCT * 10 * math.sqrt(6.25 / 10_000)
    sizing = holdout_size(members=10_000, sigma=10.0, holdout_pct=0.1, target_uplift=delta, baseline=20.0)
    assert delta == pytest.approx(0.70040, abs=1e-5)
    assert sizing.needed_pct == pytest.approx(0.2, rel=1e-9)
    assert sizing.enough_at_half
    # The same answer from the textbook formula: the holdout (N k = 2000) with ratio (1 - k) / k = 4.
    assert required_sample_size(delta, 10.0, ratio=4.0) == pytest.approx(10_000 * 0.2, rel=1e-9)
    # ... and the minimum detectable uplift at the share found is the target.
    assert minimum_detectable_uplift(members=10_000, sigma=10.0, holdout_pct=sizing.needed_pct) == pytest.approx(delta, rel=1e-9)
    assert sizing.mde_relative == pytest.approx(0.93386 / 20.0, abs=1e-6)


def test_when_even_half_is_not_enough_it_says_how_many_members_it_would_take():
    # 1,000 members, sigma 10, delta 1: c = 1000 / 28.0159^2 = 1.274 < 4. At an even split each group needs
    # 1569.78 members: 3,139.55, so 3,140 members.
    sizing = holdout_size(members=1_000, sigma=10.0, holdout_pct=0.1, target_uplift=1.0)
    assert sizing.needed_pct is None
    assert sizing.enough_at_half is False
    assert sizing.members_needed_at_half == 3_140
    assert "Even a 50% holdout cannot detect this uplift on 1,000 members" in sizing.message
    assert "3,140" in sizing.message


def test_a_target_of_zero_is_refused():
    with pytest.raises(InvalidInput, match="above 0"):
        holdout_size(members=100, sigma=1.0, holdout_pct=0.1, target_uplift=0.0)


def test_pooling_two_campaigns_that_disagree_estimates_the_spread_between_them():
    # w = [1, 1], mean 2, Q = 1 + 1 = 2, tau^2 = (2 - 1) / (2 - 2/2) = 1; w* = [1/2, 1/2]: mu = 2, se = 1.
    pooled = pool_uplifts(np.array([1.0, 3.0]), np.array([1.0, 1.0]))
    assert (pooled.k, pooled.mean, pooled.se, pooled.tau, pooled.q) == pytest.approx((2, 2.0, 1.0, 1.0, 2.0))
    low, high = pooled.prediction_interval(0.90)
    # 2 -/+ 1.644854 * sqrt(1 + 1)
    assert (low, high) == pytest.approx((2 - Z_90PCT * math.sqrt(2), 2 + Z_90PCT * math.sqrt(2)))


def test_pooling_weights_precise_campaigns_more():
    # w = [1, 1/4]: fixed mean (1 + 1) / 1.25 = 1.6; Q = 0.36 + 1.44 = 1.8; C = 1.25 - 1.0625/1.25 = 0.4;
    # tau^2 = 0.8 / 0.4 = 2; w* = [1/3, 1/6]: mu = (1/3 + 4/6) / (1/2) = 2, se = sqrt(2), prediction sd = 2.
    pooled = pool_uplifts(np.array([1.0, 4.0]), np.array([1.0, 2.0]))
    assert (pooled.mean, pooled.se, pooled.tau, pooled.q) == pytest.approx((2.0, math.sqrt(2), math.sqrt(2), 1.8))
    assert pooled.weights == pytest.approx([2 / 3, 1 / 3])
    assert pooled.prediction_interval(0.90) == pytest.approx((2 - Z_90PCT * 2, 2 + Z_90PCT * 2))


def test_campaigns_that_agree_within_their_noise_have_no_spread_between_them():
    # Q = 0.0625 + 0.0625 = 0.125 < k - 1 = 1: tau = 0, the fixed-effect mean 2.25 with se sqrt(1/2).
    pooled = pool_uplifts(np.array([2.0, 2.5]), np.array([1.0, 1.0]))
    assert (pooled.mean, pooled.se, pooled.tau) == pytest.approx((2.25, math.sqrt(0.5), 0.0))


def test_one_campaign_is_its_own_estimate():
    pooled = pool_uplifts(np.array([3.0]), np.array([0.5]))
    assert (pooled.mean, pooled.se, pooled.tau) == pytest.approx((3.0, 0.5, 0.0))


def test_a_standard_error_of_zero_is_refused():
    with pytest.raises(InvalidInput, match="positive"):
        pool_uplifts(np.array([1.0, 2.0]), np.array([0.0, 1.0]))


@pytest.mark.parametrize(
    ("kind", "days", "past_days", "expected"),
    [
        ("multiplier", 30, [10, 60], [3.0, 0.5]),
        ("fixed_bonus", 14, [7], [2.0]),
        ("win_back", 60, [30], [1.0]),
        ("spend_threshold", 10, [30], [1.0]),
        ("birthday", 400, [73, 730], [5.0, 1.0]),  # 365/73 and 365/365: a year reaches every birthday once
    ],
    ids=["per purchase", "fixed bonus", "win-back once", "threshold once", "birthday up to a year"],
)
def test_past_uplifts_scale_to_the_new_campaigns_length(kind, days, past_days, expected):
    assert length_factor(kind, days, np.array(past_days, dtype=float)) == pytest.approx(expected)


def test_the_expected_uplift_of_a_draft_pools_past_campaigns_scaled_to_its_length():
    # Past double-points campaigns of 10 and 20 days; the draft runs 20 days: factors 2 and 1,
    # scaled uplifts [1, 3] with standard errors [1, 1] -> mu = 2, tau = 1, se = 1 (as above).
    history = pd.DataFrame({"campaign": ["short", "long"], "days": [10, 20], "spend_uplift": [0.5, 3.0], "se": [0.5, 1.0]})
    pooled, scaled = impact_from_history(history, kind="multiplier", days=20)
    assert scaled["scaled_uplift"].tolist() == pytest.approx([1.0, 3.0])
    assert scaled["scaled_se"].tolist() == pytest.approx([1.0, 1.0])
    assert scaled["weight"].tolist() == pytest.approx([0.5, 0.5])
    low, high = pooled.prediction_interval(0.90)
    # 1,000 treated members: EUR 2,000 expected, 2,000 -/+ 1,000 * 1.644854 * sqrt(2) = -/+ 2,326.17
    assert pooled.mean * 1_000 == pytest.approx(2_000.0)
    assert (low * 1_000, high * 1_000) == pytest.approx((2_000 - 2_326.174, 2_000 + 2_326.174), abs=0.01)


def test_the_quantiles_are_scipy_stats_own_to_the_last_bit():
    """The planner and the campaign results take quantiles from scipy.special (imported when used:
    scipy.stats slowed the Campaigns page's first visit); they are what scipy.stats gives."""
    from scipy import stats

    from loyalty.insights.campaign_results import normal_quantile, t_quantile

    p = np.array([0.5, 0.8, 0.9, 0.95, 0.975, 0.995, 0.9995])
    assert np.array_equal(normal_quantile(p), stats.norm.ppf(p))
    for dof in (1.0, 2.5, 7.0, 30.0, 1e6, np.array([3.0, 10.5, 100.0, 4.2, 9.0, 2.0, 50.0])):
        assert np.array_equal(t_quantile(p, dof), stats.t.ppf(p, dof))
    assert np.isnan(t_quantile(0.975, np.nan)) and np.isnan(stats.t.ppf(0.975, np.nan))
