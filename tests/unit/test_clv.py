"""BG/NBD and Gamma-Gamma: published CDNOW parameters, recovery from simulated data, formulas.

The CDNOW data of Fader, Hardie and Lee (2005) ship with ``lifetimes==0.11.3`` (a test
requirement); only its data files are read, never its fitters.
"""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from scipy import special

from loyalty.analytics.clv import (
    BgNbdParams,
    ClvModel,
    GammaGammaParams,
    bgnbd_log_likelihood,
    clv_table,
    expected_purchases,
    expected_spend,
    fit_bgnbd,
    fit_gamma_gamma,
    gamma_gamma_log_likelihood,
    months_in,
    predicted_clv,
    probability_alive,
    simulate_bgnbd,
    simulate_gamma_gamma,
    summary_data,
)
from loyalty.errors import InvalidInput

PUBLISHED_BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}  # Fader, Hardie & Lee 2005, p. 281
PUBLISHED_LOG_LIKELIHOOD = -9582.4
PUBLISHED_GAMMA_GAMMA = {"p": 6.25, "q": 3.74, "v": 15.44}  # "RFM and CLV", 2005; v is their gamma
CDNOW_CALIBRATION_END = date(1997, 9, 30)  # 39 weeks after 1997-01-01 (T of a Jan 1 buyer = 38.86)


def _cdnow_file(name: str) -> Path:
    lifetimes = pytest.importorskip("lifetimes", reason="the CDNOW data ship with lifetimes==0.11.3 (pip install -r tests/requirements.txt)")
    path = Path(lifetimes.__file__).parent / "datasets" / name
    if not path.exists():
        pytest.skip(f"lifetimes has no {name}; install lifetimes==0.11.3")
    return path


def _significant(value: float, figures: int = 3) -> float:
    return float(f"{value:.{figures}g}")


def _same_to_three_figures(fitted: dict[str, float], published: dict[str, float]) -> None:
    assert {k: _significant(v) for k, v in fitted.items()} == {k: _significant(v) for k, v in published.items()}


@pytest.fixture(scope="module")
def cdnow_summary() -> pd.DataFrame:
    """2,357 customers, 39-week calibration: frequency, recency, T in weeks (the paper's data)."""
    return pd.read_csv(_cdnow_file("cdnow_customers_summary.csv"))


@pytest.fixture(scope="module")
def cdnow_transactions() -> pl.DataFrame:
    """The 1/10 CDNOW sample: 6,919 purchases of the same 2,357 customers, 1997-01 to 1998-06."""
    raw = pd.read_csv(
        _cdnow_file("CDNOW_sample.txt"), sep=r"\s+", header=None, names=["master_id", "member_id", "day", "cds", "amount"], dtype={"day": str}
    )
    return pl.from_pandas(raw).select("member_id", pl.col("day").str.to_date("%Y%m%d").alias("occurred_on"), pl.col("amount").cast(pl.Float64))


# --- the published numbers -------------------------------------------------------------------------------


def test_bgnbd_reproduces_the_published_cdnow_parameters(cdnow_summary: pd.DataFrame) -> None:
    assert len(cdnow_summary) == 2357
    params = fit_bgnbd(cdnow_summary["frequency"], cdnow_summary["recency"], cdnow_summary["T"])
    _same_to_three_figures(params.as_dict(), PUBLISHED_BGNBD)
    log_likelihood = bgnbd_log_likelihood(params, cdnow_summary["frequency"], cdnow_summary["recency"], cdnow_summary["T"])
    assert round(log_likelihood, 1) == PUBLISHED_LOG_LIKELIHOOD


def test_summary_data_rebuilds_the_cdnow_summary_from_the_raw_purchases(cdnow_transactions: pl.DataFrame, cdnow_summary: pd.DataFrame) -> None:
    summary = summary_data(cdnow_transactions, CDNOW_CALIBRATION_END, "week").to_pandas()
    assert len(summary) == 2357
    expected = cdnow_summary.rename(columns={"ID": "member_id"})
    np.testing.assert_array_equal(summary["member_id"], expected["member_id"])
    np.testing.assert_array_equal(summary["frequency"], expected["frequency"])
    # The published file rounds weeks to 2 decimals.
    np.testing.assert_allclose(summary["recency"], expected["recency"], atol=0.005)
    np.testing.assert_allclose(summary["T"], expected["T"], atol=0.005)


