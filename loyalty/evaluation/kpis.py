"""KPI snapshots: the catalogue computed for a period and stored, so pages read small tables.

KPI snapshots
-------------
A run as of day ``D`` (cutoff ``D + 1``, 00:00 UTC) stores the catalogue, overall and by
segment, tier and channel, for

* the last **complete month** before the cutoff (``period="month"``): what KPI targets
  and goal status read; recomputed every day, so late data corrects it;
* the last **complete quarter** (``period="quarter"``), for quarterly targets;
* the **month to date** (``period="mtd"``, ``period_end`` = the cutoff) for a live view;
  only the current month's is kept (a finished month has its ``month`` row).

Each period replaces its own rows. The values are computed before the write transaction
opens, so the writer lock is held only to swap rows.

History
-------
Every complete month (and quarter) since the first purchase that has no overall snapshot
yet gets one on the next run (overall only: the tiers and segments of the past are not
kept, so splits start when the nightly job first ran). A new program, the demo or an
import of past purchases thus has a trend from the first evaluation. ``backfill=True``
(``evaluate --job kpi-snapshot --backfill``) recomputes every past month, e.g. after an
import changed months already stored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, timedelta

import pandas as pd
from sqlalchemy import delete
from sqlmodel import Session, col, select

from db.bulk import insert_frame
from db.engine import write_transaction
from db.models import KpiSnapshot, utcnow
from loyalty.analytics.metrics import Dimension, history_months
from loyalty.analytics.reader import analytics_reader
from loyalty.evaluation.runs import ProgressFn
from loyalty.periods import add_months, period_bounds

__all__ = [
    "DIMENSIONS",
    "kpi_snapshot_frame",
    "kpi_snapshot_frames",
    "snapshot_kpis",
    "history_periods",
    "snapshot_periods",
    "store_kpi_snapshots",
    "target_status_counts",
]

DIMENSIONS: tuple[Dimension | None, ...] = (None, "segment", "tier", "channel")

_SNAPSHOT_COLUMNS = ["metric", "period", "period_start", "period_end", "dimension", "dimension_value", "value", "computed_at"]


# --- KPI snapshots ----------------------------------------------------------------------------


def snapshot_periods(as_of: date) -> list[tuple[str, date, date]]:
    """``(period, start, end)`` the KPI snapshot of day ``as_of`` stores: month, [mtd], quarter.

    >>> snapshot_periods(date(2026, 11, 15))
    [('month', datetime.date(2026, 10, 1), datetime.date(2026, 11, 1)), ('mtd', datetime.date(2026, 11, 1), datetime.date(2026, 11, 16)), ('quarter', datetime.date(2026, 7, 1), datetime.date(2026, 10, 1))]
    """
    cutoff_day = as_of + timedelta(days=1)
    month_end = period_bounds("month", cutoff_day)[0]
    periods = [("month", add_months(month_end, -1), month_end)]
    if cutoff_day != month_end:
        periods.append(("mtd", month_end, cutoff_day))
    quarter_end = period_bounds("quarter", cutoff_day)[0]
    periods.append(("quarter", add_months(quarter_end, -3), quarter_end))
    return periods


def history_periods(session: Session, as_of: date, *, every: bool = False) -> list[tuple[str, date, date]]:
    """The complete months and quarters before those of :func:`snapshot_periods` that need an
    overall snapshot: each one since the month of the first purchase (at most
    :data:`loyalty.analytics.metrics.HISTORY_MONTHS_MAX` months back) without one yet, or all of them with ``every``."""
    latest = {period: start for period, start, _ in snapshot_periods(as_of)}
    months = history_months(session, latest["month"])  # months before the one the run stores anyway
    if not months:
        return []
    wanted: list[tuple[str, date, date]] = [("month", month, add_months(month, 1)) for month in months]
    quarter = period_bounds("quarter", months[0])[0]
    while quarter < latest["quarter"]:
        wanted.append(("quarter", quarter, add_months(quarter, 3)))
        quarter = add_months(quarter, 3)
    if every or not wanted:
        return wanted
    stored = set(
        session.exec(
            select(col(KpiSnapshot.period), col(KpiSnapshot.period_start))
            .where(col(KpiSnapshot.period).in_(["month", "quarter"]), KpiSnapshot.dimension == "overall")
            .distinct()
        ).all()
    )
    return [(period, start, end) for period, start, end in wanted if (period, start) not in stored]


def kpi_snapshot_frames(
    session: Session,
    periods: Sequence[tuple[str, date, date]],
    *,
    dimensions: Sequence[Dimension | None] = DIMENSIONS,
    progress: ProgressFn | None = None,
    loaded: Callable[..., None] | None = None,
    engine: str | None = None,
) -> list[pd.DataFrame]:
    """Every default KPI of each ``(period, start, end)`` overall and by each dimension, as snapshot rows.

    The tables are read once for all the periods (:func:`loyalty.analytics.metrics.kpis_for_periods`);
    the same values as :func:`loyalty.analytics.metrics.compute_kpis` period by period.
    ``engine``: ``"spark"`` has Spark sum the purchases and the ledger (from the Parquet
    export when ``LOYALTY_PARQUET_DIR`` is set, refused when it lacks entries the database
    has); default ``LOYALTY_ANALYTICS_ENGINE``.
    The values are the same to the last digit.
    """
    from loyalty.analytics.engines import analytics_engine, parquet_lake
    from loyalty.analytics.metrics import kpis_for_periods

    aggregation = None
    if analytics_engine(engine) == "spark":
        from loyalty.analytics.spark import SparkAggregation, check_export_is_current

        lake = parquet_lake()
        if lake is not None:
            check_export_is_current(session, lake)
        aggregation = SparkAggregation(lake)

    def computing(done: int, total: int) -> None:
        if progress:
            period, start, end = periods[done]
            progress(0.2 + 0.6 * done / total, f"computing the KPIs of {period} {start}..{end}")

    computed = kpis_for_periods(
        session,
        [(start, end) for _, start, end in periods],
        dimensions=dimensions,
        reader=analytics_reader(session),
        progress=computing,
        loaded=loaded,
        aggregation=aggregation,
    )
    frames = []
    for (period, start, end), values in zip(periods, computed):
        values["dimension"] = values["dimension"].fillna("overall")
        values["dimension_value"] = values["dimension_value"].fillna("").astype(str)
        values = values.assign(period=period, period_start=start, period_end=end, computed_at=pd.Timestamp(utcnow()))
        values["value"] = values["value"].astype(float).where(values["value"].notna(), None)
        frames.append(values[_SNAPSHOT_COLUMNS])
    return frames


def kpi_snapshot_frame(session: Session, *, period: str, start: date, end: date, dimensions: Sequence[Dimension | None] = DIMENSIONS) -> pd.DataFrame:
    """Every default KPI of ``[start, end)`` overall and by each dimension, as snapshot rows."""
    return kpi_snapshot_frames(session, [(period, start, end)], dimensions=dimensions)[0]


def store_kpi_snapshots(
    session: Session, frames: Sequence[pd.DataFrame], *, current_month: date | None = None, history: Sequence[pd.DataFrame] = ()
) -> int:
    """Replace the snapshot rows of each frame's (period, start); one transaction.

    ``history``: overall-only frames of past periods (:func:`history_periods`); they replace
    the overall rows of their period only, so splits stored by earlier nightly runs stay.
    ``current_month`` (the first day of the month being lived): month-to-date rows of
    earlier months are removed, their complete month supersedes them.
    """
    with write_transaction(session):
        for frame, only_overall in [(f, False) for f in frames] + [(f, True) for f in history]:
            if frame.empty:
                continue
            period, start = frame["period"].iloc[0], frame["period_start"].iloc[0]
            replaced = delete(KpiSnapshot).where(KpiSnapshot.period == period, KpiSnapshot.period_start == start)
            session.execute(replaced.where(col(KpiSnapshot.dimension) == "overall") if only_overall else replaced)
        if current_month is not None:
            session.execute(delete(KpiSnapshot).where(col(KpiSnapshot.period) == "mtd", col(KpiSnapshot.period_start) < current_month))
        written = [f for f in (*frames, *history) if not f.empty]
        return insert_frame(session, "kpi_snapshot", pd.concat(written, ignore_index=True)) if written else 0


def target_status_counts(session: Session) -> dict[str, int]:
    """How many KPI targets are on track, at risk, off track or without data (from snapshots)."""
    from loyalty.program.goals import goal_status

    status = goal_status(session)
    return {str(k): int(v) for k, v in status["status"].value_counts().items()} if not status.empty else {}


def snapshot_kpis(session: Session, *, period: str, start: date, end: date, dimensions: tuple[Dimension | None, ...] = DIMENSIONS) -> int:
    """Compute every catalogue KPI for ``[start, end)`` overall and by each dimension; store them.

    Returns the number of snapshot rows written. The kpi-snapshot job uses the same two
    steps.
    """
    return store_kpi_snapshots(session, [kpi_snapshot_frame(session, period=period, start=start, end=end, dimensions=dimensions)])
