"""The Spark engine: the large aggregations of KPIs, retention and RFM in Apache Spark.

The default engine adds purchases and ledger entries up with numpy and Polars in this
process. The Spark engine reads the same rows (the same loaders of
:mod:`loyalty.analytics.data`), hands them to Spark as Arrow tables and lets Spark do the
grouping: per-member measures of the purchases, the ledger's totals, the cohort counts.
What comes back is small (one row per member at most, or a few numbers) and goes through
the same shaping code as the default engine's (the catalogue's expressions,
:func:`~loyalty.analytics.cohorts.retention_from_counts`,
:func:`~loyalty.analytics.rfm.rfm_summary_of_measures`), so both engines print the same
JSON to the last digit: money travels as whole ten-thousandths
(:data:`~loyalty.analytics.arrays.MONEY_SCALE`) and is divided once, on this side.

Settings
--------
``LOYALTY_SPARK_MASTER``
    Where Spark runs: ``local[*]`` (default: every core of this machine) or a cluster's
    master URL (``spark://host:7077``).
``LOYALTY_PARQUET_DIR`` (or ``--parquet DIR``)
    Read the purchases and the ledger from the Parquet export there
    (:mod:`loyalty.analytics.parquet`) instead of the database: Spark's executors read the
    files themselves, the rows never pass through this process, and a month outside the
    period is not read at all (its partition is skipped). The answers are the database's
    as of that export.

pyspark is imported on the first use, never when the command line starts; one Spark
session serves the whole process and is stopped when it exits.
"""

from __future__ import annotations

import atexit
import os
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
from sqlmodel import Session

from loyalty.analytics.arrays import MONEY_SCALE, money_units
from loyalty.analytics.cohorts import DEFAULT_PERIOD, PERIODS, period_of, retention_from_counts
from loyalty.analytics.data import EARN_KINDS, LEDGER_TOTAL_COLUMNS, load_ledger_entries, load_purchases
from loyalty.analytics.metrics import MEASURES_SCHEMA, KpiAggregation, kpi_summary
from loyalty.analytics.rfm import RFM_MEASURES_SCHEMA, rfm_summary_of_measures
from loyalty.errors import InvalidInput

__all__ = [
    "DEFAULT_MASTER",
    "MASTER_VARIABLE",
    "SPARK_SETTINGS",
    "SparkAggregation",
    "check_export_is_current",
    "spark_kpi_summary",
    "spark_retention_analysis",
    "spark_rfm_analysis",
    "spark_session",
    "stop_spark",
]

MASTER_VARIABLE = "LOYALTY_SPARK_MASTER"
DEFAULT_MASTER = "local[*]"
# Small settings for one machine: few shuffle partitions (the default 200 costs seconds on
# small data), no web UI, UTC, a modest driver. A cluster's own defaults apply otherwise.
SPARK_SETTINGS = {
    "spark.sql.shuffle.partitions": "4",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.driver.memory": "1g",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
}
_EPOCH = date(1970, 1, 1)
_session: Any = None


def spark_session() -> Any:
    """The process's Spark session, started on first use (the JVM takes seconds to start)."""
    global _session
    if _session is None:
        try:
            from pyspark.sql import SparkSession
        except ImportError:
            raise InvalidInput("The Spark engine needs pyspark (pip install -r requirements.txt) and Java 17; or use --engine default.") from None
        master = os.environ.get(MASTER_VARIABLE) or DEFAULT_MASTER
        builder = SparkSession.builder.master(master).appName("loyalty-console")
        for key, value in SPARK_SETTINGS.items():
            builder = builder.config(key, value)
        if master.startswith("local"):  # one machine: no need to find this host's outside address
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
            builder = builder.config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
        _session = builder.getOrCreate()
        _session.sparkContext.setLogLevel("ERROR")
        atexit.register(stop_spark)
    return _session


def stop_spark() -> None:
    """Stop the Spark session and its JVM (at exit; tests call it at the end of their session)."""
    global _session
    if _session is not None:
        _session.stop()
        _session = None


def _days(frame: pl.DataFrame) -> pa.Array:
    return pa.array(frame["occurred_on"].cast(pl.Int32).to_numpy())


