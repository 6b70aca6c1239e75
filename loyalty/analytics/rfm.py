"""RFM: recency, frequency and monetary value scores, and the segments they name.

Definitions (members with at least one non-refunded purchase on or before ``as_of``,
optionally only purchases in the ``window_days`` days up to ``as_of``)
-----------------------------------------------------------------------------------
* ``recency_days`` = ``as_of`` - day of the last purchase (0 = bought on ``as_of``);
* ``frequency`` = number of purchases;
* ``monetary`` = total spend.

Scores 1-5 by quintiles: the thresholds are the 20/40/60/80 % quantiles of each
measure over the scored members (linear interpolation, ``numpy.quantile``). A value
equal to a threshold falls in the band below it. Frequency and monetary score 1 in the
lowest band up to 5 in the highest; recency is reversed (5 = most recent). Heavy ties
(most members with one purchase) can leave a band empty: the thresholds say why.

Segments from the recency (rows) and frequency (columns) scores, the usual RFM grid;
the monetary score is reported but does not move a member between segments::

    R\\F   1               2                    3                    4          5
    5     New             Potential loyalists  Potential loyalists  Champions  Champions
    4     Promising       Potential loyalists  Potential loyalists  Loyal      Loyal
    3     About to sleep  About to sleep       Need attention       Loyal      Loyal
    2     Hibernating     Hibernating          At risk              At risk    Can't lose them
    1     Lost            Lost                 At risk              At risk    Can't lose them
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any, cast

import numpy as np
import pandas as pd
import polars as pl
from sqlmodel import Session

from loyalty.analytics.arrays import MONEY_SCALE, member_arrays
from loyalty.analytics.data import load_purchases, purchases_frame
from loyalty.errors import InvalidInput

__all__ = [
    "RFM_MEASURES_SCHEMA",
    "QUANTILES",
    "RFM_GRID",
    "RFM_SEGMENTS",
    "rfm_analysis",
    "rfm_measures",
    "rfm_members",
    "rfm_segment_of",
    "rfm_summary",
    "rfm_summary_of_measures",
    "rfm_table",
    "rfm_thresholds",
]

QUANTILES = (0.2, 0.4, 0.6, 0.8)
RFM_MEASURES_SCHEMA = {"member_id": pl.Int64, "recency_days": pl.Int64, "frequency": pl.Int64, "monetary": pl.Float64}
RFM_SEGMENTS = (
    "Champions",
    "Loyal",
    "Potential loyalists",
    "New",
    "Promising",
    "Need attention",
    "About to sleep",
    "At risk",
    "Can't lose them",
    "Hibernating",
    "Lost",
)
# RFM_GRID[r - 1][f - 1] is the segment of recency score r and frequency score f.
RFM_GRID: tuple[tuple[str, ...], ...] = (
    ("Lost", "Lost", "At risk", "At risk", "Can't lose them"),
    ("Hibernating", "Hibernating", "At risk", "At risk", "Can't lose them"),
    ("About to sleep", "About to sleep", "Need attention", "Loyal", "Loyal"),
    ("Promising", "Potential loyalists", "Potential loyalists", "Loyal", "Loyal"),
    ("New", "Potential loyalists", "Potential loyalists", "Champions", "Champions"),
)


def rfm_segment_of(r_score: int, f_score: int) -> str:
    """The segment name of one (recency score, frequency score) cell."""
    if not (1 <= r_score <= 5 and 1 <= f_score <= 5):
        raise InvalidInput(f"RFM scores run from 1 to 5; got R={r_score}, F={f_score}.")
    return RFM_GRID[r_score - 1][f_score - 1]


def rfm_measures(purchases: pl.DataFrame | pd.DataFrame, as_of: date | None = None, *, window_days: int | None = None) -> pl.DataFrame:
    """Per-member ``recency_days, frequency, monetary`` (see the module docstring).

    One row per member with a purchase on or before ``as_of`` (default: the last
    purchase day), within ``window_days`` when given; sorted by ``member_id``; ``monetary``
    added exactly (:meth:`~loyalty.analytics.arrays.MemberArrays.money_sum`).
    """
    frame = purchases_frame(purchases)
    schema = RFM_MEASURES_SCHEMA
    if frame.height == 0:
        return pl.DataFrame(schema=schema)
    as_of = as_of or cast(date, frame["occurred_on"].max())  # a Date column's max (polars types it as any literal)
    if window_days is not None and window_days <= 0:
        raise InvalidInput(f"window_days must be a positive number of days, not {window_days}.")
    first_day = as_of - timedelta(days=window_days - 1) if window_days is not None else None
    frame = frame.filter(pl.col("occurred_on") <= as_of)
    if first_day is not None:
        frame = frame.filter(pl.col("occurred_on") >= first_day)
    if frame.height == 0:
        return pl.DataFrame(schema=schema)
    arrays = member_arrays(frame)
    count = arrays.count()
    bought = count > 0
    last = arrays.extreme(arrays.day, largest=True)
    return pl.DataFrame(
        {
            "member_id": arrays.member_ids[bought],
            "recency_days": (as_of - date(1970, 1, 1)).days - last[bought],
            "frequency": count[bought],
            "monetary": arrays.money_sum()[bought],
        },
        schema=schema,
    )


def rfm_thresholds(measures: pl.DataFrame | pd.DataFrame) -> dict[str, list[float]]:
    """The 20/40/60/80 % quantiles of ``recency_days``, ``frequency`` and ``monetary``."""
    frame = measures if isinstance(measures, pl.DataFrame) else pl.from_pandas(measures)
    if frame.height == 0:
        return {"recency_days": [], "frequency": [], "monetary": []}
    return {
        column: [float(v) for v in np.quantile(frame[column].to_numpy().astype(np.float64), QUANTILES)]
        for column in ("recency_days", "frequency", "monetary")
    }


def _score(values: np.ndarray, thresholds: list[float], *, reverse: bool) -> np.ndarray:
    band = np.searchsorted(np.asarray(thresholds), values, side="left")  # 0..4, ties go below
    return (5 - band if reverse else band + 1).astype(np.int8)


def rfm_table(
    purchases: pl.DataFrame | pd.DataFrame | None,
    as_of: date | None = None,
    *,
    window_days: int | None = None,
    thresholds: dict[str, list[float]] | None = None,
    measures: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Per-member RFM measures, scores and segment.

    Parameters
    ----------
    purchases
        ``member_id, occurred_on`` (or ``occurred_at``) ``, amount``, refunds excluded.
    as_of
        The day the analysis looks from (inclusive); default the last purchase day.
    window_days
        Only purchases in the last ``window_days`` days up to ``as_of``; default all.
    thresholds
        Score thresholds to reuse (from :func:`rfm_thresholds`); default: this data's
        quintiles.
    measures
        :func:`rfm_measures` of the same arguments, when already computed.

    Returns
    -------
    polars.DataFrame
        ``member_id, recency_days, frequency, monetary, r_score, f_score, m_score,
        rfm_score`` (e.g. ``"545"``) ``, segment``.
    """
    if measures is None:
        if purchases is None:
            raise InvalidInput("rfm_table needs the purchases or their measures.")
        measures = rfm_measures(purchases, as_of, window_days=window_days)
    thresholds = thresholds or rfm_thresholds(measures)
    if measures.height == 0:
        return measures.with_columns(
            r_score=pl.lit(None, pl.Int8),
            f_score=pl.lit(None, pl.Int8),
            m_score=pl.lit(None, pl.Int8),
            rfm_score=pl.lit(None, pl.String),
            segment=pl.lit(None, pl.String),
        )
    r = _score(measures["recency_days"].to_numpy(), thresholds["recency_days"], reverse=True)
    f = _score(measures["frequency"].to_numpy(), thresholds["frequency"], reverse=False)
    m = _score(measures["monetary"].to_numpy(), thresholds["monetary"], reverse=False)
    cells = {(ri - 1) * 5 + (fi - 1): RFM_GRID[ri - 1][fi - 1] for ri in range(1, 6) for fi in range(1, 6)}
    # Built by Polars from small integers: a million Python strings would take half a second.
    return measures.with_columns(
        r_score=pl.Series(r),
        f_score=pl.Series(f),
        m_score=pl.Series(m),
        rfm_score=pl.Series(r.astype(np.int32) * 100 + f * 10 + m).cast(pl.String),
        segment=pl.Series((r.astype(np.int32) - 1) * 5 + f - 1).replace_strict(cells, return_dtype=pl.String),
    )


