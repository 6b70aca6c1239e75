"""Analyse pages: each draws the right numbers (read from the Plotly JSON) and has an empty state."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from db.models import Feedback
from tests.factories import make_member, make_purchase, utc
from tests.pages.conftest import figure, open_page


def _day(today: date, days_ago: int):
    d = today - timedelta(days=days_ago)
    return utc(d.year, d.month, d.day, 12)


@pytest.fixture
def program(session, today):
    """Three members: two buy in their first month and again 1 month later, one never returns."""
    first = (today.replace(day=1) - timedelta(days=40)).replace(day=3)
    a, b, c = (make_member(session, acquisition_channel=ch) for ch in ("referral", "referral", "social_ads"))
    for m in (a, b, c):
        make_purchase(session, m, 50.0, occurred_at=utc(first.year, first.month, 3, 12))
    nxt = (first.replace(day=28) + timedelta(days=5)).replace(day=10)
    for m in (a, b):
        make_purchase(session, m, 30.0, occurred_at=utc(nxt.year, nxt.month, 10, 12))
    session.add_all(
        [
            Feedback(member_id=a.id, submitted_at=_day(today, 5), score=10, comment="Great"),
            Feedback(member_id=b.id, submitted_at=_day(today, 4), score=9, comment=""),
            Feedback(member_id=c.id, submitted_at=_day(today, 3), score=3, comment="Slow delivery"),
        ]
    )
    session.commit()
    return first


def _open(app, page, role="analyst"):
    return open_page(app, role, page)


def _last_days(at, page: str, today: date, days: int = 30):
    """Choose the last ``days`` days up to today in the page's date range, as a person would
    (the default range ends with the last complete month)."""
    at.date_input(key=f"{page}_range").set_value((today - timedelta(days=days), today)).run()
    return at


@pytest.mark.calendar
def test_retention_heatmap_shows_each_cohort_month_by_month(app, program):
    at = _open(app, "pages/retention.py")
    heat = figure(at, 0)["data"][0]
    # One cohort of 3: all bought in month 0, two of three in month +1.
    assert heat["z"][0][:2] == pytest.approx([100.0, 200 / 3])
    assert heat["y"][0].endswith("(3)")
    curves = {t["name"]: t["y"] for t in figure(at, 1)["data"]}
    assert curves["referral"][:2] == pytest.approx([100.0, 100.0]) and curves["social_ads"][:2] == pytest.approx([100.0, 0.0])
    assert not at.dataframe, "the members behind a cell are listed when asked: it reads every purchase of the range"
    at.button(key="retention_list").click().run()
    people = at.dataframe[0].value
    assert int(people["active at age"].sum()) == 2 and len(people) == 3  # headers in words


@pytest.mark.calendar
def test_feedback_page_computes_nps_from_the_answers(app, program, today):
    at = _last_days(_open(app, "pages/feedback.py"), "feedback", today)
    assert "so far" in " ".join(c.value for c in at.caption), "a range into the running month says so"
    metrics = {m.label: m.value for m in at.metric}
    # 2 promoters, 1 detractor of 3: 67 % - 33 % = +33.
    assert metrics["NPS"] == "+33"
    assert list(at.dataframe[0].value["comment"]) == ["Slow delivery", "Great"]


@pytest.mark.calendar
def test_purchase_cycle_gives_a_verdict(app, program):
    at = _open(app, "pages/purchase_cycle.py")
    assert "median" in at.info[0].value
    assert {m.label: m.value for m in at.metric}["Active members in range"] == "3"
    gaps, frequency = figure(at, 0)["data"][0], figure(at, 1)["data"][0]
    assert sum(gaps["y"]) == 2  # two members bought on two days: one gap each, counted per day
    assert sum(frequency["y"]) == 3  # one bar count per active member


@pytest.mark.calendar
def test_redemption_page_shows_points_flow(app, program):
    at = _open(app, "pages/redemptions_analysis.py")
    flow = figure(at, 0)
    earned = dict(zip(flow["data"][0]["x"], flow["data"][0]["y"]))
    assert sum(earned.values()) == 3 * 50 + 2 * 30


@pytest.mark.calendar
def test_clv_page_explains_when_too_few_members_bought_for_the_model(app, program):
    at = _open(app, "pages/clv.py")
    assert "cannot be fitted" in at.info[0].value and "at least 20" in at.info[0].value


@pytest.mark.calendar
def test_clv_page_fits_the_model_and_lists_members_at_risk(app, session, today):
    for i in range(40):
        member = make_member(session)
        for k in range(1 + i % 5):
            make_purchase(session, member, 20.0 + i, occurred_at=_day(today, 300 - 40 * k - i))
    at = _open(app, "pages/clv.py")
    assert {m.label: m.value for m in at.metric}["Members"] == "40"
    scatter = figure(at, 1)["data"][0]
    assert len(scatter["x"]) == 40 and min(scatter["marker"]["color"]) >= 0


@pytest.mark.parametrize(
    "page", ["pages/retention.py", "pages/feedback.py", "pages/purchase_cycle.py", "pages/redemptions_analysis.py", "pages/clv.py"]
)
def test_each_analysis_page_says_so_when_there_is_no_data(app, session, page):
    at = _open(app, page)
    assert at.info, "an empty program shows an explanation, not an empty chart"


@pytest.mark.calendar
def test_purchase_cycle_lists_the_members_behind_long_gaps(app, program):
    at = _open(app, "pages/purchase_cycle.py")
    at.slider(key="purchase_cycle_gap").set_value(7).run()
    at.button(key="purchase_cycle_list").click().run()
    slow = at.dataframe[0].value
    # Two members bought twice, about five weeks apart; the third bought once.
    assert len(slow) == 2 and (slow["median gap days"] >= 28).all()


@pytest.mark.calendar
def test_feedback_lists_the_detractors_behind_the_score(app, program, today):
    at = _last_days(_open(app, "pages/feedback.py"), "feedback", today)
    detractors = at.dataframe[1].value
    assert list(detractors["score"]) == [3]


@pytest.mark.calendar
@pytest.mark.parametrize(
    ("path", "page"), [("retention", "retention"), ("purchase_cycle", "purchase_cycle"), ("redemptions_analysis", "redemption_analysis")]
)
def test_an_analysis_page_opens_on_the_nightly_figures_and_recomputes_them_when_asked(app, session, program, path, page, today):
    import streamlit as st

    from loyalty.evaluation.jobs import run_job

    live = _open(app, f"pages/{path}.py")
    assert not any("nightly evaluation" in c.value for c in live.caption), "before the first evaluation the page computes"
    run_job("page-views", as_of=today - timedelta(days=1))
    st.cache_data.clear()  # the server's cache of the live figures lives ten minutes
    at = _open(app, f"pages/{path}.py")
    assert any("Figures of the nightly evaluation" in c.value for c in at.caption)
    assert [figure(at, 0)["data"][0]] == [figure(live, 0)["data"][0]], "the stored figures are the ones computed live"
    at.button(key=f"{page}_recompute").click().run()
    assert any("Computed now from today's data" in c.value for c in at.caption)
    assert figure(at, 0)["data"][0] == figure(live, 0)["data"][0]