def _purchase_rows(session: Session, *, start: date | None, end: date | None, money: bool, lake: str | None) -> Any:
    """Purchases with ``start <= day < end`` as a Spark frame: ``member_id, day`` (days since
    1970-01-01) and ``units`` (the amount in whole ten-thousandths) when ``money``; from the
    Parquet export in ``lake`` when given, else from the database."""
    if lake is not None:
        from pyspark.sql import functions as F

        rows = _lake_table(lake, "purchases", start, end)
        day = F.datediff(F.col("occurred_on"), F.lit(_EPOCH.isoformat()))
        units = [F.round(F.coalesce(F.col("amount"), F.lit(0.0)) * MONEY_SCALE).cast("long").alias("units")] if money else []
        rows = rows.select("member_id", day.alias("day"), *units)
        if start is not None:
            rows = rows.where(F.col("day") >= (start - _EPOCH).days)
        return rows.where(F.col("day") < (end - _EPOCH).days) if end is not None else rows
    columns = ("member_id", "occurred_on", "amount") if money else ("member_id", "occurred_on")
    frame = load_purchases(session, start=start, end=end, columns=columns)
    table = {"member_id": pa.array(frame["member_id"].to_numpy()), "day": _days(frame)}
    if money:
        table["units"] = pa.array(money_units(frame["amount"].fill_null(0.0).to_numpy()))
    return spark_session().createDataFrame(pa.table(table))


def _lake_table(lake: str, table: str, start: date | None, end: date | None) -> Any:
    """One table of the Parquet export, only the month partitions that can hold ``[start, end]``."""
    from pyspark.sql import functions as F

    path = Path(lake) / table
    if not path.is_dir():
        raise InvalidInput(f"No {table} in the Parquet export {lake}: run python -m loyalty export parquet --out {lake} first.")
    rows = spark_session().read.parquet(str(path))
    if start is not None:
        rows = rows.where(F.col("month") >= f"{start:%Y-%m}")
    return rows.where(F.col("month") <= f"{end:%Y-%m}") if end is not None else rows


def _ledger_rows(session: Session, end: date, lake: str | None) -> Any:
    """:func:`~loyalty.analytics.data.load_ledger_entries` as a Spark frame (from the export in ``lake`` when given)."""
    if lake is None:
        entries = load_ledger_entries(session, end).with_columns(pl.col("kind").cast(pl.String))
        return spark_session().createDataFrame(entries.to_arrow())
    from pyspark.sql import functions as F

    last_second = (end - _EPOCH).days * 86_400  # the entries stamped at midnight of ``end`` too, as the loader reads them
    return (
        _lake_table(lake, "ledger", None, end)
        .select(
            "member_id",
            "kind",
            "points",
            F.when(F.col("redemption_id").isNotNull(), 1).otherwise(0).alias("is_return"),
            F.unix_timestamp("occurred_at").cast("long").alias("occurred_seconds"),
        )
        .where(F.col("occurred_seconds") <= last_second)
    )


def _collect(frame: Any, schema: dict[str, Any]) -> dict[str, np.ndarray]:
    """A Spark frame's columns as numpy arrays of the schema's types (one Arrow transfer)."""
    table = frame.toArrow()
    numpy_types = {pl.Int64: np.int64, pl.Float64: np.float64, pl.Boolean: np.bool_}
    return {name: table[name].to_numpy().astype(numpy_types[dtype]) for name, dtype in schema.items()}


