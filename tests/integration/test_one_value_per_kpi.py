"""One KPI, one value: the figures of one month read through every surface agree.

The catalogue (``compute_kpis``) is the definition; the command line (``analyze kpis``), the
nightly snapshot (what the Overview tiles and the Goals page read), the executive report,
the Redemptions page's view and the Overview's head-line balance must give the same numbers
for the same month. ``LOYALTY_KPI_SURFACES=path`` writes the table of values (closing notes).
"""

from __future__ import annotations

import json
import math
import os
from datetime import date, timedelta

import pytest
from sqlmodel import select

from db.models import KpiSnapshot
from loyalty.access.roles import Actor
from loyalty.analytics.metrics import DEFAULT_METRICS, compute_kpis
from loyalty.evaluation.jobs import run_all
from loyalty.evaluation.reports import HEADLINE_METRICS, report_content
from loyalty.insights.analysis import REDEMPTION_FIGURES, Filters, redemptions_view
from loyalty.insights.overview import program_summary
from loyalty.periods import add_months
from loyalty.program.goals import kpi_tiles

MANAGER = Actor("max", "manager")


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None or (isinstance(a, float) and math.isnan(a)) or (isinstance(b, float) and math.isnan(b)):
        return (a is None or a != a) and (b is None or b != b)
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


@pytest.fixture
def evaluated_program(session, db_url, now):
    from db.engine import get_engine
    from loyalty.demo.simulation import create_demo

    create_demo(session, members=300, months=12, seed=3, actor=MANAGER, now=now)
    as_of = now.date() - timedelta(days=1)
    run_all(as_of=as_of, actor=MANAGER, engine=get_engine(db_url))
    session.rollback()  # see what the jobs committed on their own connections
    month_start = add_months(as_of.replace(day=1), -1)  # the last complete month the snapshot stores
    return as_of, month_start, add_months(month_start, 1)


def test_each_kpi_of_a_month_has_one_value_on_every_surface(session, evaluated_program, capsys):
    from loyalty.cli import main

    as_of, start, end = evaluated_program
    catalogue = compute_kpis(session, start, end)
    truth = {m: (None if math.isnan(v) else float(v)) for m, v in zip(catalogue["metric"], catalogue["value"])}
    surfaces: dict[str, dict[str, float | None]] = {}

    assert main(["analyze", "kpis", "--from", start.isoformat(), "--to", end.isoformat(), "--json"]) == 0
    surfaces["analyze kpis"] = json.loads(capsys.readouterr().out)["kpis"]

    stored = session.exec(
        select(KpiSnapshot.metric, KpiSnapshot.value).where(
            KpiSnapshot.period == "month", KpiSnapshot.period_start == start, KpiSnapshot.dimension == "overall"
        )
    ).all()
    surfaces["KPI snapshot"] = dict(stored)

    tiles = kpi_tiles(session)
    assert {t["period_start"] for t in tiles} == {start}
    surfaces["Overview tiles"] = {t["metric"]: t["value"] for t in tiles}

    report = report_content(session, f"{start:%Y-%m}")
    surfaces["executive report"] = dict(zip(report.key_numbers["metric"], report.key_numbers["value"]))

    view = redemptions_view(session, Filters(start, end))
    surfaces["Redemptions page"] = {
        "redemption_rate": view["redemption_rate"],
        "breakage_estimate": view["breakage"],
        "points_outstanding": view["outstanding"],
        "points_liability": view["liability"],
    }
    assert set(surfaces["Redemptions page"]) == set(REDEMPTION_FIGURES)

    disagreements = []
    for surface, values in surfaces.items():
        for metric, value in values.items():
            if metric in truth and not _same(value, truth[metric]):
                disagreements.append(f"{metric}: catalogue {truth[metric]!r}, {surface} {value!r}")
    assert not disagreements, "\n".join(disagreements)
    # Every surface shows what it is meant to show (a surface that lost its figures would agree trivially).
    assert set(DEFAULT_METRICS) <= set(surfaces["KPI snapshot"]) and set(HEADLINE_METRICS) <= set(surfaces["executive report"])
    assert {"retention_rate", "redemption_rate", "points_outstanding"} <= set(surfaces["Overview tiles"])
    assert truth["redemption_rate"] is not None and truth["points_outstanding"] > 0

    if target := os.environ.get("LOYALTY_KPI_SURFACES"):
        names = [m for m in truth if any(m in v for v in surfaces.values())]
        lines = [f"| KPI ({start:%B %Y}) | catalogue | " + " | ".join(surfaces) + " |", "|---" * (len(surfaces) + 2) + "|"]
        for m in names:
            cells = ["" if m not in v else ("n/a" if v[m] is None else f"{v[m]:.6g}") for v in surfaces.values()]
            lines.append(f"| {m} | {'n/a' if truth[m] is None else format(truth[m], '.6g')} | " + " | ".join(cells) + " |")
        with open(target, "w") as out:
            out.write("\n".join(lines) + "\n")


def test_the_overview_balance_is_the_catalogue_balance_at_the_end_of_its_day(session, evaluated_program):
    as_of, _, _ = evaluated_program
    summary = program_summary(session)
    assert summary.as_of == as_of
    day_end = as_of + timedelta(days=1)
    at_end = compute_kpis(
        session,
        date(day_end.year, day_end.month, 1) if day_end.day > 1 else add_months(day_end, -1),
        day_end,
        metrics=["points_outstanding", "points_liability"],
    )
    values = dict(zip(at_end["metric"], at_end["value"]))
    assert summary.points_outstanding == values["points_outstanding"]
    assert _same(summary.liability, values["points_liability"])