def test_both_models_reproduce_the_published_parameters_from_the_raw_purchases(cdnow_transactions: pl.DataFrame) -> None:
    summary = summary_data(cdnow_transactions, CDNOW_CALIBRATION_END, "week")
    bgnbd = fit_bgnbd(summary["frequency"], summary["recency"], summary["T"])
    gamma_gamma = fit_gamma_gamma(summary["frequency"], summary["monetary_value"])
    _same_to_three_figures(bgnbd.as_dict(), PUBLISHED_BGNBD)
    _same_to_three_figures(gamma_gamma.as_dict(), PUBLISHED_GAMMA_GAMMA)
    assert int((summary["frequency"] > 0).sum()) == 946  # the Gamma-Gamma paper's repeat customers


def test_gamma_gamma_reproduces_the_published_cdnow_parameters() -> None:
    data = pd.read_csv(_cdnow_file("cdnow_customers_summary_with_transactions.csv"))  # ID, x, t_x, T, zbar
    params = fit_gamma_gamma(data["x"], data["zbar"])
    _same_to_three_figures(params.as_dict(), PUBLISHED_GAMMA_GAMMA)


# --- recovery from simulated members ----------------------------------------------------------------------

TRUE_BGNBD = BgNbdParams(r=0.5, alpha=5.0, a=0.8, b=2.5)
TRUE_GAMMA_GAMMA = GammaGammaParams(p=5.0, q=4.0, v=30.0)
SIMULATED_MEMBERS = 20_000


def _standard_errors(log_likelihood, estimate: np.ndarray, step: float = 1e-3) -> np.ndarray:
    """Standard errors of log-parameters from the observed information (central differences)."""
    k = len(estimate)
    hessian = np.zeros((k, k))
    for i in range(k):
        for j in range(i, k):

            def at(di: float, dj: float, i: int = i, j: int = j) -> float:
                point = estimate.copy()
                point[i] += di
                point[j] += dj
                return log_likelihood(np.exp(point))

            value = (at(step, step) - at(step, -step) - at(-step, step) + at(-step, -step)) / (4 * step * step)
            hessian[i, j] = hessian[j, i] = value
    return np.sqrt(np.diag(np.linalg.inv(-hessian)))


@pytest.fixture(scope="module")
def simulated() -> pl.DataFrame:
    ages = np.random.default_rng(7).uniform(26.0, 78.0, SIMULATED_MEMBERS)  # half a year to 18 months, in weeks
    members = simulate_bgnbd(TRUE_BGNBD, ages, seed=11)
    return members.with_columns(monetary_value=pl.Series(simulate_gamma_gamma(TRUE_GAMMA_GAMMA, members["frequency"], seed=13)))


def test_bgnbd_recovers_the_parameters_it_simulated_from(simulated: pl.DataFrame) -> None:
    """Within 4 standard errors (observed information), and within 15 % of the truth.

    At 20,000 members the standard errors of log r, log alpha, log a, log b are about
    1.3, 2.1, 4.3 and 5.6 % (Gamma-Gamma's p, q, v: 4.2, 1.9, 5.9 %): 4 of them leaves a
    1-in-15,000 chance per parameter of failing by bad luck, and the seed is fixed
    (this seed lands within 2 of them).
    """
    x, t_x, age = simulated["frequency"], simulated["recency"], simulated["T"]
    fitted = fit_bgnbd(x, t_x, age)
    errors = _standard_errors(lambda p: bgnbd_log_likelihood(p, x, t_x, age), np.log(np.array(fitted)))
    deviation = np.abs(np.log(np.array(fitted)) - np.log(np.array(TRUE_BGNBD)))
    assert np.all(deviation < 4 * errors), (fitted, errors)
    assert np.all(deviation < 0.15)


