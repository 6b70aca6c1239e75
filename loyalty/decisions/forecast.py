"""Points liability and breakage forecast: the next 12 months, in points and money, with a band.

What is forecast
----------------
For each of the next ``horizon`` months after a cutoff (the end of the as-of day; the
months are month-long periods starting at the cutoff, calendar months when the cutoff
is a 1st): points **earned**, **redeemed** (net of cancelled redemptions' returned
points), **expired**, **outstanding** at the month's end, and **breakage**
``expired / (expired + redeemed)``. Money is points times ``ProgramSettings.point_value``.

The model
---------
1. *Points already held* are known exactly. Each member's open lots at the cutoff come
   from the FIFO rule of :mod:`loyalty.ledger.entries` (debits consume the soonest-expiring lots
   first): lots are bucketed by the forecast month their ``expires_at`` falls in (bucket
   0: already past due, expiring in month 1; bucket ``horizon + 1``: later or never), and
   what remains of bucket ``b`` is ``clip(B - P(>b), 0, P(b))`` with ``B`` the member's
   balance and ``P(>b)`` the lots in later buckets (the unconsumed points are the latest
   expiring ones). Bucketing by expiry month keeps FIFO exact at month resolution.
2. *Earning* of members who have earned before: BG/NBD (Fader, Hardie and Lee 2005;
   :mod:`loyalty.analytics.clv`) fitted on the members' earning days (a day with ``earn``
   or ``bonus`` entries is one transaction): member ``i`` is expected to make
   ``E_i(k) - E_i(k-1)`` transactions in month ``k`` (eq. 10: expected purchases, which
   already decays with the probability of being alive), each worth a credibility-weighted
   mean of the member's own points per earning day and the program's
   (``(n_i m_i + K m) / (n_i + K)``, ``K`` = :data:`CREDIBILITY_DAYS`).
   *New members*: as many first-time earners per month as the mean of the last
   :data:`NEW_MEMBER_MONTHS` months, each with one first transaction in the month they
   arrive and the BG/NBD expected repeat transactions of a new member after it, at the
   program's mean points per transaction. With fewer than ``MIN_MEMBERS`` buyers (or no
   repeat buyer) BG/NBD cannot be fitted and each member keeps their average number of
   earning days per month of the last :data:`HAZARD_MONTHS` months (``model="recent-rate"``).
3. *Redemption* is a monthly hazard on the points a member has available in the month
   (held at the start plus earned in it), estimated from the last :data:`HAZARD_MONTHS`
   months by activity (*active*: earned in the month or the :data:`ACTIVE_MONTHS` - 1
   before; *lapsed* otherwise) and by band of available points (:data:`BAND_MULTIPLES`
   of the cheapest active reward: below it nobody can redeem). In the forecast a member's
   hazard is ``P(active) h_active[band] + (1 - P(active)) h_lapsed[band]``; ``P(active)``
   is known from the history for the window's past months and ``1 - exp(-expected
   transactions in the window)`` (Poisson) for its forecast months.
4. *Projection*, per member and vectorised over members (one row per member, plus one row
   per arrival month of new members weighted by the arrivals): each month the earnings
   become a lot expiring ``expiry_months`` later, redemptions ``h * available`` are
   debited, and what expires is ``max(0, C_k - D)`` with ``C_k`` the member's lots
   expiring by month ``k`` and ``D`` all points debited so far: FIFO in closed form, the
   rule :func:`loyalty.ledger.entries.expire_points` applies. A member with one known lot and no
   activity sees it expire exactly in the month of its ``expires_at``.

The band
--------
A bootstrap of the monthly rates (:data:`BAND_PATHS` paths): every path draws, for each
forecast month, the redemption hazards of one history month chosen at random (the
buy/idle tables of that month together), an earnings multiplier ``exp(r_path + r_month)``
with ``r_path`` (a level shift kept for the whole path) and ``r_month`` residuals of the
history months' log earned points around their linear trend (season and noise), and a
new-member count resampled from the recent months. The paths run on classes of members
(activity decile x band of available points, averaged) to stay cheap; their quantiles,
as ratios to the class-level central path, are applied to the member-level forecast:
the band is the central :data:`DEFAULT_BAND` interval of the paths for each month and
measure; the central line is the member-level forecast at the pooled rates. The band covers the month-to-month
variability the history shows, not a change in the program (new rewards, a changed
expiry period) nor seasonality beyond what a year of history reveals.

The back-test (:func:`backtest_forecast`) fits on the first 12 months of the history,
forecasts the next 6 and compares with what happened (results: ``docs/forecast.md``).

Reading
-------
One columnar read of the ledger rows before the cutoff (``member_id``, kind, points,
epoch seconds of ``occurred_at`` and ``expires_at``: :func:`loyalty.analytics.data.fetch_frame`,
ADBC on SQLite); all per-member sums are Polars/numpy group-bys (a ``GROUP BY member_id``
over the whole ledger is slow on SQLite). The monthly history for the page comes out of
the same read.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
from sqlalchemy import delete, func
from sqlmodel import Session, col, select

from db.engine import write_transaction
from db.models import LedgerEntry, LiabilityForecast, Reward, utcnow
from loyalty.analytics.clv import MIN_MEMBERS, expected_purchases, fit_bgnbd, months_in, probability_alive, summary_data
from loyalty.analytics.data import PART_CONDITION, dialect_of, epoch_sql, fetch_frame, id_parts
from loyalty.errors import InvalidInput
from loyalty.periods import cutoff_of
from loyalty.settings import get_settings

__all__ = [
    "ACTIVITY_CLASSES",
    "BAND_PATHS",
    "DEFAULT_BAND",
    "DEFAULT_HORIZON_MONTHS",
    "MEASURES",
    "ForecastResult",
    "backtest_forecast",
    "backtest_table",
    "forecast_from_entries",
    "forecast_liability",
    "forecast_summary",
    "latest_forecast",
    "liability_outlook",
    "open_lots_by_month",
    "project_liability",
    "store_forecast",
]

MEASURES = ("outstanding", "earned", "redeemed", "expired", "breakage")
POINT_MEASURES = ("outstanding", "earned", "redeemed", "expired")
DEFAULT_HORIZON_MONTHS = 12
HISTORY_MONTHS = 12  # actual months stored before the forecast, for the chart
DEFAULT_BAND = 0.8
BAND_PATHS = 400
ACTIVITY_CLASSES = 10
# Bands of available points, in multiples of the cheapest active reward: below it a member
# cannot redeem at all, and the hazard rises with what a member could afford.
BAND_MULTIPLES = (1.0, 2.0, 5.0, 10.0)
HAZARD_MONTHS = 6
# A member is "active" in a month when they earned in it or in the months just before:
# members between purchases redeem like buyers, lapsed ones mostly let points expire.
ACTIVE_MONTHS = 3
NEW_MEMBER_MONTHS = 3
CREDIBILITY_DAYS = 2.0
TIME_UNIT = "week"
SEED = 20_240_301
# Ledger kinds as small integers in the read.
_EARN, _BONUS, _REDEEM, _EXPIRE, _RETURNED, _REFUND, _OTHER = range(7)


@dataclass
class ForecastResult:
    """A forecast and how it was made.

    ``frame`` has one row per month and measure: ``month`` (start of the month-long
    period), ``measure``, ``kind`` (``actual`` for the history months, ``forecast``),
    ``points``, ``points_low``, ``points_high`` (the band; ``None`` for actuals). For
    ``breakage`` the three numbers are rates (0-1).
    """

    as_of: date
    cutoff: datetime
    frame: pd.DataFrame
    model: str
    band: float
    h_active: float
    h_lapsed: float
    new_members_per_month: float
    members: int
    outstanding_now: float
    details: dict[str, Any] = field(default_factory=dict)


# --- time grid ---------------------------------------------------------------------------------------


def _edges(cutoff: datetime, before: int, after: int) -> list[datetime]:
    """Starts of the month-long periods ``cutoff + j months`` for ``j = -before .. after``."""
    base = pd.Timestamp(cutoff)
    return [(base + pd.DateOffset(months=j)).to_pydatetime() for j in range(-before, after + 1)]


def _seconds(moments: list[datetime]) -> np.ndarray:
    return np.array([int(m.timestamp()) for m in moments], dtype=np.int64)


# --- reading -----------------------------------------------------------------------------------------


def _read_ledger(session: Session, until: datetime) -> pl.DataFrame:
    """Every ledger row before ``until``: member_id, kind code, points, occurred_s, expires_s."""
    dialect = dialect_of(session)
    day = until.astimezone(UTC).date()
    if until != cutoff_of(day - timedelta(days=1)):
        raise InvalidInput("A forecast cutoff is the start of a UTC day.")
    kind = (
        "CASE kind WHEN 'earn' THEN :earn WHEN 'bonus' THEN :bonus WHEN 'redeem' THEN :redeem "
        "WHEN 'expire' THEN :expire WHEN 'reverse' THEN CASE WHEN redemption_id IS NOT NULL AND points > 0 "
        "THEN :returned ELSE :refund END ELSE :other END"
    )
    codes = {"earn": _EARN, "bonus": _BONUS, "redeem": _REDEEM, "expire": _EXPIRE, "returned": _RETURNED, "refund": _REFUND, "other": _OTHER}
    sql = (
        "SELECT member_id, " + kind + f" AS kind_code, points, {epoch_sql(dialect, 'occurred_at')} AS occurred_s, "
        f"{epoch_sql(dialect, 'expires_at')} AS expires_s "
        "FROM ledger_entry WHERE occurred_at < :until"
    )
    parts = id_parts(session, "ledger_entry", "auto")  # the whole ledger: in parts at once on SQLite
    if parts:
        sql += " AND " + PART_CONDITION
    schema = {"member_id": pl.Int64, "kind": pl.Int8, "points": pl.Int64, "occurred_s": pl.Int64, "expires_s": pl.Int64}
    return fetch_frame(session, sql, schema, params={**codes, "until": day}, parts=parts)


# --- the projection (pure) -----------------------------------------------------------------------------


def project_liability(
    lots: np.ndarray,
    earned: np.ndarray,
    p_active: np.ndarray,
    hazard: np.ndarray,
    band_edges: np.ndarray,
    expiry_months: int,
    weights: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Roll members (or classes of them) forward month by month, for one or many paths at once.

    Parameters
    ----------
    lots
        ``(R, K + 2)`` points a row holds by expiry bucket: 0 = already past due (expires
        in month 1), ``k`` = expires in forecast month ``k``, ``K + 1`` = later or never.
    earned
        ``(P, R, K)`` (or ``(R, K)``) points a row earns per path and month.
    p_active
        ``(R, K)`` probability that the row's member is active in the month (has earned in it
        or in the months just before).
    hazard
        ``(P, K, 2, B)`` (or ``(2, B)``) monthly redemption hazard on available points (held
        plus the month's earnings): ``[..., 0, b]`` for active members, ``[..., 1, b]`` for
        lapsed ones, ``b`` the band of available points.
    band_edges
        ``(B - 1,)`` increasing edges of the available-points bands.
    expiry_months
        Lots expire this many months after they are earned (0: never).
    weights
        ``(R,)`` members each row stands for (default 1).

    Returns
    -------
    dict
        ``earned, redeemed, expired, outstanding``: ``(P, K)`` weighted sums over rows
        (outstanding at the month's end).

    Notes
    -----
    Within a month: the month's earnings become a lot expiring ``expiry_months`` later;
    redemptions ``h * available`` with ``h = p_active h_active[band] + (1 - p_active)
    h_lapsed[band]`` consume the row's lots soonest-expiring first (FIFO); then what is
    left of the lots expiring in the month expires.
    """
    rows, months = p_active.shape
    earned = earned[None] if earned.ndim == 2 else earned
    paths = earned.shape[0]
    if hazard.ndim == 2:
        hazard = np.broadcast_to(hazard, (paths, months, *hazard.shape))
    if lots.shape != (rows, months + 2) or earned.shape[1:] != (rows, months):
        raise InvalidInput("lots must be (rows, months + 2), earned (paths, rows, months) and p_active (rows, months).")
    weights = np.ones(rows) if weights is None else np.asarray(weights, dtype=np.float64)
    # FIFO in closed form (as loyalty.ledger.entries expires): with D the points debited so far and
    # C_k the lots expiring by month k, what expires in month k is max(0, C_k - D).
    due_by = np.cumsum(np.maximum(lots, 0.0), axis=1)  # C_k of the lots held now
    held_now = due_by[:, -1]
    debited = np.zeros((paths, rows))
    gained_so_far = np.zeros((paths, rows))
    new_due = np.zeros((paths, rows))  # new lots (earned in the forecast) due so far
    earned_in = np.maximum(earned, 0.0)
    out = {name: np.zeros((paths, months)) for name in ("earned", "redeemed", "expired", "outstanding")}
    for k in range(1, months + 1):
        gained = earned_in[:, :, k - 1]
        gained_so_far += gained
        available = held_now + gained_so_far - debited
        band = np.searchsorted(band_edges, available, side="right")
        h_active = np.take_along_axis(hazard[:, k - 1, 0, :], band, axis=1)
        h_lapsed = np.take_along_axis(hazard[:, k - 1, 1, :], band, axis=1)
        chance = p_active[None, :, k - 1]
        redeemed = np.clip(chance * h_active + (1.0 - chance) * h_lapsed, 0.0, 1.0) * np.maximum(available, 0.0)
        debited += redeemed
        if 0 < expiry_months < k:
            new_due += earned_in[:, :, k - 1 - expiry_months]
        expired = np.maximum(due_by[None, :, k] + new_due - debited, 0.0)
        debited += expired
        out["earned"][:, k - 1] = gained @ weights
        out["redeemed"][:, k - 1] = redeemed @ weights
        out["expired"][:, k - 1] = expired @ weights
        out["outstanding"][:, k - 1] = (held_now + gained_so_far - debited) @ weights
    return out


