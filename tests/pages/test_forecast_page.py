"""Redemptions and liability page: the liability forecast section draws the stored forecast."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from loyalty.decisions.forecast import store_forecast
from tests.factories import make_member, make_purchase, utc
from tests.pages.conftest import figure, open_page

PAGE = "pages/redemptions_analysis.py"


@pytest.fixture
def forecast(session, today):
    """One member earned 100 points 200 days ago and nothing since; the forecast is stored as of yesterday."""
    member = make_member(session)
    bought = today - timedelta(days=201)
    make_purchase(session, member, 100.0, occurred_at=utc(bought.year, bought.month, bought.day, 12))
    as_of = today - timedelta(days=1)
    store_forecast(session, as_of)
    return bought


def _traces(chart: dict) -> dict[str, dict]:
    return {trace.get("name"): trace for trace in chart["data"]}


@pytest.mark.calendar
def test_the_liability_chart_shows_history_then_the_forecast_in_money(app, forecast):
    at = open_page(app, "analyst", PAGE)
    traces = _traces(figure(at, 1))
    # 100 points at 0.01 EUR: 1 EUR held since the purchase's month, until the lot expires.
    assert traces["Actual"]["y"][-1] == pytest.approx(1.0)
    forecast_line = traces["Forecast"]["y"]
    assert forecast_line[0] == pytest.approx(1.0), "the forecast line starts at the last actual month"
    expiry_month = next(i for i, value in enumerate(forecast_line[1:]) if value == pytest.approx(0.0))
    assert expiry_month in (5, 6) and forecast_line[1:][expiry_month:] == pytest.approx([0.0] * (12 - expiry_month))
    assert traces["Band low"]["y"] == pytest.approx(forecast_line[1:]) and len(traces["Band low"]["y"]) == 12
    flows = _traces(figure(at, 2))
    assert sum(flows["Expected expiry"]["y"]) == pytest.approx(100) and sum(flows["Expected redemptions"]["y"]) == 0
    metrics = {m.label: m.value for m in at.metric}
    as_of = date.today() - timedelta(days=1)  # the clock is frozen (tests/clock)
    assert metrics["Expected breakage"] == "100.0%" and metrics[f"Liability on {as_of:%-d %b %Y}"] == "EUR 1"
    assert any(button.label == "Liability forecast (CSV)" for button in at.get("download_button"))


def test_the_back_test_explains_when_the_history_is_too_short(app, forecast):
    at = open_page(app, "analyst", PAGE)
    at.button(key="redemption_analysis_backtest").click().run()
    assert any("needs data to" in info.value for info in at.info)


def test_without_a_stored_forecast_the_page_names_the_job_that_makes_it(app, session):
    at = open_page(app, "analyst", PAGE)
    assert any("liability-forecast" in info.value for info in at.info)
    assert not at.get("plotly_chart")