def test_gamma_gamma_recovers_the_parameters_it_simulated_from(simulated: pl.DataFrame) -> None:
    x, m = simulated["frequency"], simulated["monetary_value"]
    fitted = fit_gamma_gamma(x, m)
    errors = _standard_errors(lambda p: gamma_gamma_log_likelihood(p, x, m), np.log(np.array(fitted)))
    deviation = np.abs(np.log(np.array(fitted)) - np.log(np.array(TRUE_GAMMA_GAMMA)))
    assert np.all(deviation < 4 * errors), (fitted, errors)
    assert np.all(deviation < 0.15)


def test_the_fit_does_not_depend_on_the_starting_point(cdnow_summary: pd.DataFrame) -> None:
    columns = cdnow_summary["frequency"], cdnow_summary["recency"], cdnow_summary["T"]
    default = fit_bgnbd(*columns)
    elsewhere = fit_bgnbd(*columns, initial=BgNbdParams(3.0, 0.5, 4.0, 0.2))
    np.testing.assert_allclose(np.array(elsewhere), np.array(default), rtol=1e-4)


# --- the formulas ------------------------------------------------------------------------------------------


def _eq10_direct(params: BgNbdParams, t: float, x: float, t_x: float, age: float) -> float:
    """Eq. 10 exactly as printed, with scipy's 2F1 (fine for small x)."""
    r, alpha, a, b = params
    z = t / (alpha + age + t)
    numerator = 1 - ((alpha + age) / (alpha + age + t)) ** (r + x) * special.hyp2f1(r + x, b + x, a + b + x - 1, z)
    denominator = 1 + (x > 0) * a / (b + x - 1) * ((alpha + age) / (alpha + t_x)) ** (r + x)
    return (a + b + x - 1) / (a - 1) * numerator / denominator


@pytest.mark.parametrize(
    ("x", "t_x", "age", "t"),
    [(0, 0.0, 38.86, 39.0), (2, 30.43, 38.86, 39.0), (7, 35.0, 38.86, 52.0), (1, 1.71, 38.86, 10.0), (3, 5.0, 20.0, 1.0)],
    ids=["no repeat", "customer 1 of CDNOW", "frequent", "early repeat", "short horizon"],
)
def test_expected_purchases_equal_equation_10_as_printed(x: int, t_x: float, age: float, t: float) -> None:
    params = BgNbdParams(0.243, 4.414, 0.793, 2.426)
    got = expected_purchases(params, t, [x], [t_x], [age])[0]
    assert got == pytest.approx(_eq10_direct(params, t, x, t_x, age), rel=1e-9)


def test_expected_purchases_stay_finite_when_the_dropout_probability_is_narrowly_known() -> None:
    # A fit of a demo program (seed 11, as of 28 March 2026): a and b in the thousands, where
    # Euler's form of the 2F1 gives 0 x inf.
    params = BgNbdParams(1.786, 6.8025, 7977.2, 154777.6)
    for x, t_x, age in [(0, 0.0, 0.0), (0, 0.0, 1.857), (3, 20.0, 30.0)]:
        got = expected_purchases(params, 4.348, [x], [t_x], [age])[0]
        assert np.isfinite(got) and got == pytest.approx(_eq10_direct(params, 4.348, x, t_x, age), rel=1e-9)


def test_expected_purchases_stay_finite_for_members_with_many_purchases() -> None:
    params = BgNbdParams(0.243, 4.414, 0.793, 2.426)
    values = expected_purchases(params, 52.0, [400, 1000], [104.0, 104.0], [104.0, 104.0])
    assert np.all(np.isfinite(values)) and np.all(values > 0)


def test_the_probability_of_being_alive() -> None:
    r, alpha, a, b = params = BgNbdParams(0.243, 4.414, 0.793, 2.426)
    alive = probability_alive(params, [0, 2], [0.0, 30.43], [38.86, 38.86])
    by_hand = 1 / (1 + a / (b + 2 - 1) * ((alpha + 38.86) / (alpha + 30.43)) ** (r + 2))
    np.testing.assert_allclose(alive, [1.0, by_hand], rtol=1e-12)


