"""Cohort retention: are the members we acquire still buying months later?

Definitions
-----------
* A member's **cohort** is the calendar month (or quarter) of their first purchase
  (refunded purchases do not count; UTC days).
* ``retention[k]`` of a cohort = members of the cohort with at least one purchase in
  period ``cohort + k``, divided by the cohort's size; ``retention[0]`` is 1 by
  definition. The list runs to the period of the last purchase in the data, or to
  the period of ``as_of`` when given (purchases after ``as_of`` are ignored).
* **Retention curve** of a group (acquisition channel, say) at age ``k`` = members of
  the group's cohorts active at age ``k`` / members of the cohorts old enough to have
  an age ``k``: the size-weighted average of the cohorts' ``retention[k]``.
* **Churn over time**: for each period, the members active in the previous period who
  made no purchase in this one, as a share of the previous period's active members;
  the same definition as the KPI ``churn_rate`` on consecutive calendar periods.

Computed with numpy from the distinct (member, period) pairs: one sort of integer
keys, then ``bincount`` (about 0.3 s for 10M purchases).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
from sqlmodel import Session

from loyalty.analytics.arrays import MemberArrays, member_arrays, month_offsets
from loyalty.analytics.data import load_members, load_purchases, members_frame, purchases_frame
from loyalty.errors import InvalidInput

__all__ = [
    "DEFAULT_PERIOD",
    "PERIODS",
    "churn_over_time",
    "cohort_table",
    "period_index",
    "period_label",
    "period_of",
    "retention_analysis",
    "retention_by_channel",
    "retention_cohorts",
    "retention_curves",
    "retention_from_counts",
]

PERIODS = ("month", "quarter")
DEFAULT_PERIOD = "month"


def _check_period(period: str) -> None:
    if period not in PERIODS:
        raise InvalidInput(f"Unknown period {period!r}; choose one of {', '.join(PERIODS)}.")


def period_index(column: str | pl.Expr, period: str = DEFAULT_PERIOD) -> pl.Expr:
    """Calendar period of a date column as one integer (months or quarters since year 0)."""
    _check_period(period)
    day = pl.col(column) if isinstance(column, str) else column
    if period == "month":
        return (day.dt.year().cast(pl.Int32) * 12 + day.dt.month().cast(pl.Int32) - 1).alias("period")
    return (day.dt.year().cast(pl.Int32) * 4 + (day.dt.month().cast(pl.Int32) - 1) // 3).alias("period")


def period_label(index: int, period: str = DEFAULT_PERIOD) -> str:
    """``"YYYY-MM"`` for months, ``"YYYY-Qn"`` for quarters."""
    _check_period(period)
    if period == "month":
        return f"{index // 12:04d}-{index % 12 + 1:02d}"
    return f"{index // 4:04d}-Q{index % 4 + 1}"


def period_of(day: date, period: str = DEFAULT_PERIOD) -> int:
    """The :func:`period_index` of one day."""
    return day.year * 12 + day.month - 1 if period == "month" else day.year * 4 + (day.month - 1) // 3


_EPOCH_MONTH = 1970 * 12  # month_offsets() counts from 1970-01


@dataclass(frozen=True)
class _Activity:
    """Distinct (member, period) pairs as array positions and period offsets."""

    arrays: MemberArrays
    position: np.ndarray  # per pair, sorted by (position, offset)
    offset: np.ndarray  # period - base, per pair
    cohort: np.ndarray  # first period offset, per position (-1: no purchase)
    base: int  # period index of offset 0
    span: int  # offsets run 0 .. span - 1; the last one is the last period


def _activity(purchases: pl.DataFrame | pd.DataFrame, period: str, as_of: date | None) -> _Activity | None:
    _check_period(period)
    frame = purchases_frame(purchases, need_amount=False)
    if as_of is not None:
        frame = frame.filter(pl.col("occurred_on") <= as_of)
    if frame.height == 0:
        return None
    arrays = member_arrays(frame.select("member_id", "occurred_on"))
    offsets, first_month = month_offsets(arrays.day)
    base = first_month + _EPOCH_MONTH
    if period == "quarter":
        # Quarter of each month: (base + offset) // 3, re-based on the first quarter.
        offsets = (offsets + np.int32(base % 3)) // np.int32(3)
        base //= 3
    last = period_of(as_of, period) if as_of is not None else base + int(offsets.max())
    span = last - base + 1
    position, offset = arrays.distinct(offsets, span)
    starts = np.empty(len(position), dtype=bool)
    starts[0] = True
    np.not_equal(position[1:], position[:-1], out=starts[1:])
    cohort = np.full(arrays.size, -1, dtype=np.int64)
    cohort[position[starts]] = offset[starts]
    return _Activity(arrays, position, offset, cohort, base, span)


def _counts(activity: _Activity, group: np.ndarray | None = None, groups: int = 1) -> np.ndarray:
    """``counts[g, c, k]``: members of group g, cohort offset c, active at age k."""
    span = activity.span
    cohort = activity.cohort[activity.position]
    age = activity.offset - cohort
    key = cohort * span + age
    if group is not None:
        key = group[activity.position] * span * span + key
    return np.bincount(key, minlength=groups * span * span).reshape(groups, span, span)


def _observable(span: int) -> np.ndarray:
    """``mask[c, k]``: age k of cohort offset c is within the data (c + k <= last)."""
    return np.add.outer(np.arange(span), np.arange(span)) < span


def cohort_table(purchases: pl.DataFrame | pd.DataFrame, period: str = DEFAULT_PERIOD, as_of: date | None = None) -> pl.DataFrame:
    """Long cohort table: ``cohort, age, size, active, retention`` for every observable age.

    ``age`` runs from 0 to the last period minus the cohort; ages where nobody bought
    are present with ``active = 0``.
    """
    schema = {"cohort": pl.String, "age": pl.Int32, "size": pl.Int64, "active": pl.Int64, "retention": pl.Float64}
    activity = _activity(purchases, period, as_of)
    if activity is None:
        return pl.DataFrame(schema=schema)
    counts = _counts(activity)[0]
    sizes = counts[:, 0]
    cohorts = np.nonzero(sizes)[0]
    lengths = activity.span - cohorts
    cohort = np.repeat(cohorts, lengths)
    age = np.concatenate([np.arange(n) for n in lengths])
    active = counts[cohort, age]
    labels = np.array([period_label(activity.base + int(c), period) for c in cohorts], dtype=object)
    return pl.DataFrame(
        {
            "cohort": np.repeat(labels, lengths),
            "age": age.astype(np.int32),
            "size": sizes[cohort].astype(np.int64),
            "active": active.astype(np.int64),
            "retention": active / sizes[cohort],
        },
        schema=schema,
    )


def retention_cohorts(purchases: pl.DataFrame | pd.DataFrame, period: str = DEFAULT_PERIOD, as_of: date | None = None) -> dict[str, Any]:
    """Cohort retention as ``analyze retention --json`` prints it.

    Parameters
    ----------
    purchases
        ``member_id, occurred_on`` (or ``occurred_at``), refunds excluded.
    period
        ``"month"`` or ``"quarter"``.
    as_of
        Last day to consider (inclusive); default the day of the last purchase.

    Returns
    -------
    dict
        ``{"period": "month", "cohorts": [{"cohort": "YYYY-MM", "size": N,
        "retention": [1.0, ...]}]}``, oldest cohort first; ``retention[k]`` is the share
        of the cohort with a purchase in period cohort + k.
    """
    activity = _activity(purchases, period, as_of)
    if activity is None:
        return retention_from_counts(np.zeros((0, 0), dtype=np.int64), 0, period)
    return retention_from_counts(_counts(activity)[0], activity.base, period)


def retention_from_counts(counts: np.ndarray, base: int, period: str = DEFAULT_PERIOD) -> dict[str, Any]:
    """:func:`retention_cohorts`' answer from the counts of active members.

    ``counts[c, k]`` = members of cohort ``base + c`` (a :func:`period_index`) with a purchase
    at age ``k``, a square array over every period from ``base`` to the last; whichever
    engine counted them (the Spark engine: :mod:`loyalty.analytics.spark`), the shares are
    divided here.
    """
    span = counts.shape[0]
    cohorts: list[dict[str, Any]] = []
    for c in np.nonzero(counts[:, 0])[0] if span else []:
        size = int(counts[c, 0])
        row = counts[c, : span - c] / size
        cohorts.append({"cohort": period_label(base + int(c), period), "size": size, "retention": row.tolist()})
    return {"period": period, "cohorts": cohorts}


def retention_curves(
    purchases: pl.DataFrame | pd.DataFrame,
    members: pl.DataFrame | pd.DataFrame,
    *,
    by: str = "acquisition_channel",
    period: str = DEFAULT_PERIOD,
    as_of: date | None = None,
) -> pl.DataFrame:
    """Size-weighted retention by age for each value of a member attribute.

    Returns
    -------
    polars.DataFrame
        ``<by>, age, cohort_members, active, retention``: at each age, the members of
        the group's cohorts old enough to reach it, those of them active at that age,
        and the ratio. Members without purchases are in no cohort.
    """
    member_table = members_frame(members)
    if by not in member_table.columns:
        raise InvalidInput(f"Members have no column {by!r}; choose one of {', '.join(member_table.columns)}.")
    schema: dict[str, Any] = {by: member_table.schema[by], "age": pl.Int32, "cohort_members": pl.Int64, "active": pl.Int64, "retention": pl.Float64}
    activity = _activity(purchases, period, as_of)
    if activity is None:
        return pl.DataFrame(schema=schema)
    labels = pl.DataFrame({"member_id": activity.arrays.member_ids}).join(
        member_table.select("member_id", by), on="member_id", how="left", maintain_order="left"
    )[by]
    values = labels.unique().sort(nulls_last=True)
    codes = (
        labels.to_frame("value")
        .join(pl.DataFrame({"value": values, "code": np.arange(len(values))}), on="value", how="left", nulls_equal=True, maintain_order="left")[
            "code"
        ]
        .to_numpy()
    )
    counts = _counts(activity, codes, len(values))
    observable = _observable(activity.span)
    sizes = counts[:, :, 0]  # [g, c]
    eligible = np.einsum("gc,ck->gk", sizes, observable.astype(np.int64))
    active = (counts * observable[None, :, :]).sum(axis=1)  # [g, k]
    group, age = np.nonzero(eligible)
    return pl.DataFrame(
        {
            by: values.gather(group),
            "age": age.astype(np.int32),
            "cohort_members": eligible[group, age].astype(np.int64),
            "active": active[group, age].astype(np.int64),
            "retention": active[group, age] / eligible[group, age],
        },
        schema=schema,
    )


def churn_over_time(purchases: pl.DataFrame | pd.DataFrame, period: str = DEFAULT_PERIOD, as_of: date | None = None) -> pl.DataFrame:
    """Period-on-period retention and churn.

    Returns
    -------
    polars.DataFrame
        ``period`` (label), ``active`` (members with a purchase in the period),
        ``active_previous``, ``retained`` (active in both), ``retention_rate`` =
        retained / active_previous, ``churn_rate`` = 1 - retention_rate; from the second
        period of the data to the last.
    """
    schema = {
        "period": pl.String,
        "active": pl.Int64,
        "active_previous": pl.Int64,
        "retained": pl.Int64,
        "retention_rate": pl.Float64,
        "churn_rate": pl.Float64,
    }
    activity = _activity(purchases, period, as_of)
    if activity is None or activity.span < 2:
        return pl.DataFrame(schema=schema)
    span = activity.span
    active = np.bincount(activity.offset, minlength=span)
    follows = np.zeros(len(activity.offset), dtype=bool)
    follows[1:] = (activity.position[1:] == activity.position[:-1]) & (activity.offset[1:] == activity.offset[:-1] + 1)
    retained = np.bincount(activity.offset[follows], minlength=span)
    previous = active[:-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(previous > 0, retained[1:] / np.maximum(previous, 1), np.nan)
    return pl.DataFrame(
        {
            "period": [period_label(activity.base + k, period) for k in range(1, span)],
            "active": active[1:].astype(np.int64),
            "active_previous": previous.astype(np.int64),
            "retained": retained[1:].astype(np.int64),
            "retention_rate": rate,
            "churn_rate": 1.0 - rate,
        },
        schema=schema,
    ).with_columns(pl.col("retention_rate", "churn_rate").fill_nan(None))


def retention_analysis(session: Session, period: str = DEFAULT_PERIOD, as_of: date | None = None) -> dict[str, Any]:
    """:func:`retention_cohorts` over the database's purchases (``analyze retention``)."""
    _check_period(period)
    end = None if as_of is None else date.fromordinal(as_of.toordinal() + 1)
    return retention_cohorts(load_purchases(session, end=end, columns=("member_id", "occurred_on")), period, as_of)


def retention_by_channel(session: Session, period: str = DEFAULT_PERIOD, as_of: date | None = None) -> pd.DataFrame:
    """:func:`retention_curves` by acquisition channel, from the database, as pandas."""
    end = None if as_of is None else date.fromordinal(as_of.toordinal() + 1)
    purchases = load_purchases(session, end=end, columns=("member_id", "occurred_on"))
    members = load_members(session, columns=("member_id", "acquisition_channel"))
    return retention_curves(purchases, members, by="acquisition_channel", period=period, as_of=as_of).to_pandas()
