"""Executive reports: content in plain words, self-contained HTML, a PDF whose KPI table
can be read back, storage that replaces, and e-mail to a local SMTP server.

The PDF tests render the charts for real (matplotlib, no browser: one runs with Chromium
hidden); the job tests replace the chart images with a tiny PNG.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from PIL import Image
from pypdf import PdfReader
from sqlalchemy import func
from sqlmodel import select

from db.models import Report
from loyalty.access.roles import Actor
from loyalty.errors import InvalidInput
from loyalty.evaluation.jobs import run_job
from loyalty.evaluation.reports import (
    last_complete_period,
    list_reports,
    parse_period,
    render_html,
    render_pdf,
    render_report,
    report_content,
    report_figures,
)
from loyalty.program.campaigns import activate_campaign, save_campaign
from loyalty.program.goals import save_goal, save_kpi_target
from tests.factories import make_member, make_purchase, make_tier, utc
from tests.smtp_sink import SmtpSink, running_smtp_sink

MANAGER = Actor("max", "manager")
PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def program(session):
    """10 members buying monthly June-September; in October only the first 5 come back.

    A double-points campaign in October with a 20 % holdout, a Silver tier reached on 20
    October, and a goal whose retention and active-member targets October misses.
    """
    make_tier(session, name="Silver", rank=1, min_spend=30, min_purchases=3, window_months=12, grace_months=0)
    members = [make_member(session) for _ in range(10)]
    campaign = save_campaign(
        session=session,
        actor=MANAGER,
        name="Double points October",
        kind="multiplier",
        starts_at=utc(2026, 10, 1),
        ends_at=utc(2026, 11, 1),
        rule={"multiplier": 2.0},
        holdout_pct=0.2,
    )
    activate_campaign(session=session, campaign_id=campaign.id, actor=MANAGER, now=utc(2026, 9, 30))
    for month in (6, 7, 8, 9):
        for m in members:
            make_purchase(session, m, 10.0, occurred_at=utc(2026, month, 10))
    for m in members[:5]:
        make_purchase(session, m, 10.0, occurred_at=utc(2026, 10, 10))
    goal = save_goal(
        session=session, actor=MANAGER, name="Keep them", objective="retain", owner="Rita", starts_on=date(2026, 1, 1), ends_on=date(2026, 12, 31)
    )
    save_kpi_target(session=session, actor=MANAGER, goal_id=goal.id, metric="retention_rate", target_value=0.6)
    save_kpi_target(session=session, actor=MANAGER, goal_id=goal.id, metric="active_members", target_value=10)
    save_kpi_target(session=session, actor=MANAGER, goal_id=goal.id, metric="average_transaction_value", target_value=8)
    assert run_job("tier-evaluation", as_of=date(2026, 10, 20), actor=MANAGER)["upgrades"] == 10
    assert run_job("retention-alert", as_of=date(2026, 11, 2), actor=MANAGER)["rows"] >= 1
    return members


@pytest.fixture
def tiny_charts(monkeypatch):
    """A 1x1 PNG per chart instead of drawing them (the chart content is tested elsewhere)."""
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1), "white").save(buffer, format="PNG")
    png = buffer.getvalue()
    monkeypatch.setattr("loyalty.evaluation.reports.figure_images", lambda figures, **_: [png] * len(figures))


def test_the_content_says_what_happened_in_plain_words(session, program):
    content = report_content(session, "2026-10")
    assert content.title == "Executive report: October 2026"
    targets = content.targets.set_index("metric")
    assert (targets.loc["retention_rate", "value_text"], targets.loc["retention_rate", "status"]) == ("50.0%", "off track")
    assert (targets.loc["active_members", "value_text"], targets.loc["active_members", "status"]) == ("5", "off track")
    assert targets.loc["average_transaction_value", "status"] == "on track"
    assert content.summary[0] == ("In October 2026, 5 members bought at least once (-50.0% against September 2026); each spent EUR 10.00 on average.")
    assert content.summary[1] == "Retention of existing members was 50.0% (target 60.0%), -50.0 pts against September 2026."
    assert content.summary[2] == ("1 of 3 KPI targets are on track; off track: Retention rate (50.0% against 60.0%), Active members (5 against 10).")
    assert "10 members moved up a tier and 0 moved down." in content.summary
    assert list(content.campaigns["campaign"]) == ["Double points October"]
    assert list(content.tier_moves[["from_tier", "to_tier", "members"]].itertuples(index=False, name=None)) == [("(none)", "Silver", 10)]
    assert set(content.alerts["kind"]) >= {"retention_below_target", "retention_below_trend"}
    trend = content.trend.set_index("month")
    assert trend.loc[date(2026, 10, 1), "active_members"] == 5
    assert trend.loc[date(2026, 10, 1), "retention_rate"] == pytest.approx(0.5)
    assert trend.loc[date(2026, 9, 1), "retention_rate"] == pytest.approx(1.0)


def test_the_html_report_is_self_contained_with_plotly_js_embedded_once(session, program):
    content = report_content(session, "2026-10")
    figures = report_figures(content)
    assert list(figures) == ["trend", "retention", "campaigns", "tiers"]
    page = render_html(content, figures).decode("utf-8")
    # Counts and booleans only: a failing assert on the 5 MB page would print all of it.
    assert page.count("window.PlotlyConfig") == 1
    assert page.count("* plotly.js v") == 1, "the library itself, once"
    assert page.count("Plotly.newPlot(") == len(figures)
    external_scripts = page.count("<script src=") + page.count('<script type="text/javascript" src=')
    assert external_scripts == 0, "nothing loaded from a CDN"
    assert all(text in page for text in ("KPIs against targets", "off track", "Double points October"))


def _html_chart_titles(page: str) -> list[str]:
    """The title of each plotly chart of an HTML report, in page order (from its ``Plotly.newPlot`` call)."""
    decoder, titles = json.JSONDecoder(), []
    for call in page.split("Plotly.newPlot(")[1:]:
        _, end = decoder.raw_decode(call.lstrip())  # the div id
        rest = call.lstrip()[end:].lstrip(" ,\n")
        _, end = decoder.raw_decode(rest)  # the traces
        layout, _ = decoder.raw_decode(rest[end:].lstrip(" ,\n"))
        titles.append(layout["title"]["text"])
    return titles


def _pdf_image_titles(reader: PdfReader) -> list[str]:
    """The alternative text of each image of a PDF, in document order (its structure tree)."""
    titles: list[str] = []

    def walk(node: object) -> None:
        node = node.get_object() if hasattr(node, "get_object") else node
        if isinstance(node, list):
            for kid in node:
                walk(kid)
        elif isinstance(node, dict):
            if node.get("/S") == "/Figure" and "/Alt" in node:
                titles.append(str(node["/Alt"]))
            if "/K" in node:
                walk(node["/K"])

    walk(reader.trailer["/Root"]["/StructTreeRoot"])
    return titles


def test_the_pdf_shows_the_same_charts_as_the_html_report(session, program):
    content = report_content(session, "2026-10")
    figures = report_figures(content)
    html_titles = _html_chart_titles(render_html(content, figures).decode("utf-8"))
    reader = PdfReader(io.BytesIO(render_pdf(content, figures)))
    assert html_titles == [figure.layout.title.text for figure in figures.values()]
    assert (
        _pdf_image_titles(reader)
        == html_titles
        == [
            "Revenue and active members by month",
            "Retention of existing members",
            "Campaign uplift in spend per member (95 % interval)",
            "Tier movements",
        ]
    )
    sizes = [image.image.size for page in reader.pages for image in page.images]
    assert len(sizes) == 4
    assert all(width == 2000 for width, _ in sizes), "1000 px wide at scale 2"
    assert sizes[-1][1] == 2 * 215, "the tier chart's own height (170 + 45 px per move), as in the HTML report"


def test_the_pdf_report_shows_the_kpi_table_and_its_charts(session, program, tmp_path):
    pdf = render_report(session, "2026-10", "pdf")  # real charts, drawn by matplotlib
    (tmp_path / "report.pdf").write_bytes(pdf)
    reader = PdfReader(io.BytesIO(pdf))
    text = "\n".join(page.extract_text() for page in reader.pages)
    assert "Executive report: October 2026" in text
    assert "KPIs against targets" in text
    for cell in ("Keep them", "Retention rate", "50.0%", "60.0%", "off track", "Active members", "on track"):
        assert cell in text, cell
    assert "Campaign results" in text and "Double points" in text  # the name wraps in its table cell
    images = sum(len(page.images) for page in reader.pages)
    assert images == 4, "trend, retention, campaign and tier charts"
    assert max(img.image.size[0] for page in reader.pages for img in page.images) >= 1000


# The CLI under a frozen clock (time-machine works in-process only), so "yesterday" is a fixed day.
_CLI_AT = """
import runpy, sys, time_machine
with time_machine.travel(sys.argv[1], tick=True):
    sys.argv = ["loyalty", *sys.argv[2:]]
    runpy.run_module("loyalty", run_name="__main__", alter_sys=True)