def test_expected_spend_shrinks_towards_the_population_mean() -> None:
    p, q, v = params = GammaGammaParams(6.25, 3.74, 15.44)
    spend = expected_spend(params, [0, 2, 10], [0.0, 50.0, 50.0])
    population = p * v / (q - 1)
    np.testing.assert_allclose(spend, [population, (v + 100) * p / (2 * p + q - 1), (v + 500) * p / (10 * p + q - 1)])
    assert population < spend[1] < spend[2] < 50


def test_predicted_clv_discounts_each_period_of_expected_purchases() -> None:
    bgnbd, gamma_gamma = BgNbdParams(0.243, 4.414, 0.793, 2.426), GammaGammaParams(6.25, 3.74, 15.44)
    x, t_x, age, m = [2], [30.43], [38.86], [22.35]
    month = months_in("week")
    spend = expected_spend(gamma_gamma, x, m)[0]
    by_hand = sum(
        (expected_purchases(bgnbd, k * month, x, t_x, age)[0] - expected_purchases(bgnbd, (k - 1) * month, x, t_x, age)[0]) * spend / 1.01**k
        for k in range(1, 4)
    )
    value = predicted_clv(bgnbd, gamma_gamma, x, t_x, age, m, horizon=3, period_length=month, discount_rate=0.01)
    assert value[0] == pytest.approx(by_hand, rel=1e-12)
    undiscounted = predicted_clv(bgnbd, gamma_gamma, x, t_x, age, m, horizon=3, period_length=month, discount_rate=0.0)
    assert undiscounted[0] == pytest.approx(expected_purchases(bgnbd, 3 * month, x, t_x, age)[0] * spend, rel=1e-12)


# --- summary data -----------------------------------------------------------------------------------------


def test_summary_data_counts_purchase_days_in_weeks() -> None:
    purchases = pl.DataFrame(
        {
            "member_id": [1, 1, 1, 1, 2, 3],
            "occurred_on": [date(2024, 1, 1), date(2024, 1, 1), date(2024, 1, 15), date(2024, 1, 29), date(2024, 1, 22), date(2024, 2, 5)],
            "amount": [10.0, 5.0, 30.0, 50.0, 20.0, 99.0],
        }
    )
    summary = summary_data(purchases, date(2024, 1, 29), "week")
    expected = pl.DataFrame(
        {
            "member_id": [1, 2],
            # Two purchases on Jan 1 are one transaction: repeats on Jan 15 and Jan 29.
            "frequency": [2, 0],
            "recency": [4.0, 0.0],
            "T": [4.0, 1.0],
            "monetary_value": [40.0, 0.0],
            "revenue": [95.0, 20.0],
            "first_purchase": [date(2024, 1, 1), date(2024, 1, 22)],
            "last_purchase": [date(2024, 1, 29), date(2024, 1, 22)],
        }
    )
    assert_frame_equal(summary, expected)


@pytest.mark.parametrize(("unit", "days"), [("day", 1.0), ("week", 7.0), ("month", 365.25 / 12)], ids=["day", "week", "month"])
def test_summary_data_time_units(unit: str, days: float) -> None:
    purchases = pl.DataFrame({"member_id": [1, 1], "occurred_on": [date(2024, 1, 1), date(2024, 3, 1)], "amount": [1.0, 1.0]})
    summary = summary_data(purchases, date(2024, 4, 1), unit)
    assert summary["recency"][0] == pytest.approx(60 / days)
    assert summary["T"][0] == pytest.approx(91 / days)


