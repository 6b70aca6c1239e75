"""The analytics engine: KPIs, cohorts, RFM, segments and predicted CLV.

Modules
-------
``data``       columnar reads (ADBC / COPY) into Polars frames; refunds excluded
``reader``     the SQLite reader process (ADBC, with a time limit) and which reader a job uses
``metrics``    the KPI catalogue (:data:`~loyalty.analytics.metrics.METRICS`),
               ``compute_kpis``, ``kpi_summary``, ``members_behind``
``segments``   rule-based segments: ``segment_members``, ``match_members``
``cohorts``    cohort retention, retention curves by channel, churn over time
``rfm``        RFM scores, segments and summary
``clv``        BG/NBD + Gamma-Gamma fitted by maximum likelihood, per-member CLV
``engines``    which engine runs ``analyze kpis|retention|rfm`` (``LOYALTY_ANALYTICS_ENGINE``)
``spark``      the Spark engine: the same answers, the large aggregations in Apache Spark
``parquet``    ``export parquet``: members, purchases and the ledger by month, incremental

Functions that take a ``session`` read the database and return pandas frames or
JSON-ready dicts (what pages and the command line use); the others take pandas or
Polars frames and return Polars frames. Periods are ``[start, end)`` in UTC days;
``as_of`` and ``calibration_end`` days are inclusive.
"""

from __future__ import annotations

import importlib
from typing import Any

# Imported on first use, so `analyze retention` does not pay for scipy, say.
_EXPORTS = {
    "METRICS": "metrics",
    "clv_analysis": "clv",
    "clv_members": "clv",
    "compute_kpis": "metrics",
    "kpi_summary": "metrics",
    "members_behind": "metrics",
    "retention_analysis": "cohorts",
    "retention_by_channel": "cohorts",
    "rfm_analysis": "rfm",
    "rfm_members": "rfm",
    "segment_members": "segments",
}
__all__ = [
    "METRICS",
    "clv_analysis",
    "clv_members",
    "compute_kpis",
    "kpi_summary",
    "members_behind",
    "retention_analysis",
    "retention_by_channel",
    "rfm_analysis",
    "rfm_members",
    "segment_members",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'loyalty.analytics' has no attribute {name!r}")
    return getattr(importlib.import_module(f"loyalty.analytics.{_EXPORTS[name]}"), name)
