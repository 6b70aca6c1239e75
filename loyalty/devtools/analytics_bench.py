"""Timings of the analytics engine, for the scale targets (issue 8) and ``docs/performance.md``.

``python -m loyalty.devtools.analytics_bench clv --members 1000000`` simulates members from
known BG/NBD and Gamma-Gamma parameters (whole-day recency and age over two years, in
weeks, like real summary data), then times the two fits and the per-member predictions
(probability alive, expected purchases in 12 months, expected spend, 12-month
discounted CLV).

``python -m loyalty.devtools.analytics_bench analyze --from 2024-12-01 --to 2025-01-01``
times, on the database of ``LOYALTY_DATABASE_URL``, each read and each in-memory step
(cohorts, RFM, KPIs) separately, then each ``analyze`` use case end to end.

Both print JSON: ``{"steps": {"NAME": {"seconds": s, "cpu_seconds": c}}, "peak_mb": m, ...}``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from typing import Any, TypeVar

import numpy as np
import polars as pl

__all__ = ["time_analyze", "time_clv"]

T = TypeVar("T")
TRUE_BGNBD = (0.8, 6.0, 0.6, 3.0)
TRUE_GAMMA_GAMMA = (4.0, 5.0, 60.0)
HISTORY_DAYS = 730


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(steps: dict[str, dict[str, float]], name: str, work: Callable[[], T]) -> T:
    started, cpu = time.perf_counter(), time.process_time()
    result = work()
    # CPU seconds too: on a shared machine the wall clock also counts other people's work.
    steps[name] = {"seconds": round(time.perf_counter() - started, 3), "cpu_seconds": round(time.process_time() - cpu, 3)}
    return result


def time_clv(members: int = 1_000_000, *, seed: int = 1) -> dict[str, Any]:
    """Fit BG/NBD + Gamma-Gamma on ``members`` simulated members and predict for each."""
    from loyalty.analytics.clv import (
        BgNbdParams,
        ClvModel,
        GammaGammaParams,
        clv_table,
        fit_bgnbd,
        fit_gamma_gamma,
        simulate_bgnbd,
        simulate_gamma_gamma,
    )

    rng = np.random.default_rng(seed)
    ages = rng.integers(1, HISTORY_DAYS + 1, members) / 7.0
    summary = simulate_bgnbd(BgNbdParams(*TRUE_BGNBD), ages, seed=seed + 1)
    summary = summary.with_columns(
        (pl.col("recency") * 7).round().truediv(7).clip(upper_bound=pl.col("T")),
        monetary_value=pl.Series(simulate_gamma_gamma(GammaGammaParams(*TRUE_GAMMA_GAMMA), summary["frequency"], seed=seed + 2)),
        revenue=pl.lit(0.0),
    )
    steps: dict[str, dict[str, float]] = {}
    started = time.perf_counter()
    bgnbd = _timed(steps, "fit_bgnbd", lambda: fit_bgnbd(summary["frequency"], summary["recency"], summary["T"]))
    gamma_gamma = _timed(steps, "fit_gamma_gamma", lambda: fit_gamma_gamma(summary["frequency"], summary["monetary_value"]))
    model = ClvModel(bgnbd, gamma_gamma, "week", summary.height, int((summary["frequency"] > 0).sum()))
    _timed(steps, "predictions", lambda: clv_table(summary, model))
    return {
        "members": members,
        "steps": steps,
        "total_seconds": round(time.perf_counter() - started, 3),
        "peak_mb": round(_peak_mb(), 1),
        "bgnbd": bgnbd.as_dict(),
        "gamma_gamma": gamma_gamma.as_dict(),
        "truth": {"bgnbd": dict(zip(["r", "alpha", "a", "b"], TRUE_BGNBD)), "gamma_gamma": dict(zip("pqv", TRUE_GAMMA_GAMMA))},
    }


def time_analyze(start: date, end: date, *, url: str | None = None) -> dict[str, Any]:
    """Time each read, each in-memory analysis and each ``analyze`` use case on a database."""
    from db.engine import get_engine, new_session
    from loyalty.analytics.clv import clv_analysis
    from loyalty.analytics.cohorts import retention_analysis, retention_cohorts
    from loyalty.analytics.data import ledger_totals, load_members, load_purchases
    from loyalty.analytics.metrics import KpiInputs, kpi_summary, kpis_from_inputs
    from loyalty.analytics.rfm import rfm_analysis, rfm_summary

    steps: dict[str, dict[str, float]] = {}
    with new_session(get_engine(url)) as session:
        purchases = _timed(steps, "read purchases (all)", lambda: load_purchases(session))
        members = _timed(steps, "read members", lambda: load_members(session, columns=("member_id", "joined_on", "tier")))
        ledger = _timed(steps, "read ledger totals", lambda: ledger_totals(session, start, end, trailing_start=end - timedelta(days=365)))
        _timed(steps, "read ledger per member", lambda: ledger_totals(session, start, end, by_member=True))
        last = end - timedelta(days=1)
        in_memory = time.perf_counter()
        _timed(steps, "cohorts in memory", lambda: retention_cohorts(purchases, "month", last))
        _timed(steps, "rfm in memory", lambda: rfm_summary(purchases, last))
        inputs = KpiInputs(start=start, end=end, purchases=purchases, ledger=ledger, point_value=0.01, members=members)
        _timed(steps, "kpis in memory", lambda: kpis_from_inputs(inputs))
        tiers = members.select("member_id", dimension_value="tier")
        split = KpiInputs(start=start, end=end, purchases=purchases, ledger=None, point_value=0.01, members=members, groups=tiers, dimension="tier")
        _timed(steps, "kpis by tier in memory", lambda: kpis_from_inputs(split, ["active_members", "retention_rate", "revenue_per_member"]))
        in_memory_seconds = time.perf_counter() - in_memory
        _timed(steps, "analyze kpis", lambda: kpi_summary(session, start, end))
        _timed(steps, "analyze retention", lambda: retention_analysis(session, "month"))
        _timed(steps, "analyze rfm", lambda: rfm_analysis(session))
        _timed(steps, "analyze clv", lambda: clv_analysis(session, last, "week"))
    return {"steps": steps, "in_memory_seconds": round(in_memory_seconds, 3), "peak_mb": round(_peak_mb(), 1)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loyalty.devtools.analytics_bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    clv = sub.add_parser("clv", help="CLV fit and predictions on simulated members")
    clv.add_argument("--members", type=int, default=1_000_000)
    clv.add_argument("--seed", type=int, default=1)
    analyze = sub.add_parser("analyze", help="reads, in-memory steps and analyze use cases on a database")
    analyze.add_argument("--from", dest="start", type=date.fromisoformat, required=True)
    analyze.add_argument("--to", dest="end", type=date.fromisoformat, required=True)
    analyze.add_argument("--database-url")
    args = parser.parse_args(argv)
    result = time_clv(args.members, seed=args.seed) if args.what == "clv" else time_analyze(args.start, args.end, url=args.database_url)
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