def test_the_clv_table_gives_every_member_a_prediction(cdnow_transactions: pl.DataFrame) -> None:
    summary = summary_data(cdnow_transactions, CDNOW_CALIBRATION_END, "week")
    model = ClvModel(BgNbdParams(0.243, 4.414, 0.793, 2.426), GammaGammaParams(6.25, 3.74, 15.44), "week", summary.height, 946)
    table = clv_table(summary, model, horizon_months=12, discount_rate=0.01)
    for column in ("probability_alive", "expected_purchases", "expected_spend", "predicted_clv", "historical_clv"):
        assert table[column].null_count() == 0 and table[column].is_finite().all(), column
    assert table["probability_alive"].is_between(0, 1).all()
    assert_frame_equal(table.select("historical_clv"), summary.select(historical_clv="revenue"))


# --- bad input -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frequency", "recency", "T", "message"),
    [
        ([1, 2], [1.0], [2.0, 3.0], "one value per member"),
        ([1.5], [1.0], [2.0], "whole numbers"),
        ([1], [5.0], [2.0], "between 0 and T"),
        ([0], [1.0], [2.0], "must have recency 0"),
        ([1, np.nan], [1.0, 1.0], [2.0, 2.0], "missing or infinite"),
    ],
    ids=["lengths differ", "fractional frequency", "recency after T", "recency without repeats", "missing values"],
)
def test_bad_summary_data_is_refused_with_a_fix(frequency, recency, T, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        probability_alive(BgNbdParams(1, 1, 1, 1), frequency, recency, T)


def test_too_few_members_to_fit_is_refused_with_a_fix() -> None:
    with pytest.raises(InvalidInput, match="at least 20 members"):
        fit_bgnbd([1, 0], [1.0, 0.0], [2.0, 2.0])
    with pytest.raises(InvalidInput, match="repeat purchases"):
        fit_gamma_gamma([0] * 30, [0.0] * 30)


def test_an_unknown_time_unit_lists_the_known_ones() -> None:
    with pytest.raises(InvalidInput, match="day, week, month"):
        months_in("fortnight")


def test_simulated_members_follow_the_model_on_average() -> None:
    """Under BG/NBD, a member observed for T makes E[X(T)] repeat purchases (eq. 9 of the paper)."""
    r, alpha, a, b = params = BgNbdParams(0.5, 5.0, 0.8, 2.5)
    age = 52.0
    members = simulate_bgnbd(params, np.full(200_000, age), seed=3)
    z = age / (alpha + age)
    mean = (a + b - 1) / (a - 1) * (1 - (alpha / (alpha + age)) ** r * special.hyp2f1(r, b, a + b - 1, z))
    assert members["frequency"].mean() == pytest.approx(mean, rel=0.02)
    assert math.isclose(members["recency"].max(), age, rel_tol=1e-3) and members["recency"].min() >= 0


@pytest.mark.parametrize("model", ["bgnbd", "gamma_gamma"], ids=["BG/NBD gradient", "Gamma-Gamma gradient"])
def test_the_analytic_gradients_match_finite_differences(model: str, cdnow_transactions: pl.DataFrame) -> None:
    from scipy import optimize

    from loyalty.analytics import clv

    summary = summary_data(cdnow_transactions, CDNOW_CALIBRATION_END, "week")
    x, t_x, age, m = (summary[c].to_numpy().astype(float) for c in ("frequency", "recency", "T", "monetary_value"))
    if model == "bgnbd":
        objective, data, point = clv._bgnbd_objective, clv._BgNbdData(x, t_x, age), np.log([0.5, 3.0, 0.6, 2.0])
    else:
        objective, data, point = clv._gamma_gamma_objective, clv._GammaGammaData(x[x > 0], m[x > 0]), np.log([3.0, 2.0, 10.0])

    def in_coordinates(u: np.ndarray) -> tuple[float, np.ndarray]:
        value, gradient = objective(clv._from_coordinates(model, u), data)
        return value, clv._coordinate_gradient(model, u, gradient)

    for function, at in ((lambda p: objective(p, data), point), (in_coordinates, clv._to_coordinates(model, point))):
        error = optimize.check_grad(lambda u, f=function: f(u)[0], lambda u, f=function: f(u)[1], at)
        assert error < 1e-5