class SparkAggregation(KpiAggregation):
    """The purchases' measures and the ledger's totals of a KPI period, summed by Spark (read
    from the Parquet export in ``lake`` when given)."""

    def __init__(self, lake: str | None = None) -> None:
        self.lake = lake

    def purchase_measures(self, session: Session, start: date, end: date, *, since: date | None) -> pl.DataFrame:
        from pyspark.sql import functions as F

        from loyalty.periods import previous_period

        previous_start, _ = previous_period(start, end)
        first, previous, last = ((d - _EPOCH).days for d in (start, previous_start, end))
        rows = _purchase_rows(session, start=since, end=end, money=True, lake=self.lake).where(F.col("day") < last)
        in_period = F.col("day") >= first
        measures = (
            rows.groupBy("member_id")
            .agg(
                F.sum(in_period.cast("long")).alias("purchases"),
                F.sum(F.when(in_period, F.col("units")).otherwise(0)).alias("revenue"),
                F.count_distinct(F.when(in_period, F.col("day"))).alias("purchase_days"),
                F.max((F.col("day") >= previous) & ~in_period).alias("active_previous"),
                F.sum("units").alias("revenue_to_date"),
                F.lit(True).alias("customer"),
            )
            .orderBy("member_id")
        )
        columns = _collect(measures, MEASURES_SCHEMA)
        for name in ("revenue", "revenue_to_date"):  # whole units, divided as the default engine divides them
            columns[name] = columns[name] / MONEY_SCALE
        return pl.DataFrame(columns, schema=MEASURES_SCHEMA)

    def _ledger_sums(self, session: Session, start: date, end: date, trailing_start: date) -> tuple[Any, dict[str, Any], Any]:
        """The ledger rows, the sums of :data:`LEDGER_TOTAL_COLUMNS` over them, and "before the end"."""
        from pyspark.sql import functions as F

        def seconds(day: date) -> int:
            return (day - _EPOCH).days * 86_400

        ledger = _ledger_rows(session, end, self.lake)
        at, kind, points = F.col("occurred_seconds"), F.col("kind"), F.col("points")
        before_end = at < seconds(end)
        in_period = (at >= seconds(start)) & before_end
        in_trailing = (at >= seconds(trailing_start)) & before_end
        returned = (kind == "reverse") & (F.col("is_return") == 1)

        def points_where(condition: Any, sign: int) -> Any:
            return F.coalesce(F.sum(F.when(condition, points * sign).otherwise(0)), F.lit(0)).cast("long")

        sums = {
            "earned": points_where(kind.isin(*EARN_KINDS) & in_period, 1),
            "redeemed": points_where((kind == "redeem") & in_period, -1),
            "returned": points_where(returned & in_period, 1),
            "expired": points_where((kind == "expire") & in_period, -1),
            "trailing_redeemed": points_where((kind == "redeem") & in_trailing, -1),
            "trailing_returned": points_where(returned & in_trailing, 1),
            "trailing_expired": points_where((kind == "expire") & in_trailing, -1),
            "balance": points_where(before_end, 1),
        }
        return ledger, sums, before_end

    def ledger_totals(self, session: Session, start: date, end: date, *, trailing_start: date) -> pl.DataFrame:
        ledger, sums, _ = self._ledger_sums(session, start, end, trailing_start)
        row = ledger.agg(*(sums[name].alias(name) for name in LEDGER_TOTAL_COLUMNS)).collect()[0]
        return pl.DataFrame({name: [int(row[name])] for name in LEDGER_TOTAL_COLUMNS}, schema={name: pl.Int64 for name in LEDGER_TOTAL_COLUMNS})

    def member_ledger_totals(self, session: Session, start: date, end: date, *, trailing_start: date) -> pl.DataFrame:
        # As ledger_totals_for_periods: the members with an entry before the end, by member id.
        ledger, sums, before_end = self._ledger_sums(session, start, end, trailing_start)
        totals = ledger.where(before_end).groupBy("member_id").agg(*(sums[name].alias(name) for name in LEDGER_TOTAL_COLUMNS)).orderBy("member_id")
        schema = {"member_id": pl.Int64, **{name: pl.Int64 for name in LEDGER_TOTAL_COLUMNS}}
        return pl.DataFrame(_collect(totals, schema), schema=schema)

    def rfm_measures(self, session: Session, as_of: date) -> pl.DataFrame:
        measured = _rfm_measures(session, as_of, None, self.lake)
        assert measured is not None  # with a day given there is a frame, empty or not
        return measured[0]


def check_export_is_current(session: Session, lake: str) -> None:
    """Refuse a Parquet export that lacks ledger entries the database has (InvalidInput).

    For the nightly KPI snapshot, which stores its figures beside live ones (members, answers,
    the Overview's): an export made before the day's last purchases would store old sums
    without a word. Every purchase, redemption, expiry and refund adds a ledger entry, so the
    export is behind when the database holds a larger ledger id than any it wrote.
    """
    import json

    from sqlalchemy import text

    from loyalty.analytics.parquet import MANIFEST

    manifest = Path(lake) / MANIFEST
    if not manifest.is_file():
        raise InvalidInput(f"No Parquet export in {lake}: run python -m loyalty export parquet --out {lake} first.")
    months = json.loads(manifest.read_text()).get("tables", {}).get("ledger", {})
    exported = max((m.get("max_id") or 0 for m in months.values()), default=0)
    current = session.execute(text("SELECT COALESCE(MAX(id), 0) FROM ledger_entry")).scalar_one()
    if current > exported:
        raise InvalidInput(
            f"The Parquet export in {lake} ends at ledger entry {exported:,} and the database has entries up to {current:,}: "
            f"export again (python -m loyalty export parquet --out {lake}) before the KPI snapshot, "
            "or unset LOYALTY_PARQUET_DIR to have Spark read the database."
        )


