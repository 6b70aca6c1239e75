"""The liability forecast on a database: the back-test on a generated program, the job that
stores the forecast and reads it back, and the executive report that shows it."""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd
import pytest
from sqlalchemy import func
from sqlmodel import select

from db.models import LiabilityForecast
from loyalty.access.roles import Actor
from loyalty.decisions.forecast import backtest_forecast, latest_forecast, store_forecast
from loyalty.demo.simulation import create_demo
from loyalty.errors import InvalidInput
from loyalty.evaluation.jobs import run_job
from loyalty.evaluation.reports import liability_rows, report_content
from tests.factories import make_member, make_purchase, utc

MANAGER = Actor("max", "manager")


def _fresh(session):
    session.expire_all()
    session.rollback()
    return session


@pytest.mark.calendar
def test_the_back_test_fits_twelve_months_and_misses_the_next_six_by_a_sane_margin(session):
    create_demo(session, members=400, months=20, seed=11, actor=MANAGER)
    result = backtest_forecast(session, paths=100)
    errors = result["errors"].set_index("measure")
    assert list(errors.index) == ["outstanding", "earned", "redeemed", "expired", "breakage"]
    assert result["model"] == "bgnbd"
    months = result["months"]
    assert len(months) == 5 * 6 and months["actual"].notna().all()
    first = months["month"].min()
    assert first == result["cutoff"].date() and first.day == 1
    # The error numbers are what the rows say they are.
    outstanding = months[months["measure"] == "outstanding"]
    assert errors.loc["outstanding", "mae"] == pytest.approx((outstanding["forecast"] - outstanding["actual"]).abs().mean())
    # Sane, not exact: liability within 25 % a month on average, earnings within 50 %.
    assert errors.loc["outstanding", "mape"] < 0.25
    assert errors.loc["earned", "mape"] < 0.5
    assert 0 <= errors.loc["breakage", "mae"] < 0.3
    assert ((months["low"] <= months["forecast"]) & (months["forecast"] <= months["high"])).all()


@pytest.mark.calendar
def test_a_back_test_needs_eighteen_months_of_history(session):
    create_demo(session, members=60, months=12, seed=2, actor=MANAGER)
    with pytest.raises(InvalidInput, match="needs data to"):
        backtest_forecast(session)


def _a_year_later(day: date) -> date:
    """The same day a year later; 29 February becomes 28 February, as calendar months are clipped."""
    return (pd.Timestamp(day) + pd.DateOffset(years=1)).date()


def _one_purchase(session, day: date) -> date:
    """One member bought for 100 EUR (100 points) on ``day``, and nothing else happens.

    Too few members for BG/NBD: the forecast uses the recent-rate model.
    """
    make_purchase(session, make_member(session), 100.0, occurred_at=utc(day.year, day.month, day.day, 12))
    return day


@pytest.fixture
def one_lot(session, today):
    """The purchase 200 days before the as-of day (yesterday): no earning day in the last six months."""
    return _one_purchase(session, today - timedelta(days=201))


@pytest.mark.calendar
def test_the_job_stores_the_forecast_and_a_second_run_replaces_it(session, one_lot, today):
    as_of = today - timedelta(days=1)
    result = run_job("liability-forecast", as_of=as_of, actor=MANAGER)
    assert result["status"] == "succeeded", result["error"]
    assert result["outstanding_now"] == 100 and result["model"] == "recent-rate"
    stored = _fresh(session).exec(select(func.count()).select_from(LiabilityForecast)).one()
    assert stored == result["rows"]
    again = run_job("liability-forecast", as_of=as_of, actor=MANAGER)
    assert _fresh(session).exec(select(func.count()).select_from(LiabilityForecast)).one() == again["rows"] == stored

    forecast = latest_forecast(_fresh(session))
    assert forecast["as_of"] == as_of and forecast["outstanding_now"] == 100
    frame = forecast["frame"]
    future = frame[frame["kind"] == "forecast"].reset_index(drop=True)
    assert len(future) == 12 and len(frame[frame["kind"] == "actual"]) == 12
    # The lot expires 12 months after it was earned, in forecast month 6 or 7, and nothing else happens to it.
    expiry = _a_year_later(one_lot)
    month = future.index[(future["month"] <= expiry)].max()
    assert month in (5, 6)
    assert future.loc[month, "expired"] == pytest.approx(100)
    assert future["expired"].sum() == pytest.approx(100)
    assert future.loc[: month - 1, "outstanding"].tolist() == pytest.approx([100] * month)
    assert future.loc[month, "outstanding_money"] == pytest.approx(0)
    assert forecast["horizon_end"]["money"] == pytest.approx(0) and forecast["breakage"] == pytest.approx(1.0)
    assert future.loc[0, "outstanding_money"] == pytest.approx(100 * 0.01), "money = points x the point value"


@pytest.mark.calendar
def test_store_forecast_computes_when_not_given_and_latest_reads_the_newest(session, one_lot, today):
    older, newer = today - timedelta(days=10), today - timedelta(days=2)
    assert store_forecast(session, older) > 0
    assert store_forecast(session, newer) > 0
    assert latest_forecast(_fresh(session))["as_of"] == newer
    assert latest_forecast(session, on_or_before=newer - timedelta(days=1))["as_of"] == older


def test_without_any_forecast_latest_says_none(session):
    assert latest_forecast(session) is None


@pytest.mark.calendar
def test_the_executive_report_shows_the_stored_liability_forecast(session, today):
    last_month_end = today.replace(day=1) - timedelta(days=1)
    # 90 days before the month's end: inside its last six months on any date (200 days
    # before today was not, on days 1 to 18 of a month).
    _one_purchase(session, last_month_end - timedelta(days=90))
    store_forecast(session, last_month_end)
    content = report_content(_fresh(session), f"{last_month_end:%Y-%m}")
    assert content.liability is not None and content.liability["as_of"] == last_month_end
    # As of last month's end the purchase is within the last six months: the member keeps
    # earning one purchase-day per six months (100 points each): 12 x 100 / 6 = 200 points
    # = 2 EUR in a year, while the old lot expires unused and nobody ever redeemed.
    sentence = next(s for s in content.summary if s.startswith("Points outstanding are forecast"))
    horizon_end = _a_year_later(last_month_end)
    assert sentence.startswith(f"Points outstanding are forecast at EUR 2 on {horizon_end:%-d %B %Y} (EUR 2 to EUR 2, 80% band)")
    assert sentence.endswith("with 100.0% of the points leaving the program expected to expire unused.")
    rows = liability_rows(content)
    assert rows["month"].iloc[-1] == f"{horizon_end:%-d %b %Y}"
    assert len(rows) == 4 and rows["outstanding"].iloc[-1] == "EUR 2" and rows["redeemed"].tolist() == ["0"] * 4
