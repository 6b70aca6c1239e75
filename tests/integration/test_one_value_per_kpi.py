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
    catalogue = compute_kpis(session, start, end, metrics=[*DEFAULT_METRICS, "predicted_clv"])
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
    from loyalty.insights.analysis import clv_view, feedback_view, purchase_cycle_view

    surfaces["Feedback page"] = {"nps": feedback_view(session, Filters(start, end), actor=MANAGER)["nps"]}
    cycle = purchase_cycle_view(session, Filters(start, end))
    surfaces["Purchase cycle page"] = {"repeat_purchase_rate": cycle["repeat_share"], "active_members": cycle["active_members"]}
    clv = clv_view(session, Filters(start, end))
    surfaces["Lifetime value page"] = {"historical_clv": clv["historical_clv"], "predicted_clv": clv["predicted_clv"]}

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


# --- history ----------------------------------------------------------------------------------------


def test_history_gives_every_complete_month_as_analyze_kpis_gives_it(session, evaluated_program, capsys):
    from loyalty.cli import main

    as_of, start, end = evaluated_program
    assert main(["analyze", "history", "--json"]) == 0
    out = capsys.readouterr()
    history = json.loads(out.out)
    assert "warning" not in out.err
    assert history["months"][-1] == f"{start:%Y-%m}" and len(history["months"]) == 12, "the demo's 12 months, the running one left out"
    assert history["period"] == {"from": f"{history['months'][0]}-01", "to": end.isoformat(), "complete": True}
    for i in (0, 5, len(history["months"]) - 1):
        month = date.fromisoformat(history["months"][i] + "-01")
        assert main(["analyze", "kpis", "--from", month.isoformat(), "--to", add_months(month, 1).isoformat(), "--json"]) == 0
        single = json.loads(capsys.readouterr().out)
        assert single["period"]["complete"] is True
        for metric, values in history["kpis"].items():
            assert _same(values[i], single["kpis"][metric]), (history["months"][i], metric, values[i], single["kpis"][metric])
    # The snapshot has the same history (filled by the first evaluation): the Overview's sparklines.
    stored = dict(
        session.exec(
            select(KpiSnapshot.period_start, KpiSnapshot.value).where(
                KpiSnapshot.metric == "retention_rate", KpiSnapshot.period == "month", KpiSnapshot.dimension == "overall"
            )
        ).all()
    )
    assert [f"{m:%Y-%m}" for m in sorted(stored)] == history["months"]
    assert all(_same(stored[date.fromisoformat(m + "-01")], v) for m, v in zip(history["months"], history["kpis"]["retention_rate"]))
    tiles = {t["metric"]: t for t in kpi_tiles(session)}
    assert len(tiles["retention_rate"]["trend"]) == 11 and tiles["retention_rate"]["delta_text"] is not None  # 12 months, the first has no retention


