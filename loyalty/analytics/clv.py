"""Predicted customer lifetime value: BG/NBD for purchase counts, Gamma-Gamma for spend.

The models
----------
BG/NBD (Fader, Hardie and Lee 2005, "'Counting Your Customers' the Easy Way: An
Alternative to the Pareto/NBD Model", Marketing Science 24(2)). While alive a member
buys as a Poisson process of rate ``lambda ~ Gamma(r, alpha)``; after every repeat
purchase the member drops out for good with probability ``p ~ Beta(a, b)``. For a
member with ``x`` repeat purchases, the last at ``t_x``, observed for ``T`` since the
first purchase, the likelihood is (their eq. 6)::

    L = B(a, b+x)/B(a, b) * G(r+x) alpha^r / (G(r) (alpha+T)^(r+x))
        + [x > 0] B(a+1, b+x-1)/B(a, b) * G(r+x) alpha^r / (G(r) (alpha+t_x)^(r+x))

The expected number of purchases in the next ``t`` (their eq. 10) is::

    E[Y(t) | x, t_x, T] = (a+b+x-1)/(a-1)
        * [1 - ((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x; a+b+x-1; t/(alpha+T+t))]
        / [1 + [x > 0] a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x)]

computed here with Euler's transformation ``2F1(A, B; C; z) = (1-z)^(C-A-B)
2F1(C-A, C-B; C; z)``, which turns the numerator's bracket into ``1 - (1-z)^(a-1)
2F1(a+b-1-r, a-1; a+b+x-1; z)``: the same number, without the overflow of
``2F1(r+x, b+x; ...)`` for members with many purchases. The probability of being
alive is ``1 / [1 + [x > 0] a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x)]``.

Gamma-Gamma (Fader, Hardie and Lee 2005, "RFM and CLV: Using Iso-Value Curves for
Customer Base Analysis", Journal of Marketing Research 42(4); Fader and Hardie 2013,
"The Gamma-Gamma Model of Monetary Value"). Transaction values are
``Gamma(p, nu)`` with ``nu ~ Gamma(q, v)`` across members (``v`` is the paper's
gamma). For a member with ``x`` repeat transactions of mean value ``m``::

    log f = lnG(px+q) - lnG(px) - lnG(q) + q ln v + (px-1) ln m + px ln x - (px+q) ln(v+mx)
    E[M | x, m] = (v + m x) p / (p x + q - 1)

Both are fitted by maximum likelihood with L-BFGS-B and analytic gradients, in
mean-and-shape coordinates (see ``_BOUNDS``); identical ``(x, t_x, T)`` rows are fitted once with a weight and every term
that depends on ``x`` alone is computed once per distinct ``x``, so a million members
fit in seconds.

Summary data
------------
:func:`summary_data` turns purchases into the models' inputs: purchases on the same UTC
day are one transaction; ``frequency`` = number of purchase days after the first,
``recency`` = first to last purchase day, ``T`` = first purchase day to the calibration
end (inclusive), both in the chosen time unit; ``monetary_value`` = mean value of the
repeat transactions (0 without repeats). Checked on the CDNOW data of the BG/NBD paper:
r = 0.243, alpha = 4.414, a = 0.793, b = 2.426 and p = 6.25, q = 3.74, v = 15.44.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import polars as pl
from scipy import optimize, special
from sqlmodel import Session

from loyalty.analytics.arrays import member_arrays
from loyalty.analytics.data import load_purchases, purchases_frame
from loyalty.errors import InvalidInput

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DEFAULT_DISCOUNT_RATE",
    "DEFAULT_HORIZON_MONTHS",
    "DEFAULT_TIME_UNIT",
    "TIME_UNITS",
    "BgNbdParams",
    "ClvModel",
    "GammaGammaParams",
    "bgnbd_log_likelihood",
    "clv_analysis",
    "clv_members",
    "clv_table",
    "expected_purchases",
    "expected_spend",
    "fit_bgnbd",
    "fit_clv",
    "fit_gamma_gamma",
    "gamma_gamma_log_likelihood",
    "months_in",
    "predicted_clv",
    "probability_alive",
    "simulate_bgnbd",
    "simulate_gamma_gamma",
    "summary_data",
]

# Length of each time unit in days; a month is a twelfth of a Julian year.
TIME_UNITS: dict[str, float] = {"day": 1.0, "week": 7.0, "month": 365.25 / 12}
DEFAULT_TIME_UNIT = "week"
DEFAULT_HORIZON_MONTHS = 12
# Per month: about 12.7 % a year.
DEFAULT_DISCOUNT_RATE = 0.01
# Fewer members than this leave the four BG/NBD parameters (three Gamma-Gamma ones)
# unidentified: the fit would return numbers, not estimates.
MIN_MEMBERS = 20
MIN_REPEAT_MEMBERS = 10
_OPTIONS = {"maxiter": 1000, "ftol": 1e-13, "gtol": 1e-9, "maxcor": 20}
# Above this many members, the fit starts from a fit on a random sample of this many:
# a few cheap iterations instead of dozens of full-size ones.
WARM_START_MEMBERS = 50_000


class BgNbdParams(NamedTuple):
    """BG/NBD parameters: purchase rate ``Gamma(r, alpha)``, dropout ``Beta(a, b)``."""

    r: float
    alpha: float
    a: float
    b: float

    def as_dict(self) -> dict[str, float]:
        return {"r": self.r, "alpha": self.alpha, "a": self.a, "b": self.b}


class GammaGammaParams(NamedTuple):
    """Gamma-Gamma parameters: spend ``Gamma(p, nu)``, ``nu ~ Gamma(q, v)``."""

    p: float
    q: float
    v: float

    def as_dict(self) -> dict[str, float]:
        return {"p": self.p, "q": self.q, "v": self.v}


# --- inputs -----------------------------------------------------------------------------------


def _array(values: Any, name: str) -> np.ndarray:
    if isinstance(values, pl.Series):
        values = values.to_numpy()
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise InvalidInput(f"{name} must be one value per member (a 1-D array), not shape {array.shape}.")
    if not np.all(np.isfinite(array)):
        raise InvalidInput(f"{name} has missing or infinite values; drop those members first.")
    return array


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """Sum of products without BLAS: OpenBLAS threads spinning for a dot product on a
    busy two-core machine made each likelihood evaluation 5 to 50 times slower."""
    return float(np.einsum("i,i->", a, b))


def _rfm_arrays(frequency: Any, recency: Any, T: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, t_x, age = _array(frequency, "frequency"), _array(recency, "recency"), _array(T, "T")
    if not (len(x) == len(t_x) == len(age)):
        raise InvalidInput(f"frequency, recency and T must have one value per member; got {len(x)}, {len(t_x)}, {len(age)}.")
    if np.any(x < 0) or np.any(x != np.round(x)):
        raise InvalidInput("frequency must be whole numbers >= 0 (repeat purchase days); build it with summary_data().")
    if np.any(t_x < 0) or np.any(t_x > age * (1 + 1e-9) + 1e-12):
        raise InvalidInput("recency must lie between 0 and T for every member (the last purchase falls within the observation).")
    if np.any((x == 0) & (t_x != 0)):
        raise InvalidInput("Members without repeat purchases (frequency 0) must have recency 0.")
    return x, np.minimum(t_x, age), age


def _unit_days(time_unit: str) -> float:
    if time_unit not in TIME_UNITS:
        raise InvalidInput(f"Unknown time unit {time_unit!r}; choose one of {', '.join(TIME_UNITS)}.")
    return TIME_UNITS[time_unit]


def months_in(time_unit: str) -> float:
    """Length of one calendar month (a twelfth of a year) in ``time_unit``."""
    return TIME_UNITS["month"] / _unit_days(time_unit)


def summary_data(purchases: pl.DataFrame | pd.DataFrame, calibration_end: date, time_unit: str = DEFAULT_TIME_UNIT) -> pl.DataFrame:
    """Per-member frequency, recency, age and mean repeat spend for the CLV models.

    Parameters
    ----------
    purchases
        ``member_id, occurred_on`` (or ``occurred_at``) ``, amount``; see
        :func:`loyalty.analytics.data.purchases_frame`.
    calibration_end
        Last day of the calibration period, inclusive.
    time_unit
        ``"day"``, ``"week"`` or ``"month"`` (365.25/12 days).

    Returns
    -------
    polars.DataFrame
        One row per member with a purchase on or before ``calibration_end``:
        ``member_id``; ``frequency`` = distinct purchase days - 1 (same-day purchases are
        one transaction); ``recency`` = last - first purchase day; ``T`` =
        ``calibration_end`` - first purchase day (both in ``time_unit``);
        ``monetary_value`` = mean value of the repeat transactions (a transaction's value
        is its day's spend; 0 when frequency is 0); ``revenue`` = all spend through
        ``calibration_end`` (historical CLV); ``first_purchase``, ``last_purchase``.
    """
    unit = _unit_days(time_unit)
    if not isinstance(calibration_end, date):
        raise InvalidInput(f"calibration_end must be a date, not {calibration_end!r}.")
    frame = purchases_frame(purchases).filter(pl.col("occurred_on") <= calibration_end)
    schema = {
        "member_id": pl.Int64,
        "frequency": pl.Int64,
        "recency": pl.Float64,
        "T": pl.Float64,
        "monetary_value": pl.Float64,
        "revenue": pl.Float64,
        "first_purchase": pl.Date,
        "last_purchase": pl.Date,
    }
    if frame.height == 0:
        return pl.DataFrame(schema=schema)
    arrays = member_arrays(frame)
    first = arrays.extreme(arrays.day, largest=False)
    last = arrays.extreme(arrays.day, largest=True)
    oldest = int(arrays.day.min())
    day_position, _ = arrays.distinct(arrays.day - oldest, int(arrays.day.max()) - oldest + 1)
    purchase_days = np.bincount(day_position, minlength=arrays.size)
    bought = purchase_days > 0
    revenue = arrays.sum(arrays.amount)
    first_value = arrays.sum(arrays.amount, arrays.day == first[arrays.position])
    frequency = purchase_days[bought] - 1
    end_day = (calibration_end - date(1970, 1, 1)).days
    with np.errstate(invalid="ignore", divide="ignore"):
        monetary = np.where(frequency > 0, (revenue[bought] - first_value[bought]) / np.maximum(frequency, 1), 0.0)
    return pl.DataFrame(
        {
            "member_id": arrays.member_ids[bought],
            "frequency": frequency.astype(np.int64),
            "recency": (last[bought] - first[bought]) / unit,
            "T": (end_day - first[bought]) / unit,
            "monetary_value": monetary,
            "revenue": revenue[bought],
            "first_purchase": first[bought].astype(np.int32),
            "last_purchase": last[bought].astype(np.int32),
        },
        schema={**schema, "first_purchase": pl.Int32, "last_purchase": pl.Int32},
    ).with_columns(pl.col("first_purchase", "last_purchase").cast(pl.Date))


# --- BG/NBD ------------------------------------------------------------------------------------


class _BgNbdData:
    """Rows grouped for a fast likelihood.

    Identical (x, t_x, T) rows are kept once with a weight; terms of x alone are summed
    per distinct x; terms of T alone per distinct T (recency and age come from whole
    days, so there are at most a few thousand of each), leaving a handful of vector
    operations per distinct row for the repeat buyers' mixture term.
    """

    def __init__(self, x: np.ndarray, t_x: np.ndarray, age: np.ndarray) -> None:
        grouped = (
            pl.DataFrame({"x": x, "t": t_x, "T": age})
            .group_by("x", "t", "T")
            .agg(pl.len().cast(pl.Float64).alias("w"))
            .sort("x", "t", "T")  # a fixed order: the same sums, the same fit, every run
        )
        gx, gt, gT, gw = (grouped[c].to_numpy() for c in ("x", "t", "T", "w"))
        self.n = float(len(x))
        self.ux, inverse = np.unique(gx, return_inverse=True)
        self.W = np.bincount(inverse, weights=gw)  # members per distinct x
        zero = gx == 0
        self.T0, self.w0 = gT[zero], gw[zero]
        repeat = ~zero
        self.x1, self.w1 = gx[repeat], gw[repeat]
        self.ix1 = inverse[repeat]
        self.uT1, self.iT1 = np.unique(gT[repeat], return_inverse=True)
        self.ut1, self.it1 = np.unique(gt[repeat], return_inverse=True)
        self.W_T = np.bincount(self.iT1, weights=self.w1, minlength=len(self.uT1))
        self.WX_T = np.bincount(self.iT1, weights=self.w1 * self.x1, minlength=len(self.uT1))


def _bgnbd_objective(log_params: np.ndarray, data: _BgNbdData) -> tuple[float, np.ndarray]:
    """Minus the mean log-likelihood and its gradient in log-parameters."""
    r, alpha, a, b = np.exp(log_params)
    ux, W = data.ux, data.W
    ln_alpha = np.log(alpha)
    # Terms of x alone (A1 + A2 of the paper's log-likelihood), once per distinct x.
    a1 = special.gammaln(r + ux) - special.gammaln(r) + r * ln_alpha
    a2 = special.gammaln(a + b) + special.gammaln(b + ux) - special.gammaln(b) - special.gammaln(a + b + ux)
    ll = _dot(W, (a1 + a2))
    psi_ab = special.digamma(a + b)
    psi_abx = special.digamma(a + b + ux)
    g_r = _dot(W, (special.digamma(r + ux) - special.digamma(r) + ln_alpha))
    g_alpha = float(W.sum()) * r / alpha
    g_a = _dot(W, (psi_ab - psi_abx))
    g_b = _dot(W, (psi_ab + special.digamma(b + ux) - special.digamma(b) - psi_abx))
    # Members without repeat purchases: A3 = -r ln(alpha + T).
    ln_T0 = np.log(alpha + data.T0)
    ll -= r * _dot(data.w0, ln_T0)
    g_r -= _dot(data.w0, ln_T0)
    g_alpha -= r * _dot(data.w0, (1.0 / (alpha + data.T0)))
    if data.x1.size:
        # Repeat buyers: log(e^A3 + e^A4) = A3 + softplus(d), d = A4 - A3 their log-odds
        # of having dropped out. A3 = -(r + x) ln(alpha + T) sums per distinct T.
        ln_T = np.log(alpha + data.uT1)
        inv_T = 1.0 / (alpha + data.uT1)
        ll -= _dot((r * data.W_T + data.WX_T), ln_T)
        g_r -= _dot(data.W_T, ln_T)
        g_alpha -= _dot((r * data.W_T + data.WX_T), inv_T)
        gap = ln_T[data.iT1] - np.log(alpha + data.ut1)[data.it1]
        rx = r + data.x1
        inv_bx = 1.0 / (b + np.maximum(ux, 1.0) - 1.0)
        d = (np.log(a) + np.log(inv_bx))[data.ix1] + rx * gap
        # Clipped so that no probability becomes subnormal: arithmetic on subnormal
        # floats is a hundred times slower, and e^-700 is as good as dead.
        alive = special.expit(-np.clip(d, -700.0, 700.0))
        softplus = np.where(d > 700.0, d, -np.log(alive))
        ll += _dot(data.w1, softplus)
        wp4 = data.w1 * (1.0 - alive)
        g_r += _dot(wp4, gap)
        g_alpha += _dot((wp4 * rx), (inv_T[data.iT1] - (1.0 / (alpha + data.ut1))[data.it1]))
        g_a += float(wp4.sum()) / a
        g_b -= _dot(wp4, inv_bx[data.ix1])
    gradient = np.array([g_r * r, g_alpha * alpha, g_a * a, g_b * b])
    return -ll / data.n, -gradient / data.n


def bgnbd_log_likelihood(params: BgNbdParams | tuple[float, float, float, float], frequency: Any, recency: Any, T: Any) -> float:
    """Total BG/NBD log-likelihood of the members (eq. 6 of Fader, Hardie and Lee 2005)."""
    x, t_x, age = _rfm_arrays(frequency, recency, T)
    value, _ = _bgnbd_objective(np.log(np.asarray(params, dtype=np.float64)), _BgNbdData(x, t_x, age))
    return -value * len(x)


# The optimiser works in mean-and-shape coordinates rather than on log-parameters:
# BG/NBD (log r, log r/alpha, log(a+b), logit a/(a+b)), Gamma-Gamma (log p, log q,
# log v/q). When the data show no heterogeneity (nobody drops out, everyone spends
# alike) the maximum lies at infinity along a ridge (b -> inf with a/b fixed, say);
# in these coordinates the ridge is one axis that runs straight to its bound, instead
# of a diagonal that L-BFGS-B crawls along for a hundred iterations.
_BOUNDS = {"bgnbd": [(-12.0, 12.0), (-20.0, 20.0), (-12.0, 12.0), (-20.0, 20.0)], "gamma_gamma": [(-12.0, 12.0)] * 2 + [(-20.0, 20.0)]}


def _to_coordinates(model: str, log_params: np.ndarray) -> np.ndarray:
    if model == "bgnbd":
        lr, la, la_, lb = log_params
        return np.array([lr, lr - la, np.logaddexp(la_, lb), la_ - lb])
    lp, lq, lv = log_params
    return np.array([lp, lq, lv - lq])


def _from_coordinates(model: str, u: np.ndarray) -> np.ndarray:
    if model == "bgnbd":
        return np.array([u[0], u[0] - u[1], u[2] - np.logaddexp(0.0, -u[3]), u[2] - np.logaddexp(0.0, u[3])])
    return np.array([u[0], u[1], u[1] + u[2]])


def _coordinate_gradient(model: str, u: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Chain rule: the gradient in coordinates from the gradient in log-parameters."""
    if model == "bgnbd":
        mean = special.expit(u[3])
        return np.array([g[0] + g[1], -g[1], g[2] + g[3], g[2] * (1.0 - mean) - g[3] * mean])
    return np.array([g[0], g[1] + g[2], g[2]])


def _minimise(objective: Any, start: np.ndarray, data: Any, model: str, what: str) -> np.ndarray:
    """Maximum likelihood: minimise ``objective`` (of log-parameters); returns the parameters."""
    bounds = _BOUNDS[model]

    def in_coordinates(u: np.ndarray) -> tuple[float, np.ndarray]:
        value, gradient = objective(_from_coordinates(model, u), data)
        return value, _coordinate_gradient(model, u, gradient)

    def run(origin: np.ndarray) -> optimize.OptimizeResult:
        return optimize.minimize(in_coordinates, origin, jac=True, method="L-BFGS-B", bounds=bounds, options=_OPTIONS)

    origin = np.clip(_to_coordinates(model, start), [b[0] for b in bounds], [b[1] for b in bounds])
    result = run(origin)
    if not np.all(np.isfinite(result.x)) or not np.isfinite(result.fun):
        raise InvalidInput(f"The {what} fit did not converge ({result.message}); the data may be too few or degenerate.")
    if not result.success and _projected_gradient(result.x, result.jac, bounds) > 1e-6:
        # A line-search stop far from a stationary point: go on once from there.
        result = run(result.x)
    return np.exp(_from_coordinates(model, result.x))


def _projected_gradient(x: np.ndarray, gradient: np.ndarray, bounds: list[tuple[float, float]]) -> float:
    """Largest gradient component that is not pushing a coordinate through its bound."""
    low, high = np.array([b[0] for b in bounds]), np.array([b[1] for b in bounds])
    blocked = ((x <= low + 1e-9) & (gradient > 0)) | ((x >= high - 1e-9) & (gradient < 0))
    return float(np.max(np.abs(np.where(blocked, 0.0, gradient)))) if len(x) else 0.0


def _sample(count: int, *columns: np.ndarray) -> tuple[np.ndarray, ...]:
    chosen = np.random.default_rng(0).choice(len(columns[0]), count, replace=False)
    return tuple(column[chosen] for column in columns)


def fit_bgnbd(frequency: Any, recency: Any, T: Any, *, initial: BgNbdParams | None = None) -> BgNbdParams:
    """Fit BG/NBD by maximum likelihood.

    Parameters
    ----------
    frequency, recency, T
        One value per member, as from :func:`summary_data` (any time unit; ``alpha``
        comes out in that unit).
    initial
        Starting values; default ``r = 1, a = 1, b = 1`` and ``alpha`` matching the
        observed purchase rate.

    Returns
    -------
    BgNbdParams
        ``r, alpha, a, b``.
    """
    x, t_x, age = _rfm_arrays(frequency, recency, T)
    if len(x) < MIN_MEMBERS:
        raise InvalidInput(f"BG/NBD needs at least {MIN_MEMBERS} members with purchases; got {len(x)}. Use a longer history.")
    if not np.any(x > 0):
        raise InvalidInput("No member made a repeat purchase: BG/NBD cannot estimate dropout. Use a longer history.")
    if initial is None:
        rate = max(float(x.sum()) / max(float(age.sum()), 1e-9), 1e-6)
        initial = BgNbdParams(1.0, 1.0 / rate, 1.0, 1.0)
        if len(x) > WARM_START_MEMBERS:
            initial = fit_bgnbd(*_sample(WARM_START_MEMBERS, x, t_x, age), initial=initial)
    start = np.log(np.clip(np.asarray(initial, dtype=np.float64), 1e-12, 1e12))
    return BgNbdParams(*map(float, _minimise(_bgnbd_objective, start, _BgNbdData(x, t_x, age), "bgnbd", "BG/NBD")))


def probability_alive(params: BgNbdParams | tuple[float, ...], frequency: Any, recency: Any, T: Any) -> np.ndarray:
    """P(member still active at T | x, t_x, T) under BG/NBD (Fader, Hardie and Lee 2005, eq. 11)."""
    r, alpha, a, b = params
    x, t_x, age = _rfm_arrays(frequency, recency, T)
    return special.expit(-_log_odds_dead(r, alpha, a, b, x, t_x, age))


def _log_odds_dead(r: float, alpha: float, a: float, b: float, x: np.ndarray, t_x: np.ndarray, age: np.ndarray) -> np.ndarray:
    """``log(a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x))`` for repeat buyers, -inf for the others."""
    out = np.full(x.shape, -np.inf)
    repeat = x > 0
    xr = x[repeat]
    out[repeat] = np.log(a) - np.log(b + xr - 1.0) + (r + xr) * (np.log(alpha + age[repeat]) - np.log(alpha + t_x[repeat]))
    return out


def _unique_pairs(x: np.ndarray, age: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    keys = pl.DataFrame({"x": x, "T": age}).with_columns(key=pl.struct("x", "T").rank("dense") - 1)
    key = keys["key"].to_numpy().astype(np.int64)
    first = np.zeros(int(key.max()) + 1 if len(key) else 0, dtype=np.int64)
    first[key] = np.arange(len(key))
    return x[first], age[first], key


def _cumulative_expected(r: float, alpha: float, a: float, b: float, t: float, ux: np.ndarray, uT: np.ndarray) -> np.ndarray:
    """The numerator of eq. 10 for each distinct (x, T), via Euler's transformation."""
    if t <= 0:
        return np.zeros_like(ux)
    z = t / (alpha + uT + t)
    with np.errstate(invalid="ignore", over="ignore"):
        tail = np.power(1.0 - z, a - 1.0) * special.hyp2f1(a + b - 1.0 - r, a - 1.0, a + b + ux - 1.0, z)
    # With a large a (a fit whose dropout probability is narrowly known) the transformed 2F1
    # overflows while (1 - z)^(a-1) underflows: eq. 10 as printed stays finite there.
    direct = ~np.isfinite(tail)
    if direct.any():
        zd, xd = z[direct], ux[direct]
        tail[direct] = np.power(1.0 - zd, r + xd) * special.hyp2f1(r + xd, b + xd, a + b + xd - 1.0, zd)
    return (a + b + ux - 1.0) / (a - 1.0) * (1.0 - tail)


def expected_purchases(params: BgNbdParams | tuple[float, ...], t: float, frequency: Any, recency: Any, T: Any) -> np.ndarray:
    """Expected purchases in the next ``t`` time units (eq. 10 of Fader, Hardie and Lee 2005).

    Parameters
    ----------
    params
        Fitted :class:`BgNbdParams`.
    t
        Horizon, in the time unit of the fit.
    frequency, recency, T
        The members' summary data, same unit.
    """
    r, alpha, a, b = params
    if t < 0:
        raise InvalidInput(f"The horizon t must be >= 0, not {t}.")
    x, t_x, age = _rfm_arrays(frequency, recency, T)
    ux, uT, key = _unique_pairs(x, age)
    numerator = _cumulative_expected(r, alpha, a, b, float(t), ux, uT)[key]
    return numerator * special.expit(-_log_odds_dead(r, alpha, a, b, x, t_x, age))


# --- Gamma-Gamma -------------------------------------------------------------------------------


class _GammaGammaData:
    def __init__(self, x: np.ndarray, m: np.ndarray) -> None:
        self.n = float(len(x))
        self.ux, self.ix = np.unique(x, return_inverse=True)
        self.W = np.bincount(self.ix, minlength=len(self.ux)).astype(np.float64)
        self.x = x
        self.mx = m * x  # total repeat spend
        ln_m = np.log(m)
        self.sum_x = float(x.sum())
        self.sum_ln_m = float(ln_m.sum())
        self.sum_x_ln_m = _dot(x, ln_m)
        self.sum_x_ln_x = _dot(x, np.log(x))


def _gamma_gamma_objective(log_params: np.ndarray, data: _GammaGammaData) -> tuple[float, np.ndarray]:
    p, q, v = np.exp(log_params)
    ux, W, x = data.ux, data.W, data.x
    px = p * ux
    ln_vmx = np.log(v + data.mx)
    inv_vmx = 1.0 / (v + data.mx)
    x_ln_vmx, sum_ln_vmx = _dot(x, ln_vmx), float(ln_vmx.sum())
    ll = (
        _dot(W, (special.gammaln(px + q) - special.gammaln(px)))
        - data.n * (special.gammaln(q) - q * np.log(v))
        + p * data.sum_x_ln_m
        - data.sum_ln_m
        + p * data.sum_x_ln_x
        - p * x_ln_vmx
        - q * sum_ln_vmx
    )
    psi_pxq = special.digamma(px + q)
    g_p = _dot(W, (ux * (psi_pxq - special.digamma(px)))) + data.sum_x_ln_m + data.sum_x_ln_x - x_ln_vmx
    g_q = _dot(W, psi_pxq) - data.n * (special.digamma(q) - np.log(v)) - sum_ln_vmx
    g_v = data.n * q / v - p * _dot(x, inv_vmx) - q * float(inv_vmx.sum())
    gradient = np.array([g_p * p, g_q * q, g_v * v])
    return -ll / data.n, -gradient / data.n


def _repeat_spend(frequency: Any, monetary: Any) -> tuple[np.ndarray, np.ndarray]:
    x, m = _array(frequency, "frequency"), _array(monetary, "monetary")
    if len(x) != len(m):
        raise InvalidInput(f"frequency and monetary must have one value per member; got {len(x)} and {len(m)}.")
    keep = (x > 0) & (m > 0)
    return x[keep], m[keep]


def gamma_gamma_log_likelihood(params: GammaGammaParams | tuple[float, float, float], frequency: Any, monetary: Any) -> float:
    """Total Gamma-Gamma log-likelihood of the members with repeat purchases and spend > 0."""
    x, m = _repeat_spend(frequency, monetary)
    value, _ = _gamma_gamma_objective(np.log(np.asarray(params, dtype=np.float64)), _GammaGammaData(x, m))
    return -value * len(x)


def fit_gamma_gamma(frequency: Any, monetary: Any, *, initial: GammaGammaParams | None = None) -> GammaGammaParams:
    """Fit the Gamma-Gamma spend model by maximum likelihood.

    Parameters
    ----------
    frequency, monetary
        Repeat transactions and their mean value per member (:func:`summary_data`);
        members with ``frequency == 0`` or ``monetary <= 0`` carry no information and
        are left out.

    Returns
    -------
    GammaGammaParams
        ``p, q, v`` (``v`` is the papers' gamma, in money).
    """
    x, m = _repeat_spend(frequency, monetary)
    if len(x) < MIN_REPEAT_MEMBERS:
        raise InvalidInput(f"Gamma-Gamma needs at least {MIN_REPEAT_MEMBERS} members with repeat purchases; got {len(x)}. Use a longer history.")
    if initial is None:
        initial = GammaGammaParams(1.0, 2.0, float(np.mean(m)))
        if len(x) > WARM_START_MEMBERS:
            initial = fit_gamma_gamma(*_sample(WARM_START_MEMBERS, x, m), initial=initial)
    start = np.log(np.clip(np.asarray(initial, dtype=np.float64), 1e-12, 1e12))
    return GammaGammaParams(*map(float, _minimise(_gamma_gamma_objective, start, _GammaGammaData(x, m), "gamma_gamma", "Gamma-Gamma")))


def expected_spend(params: GammaGammaParams | tuple[float, ...], frequency: Any, monetary: Any) -> np.ndarray:
    """Expected value of a member's future transaction: ``(v + m x) p / (p x + q - 1)``.

    Members without repeat purchases get the population mean ``p v / (q - 1)``.
    Needs ``q > 1`` (otherwise the mean spend is infinite).
    """
    p, q, v = params
    if q <= 1:
        raise InvalidInput(f"Gamma-Gamma q = {q:.3g} <= 1 means an infinite mean spend; the fit is unusable.")
    x, m = _array(frequency, "frequency"), _array(monetary, "monetary")
    x_used = np.where(m > 0, x, 0.0)
    return (v + np.where(x_used > 0, m, 0.0) * x_used) * p / (p * x_used + q - 1.0)


# --- CLV -----------------------------------------------------------------------------------------


def predicted_clv(
    bgnbd: BgNbdParams | tuple[float, ...],
    gamma_gamma: GammaGammaParams | tuple[float, ...],
    frequency: Any,
    recency: Any,
    T: Any,
    monetary: Any,
    *,
    horizon: int = DEFAULT_HORIZON_MONTHS,
    period_length: float = 1.0,
    discount_rate: float = DEFAULT_DISCOUNT_RATE,
) -> np.ndarray:
    """Discounted expected spend over the next ``horizon`` periods.

    ``CLV = sum_k (E[Y(k L)] - E[Y((k-1) L)]) * E[M] / (1 + d)^k`` for ``k = 1..horizon``,
    where ``L = period_length`` (in the fit's time unit: ``months_in("week")`` for
    monthly periods on a weekly fit), ``d = discount_rate`` per period, ``E[Y]`` from
    :func:`expected_purchases` and ``E[M]`` from :func:`expected_spend`.
    """
    if horizon < 0 or period_length <= 0 or discount_rate <= -1:
        raise InvalidInput("Use horizon >= 0, period_length > 0 and a discount rate above -100 %.")
    r, alpha, a, b = bgnbd
    x, t_x, age = _rfm_arrays(frequency, recency, T)
    spend = expected_spend(gamma_gamma, x, monetary)
    ux, uT, key = _unique_pairs(x, age)
    alive = special.expit(-_log_odds_dead(r, alpha, a, b, x, t_x, age))
    value = np.zeros(len(ux))
    previous = np.zeros(len(ux))
    for k in range(1, horizon + 1):
        current = _cumulative_expected(r, alpha, a, b, k * period_length, ux, uT)
        value += (current - previous) / (1.0 + discount_rate) ** k
        previous = current
    return value[key] * alive * spend


class ClvModel(NamedTuple):
    """Both fitted models and the time unit they are expressed in."""

    bgnbd: BgNbdParams
    gamma_gamma: GammaGammaParams
    time_unit: str
    members: int
    repeat_members: int


def fit_clv(summary: pl.DataFrame | pd.DataFrame, time_unit: str = DEFAULT_TIME_UNIT) -> ClvModel:
    """Fit BG/NBD and Gamma-Gamma on a :func:`summary_data` frame."""
    frame = summary if isinstance(summary, pl.DataFrame) else pl.from_pandas(summary)
    bgnbd = fit_bgnbd(frame["frequency"], frame["recency"], frame["T"])
    gamma_gamma = fit_gamma_gamma(frame["frequency"], frame["monetary_value"])
    repeat = int(((frame["frequency"] > 0) & (frame["monetary_value"] > 0)).sum())
    return ClvModel(bgnbd, gamma_gamma, time_unit, frame.height, repeat)


def clv_table(
    summary: pl.DataFrame | pd.DataFrame,
    model: ClvModel,
    *,
    horizon_months: int = DEFAULT_HORIZON_MONTHS,
    discount_rate: float = DEFAULT_DISCOUNT_RATE,
) -> pl.DataFrame:
    """Per-member predictions from a fitted :class:`ClvModel`.

    Returns
    -------
    polars.DataFrame
        The summary columns plus ``probability_alive``, ``expected_purchases`` (in the
        next ``horizon_months`` months), ``expected_spend`` (per future transaction),
        ``predicted_clv`` (discounted spend over ``horizon_months`` months at
        ``discount_rate`` per month) and ``historical_clv`` (spend to date).
    """
    frame = summary if isinstance(summary, pl.DataFrame) else pl.from_pandas(summary)
    month = months_in(model.time_unit)
    x, t_x, age, m = (frame[c].to_numpy() for c in ("frequency", "recency", "T", "monetary_value"))
    return frame.with_columns(
        probability_alive=pl.Series(probability_alive(model.bgnbd, x, t_x, age)),
        expected_purchases=pl.Series(expected_purchases(model.bgnbd, horizon_months * month, x, t_x, age)),
        expected_spend=pl.Series(expected_spend(model.gamma_gamma, x, m)),
        predicted_clv=pl.Series(
            predicted_clv(model.bgnbd, model.gamma_gamma, x, t_x, age, m, horizon=horizon_months, period_length=month, discount_rate=discount_rate)
        ),
        historical_clv=pl.col("revenue") if "revenue" in frame.columns else pl.lit(None, dtype=pl.Float64),
    )


# --- simulation (tests, benchmarks) -------------------------------------------------------------------


def simulate_bgnbd(params: BgNbdParams | tuple[float, ...], T: Any, *, seed: int = 0) -> pl.DataFrame:
    """Members drawn from the BG/NBD story, observed for ``T`` each.

    ``lambda ~ Gamma(r, rate alpha)``, ``p ~ Beta(a, b)``; the member drops out right
    after repeat purchase ``J ~ Geometric(p)``; purchases arrive as a Poisson process.
    Given ``N`` arrivals in ``(0, T]``, ``x = min(J, N)`` and ``t_x`` is the x-th of N
    uniform times: ``T * Beta(x, N - x + 1)``.
    """
    r, alpha, a, b = params
    age = _array(T, "T")
    rng = np.random.default_rng(seed)
    rate = rng.gamma(r, 1.0 / alpha, size=len(age))
    dropout = rng.beta(a, b, size=len(age))
    last = rng.geometric(dropout)
    arrivals = rng.poisson(rate * age)
    x = np.minimum(last, arrivals)
    positive = x > 0
    t_x = np.zeros(len(age))
    t_x[positive] = age[positive] * rng.beta(x[positive], arrivals[positive] - x[positive] + 1)
    return pl.DataFrame({"frequency": x.astype(np.int64), "recency": t_x, "T": age})


def simulate_gamma_gamma(params: GammaGammaParams | tuple[float, ...], frequency: Any, *, seed: int = 0) -> np.ndarray:
    """Mean repeat-transaction values under Gamma-Gamma (0 for members without repeats)."""
    p, q, v = params
    x = _array(frequency, "frequency")
    rng = np.random.default_rng(seed)
    nu = rng.gamma(q, 1.0 / v, size=len(x))
    positive = x > 0
    mean = np.zeros(len(x))
    mean[positive] = rng.gamma(p * x[positive], 1.0 / nu[positive]) / x[positive]
    return mean


# --- from the database -------------------------------------------------------------------------------


def _summary_from_db(session: Session, calibration_end: date, time_unit: str) -> pl.DataFrame:
    purchases = load_purchases(session, end=calibration_end + timedelta(days=1))
    summary = summary_data(purchases, calibration_end, time_unit)
    if summary.height < MIN_MEMBERS:
        raise InvalidInput(
            f"Only {summary.height} members bought on or before {calibration_end}; the CLV models need at least "
            f"{MIN_MEMBERS}. Choose a later calibration end or import more purchases."
        )
    return summary


def clv_analysis(session: Session, calibration_end: date, time_unit: str = DEFAULT_TIME_UNIT) -> dict[str, Any]:
    """The fitted parameters, as ``analyze clv --json`` prints them.

    Returns
    -------
    dict
        ``{"bgnbd": {"r", "alpha", "a", "b"}, "gamma_gamma": {"p", "q", "v"}, "members": N}``
        with ``N`` the members with a purchase on or before ``calibration_end``.
    """
    _unit_days(time_unit)
    model = fit_clv(_summary_from_db(session, calibration_end, time_unit), time_unit)
    return {"bgnbd": model.bgnbd.as_dict(), "gamma_gamma": model.gamma_gamma.as_dict(), "members": model.members}


def clv_members(
    session: Session,
    calibration_end: date,
    time_unit: str = DEFAULT_TIME_UNIT,
    *,
    horizon_months: int = DEFAULT_HORIZON_MONTHS,
    discount_rate: float = DEFAULT_DISCOUNT_RATE,
) -> pd.DataFrame:
    """Per-member CLV table (:func:`clv_table`) from the database, as pandas."""
    summary = _summary_from_db(session, calibration_end, time_unit)
    model = fit_clv(summary, time_unit)
    return clv_table(summary, model, horizon_months=horizon_months, discount_rate=discount_rate).to_pandas()