"""
_NO_BROWSER_MODULE = "raise ImportError('the product must not need a browser (this test hides kaleido and Chromium)')\n"
_NO_BROWSER_SECONDS = 120


def test_the_report_job_finishes_on_a_machine_without_chromium(session, program, tmp_path):
    # No Chromium anywhere it could be looked up: an empty PATH, a BROWSER_PATH to nothing, and
    # kaleido and its browser driver unimportable, as on a laptop that never installed them.
    hidden = tmp_path / "no-browser"
    for module in ("kaleido", "choreographer"):
        (hidden / module).mkdir(parents=True)
        (hidden / module / "__init__.py").write_text(_NO_BROWSER_MODULE)
    empty_path = tmp_path / "empty-path"
    empty_path.mkdir()
    env = {
        **os.environ,
        "PATH": str(empty_path),
        "BROWSER_PATH": str(tmp_path / "no-such-chromium"),
        "PYTHONPATH": os.pathsep.join([str(hidden), str(PROJECT_ROOT)]),
        "LOYALTY_SMTP_HOST": "",
    }
    started = time.monotonic()
    finished = subprocess.run(
        [sys.executable, "-c", _CLI_AT, "2026-11-02T06:00:00+00:00", "evaluate", "--job", "executive-report", "--json"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=_NO_BROWSER_SECONDS,
        check=False,
    )
    seconds = time.monotonic() - started
    assert finished.returncode == 0, finished.stderr[-2000:]
    result = json.loads(finished.stdout)
    assert (result["status"], result["period"], result["rows"]) == ("succeeded", "2026-10", 2)
    assert seconds < _NO_BROWSER_SECONDS
    session.expire_all()
    stored = session.exec(select(Report).where(Report.period == "2026-10", Report.format == "pdf")).one()
    assert sum(len(page.images) for page in PdfReader(io.BytesIO(stored.content)).pages) == 4


@pytest.fixture
def smtp_server(monkeypatch) -> Iterator[SmtpSink]:
    with running_smtp_sink(monkeypatch) as server:
        monkeypatch.setenv("LOYALTY_SMTP_TO", "ceo@example.com, cfo@example.com")
        yield server


def test_the_report_job_stores_html_and_pdf_once_per_period_and_mails_the_pdf(session, program, tiny_charts, smtp_server):
    result = run_job("executive-report", as_of=date(2026, 11, 5), actor=MANAGER)
    assert (result["status"], result["period"], result["rows"]) == ("succeeded", "2026-10", 2), result["error"]
    assert result["emailed_to"] == ["ceo@example.com", "cfo@example.com"]

    (message_bytes,) = smtp_server.messages
    assert sorted(smtp_server.recipients) == ["ceo@example.com", "cfo@example.com"]
    message = message_from_bytes(message_bytes, policy=policy.default)
    assert message["Subject"] == "Executive report: October 2026"
    (attachment,) = list(message.iter_attachments())
    assert attachment.get_filename() == "loyalty-report-2026-10.pdf"
    assert attachment.get_content().startswith(b"%PDF")
    assert "Retention of existing members was 50.0%" in message.get_body(("plain",)).get_content()

    run_job("executive-report", as_of=date(2026, 11, 6), actor=MANAGER)
    reports = list_reports(session)
    assert sorted(zip(reports["period"], reports["format"])) == [("2026-10", "html"), ("2026-10", "pdf")]
    assert session.exec(select(func.count()).select_from(Report)).one() == 2
    assert reports.set_index("format").loc["pdf", "size_bytes"] > 1000


def test_a_failed_delivery_fails_the_run_but_keeps_the_stored_report(session, program, tiny_charts, monkeypatch):
    monkeypatch.setenv("LOYALTY_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("LOYALTY_SMTP_PORT", "1")  # nothing listens there
    monkeypatch.setenv("LOYALTY_SMTP_TO", "ceo@example.com")
    result = run_job("executive-report", as_of=date(2026, 11, 5), actor=MANAGER)
    assert result["status"] == "failed" and "Connection" in result["error"]
    assert session.exec(select(func.count()).select_from(Report)).one() == 2


def test_a_weekly_report_covers_an_iso_week(session, program, tiny_charts):
    content = report_content(session, "2026-W41")
    assert content.title == "Executive report: week 41 of 2026 (5 Oct to 11 Oct 2026)"
    assert content.targets.empty, "targets are monthly or quarterly"
    assert content.key_numbers.set_index("metric").loc["active_members", "value"] == 5
    assert render_report(session, "2026-W41", "pdf").startswith(b"%PDF")


@pytest.mark.parametrize(
    "period,start,end,previous",
    [
        ("2026-10", date(2026, 10, 1), date(2026, 11, 1), date(2026, 9, 1)),
        ("2026-01", date(2026, 1, 1), date(2026, 2, 1), date(2025, 12, 1)),
        ("2026-W01", date(2025, 12, 29), date(2026, 1, 5), date(2025, 12, 22)),
    ],
    ids=["october", "january-follows-december", "iso-week-1-starts-in-december"],
)
def test_report_periods_are_months_or_iso_weeks(period, start, end, previous):
    parsed = parse_period(period)
    assert (parsed.start, parsed.end, parsed.previous_start) == (start, end, previous)


@pytest.mark.parametrize("period", ["2026-13", "October", "2026-W60", ""], ids=["month-13", "words", "week-60", "empty"])
def test_a_bad_period_is_refused_in_plain_words(period):
    with pytest.raises(InvalidInput):
        parse_period(period)


def test_the_scheduled_report_covers_the_last_complete_period():
    assert last_complete_period(date(2026, 11, 30)) == "2026-11"
    assert last_complete_period(date(2026, 11, 29)) == "2026-10"
    assert last_complete_period(date(2026, 11, 22), "weekly") == "2026-W47"  # Sunday ends the week
    assert last_complete_period(date(2026, 11, 23), "weekly") == "2026-W47"