def test_a_running_period_is_marked_and_warned_about(session, evaluated_program, capsys):
    from loyalty.cli import main

    as_of, _, end = evaluated_program
    assert main(["analyze", "kpis", "--from", end.isoformat(), "--to", add_months(end, 1).isoformat(), "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["period"] == {"from": end.isoformat(), "to": add_months(end, 1).isoformat(), "complete": False}
    assert "warning: the period" in out.err and "so far" in out.err


def test_a_backfill_recomputes_past_months_and_applies_to_the_snapshot_only(session, db_url, evaluated_program, capsys):
    from db.engine import get_engine
    from loyalty.cli import main
    from loyalty.evaluation.jobs import run_job
    from tests.factories import make_member, make_purchase, utc

    as_of, start, _ = evaluated_program
    early = date.fromisoformat(json.loads((main(["analyze", "history", "--json"]), capsys.readouterr().out)[1])["months"][0] + "-01")

    def active(month: date) -> float:
        session.rollback()
        return session.exec(
            select(KpiSnapshot.value).where(
                KpiSnapshot.metric == "active_members",
                KpiSnapshot.period == "month",
                KpiSnapshot.period_start == month,
                KpiSnapshot.dimension == "overall",
            )
        ).one()

    before = active(early)
    make_purchase(session, make_member(session), 12.0, occurred_at=utc(early.year, early.month, 3, 10))  # late data for a stored month
    assert run_job("kpi-snapshot", as_of=as_of, actor=MANAGER, engine=get_engine(db_url))["history_periods"] == 0
    assert active(early) == before, "a stored month is kept unless asked"
    assert main(["evaluate", "--job", "kpi-snapshot", "--as-of", as_of.isoformat(), "--backfill", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["history_periods"] >= 11
    assert active(early) == before + 1
    assert main(["evaluate", "--job", "tier-evaluation", "--backfill"]) == 2
    assert "kpi-snapshot job only" in capsys.readouterr().err


# --- campaign results ------------------------------------------------------------------------------


def test_campaign_results_in_money_are_the_same_on_the_command_line_and_the_campaigns_page(session, evaluated_program, capsys):
    from loyalty.cli import main
    from loyalty.insights.campaign_results import uplift_summary, uplift_table

    assert main(["analyze", "uplift", "--json"]) == 0
    live = json.loads(capsys.readouterr().out)
    page = uplift_summary(session, stored=True)  # what the nightly evaluation stored, as the page reads it
    assert live["as_of"] == page["as_of"] and live["currency"] == "EUR" and live["campaigns"]
    by_id = {c["campaign_id"]: c for c in page["campaigns"]}
    for campaign in live["campaigns"]:
        stored = by_id[campaign["campaign_id"]]
        for key, value in campaign.items():
            assert value == stored[key] or (isinstance(value, float) and _same(value, stored[key])), (campaign["campaign"], key, value, stored[key])
        if campaign["cost"]:
            assert _same(campaign["roi"], (campaign["incremental_revenue"] * live["gross_margin"] - campaign["cost"]) / campaign["cost"])
        unclear = campaign["ci_low"] is None or campaign["ci_low"] <= 0 <= campaign["ci_high"]
        assert campaign["underpowered"] == unclear
    one = live["campaigns"][0]
    assert main(["analyze", "uplift", "--campaign", str(one["campaign_id"]), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["campaigns"] == [one]
    table = uplift_table(page)
    assert len(table) == len(page["campaigns"]) and table["verdict"].str.contains("underpowered|measured|cannot tell").all()
    assert main(["analyze", "uplift", "--campaign", "999999", "--json"]) == 4


def test_the_report_and_the_goals_page_count_the_same_targets_with_the_same_status(session, evaluated_program):
    from loyalty.program.goals import goal_status

    _, start, _ = evaluated_program
    page = goal_status(session)
    report = report_content(session, f"{start:%Y-%m}").targets
    assert len(page) >= 9 and len(report) == len(page), (len(report), len(page))

    def keyed(frame):
        return {(r["goal"], r["metric"], r["segment"] or "", r["period"]): r["status"] for r in frame.to_dict("records")}

    assert keyed(report) == keyed(page)


# --- every analysis on the command line ------------------------------------------------------------


def test_every_analysis_on_the_command_line_names_its_figures_with_the_catalogue_keys_and_values(session, evaluated_program, capsys):
    from loyalty.cli import main

    as_of, start, end = evaluated_program
    catalogue = compute_kpis(session, start, end)
    truth = {m: (None if math.isnan(v) else float(v)) for m, v in zip(catalogue["metric"], catalogue["value"])}

    def run(*argv: str) -> dict:
        assert main(["analyze", *argv, "--json"]) == 0, capsys.readouterr().err
        return json.loads(capsys.readouterr().out)

    period = ["--from", start.isoformat(), "--to", end.isoformat()]
    redemptions = run("redemptions", *period, "--by", "tier")
    assert redemptions["period"]["complete"] is True
    for key in REDEMPTION_FIGURES:
        assert _same(redemptions[key], truth[key]), key
    by_tier = compute_kpis(session, start, end, by="tier", metrics=list(REDEMPTION_FIGURES))
    for row in by_tier.itertuples(index=False):
        assert _same(redemptions["by"][row.dimension_value][row.metric], None if math.isnan(row.value) else row.value)
    assert redemptions["monthly"][0]["month"] == f"{start:%Y-%m}" and _same(redemptions["monthly"][0]["redemption_rate"], truth["redemption_rate"])

    nps = run("nps", *period, "--by", "channel")
    assert _same(nps["nps"], truth["nps"]) and nps["answers"] > 0 and set(nps["by"]) >= {"store", "web"}

    liability = run("liability", "--as-of", as_of.isoformat())
    summary = program_summary(session)
    assert liability["points_outstanding"] == summary.points_outstanding and _same(liability["points_liability"], summary.liability)

    forecast = run("forecast", "--as-of", as_of.isoformat())
    assert forecast["as_of"] == as_of.isoformat() and forecast["points_outstanding"] == liability["points_outstanding"]
    assert [m["kind"] for m in forecast["months"]].count("forecast") == 12

    cycle = run("cycle", *period)
    assert cycle["active_members"] == truth["active_members"] and cycle["median_gap_days"] is not None

    winback = run("winback", "--as-of", as_of.isoformat(), "--limit", "5")
    assert len(winback["members"]) <= 5 and all(m["member_id"].startswith("M") and "***" in m["email"] for m in winback["members"])

    clv = run("clv", "--calibration-end", (end - timedelta(days=1)).isoformat(), "--members")
    assert len(clv["per_member"]) == clv["members"] and all(0 <= m["probability_alive"] <= 1 for m in clv["per_member"])

    assert main(["report", "--period", f"{start:%Y-%m}", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    for metric, figures in report["key_numbers"].items():
        assert _same(figures["value"], truth[metric]), metric
    assert report["period"] == {"label": f"{start:%Y-%m}", "from": start.isoformat(), "to": end.isoformat(), "complete": True}


def test_filters_that_choose_nobody_give_the_figures_over_nobody_not_a_crash(session, evaluated_program):
    from loyalty.insights.analysis import clv_view, feedback_view, purchase_cycle_view

    _, start, end = evaluated_program
    nobody = Filters(start, end, tier="No such tier")
    view = redemptions_view(session, nobody)
    assert view["redemption_rate"] is None and view["outstanding"] == 0 and view["monthly"].empty
    cycle = purchase_cycle_view(session, nobody)
    assert cycle["active_members"] == 0 and cycle["repeat_share"] is None
    assert feedback_view(session, nobody, actor=MANAGER)["answers"].empty
    clv = clv_view(session, nobody)
    assert clv["members"] == 0 and clv["sample"].empty and math.isnan(clv["historical_clv"]) and math.isnan(clv["predicted_clv"])


def test_history_never_counts_a_month_that_has_not_started(session, evaluated_program, capsys):
    from loyalty.cli import main

    as_of, start, end = evaluated_program
    later = add_months(end, 3)
    assert main(["analyze", "history", "--from", start.isoformat(), "--to", later.isoformat(), "--json"]) == 0
    out = capsys.readouterr()
    history = json.loads(out.out)
    assert history["months"] == [f"{start:%Y-%m}", f"{end:%Y-%m}"], "the running month at most"
    assert history["period"]["complete"] is False and "so far" in out.err
