"""Which engine runs the analyses: the default (numpy and Polars in this process) or Spark.

``LOYALTY_ANALYTICS_ENGINE`` (``default`` or ``spark``) chooses for the command line's
``analyze kpis|retention|rfm`` and the nightly KPI figures; ``--engine`` overrides it for
one command. Both engines give the same answers, to the last digit
(:mod:`loyalty.analytics.spark`).
"""

from __future__ import annotations

import os
from datetime import date
from typing import Any, Literal

from sqlmodel import Session

from loyalty.errors import InvalidInput

__all__ = ["ENGINES", "ENGINE_VARIABLE", "Engine", "analytics_engine", "kpi_summary_on", "parquet_lake", "retention_analysis_on", "rfm_analysis_on"]

Engine = Literal["default", "spark"]
ENGINES: tuple[Engine, ...] = ("default", "spark")
ENGINE_VARIABLE = "LOYALTY_ANALYTICS_ENGINE"
LAKE_VARIABLE = "LOYALTY_PARQUET_DIR"  # where the Spark engine reads the Parquet export (loyalty.analytics.spark)


def analytics_engine(engine: str | None = None) -> Engine:
    """``engine`` when given, else ``LOYALTY_ANALYTICS_ENGINE``, else ``"default"``."""
    chosen = engine or os.environ.get(ENGINE_VARIABLE) or "default"
    if chosen not in ENGINES:
        raise InvalidInput(f"Unknown analytics engine {chosen!r}; choose one of {', '.join(ENGINES)} ({ENGINE_VARIABLE}).")
    return chosen


def parquet_lake(lake: str | None = None) -> str | None:
    """Where the Spark engine reads the Parquet export: ``lake`` when given, else
    ``LOYALTY_PARQUET_DIR``, else nowhere (it reads the database)."""
    return lake or os.environ.get(LAKE_VARIABLE) or None


def _on_spark(engine: str | None, lake: str | None) -> bool:
    """Whether the chosen engine is Spark; an export named for the default engine, which reads
    only the database, is refused rather than ignored."""
    spark = analytics_engine(engine) == "spark"
    if lake and not spark:
        raise InvalidInput(f"The Parquet export {lake} is read by the Spark engine only: add --engine spark, or leave out --parquet.")
    return spark


def kpi_summary_on(session: Session, start: date, end: date, *, engine: str | None = None, lake: str | None = None) -> dict[str, Any]:
    """``analyze kpis``: :func:`~loyalty.analytics.metrics.kpi_summary` on the chosen engine."""
    if _on_spark(engine, lake):
        from loyalty.analytics.spark import spark_kpi_summary

        return spark_kpi_summary(session, start, end, lake=parquet_lake(lake))
    from loyalty.analytics.metrics import kpi_summary

    return kpi_summary(session, start, end)


def retention_analysis_on(session: Session, period: str, as_of: date | None, *, engine: str | None = None, lake: str | None = None) -> dict[str, Any]:
    """``analyze retention``: :func:`~loyalty.analytics.cohorts.retention_analysis` on the chosen engine."""
    if _on_spark(engine, lake):
        from loyalty.analytics.spark import spark_retention_analysis

        return spark_retention_analysis(session, period, as_of, lake=parquet_lake(lake))
    from loyalty.analytics.cohorts import retention_analysis

    return retention_analysis(session, period, as_of)


def rfm_analysis_on(session: Session, as_of: date | None, *, engine: str | None = None, lake: str | None = None) -> dict[str, Any]:
    """``analyze rfm``: :func:`~loyalty.analytics.rfm.rfm_analysis` on the chosen engine."""
    if _on_spark(engine, lake):
        from loyalty.analytics.spark import spark_rfm_analysis

        return spark_rfm_analysis(session, as_of, lake=parquet_lake(lake))
    from loyalty.analytics.rfm import rfm_analysis

    return rfm_analysis(session, as_of)