def rfm_summary(purchases: pl.DataFrame | pd.DataFrame, as_of: date | None = None, *, window_days: int | None = None) -> dict[str, Any]:
    """Segment counts and revenue with the thresholds used (``analyze rfm --json``).

    Returns
    -------
    dict
        ``{"thresholds": {"recency_days": [4 values], "frequency": [...], "monetary": [...]},
        "segments": {"Champions": {"members": n, "revenue": x}, ...}, "as_of": "YYYY-MM-DD",
        "members": N}``; every segment of :data:`RFM_SEGMENTS` is listed, in that order,
        ``revenue`` = the members' spend over the scored window.
    """
    frame = purchases_frame(purchases)
    if as_of is None and frame.height:
        as_of = cast(date, frame["occurred_on"].max())
    return rfm_summary_of_measures(rfm_measures(frame, as_of, window_days=window_days), as_of)


def rfm_summary_of_measures(measures: pl.DataFrame, as_of: date | None) -> dict[str, Any]:
    """:func:`rfm_summary` from :func:`rfm_measures` (or the Spark engine's same figures,
    :mod:`loyalty.analytics.spark`): the thresholds, scores and counts are computed here."""
    thresholds = rfm_thresholds(measures)
    table = rfm_table(None, as_of, thresholds=thresholds, measures=measures)
    # Each segment's revenue added in whole ten-thousandths: a sum of floats depends on the order
    # the rows are added in (Polars' threads; Spark's partitions), the last digit of the JSON with it.
    units = (pl.col("monetary") * MONEY_SCALE).round().cast(pl.Int64).sum()
    per_segment = {name: (members, total / MONEY_SCALE) for name, members, total in table.group_by("segment").agg(pl.len(), units).iter_rows()}
    segments = {
        name: {"members": int(per_segment.get(name, (0, 0.0))[0]), "revenue": float(per_segment.get(name, (0, 0.0))[1])} for name in RFM_SEGMENTS
    }
    return {"thresholds": thresholds, "segments": segments, "as_of": as_of.isoformat() if as_of else None, "members": table.height}


def _purchases_until(session: Session, as_of: date | None, window_days: int | None) -> pl.DataFrame:
    end = None if as_of is None else as_of + timedelta(days=1)
    start = None if as_of is None or window_days is None else as_of - timedelta(days=window_days - 1)
    return load_purchases(session, start=start, end=end)


def rfm_analysis(session: Session, as_of: date | None = None, *, window_days: int | None = None) -> dict[str, Any]:
    """:func:`rfm_summary` over the database's purchases."""
    return rfm_summary(_purchases_until(session, as_of, window_days), as_of, window_days=window_days)


def rfm_members(session: Session, as_of: date | None = None, *, window_days: int | None = None) -> pd.DataFrame:
    """:func:`rfm_table` over the database's purchases, as pandas."""
    return rfm_table(_purchases_until(session, as_of, window_days), as_of, window_days=window_days).to_pandas()