def spark_kpi_summary(session: Session, start: date, end: date, *, lake: str | None = None) -> dict[str, Any]:
    """:func:`~loyalty.analytics.metrics.kpi_summary` with the purchases and the ledger summed by Spark."""
    return kpi_summary(session, start, end, aggregation=SparkAggregation(lake))


def _period_index(period: str) -> Any:
    """A day number's calendar month or quarter as :func:`~loyalty.analytics.cohorts.period_index` numbers it."""
    from pyspark.sql import functions as F

    day = F.date_from_unix_date(F.col("day"))
    if period == "month":
        return F.year(day) * 12 + F.month(day) - 1
    return F.year(day) * 4 + F.floor((F.month(day) - 1) / 3).cast("int")


def spark_retention_analysis(session: Session, period: str = DEFAULT_PERIOD, as_of: date | None = None, *, lake: str | None = None) -> dict[str, Any]:
    """:func:`~loyalty.analytics.cohorts.retention_analysis`, the cohort counts made by Spark."""
    from pyspark.sql import functions as F

    if period not in PERIODS:
        raise InvalidInput(f"Unknown period {period!r}; choose one of {', '.join(PERIODS)}.")
    end = None if as_of is None else as_of + timedelta(days=1)
    activity = (
        _purchase_rows(session, start=None, end=end, money=False, lake=lake).select("member_id", _period_index(period).alias("period")).distinct()
    )
    first = activity.agg(F.min("period")).collect()[0][0]
    if first is None:
        return retention_from_counts(np.zeros((0, 0), dtype=np.int64), 0, period)
    last = period_of(as_of, period) if as_of is not None else activity.agg(F.max("period")).collect()[0][0]
    cohorts = activity.groupBy("member_id").agg(F.min("period").alias("cohort"))
    counted = activity.join(cohorts, "member_id").groupBy("cohort", "period").count().collect()
    span = last - first + 1
    counts = np.zeros((span, span), dtype=np.int64)
    for row in counted:
        counts[row["cohort"] - first, row["period"] - row["cohort"]] = row["count"]
    return retention_from_counts(counts, first, period)


def _rfm_measures(session: Session, as_of: date | None, window_days: int | None, lake: str | None) -> tuple[pl.DataFrame, date] | None:
    """Each member's recency, frequency and spend as of ``as_of`` (default: the last purchase
    day), summed by Spark, as :func:`~loyalty.analytics.rfm.rfm_measures` gives them, and that
    day; None without purchases and without ``as_of``."""
    from pyspark.sql import functions as F

    end = None if as_of is None else as_of + timedelta(days=1)
    first_day = None if as_of is None or window_days is None else as_of - timedelta(days=window_days - 1)
    rows = _purchase_rows(session, start=first_day, end=end, money=True, lake=lake)
    if as_of is None:
        last = rows.agg(F.max("day")).collect()[0][0]
        if last is None:
            return None
        as_of = _EPOCH + timedelta(days=int(last))
    as_of_day = (as_of - _EPOCH).days
    measures = (
        rows.where(F.col("day") <= as_of_day)
        .groupBy("member_id")
        .agg((F.lit(as_of_day) - F.max("day")).cast("long").alias("recency_days"), F.count("*").alias("frequency"), F.sum("units").alias("monetary"))
        .orderBy("member_id")
    )
    columns = _collect(measures, RFM_MEASURES_SCHEMA)
    columns["monetary"] = columns["monetary"] / MONEY_SCALE
    return pl.DataFrame(columns, schema=RFM_MEASURES_SCHEMA), as_of


def spark_rfm_analysis(session: Session, as_of: date | None = None, *, window_days: int | None = None, lake: str | None = None) -> dict[str, Any]:
    """:func:`~loyalty.analytics.rfm.rfm_analysis`, each member's recency, frequency and spend summed by Spark."""
    if window_days is not None and window_days <= 0:
        raise InvalidInput(f"window_days must be a positive number of days, not {window_days}.")
    measured = _rfm_measures(session, as_of, window_days, lake)
    if measured is None:
        return rfm_summary_of_measures(pl.DataFrame(schema=RFM_MEASURES_SCHEMA), None)
    return rfm_summary_of_measures(*measured)
