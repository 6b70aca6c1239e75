"""Jobs and Reports pages."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from db.models import JobRun, KpiSnapshot
from loyalty.access.roles import SYSTEM_CLI
from loyalty.evaluation.jobs import run_job
from tests.factories import make_member, make_purchase, utc
from tests.pages.conftest import open_page


def _bought_forty_days_ago(session, today) -> None:
    day = today - timedelta(days=40)
    make_purchase(session, make_member(session), 25.0, occurred_at=utc(day.year, day.month, day.day, 12))


@pytest.mark.calendar
def test_the_jobs_page_lists_schedules_and_runs_a_job_now(app, session, today):
    _bought_forty_days_ago(session, today)
    at = open_page(app, "manager", "pages/jobs.py")
    assert "No worker holds the lease" in at.warning[0].value
    schedules = at.dataframe[0].value
    assert {"KPI snapshot", "Points expiry"} <= set(schedules["title"]) or len(schedules) >= 6
    at.selectbox(key="jobs_choice").set_value("kpi-snapshot").run()
    at.button(key="jobs_run_now").click().run()
    assert "succeeded" in at.success[-1].value, [e.value for e in at.error]
    session.rollback()
    assert session.exec(select(JobRun.status)).all() == ["succeeded"]
    assert session.exec(select(KpiSnapshot)).first() is not None


def test_an_invalid_cron_expression_is_explained(app, session):
    at = open_page(app, "admin", "pages/jobs.py")
    at.text_input(key=f"jobs_cron_{at.selectbox(key='jobs_choice').value}").input("every day at noon")
    at.button(key="jobs_save_schedule").click().run()
    assert at.error, "the page explains what is wrong with the schedule"


@pytest.mark.calendar
def test_the_reports_page_shows_a_generated_report(app, session, today):
    _bought_forty_days_ago(session, today)
    result = run_job("executive-report", actor=SYSTEM_CLI)
    assert result["status"] == "succeeded", result
    at = open_page(app, "executive", "pages/reports.py")
    assert not at.info
    assert len(at.dataframe[0].value) >= 1
    assert at.get("download_button")


def test_the_reports_page_says_when_there_is_none_yet(app, session):
    at = open_page(app, "executive", "pages/reports.py")
    assert "No report yet" in at.info[0].value