def open_lots_by_month(ledger: pl.DataFrame | pd.DataFrame, cutoff: datetime, horizon: int) -> pd.DataFrame:
    """What each member holds at ``cutoff``, by the forecast month the points expire in (FIFO).

    Parameters
    ----------
    ledger
        Rows ``member_id, points, occurred_at, expires_at`` (UTC timestamps; ``expires_at``
        empty for debits and never-expiring lots) before ``cutoff``.

    Returns
    -------
    pandas.DataFrame
        One row per member: ``member_id``, ``balance``, ``due`` (held points whose lots are
        already past their date), ``m1`` .. ``m<horizon>`` (expiring in forecast month k,
        the month-long period ``[cutoff + (k-1) months, cutoff + k months)``) and ``later``.
    """
    frame = ledger if isinstance(ledger, pl.DataFrame) else pl.from_pandas(ledger)
    seconds = {c: pl.col(c).dt.epoch("s") for c in ("occurred_at", "expires_at")}
    rows = frame.select(
        pl.col("member_id").cast(pl.Int64),
        pl.col("points").cast(pl.Int64),
        seconds["occurred_at"].alias("occurred_s"),
        seconds["expires_at"].alias("expires_s"),
    )
    rows = rows.filter(pl.col("occurred_s") < int(cutoff.timestamp()))
    position, members = _member_positions(rows["member_id"].to_numpy())
    balance, held = _open_lots(rows, position, len(members), cutoff, horizon)
    present = np.bincount(position, minlength=len(members)) > 0
    columns = {"member_id": members, "balance": balance, "due": held[:, 0]}
    columns |= {f"m{k}": held[:, k] for k in range(1, horizon + 1)}
    return pd.DataFrame({**columns, "later": held[:, horizon + 1]})[present].reset_index(drop=True)


def _open_lots(rows: pl.DataFrame, position: np.ndarray, n: int, cutoff: datetime, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Per member: the balance and ``(n, horizon + 2)`` points held by expiry bucket (see the module notes)."""
    points = rows["points"].to_numpy().astype(np.float64)
    expires = rows["expires_s"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    balance = np.bincount(position, weights=points, minlength=n)
    future_edges = _seconds(_edges(cutoff, 0, horizon))
    lot = (points > 0) & ((expires > future_edges[0]) | np.isnan(expires))
    bucket = np.full(len(points), horizon + 1, dtype=np.int64)
    dated = lot & ~np.isnan(expires)
    # Bucket k: the expiry run that takes the lot is dated in [cutoff + (k-1) months, cutoff + k months).
    bucket[dated] = np.minimum(np.searchsorted(future_edges, expires[dated], side="right"), horizon + 1)
    width = horizon + 2
    per_bucket = np.bincount(position[lot] * width + bucket[lot], weights=points[lot], minlength=n * width).reshape(n, width)
    later = np.cumsum(per_bucket[:, ::-1], axis=1)[:, ::-1]  # P(>= b)
    after = np.concatenate([later[:, 1:], np.zeros((n, 1))], axis=1)  # P(> b)
    held = np.clip(balance[:, None] - after, 0.0, per_bucket)
    # Bucket 0: held points in no future lot, i.e. lots past due the expiry job has not taken yet.
    held[:, 0] = np.maximum(balance - later[:, 0], 0.0)
    return balance, held


# --- the inputs, from the ledger ----------------------------------------------------------------------


def _history(ledger: pl.DataFrame, edges: np.ndarray) -> pd.DataFrame:
    """Monthly actuals for periods ``[edges[j], edges[j+1])``: earned, redeemed, expired, outstanding."""
    seconds = ledger["occurred_s"].to_numpy()
    kind = ledger["kind"].to_numpy()
    points = ledger["points"].to_numpy().astype(np.float64)
    period = np.searchsorted(edges, seconds, side="right") - 1  # -1: before the first period
    periods = len(edges) - 1
    inside = (period >= 0) & (period < periods)

    def monthly(mask: np.ndarray, sign: float) -> np.ndarray:
        chosen = inside & mask
        return sign * np.bincount(period[chosen], weights=points[chosen], minlength=periods)

    earned = monthly((kind == _EARN) | (kind == _BONUS), 1.0)
    redeemed = monthly(kind == _REDEEM, -1.0) - monthly(kind == _RETURNED, 1.0)
    expired = monthly(kind == _EXPIRE, -1.0)
    before = points[period < 0].sum()
    outstanding = before + np.cumsum(monthly(np.ones_like(inside), 1.0))
    return pd.DataFrame({"start": edges[:-1], "earned": earned, "redeemed": redeemed, "expired": expired, "outstanding": outstanding})


@dataclass
class _Inputs:
    lots: np.ndarray  # (R, K+2) per row: members, then one row per arrival month of new members
    earned: np.ndarray  # (R, K)
    p_active: np.ndarray  # (R, K)
    weights: np.ndarray  # (R,)
    members: int  # the first `members` rows are members; the rest new-member cohorts
    activity: np.ndarray  # (members,) activity decile
    cells: np.ndarray  # (history months, 2, 2, B): redeemed / available, buy / idle, band
    band_edges: np.ndarray
    new_per_month: np.ndarray
    earned_residuals: np.ndarray
    model: str
    outstanding: float

    def hazard(self, month: int | None = None) -> np.ndarray:
        """``(2, B)`` hazards pooled over the history months (or of one month, pooled where it has no data)."""
        pooled = self.cells.sum(axis=0)
        rate = _rate(pooled[0], pooled[1], _rate(pooled[0].sum(axis=1, keepdims=True), pooled[1].sum(axis=1, keepdims=True), np.zeros((2, 1))))
        rate = np.broadcast_to(rate, pooled[0].shape)
        if month is None:
            return rate
        return _rate(self.cells[month, 0], self.cells[month, 1], rate)


def _rate(numerator: np.ndarray, denominator: np.ndarray, fallback: np.ndarray | float) -> np.ndarray:
    fallback = np.broadcast_to(fallback, np.broadcast_shapes(numerator.shape, np.shape(fallback)))
    return np.divide(numerator, denominator, out=np.array(fallback, dtype=np.float64), where=denominator > 0)


def _member_positions(member_id: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row positions of members: the ids themselves when they are dense (no sort), else ranks."""
    if not len(member_id):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    low, high = int(member_id.min()), int(member_id.max())
    if low >= 0 and high - low < 4 * len(member_id) + 1_000:
        return (member_id - low).astype(np.int64), np.arange(low, high + 1, dtype=np.int64)
    ids, position = np.unique(member_id, return_inverse=True)
    return position.astype(np.int64).reshape(-1), ids


def _inputs(ledger: pl.DataFrame, cutoff: datetime, horizon: int, cheapest_reward: float | None) -> _Inputs:
    kind = ledger["kind"].to_numpy()
    points = ledger["points"].to_numpy().astype(np.float64)
    occurred = ledger["occurred_s"].to_numpy()
    position, ids = _member_positions(ledger["member_id"].to_numpy())
    n = len(ids)

    # 1. Open lots by forecast month of expiry.
    balance, held = _open_lots(ledger, position, n, cutoff, horizon)

    # 2. History months: hazards by activity and available points, new members, earnings residuals.
    months = HISTORY_MONTHS
    history_edges = _seconds(_edges(cutoff, months, 0))
    period = np.searchsorted(history_edges, occurred, side="right") - 1
    first_history = _first_complete_month(occurred, history_edges)
    earn_rows = (kind == _EARN) | (kind == _BONUS)
    band_edges = _band_edges(cheapest_reward, balance)
    cells, last_earn = _hazard_cells(position, n, kind, points, period, months, first_history, band_edges)
    in_history = earn_rows & (period >= 0) & (period < months)
    residuals = _log_residuals(np.bincount(period[in_history], weights=points[in_history], minlength=months)[first_history:])

    # 3. Expected earning days per member and month, and their points.
    earn_frame = pl.DataFrame(
        {"member_id": position[earn_rows], "occurred_on": occurred[earn_rows] // 86_400, "amount": points[earn_rows]}
    ).with_columns(pl.col("occurred_on").cast(pl.Int32).cast(pl.Date))
    calibration_end = (cutoff - timedelta(days=1)).date()
    expected, model, new_curve, per_day, program_per_day, first_day = _expected_transactions(
        earn_frame, calibration_end, horizon, n, history_edges, occurred[earn_rows], position[earn_rows]
    )
    first_month = np.searchsorted(history_edges, first_day * 86_400, side="right") - 1
    new_per_month = np.bincount(first_month[first_month >= 0], minlength=months)[first_history:months].astype(np.float64)

    # 4. Rows: members, then one cohort of new members per forecast month (weight = arrivals).
    arrivals = float(new_per_month[-NEW_MEMBER_MONTHS:].mean()) if len(new_per_month) else 0.0
    cohort = np.zeros((horizon, horizon))
    for k in range(horizon):
        cohort[k, k:] = new_curve[: horizon - k]
    lots = np.vstack([held, np.zeros((horizon, horizon + 2))])
    earned = np.vstack([expected * per_day[:, None], cohort * program_per_day])
    p_active = np.vstack([_active_chance(expected, last_earn, months), _active_chance(cohort, np.full(horizon, -1000), months)])
    weights = np.concatenate([np.ones(n), np.full(horizon, arrivals)])
    total = expected.sum(axis=1)
    activity = np.empty(n, dtype=np.int64)
    activity[np.argsort(total, kind="stable")] = (np.arange(n) * ACTIVITY_CLASSES) // max(n, 1)
    return _Inputs(
        lots=lots,
        earned=earned,
        p_active=p_active,
        weights=weights,
        members=n,
        activity=activity,
        cells=cells,
        band_edges=band_edges,
        new_per_month=new_per_month,
        earned_residuals=residuals,
        model=model,
        outstanding=float(balance.sum()),
    )


def _band_edges(cheapest_reward: float | None, balance: np.ndarray) -> np.ndarray:
    """Edges of the available-points bands: multiples of the cheapest reward (quantiles without rewards)."""
    if cheapest_reward and cheapest_reward > 0:
        return cheapest_reward * np.array(BAND_MULTIPLES, dtype=np.float64)
    positive = balance[balance > 0]
    if not len(positive):
        return np.array([1.0])
    return np.unique(np.quantile(positive, [0.2, 0.4, 0.6, 0.8]))


def _first_complete_month(occurred: np.ndarray, edges: np.ndarray) -> int:
    """Index of the first history period that starts on or after the first ledger entry."""
    if not len(occurred):
        return len(edges) - 1
    return min(int(np.searchsorted(edges, occurred.min(), side="left")), len(edges) - 1)


def _hazard_cells(
    position: np.ndarray, n: int, kind: np.ndarray, points: np.ndarray, period: np.ndarray, months: int, first: int, band_edges: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per history month ``[month, redeemed|available, active|lapsed, band]`` summed over members,
    and each member's last history month with an earning purchase (-1000 when none)."""
    bands = len(band_edges) + 1
    use = np.arange(max(first, months - HAZARD_MONTHS), months)
    cells = np.zeros((len(use), 2, 2, bands))
    last_earn = np.full(n, -1000, dtype=np.int64)
    if not n:
        return cells, last_earn
    begin = int(use[0]) if len(use) else months
    for month in range(max(begin - ACTIVE_MONTHS + 1, 0), begin):
        last_earn[np.bincount(position[(period == month) & (kind == _EARN)], minlength=n) > 0] = month
    if not len(use):
        return cells, last_earn
    earlier = period < begin
    start_balance = np.bincount(position[earlier], weights=points[earlier], minlength=n)
    chosen = (period >= begin) & (period < months)
    position, kind, points, period = position[chosen], kind[chosen], points[chosen], period[chosen]
    for i, j in enumerate(use):
        in_month = period == j
        earning = in_month & ((kind == _EARN) | (kind == _BONUS))
        earned = np.bincount(position[earning], weights=points[earning], minlength=n)
        last_earn[np.bincount(position[in_month & (kind == _EARN)], minlength=n) > 0] = j
        outflow = in_month & ((kind == _REDEEM) | (kind == _RETURNED))
        redeemed = -np.bincount(position[outflow], weights=points[outflow], minlength=n)
        available = np.maximum(start_balance, 0.0) + earned
        band = np.searchsorted(band_edges, available, side="right")
        lapsed = (last_earn < j - ACTIVE_MONTHS + 1).astype(np.int64)
        cells[i, 0] = np.bincount(lapsed * bands + band, weights=redeemed, minlength=2 * bands).reshape(2, bands)
        cells[i, 1] = np.bincount(lapsed * bands + band, weights=available, minlength=2 * bands).reshape(2, bands)
        start_balance += np.bincount(position[in_month], weights=points[in_month], minlength=n)
    return cells, last_earn


def _active_chance(expected: np.ndarray, last_earn: np.ndarray, months: int) -> np.ndarray:
    """P(active in forecast month k): earned in the window of :data:`ACTIVE_MONTHS` months ending in k.

    Known from the history for the window's past months; ``1 - exp(-expected transactions)``
    (Poisson) for its forecast months.
    """
    horizon = expected.shape[1]
    window = np.cumsum(expected, axis=1)
    window[:, ACTIVE_MONTHS:] -= window[:, :-ACTIVE_MONTHS]
    chance = 1.0 - np.exp(-window)
    for k in range(1, min(ACTIVE_MONTHS, horizon + 1)):
        known = last_earn >= months + k - ACTIVE_MONTHS
        chance[known, k - 1] = 1.0
    return chance


def _log_residuals(monthly: np.ndarray) -> np.ndarray:
    """Residuals of log monthly earnings around their least-squares line (0 with too few months)."""
    values = monthly[monthly > 0]
    if len(values) < 3:
        return np.zeros(1)
    x = np.arange(len(values), dtype=np.float64)
    slope, intercept = np.polyfit(x, np.log(values), 1)
    return np.log(values) - (intercept + slope * x)


def _expected_transactions(
    earn_frame: pl.DataFrame,
    calibration_end: date,
    horizon: int,
    n: int,
    history_edges: np.ndarray,
    earn_seconds: np.ndarray,
    earn_position: np.ndarray,
) -> tuple[np.ndarray, str, np.ndarray, np.ndarray, float, np.ndarray]:
    """Expected earning days: ``(n, K)`` per member and month; the model name; the new-member
    curve ``(K,)`` (transactions of one member in the months after arriving, arrival month
    first); points per earning day per member; the program's mean points per earning day;
    and each earning member's first earning day (days since 1970)."""
    expected = np.zeros((n, horizon))
    per_day = np.zeros(n)
    if not n or earn_frame.height == 0:
        return expected, "recent-rate", np.zeros(horizon), per_day, 0.0, np.zeros(0, dtype=np.int64)
    summary = summary_data(earn_frame, calibration_end, TIME_UNIT)
    member = summary["member_id"].to_numpy()
    first_day = summary["first_purchase"].cast(pl.Int32).to_numpy().astype(np.int64)
    days = summary["frequency"].to_numpy() + 1
    program = float(summary["revenue"].sum() / max(days.sum(), 1))
    own = summary["revenue"].to_numpy() / days
    per_day[member] = (days * own + CREDIBILITY_DAYS * program) / (days + CREDIBILITY_DAYS)
    x, t_x, age = (summary[c].to_numpy() for c in ("frequency", "recency", "T"))
    month = months_in(TIME_UNIT)
    try:
        if summary.height < MIN_MEMBERS:
            raise InvalidInput("too few members for BG/NBD")
        params = fit_bgnbd(x, t_x, age)
    except (InvalidInput, ValueError, FloatingPointError):
        period = np.searchsorted(history_edges, earn_seconds, side="right") - 1
        recent = period >= len(history_edges) - 1 - HAZARD_MONTHS
        earn_days = pl.DataFrame({"member": earn_position[recent], "day": earn_seconds[recent] // 86_400}).unique()
        rate = np.bincount(earn_days["member"].to_numpy(), minlength=n) / HAZARD_MONTHS
        expected[:] = rate[:, None]
        mean_rate = float(rate[rate > 0].mean()) if np.any(rate > 0) else 0.0
        curve = np.full(horizon, mean_rate)
        curve[0] = 1.0
        return expected, "recent-rate", curve, per_day, program, first_day
    # E[Y(t) | x, t_x, T] = P(alive | x, t_x, T) * C(t; x, T): the second factor depends on (x, T)
    # only, so it is computed once per distinct pair (T to the day) and month.
    alive = probability_alive(params, x, t_x, age)
    pair = x.astype(np.int64) * 1_000_000 + np.rint(age * 7).astype(np.int64)
    pairs, first_row, key = np.unique(pair, return_index=True, return_inverse=True)
    ux, uT = x[first_row], age[first_row]
    # Recency = T (0 without repeats): a member seen buying at the cutoff, to divide P(alive) out.
    u_recency = np.where(ux > 0, uT, 0.0)
    certain = probability_alive(params, ux, u_recency, uT)
    previous = np.zeros(len(pairs))
    for k in range(1, horizon + 1):
        cumulative = expected_purchases(params, k * month, ux, u_recency, uT) / certain
        expected[member, k - 1] = alive * np.maximum(cumulative - previous, 0.0)[key.reshape(-1)]
        previous = cumulative
    # Arriving mid-month: the first transaction then, the repeats of a new member after it.
    new_cum = np.array([float(expected_purchases(params, (j + 0.5) * month, [0], [0.0], [0.0])[0]) for j in range(horizon)])
    curve = np.diff(new_cum, prepend=0.0)
    curve[0] += 1.0
    return expected, "bgnbd", curve, per_day, program, first_day


# --- forecasting ---------------------------------------------------------------------------------------


def _classes(inputs: _Inputs) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Members averaged within (activity decile, balance band) classes, then the cohort rows as they are."""
    n, bands = inputs.members, len(inputs.band_edges) + 1
    band = np.searchsorted(inputs.band_edges, inputs.lots[:n].sum(axis=1), side="right")
    key = inputs.activity * bands + band
    keys, group = np.unique(key, return_inverse=True)
    count = np.bincount(group, minlength=len(keys)).astype(np.float64)

    def mean(values: np.ndarray) -> np.ndarray:
        return np.column_stack([np.bincount(group, weights=values[:, c], minlength=len(keys)) for c in range(values.shape[1])]) / count[:, None]

    lots = np.vstack([mean(inputs.lots[:n]), inputs.lots[n:]]) if n else inputs.lots
    earned = np.vstack([mean(inputs.earned[:n]), inputs.earned[n:]]) if n else inputs.earned
    p_active = np.vstack([mean(inputs.p_active[:n]), inputs.p_active[n:]]) if n else inputs.p_active
    weights = np.concatenate([count, inputs.weights[n:]]) if n else inputs.weights
    return lots, earned, p_active, weights


def _forecast_from_ledger(
    ledger: pl.DataFrame, as_of: date, *, horizon: int, band: float, expiry_months: int, paths: int, seed: int, cheapest_reward: float | None
) -> ForecastResult:
    cutoff = cutoff_of(as_of)
    before = ledger.filter(pl.col("occurred_s") < int(cutoff.timestamp()))
    inputs = _inputs(before, cutoff, horizon, cheapest_reward)
    hazard = inputs.hazard()
    # Members holding nothing and expected to earn nothing add nothing: leave them out.
    live = (inputs.lots.sum(axis=1) > 0) | (inputs.earned.sum(axis=1) > 1e-9)
    central = project_liability(
        inputs.lots[live], inputs.earned[live], inputs.p_active[live], hazard, inputs.band_edges, expiry_months, inputs.weights[live]
    )
    # The band: the same projection on classes of members, along bootstrap paths of the monthly rates.
    lots, earned, p_active, weights = _classes(inputs)
    rng = np.random.default_rng(seed)
    history = max(len(inputs.cells), 1)
    monthly = np.stack([inputs.hazard(m) for m in range(len(inputs.cells))]) if len(inputs.cells) else hazard[None]
    path_hazard = monthly[rng.integers(0, history, size=(paths, horizon))]
    residuals = inputs.earned_residuals
    # A level shift per path (the rate itself is uncertain) and a deviation per month, both resampled residuals.
    shocks = rng.choice(residuals, size=(paths, 1)) + rng.choice(residuals, size=(paths, horizon))
    multiplier = np.exp(shocks) / np.exp(shocks).mean()
    central_arrivals = float(inputs.new_per_month[-NEW_MEMBER_MONTHS:].mean()) if len(inputs.new_per_month) else 0.0
    recent = inputs.new_per_month[-HAZARD_MONTHS:] if len(inputs.new_per_month) else np.zeros(1)
    arrivals = rng.choice(recent, size=(paths, NEW_MEMBER_MONTHS)).mean(axis=1)
    cohort_rows = slice(len(weights) - horizon, len(weights))
    path_earned = earned[None] * multiplier[:, None, :]
    if central_arrivals > 0:
        # Cohort rows stand for `arrivals` members each: scale their earnings per path instead of the weights.
        path_earned[:, cohort_rows, :] *= (arrivals / central_arrivals)[:, None, None]
    simulated = project_liability(lots, path_earned, p_active, path_hazard, inputs.band_edges, expiry_months, weights)
    rough = project_liability(lots, earned, p_active, hazard, inputs.band_edges, expiry_months, weights)
    low_q, high_q = (1.0 - band) / 2.0, 1.0 - (1.0 - band) / 2.0
    months = [m.date() for m in _edges(cutoff, 0, horizon)[:-1]]
    rows: list[tuple[date, str, str, float | None, float | None, float | None]] = []
    for measure in POINT_MEASURES:
        low, high = np.quantile(simulated[measure], [low_q, high_q], axis=0)
        centre = central[measure][0]
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio_low = np.where(rough[measure][0] > 0, low / rough[measure][0], 1.0)
            ratio_high = np.where(rough[measure][0] > 0, high / rough[measure][0], 1.0)
        for k, month in enumerate(months):
            rows.append(
                (
                    month,
                    measure,
                    "forecast",
                    float(centre[k]),
                    float(min(centre[k], centre[k] * ratio_low[k])),
                    float(max(centre[k], centre[k] * ratio_high[k])),
                )
            )
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # months where nothing leaves: no breakage
        path_breakage = simulated["expired"] / (simulated["expired"] + simulated["redeemed"])
        rough_breakage = rough["expired"][0] / (rough["expired"][0] + rough["redeemed"][0])
        central_breakage = central["expired"][0] / (central["expired"][0] + central["redeemed"][0])
        low, high = np.nanquantile(np.where(np.isfinite(path_breakage), path_breakage, np.nan), [low_q, high_q], axis=0)
    for k, month in enumerate(months):
        # Rates: shift the class band to the member-level centre, within 0-1.
        shift = central_breakage[k] - rough_breakage[k]
        rows.append(
            (
                month,
                "breakage",
                "forecast",
                _finite(central_breakage[k]),
                _finite(np.clip(min(low[k] + shift, central_breakage[k]), 0, 1)),
                _finite(np.clip(max(high[k] + shift, central_breakage[k]), 0, 1)),
            )
        )
    actual = _history(before, _seconds(_edges(cutoff, HISTORY_MONTHS, 0)))
    for record in actual.itertuples():
        month = datetime.fromtimestamp(int(record.start), tz=UTC).date()
        for measure in POINT_MEASURES:
            rows.append((month, measure, "actual", float(getattr(record, measure)), None, None))
        total = record.expired + record.redeemed
        rows.append((month, "breakage", "actual", float(record.expired / total) if total > 0 else None, None, None))
    frame = pd.DataFrame(rows, columns=["month", "measure", "kind", "points", "points_low", "points_high"])
    frame = frame.sort_values(["measure", "month"], kind="stable").reset_index(drop=True)
    year = {m: float(central[m][0].sum()) for m in ("earned", "redeemed", "expired")}
    pooled = inputs.cells.sum(axis=0)
    return ForecastResult(
        as_of=as_of,
        cutoff=cutoff,
        frame=frame,
        model=inputs.model,
        band=band,
        h_active=float(_rate(pooled[0, 0].sum(), pooled[1, 0].sum(), 0.0)),
        h_lapsed=float(_rate(pooled[0, 1].sum(), pooled[1, 1].sum(), 0.0)),
        new_members_per_month=central_arrivals,
        members=inputs.members,
        outstanding_now=inputs.outstanding,
        details={
            "horizon_totals": year,
            "band_edges": inputs.band_edges.tolist(),
            "hazard": hazard.tolist(),
            "horizon_breakage": year["expired"] / (year["expired"] + year["redeemed"]) if year["expired"] + year["redeemed"] > 0 else None,
        },
    )


def forecast_from_entries(
    entries: pd.DataFrame,
    as_of: date,
    *,
    expiry_months: int,
    cheapest_reward: float | None = None,
    horizon: int = DEFAULT_HORIZON_MONTHS,
    band: float = DEFAULT_BAND,
    paths: int = BAND_PATHS,
    seed: int = SEED,
) -> ForecastResult:
    """:func:`forecast_liability` on ledger entries given as a frame (tests, what-ifs).

    ``entries``: ``member_id, kind`` (earn, bonus, redeem, expire, reverse, adjust)
    ``, points, occurred_at, expires_at`` (UTC timestamps) and optionally
    ``redemption_id`` (a positive ``reverse`` with one is a cancelled redemption's points).
    """
    _check(horizon, band, paths)
    codes = {"earn": _EARN, "bonus": _BONUS, "redeem": _REDEEM, "expire": _EXPIRE}
    redemption = entries["redemption_id"].notna() if "redemption_id" in entries else pd.Series(False, index=entries.index)
    kind = [
        codes.get(k, _RETURNED if k == "reverse" and r and p > 0 else _REFUND if k == "reverse" else _OTHER)
        for k, r, p in zip(entries["kind"], redemption, entries["points"], strict=True)
    ]

    def seconds(column: str) -> pl.Series:
        moments = pd.to_datetime(entries[column], utc=True)
        values = (moments - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
        return pl.Series(column, values.astype("Int64").tolist(), dtype=pl.Int64)

    ledger = pl.DataFrame(
        {
            "member_id": entries["member_id"].astype("int64").to_numpy(),
            "kind": np.array(kind, dtype=np.int8),
            "points": entries["points"].astype("int64").to_numpy(),
        }
    )
    ledger = ledger.with_columns(seconds("occurred_at").alias("occurred_s"), seconds("expires_at").alias("expires_s"))
    return _forecast_from_ledger(
        ledger, as_of, horizon=horizon, band=band, expiry_months=expiry_months, paths=paths, seed=seed, cheapest_reward=cheapest_reward
    )


def _finite(value: float) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None


def forecast_liability(
    session: Session,
    as_of: date | None = None,
    *,
    horizon: int = DEFAULT_HORIZON_MONTHS,
    band: float = DEFAULT_BAND,
    paths: int = BAND_PATHS,
    seed: int = SEED,
) -> ForecastResult:
    """Forecast earned, redeemed, expired and outstanding points for ``horizon`` months.

    Parameters
    ----------
    as_of
        The UTC day whose end is the cutoff (default yesterday); the forecast months are
        month-long periods from the cutoff.
    horizon
        Months to forecast (1-36).
    band
        Central share of the bootstrap paths the band covers (0.5-0.99).

    Returns
    -------
    ForecastResult
        Its ``frame`` holds the forecast months with their band and the
        :data:`HISTORY_MONTHS` actual months before the cutoff.
    """
    as_of = as_of or (utcnow().date() - timedelta(days=1))
    _check(horizon, band, paths)
    settings = get_settings(session)
    ledger = _read_ledger(session, cutoff_of(as_of))
    return _forecast_from_ledger(
        ledger,
        as_of,
        horizon=horizon,
        band=band,
        expiry_months=int(settings.expiry_months),
        cheapest_reward=_cheapest_reward(session),
        paths=paths,
        seed=seed,
    )


def _cheapest_reward(session: Session) -> float | None:
    cost = session.exec(select(func.min(Reward.points_cost)).where(Reward.active)).one()
    return float(cost) if cost else None


def _check(horizon: int, band: float, paths: int) -> None:
    if not 1 <= horizon <= 36:
        raise InvalidInput(f"The forecast horizon must be 1 to 36 months, not {horizon}.")
    if not 0.5 <= band <= 0.99:
        raise InvalidInput(f"The band must cover between 50 % and 99 % of the paths, not {band:.0%}.")
    if paths < 20:
        raise InvalidInput("Use at least 20 bootstrap paths for a band.")


# --- back-test -------------------------------------------------------------------------------------------


def backtest_forecast(
    session: Session, *, fit_months: int = 12, horizon: int = 6, band: float = DEFAULT_BAND, paths: int = BAND_PATHS, seed: int = SEED
) -> dict[str, Any]:
    """Fit on the first ``fit_months`` months of the history, forecast ``horizon`` more, compare.

    Month 1 is the calendar month of the first ledger entry; the cutoff is the start of
    month ``fit_months + 1``. The actuals are the ledger's own monthly sums, computed as
    the forecast defines them.

    Returns
    -------
    dict
        ``cutoff``; ``months``: one row per month and measure with ``forecast, low, high,
        actual, error`` (forecast - actual), ``abs_pct_error`` and ``inside`` (actual in
        the band); ``errors``: per measure ``mae`` (mean absolute error), ``mape`` (mean
        absolute percentage error, 0-1; breakage: mean absolute error in rate points),
        ``inside_band`` (share of months), ``total_pct_error`` (error of the
        ``horizon``-month total; outstanding: of the last month).
    """
    _check(horizon, band, paths)
    first = session.exec(select(func.min(LedgerEntry.occurred_at))).one()
    if first is None:
        raise InvalidInput("The ledger is empty: there is nothing to back-test.")
    first = pd.Timestamp(first)
    first = first.tz_localize("UTC") if first.tzinfo is None else first.tz_convert("UTC")
    month_one = first.normalize().replace(day=1)
    cutoff = (month_one + pd.DateOffset(months=fit_months)).to_pydatetime()
    end = (month_one + pd.DateOffset(months=fit_months + horizon)).to_pydatetime()
    if end > utcnow():
        raise InvalidInput(
            f"The history starts in {month_one:%B %Y}: back-testing {fit_months} + {horizon} months needs data to {end:%-d %B %Y}. Use fewer months."
        )
    settings = get_settings(session)
    ledger = _read_ledger(session, end)
    as_of = (cutoff - timedelta(days=1)).date()
    result = _forecast_from_ledger(
        ledger,
        as_of,
        horizon=horizon,
        band=band,
        expiry_months=int(settings.expiry_months),
        cheapest_reward=_cheapest_reward(session),
        paths=paths,
        seed=seed,
    )
    actual = _history(ledger, _seconds(_edges(cutoff, 0, horizon)))
    actual["month"] = [datetime.fromtimestamp(int(s), tz=UTC).date() for s in actual["start"]]
    total = actual["expired"] + actual["redeemed"]
    actual["breakage"] = np.where(total > 0, actual["expired"] / total.where(total > 0, 1), np.nan)
    forecast = result.frame[result.frame["kind"] == "forecast"]
    rows = []
    for record in forecast.itertuples():
        value = float(actual.loc[actual["month"] == record.month, record.measure].iloc[0])
        rows.append(
            {
                "month": record.month,
                "measure": record.measure,
                "forecast": record.points,
                "low": record.points_low,
                "high": record.points_high,
                "actual": value,
            }
        )
    months = pd.DataFrame(rows)
    months["error"] = months["forecast"] - months["actual"]
    months["abs_pct_error"] = np.where(months["actual"].abs() > 0, months["error"].abs() / months["actual"].abs(), np.nan)
    months["inside"] = (months["actual"] >= months["low"]) & (months["actual"] <= months["high"])
    errors = []
    for measure in MEASURES:
        chosen = months[months["measure"] == measure]
        if measure == "breakage":
            mape = float(chosen["error"].abs().mean())
            total_error = None
        else:
            mape = float(chosen["abs_pct_error"].mean())
            if measure == "outstanding":
                last = chosen.iloc[-1]
                total_error = float(last["error"] / last["actual"]) if last["actual"] else None
            else:
                total_error = float(chosen["error"].sum() / chosen["actual"].sum()) if chosen["actual"].sum() else None
        errors.append(
            {
                "measure": measure,
                "mae": float(chosen["error"].abs().mean()),
                "mape": mape,
                "inside_band": float(chosen["inside"].mean()),
                "total_pct_error": total_error,
            }
        )
    return {
        "cutoff": cutoff,
        "fit_months": fit_months,
        "horizon": horizon,
        "band": band,
        "model": result.model,
        "months": months,
        "errors": pd.DataFrame(errors),
    }


# --- storing and reading back -------------------------------------------------------------------------


def store_forecast(session: Session, as_of: date | None = None, *, forecast: ForecastResult | None = None) -> int:
    """Replace the stored forecast of ``as_of`` with ``forecast`` (computed when not given); one transaction.

    Stores the forecast months with their band and the actual months before the cutoff
    (``points_low``/``points_high`` empty). Returns the number of rows written.
    """
    if forecast is None:
        forecast = forecast_liability(session, as_of)
    as_of = forecast.as_of
    frame = forecast.frame.dropna(subset=["points"])
    now = utcnow()
    with write_transaction(session):
        session.execute(delete(LiabilityForecast).where(col(LiabilityForecast.as_of) == as_of))
        session.add_all(
            [
                LiabilityForecast(
                    as_of=as_of,
                    month=r.month,
                    measure=r.measure,
                    points=float(r.points),
                    points_low=None if pd.isna(r.points_low) else float(r.points_low),
                    points_high=None if pd.isna(r.points_high) else float(r.points_high),
                    computed_at=now,
                )
                for r in frame.itertuples()
            ]
        )
        session.flush()
    return len(frame)


def latest_forecast(session: Session, *, on_or_before: date | None = None) -> dict[str, Any] | None:
    """The newest stored forecast (as of ``on_or_before`` at the latest), or ``None`` when none is stored.

    Returns
    -------
    dict
        See :func:`forecast_summary`.
    """
    query = select(func.max(LiabilityForecast.as_of))
    if on_or_before is not None:
        query = query.where(LiabilityForecast.as_of <= on_or_before)
    as_of = session.exec(query).one()
    if as_of is None:
        return None
    rows = session.exec(select(LiabilityForecast).where(LiabilityForecast.as_of == as_of)).all()
    long = pd.DataFrame(
        [{"month": r.month, "measure": r.measure, "points": r.points, "points_low": r.points_low, "points_high": r.points_high} for r in rows]
    )
    return forecast_summary(long, as_of, computed_at=max(r.computed_at for r in rows), session=session)


def forecast_summary(long: pd.DataFrame, as_of: date, *, computed_at: datetime | None, session: Session) -> dict[str, Any]:
    """A forecast (stored rows or :attr:`ForecastResult.frame`) shaped for pages and reports.

    Returns
    -------
    dict
        ``as_of``, ``computed_at``, ``currency``, ``point_value``; ``frame``: one row per
        month with ``month`` (first day of the month-long period), ``last_day``, ``kind``
        (actual/forecast), each measure with ``_low``/``_high`` and ``outstanding_money``
        (with ``_low``/``_high``; outstanding is at the period's end); ``outstanding_now``
        (points at the cutoff); ``horizon_end`` (the last forecast month's outstanding:
        ``month, last_day, points, low, high, money, money_low, money_high``); ``expected_earned``,
        ``expected_redeemed``, ``expected_expired`` over the forecast months and
        ``breakage`` = expected expired / (expired + redeemed).
    """
    cutoff_day = as_of + timedelta(days=1)
    wide = long.pivot_table(index="month", columns="measure", values=["points", "points_low", "points_high"], aggfunc="first", dropna=False)
    frame = pd.DataFrame(index=wide.index)
    for measure in MEASURES:
        for column, suffix in (("points", ""), ("points_low", "_low"), ("points_high", "_high")):
            part = wide[column] if column in wide.columns.get_level_values(0) else pd.DataFrame(index=wide.index)
            frame[measure + suffix] = part[measure].astype(float) if measure in part.columns else np.nan
    frame = frame.reset_index().sort_values("month").reset_index(drop=True)
    frame["kind"] = np.where(frame["month"] >= cutoff_day, "forecast", "actual")
    # The month-long period's last day: outstanding is measured at its end.
    frame["last_day"] = [(pd.Timestamp(m) + pd.DateOffset(months=1) - pd.Timedelta(days=1)).date() for m in frame["month"]]
    settings = get_settings(session)
    for suffix in ("", "_low", "_high"):
        frame[f"outstanding_money{suffix}"] = frame[f"outstanding{suffix}"] * settings.point_value
    future = frame[frame["kind"] == "forecast"]
    past = frame[frame["kind"] == "actual"]
    last = future.iloc[-1] if len(future) else None
    expired, redeemed = float(future["expired"].sum()), float(future["redeemed"].sum())
    return {
        "as_of": as_of,
        "computed_at": computed_at,
        "currency": settings.currency,
        "point_value": settings.point_value,
        "frame": frame,
        "outstanding_now": float(past["outstanding"].iloc[-1]) if len(past) else None,
        "horizon_end": None
        if last is None
        else {
            "month": last["month"],
            "last_day": last["last_day"],
            "points": float(last["outstanding"]),
            "low": float(last["outstanding_low"]),
            "high": float(last["outstanding_high"]),
            "money": float(last["outstanding_money"]),
            "money_low": float(last["outstanding_money_low"]),
            "money_high": float(last["outstanding_money_high"]),
        },
        "expected_earned": float(future["earned"].sum()),
        "expected_redeemed": redeemed,
        "expected_expired": expired,
        "breakage": expired / (expired + redeemed) if expired + redeemed > 0 else None,
    }


def liability_outlook(session: Session, as_of: date) -> dict[str, Any]:
    """The stored forecast as of ``as_of`` (or the newest of the month before it, else of the month after), else one computed now (not stored).

    The :func:`forecast_summary` dict plus ``stored`` (whether it was read from the table).
    Raises :class:`InvalidInput` when there is nothing to forecast from.
    """
    stored = latest_forecast(session, on_or_before=as_of)
    if stored is not None and stored["as_of"] >= as_of - timedelta(days=31):
        return {**stored, "stored": True}
    # A report written some days after its period (the report of October, on 22 November)
    # takes the forecast stored since, if it is at most a month newer: it says its date.
    newest = latest_forecast(session)
    if newest is not None and as_of < newest["as_of"] <= as_of + timedelta(days=31):
        return {**newest, "stored": True}
    result = forecast_liability(session, as_of)
    long = result.frame.drop(columns="kind")
    return {**forecast_summary(long, result.as_of, computed_at=utcnow(), session=session), "stored": False}


BACKTEST_LABELS = {
    "outstanding": "Outstanding at month end",
    "earned": "Points earned",
    "redeemed": "Points redeemed",
    "expired": "Points expired",
    "breakage": "Breakage rate",
}


def backtest_table(backtest: dict[str, Any]) -> pd.DataFrame:
    """The back-test's errors for people: one row per measure, numbers as text."""
    rows = []
    for r in backtest["errors"].itertuples():
        rate = r.measure == "breakage"
        rows.append(
            {
                "measure": BACKTEST_LABELS[r.measure],
                "mean absolute error": f"{r.mae * 100:.1f} pts" if rate else f"{r.mae:,.0f} points",
                "mean absolute % error": "" if rate else f"{r.mape:.1%}",
                "error of the total": "" if r.total_pct_error is None or pd.isna(r.total_pct_error) else f"{r.total_pct_error:+.1%}",
                "months inside the band": f"{r.inside_band:.0%}",
            }
        )
    return pd.DataFrame(rows)
