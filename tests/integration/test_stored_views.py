"""Stored views (issue 20): the nightly ``page-views`` job stores what each Analyse page shows for its
default filters; the page reads it back exactly as computed, and computes live for other filters."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from sqlmodel import select

from db.models import StoredView
from loyalty.access.roles import Actor
from loyalty.errors import InvalidInput
from loyalty.evaluation.jobs import run_job
from loyalty.evaluation.views import VIEWS, pack, page_view, unpack
from loyalty.insights.analysis import default_filters
from tests.factories import make_member, make_purchase, utc

MANAGER = Actor("max", "manager")


def _same(stored: dict, live: dict) -> None:
    assert set(stored) == set(live)
    for key, value in live.items():
        if isinstance(value, pd.DataFrame):
            pd.testing.assert_frame_equal(stored[key], value, check_index_type=False, obj=key)
        elif isinstance(value, pd.Series):
            pd.testing.assert_series_equal(stored[key], value, check_index_type=False, obj=key)
        elif isinstance(value, float) and math.isnan(value):
            assert math.isnan(stored[key]), key
        else:
            assert stored[key] == value, key


@pytest.fixture
def demo(session, now):
    from loyalty.demo.simulation import create_demo

    create_demo(session, members=300, months=12, seed=3, actor=MANAGER, now=now)
    return session


def test_every_page_reads_back_what_it_would_compute_and_other_filters_compute_live(demo, now, today):
    result = run_job("page-views", as_of=today - timedelta(days=1), actor=MANAGER)
    assert result["status"] == "succeeded", result["error"]
    assert set(result["views"]) == set(VIEWS)
    demo.rollback()
    demo.expire_all()
    for name, spec in VIEWS.items():
        filters = None if spec.default_months is None else default_filters(now, spec.default_months)
        stored = page_view(demo, name, filters)
        assert stored.pop("stored")["as_of"] == today - timedelta(days=1), name
        live = page_view(demo, name, filters, live=True)
        assert live.pop("stored") is None
        _same(stored, live)
        if spec.default_months is not None:
            other = page_view(demo, name, default_filters(now, spec.default_months + 1))
            assert other["stored"] is None, f"{name}: another date range is computed, not read"
    again = run_job("page-views", as_of=today - timedelta(days=1), actor=MANAGER)
    assert again["status"] == "succeeded"
    demo.rollback()
    assert len(demo.exec(select(StoredView)).all()) == len(VIEWS), "a second run replaces the rows"


def test_a_view_the_model_refuses_is_stored_as_the_refusal_the_page_shows(session, now, today):
    for _ in range(3):
        make_purchase(session, make_member(session), 40.0, occurred_at=utc(today.year, today.month, 1, 9) - timedelta(days=40))
    run_job("page-views", as_of=today - timedelta(days=1), actor=MANAGER)
    session.rollback()
    filters = default_filters(now, VIEWS["clv"].default_months)
    with pytest.raises(InvalidInput) as live:
        page_view(session, "clv", filters, live=True)
    with pytest.raises(InvalidInput) as stored:
        page_view(session, "clv", filters)
    assert str(stored.value) == str(live.value) and "at least 20" in str(stored.value)


def test_pack_keeps_labels_indexes_types_and_missing_values():
    matrix = pd.DataFrame([[1.0, math.nan], [0.5, 0.25]], index=pd.Index(["2026-01", "2026-02"], name="cohort"), columns=pd.Index([0, 1], name="age"))
    view = {
        "matrix": matrix,
        "sizes": pd.Series([10, 4], index=pd.Index(["2026-01", "2026-02"], name="cohort"), name="size"),
        "filtered": pd.DataFrame({"a": [1, 2, 3], "when": pd.to_datetime(["2026-01-01", "2026-01-02", "2026-01-03"], utc=True)}).iloc[[0, 2]],
        "empty": pd.DataFrame(),
        "rate": math.nan,
        "count": np.int64(7),
        "none": None,
        "day": date(2026, 3, 1),
        "moment": datetime(2026, 3, 1, 12, 0),
        "definitions": {"historical_clv": "Spend to date."},
    }
    back = unpack(pack(view))
    pd.testing.assert_frame_equal(back["matrix"], matrix)
    pd.testing.assert_series_equal(back["sizes"], view["sizes"])
    pd.testing.assert_frame_equal(back["filtered"], view["filtered"])
    assert back["empty"].empty
    assert math.isnan(back["rate"]) and back["count"] == 7 and isinstance(back["count"], int) and back["none"] is None
    assert back["day"] == date(2026, 3, 1) and back["moment"] == datetime(2026, 3, 1, 12, 0)
    assert back["definitions"] == {"historical_clv": "Spend to date."}


def test_the_stored_reach_of_tiers_and_rewards_is_read_until_a_threshold_changes(demo, today):
    from db.models import Tier

    run_job("page-views", as_of=today - timedelta(days=1), actor=MANAGER)
    demo.rollback()
    demo.expire_all()
    assert page_view(demo, "barrier")["stored"] is not None
    top = demo.exec(select(Tier).order_by(Tier.rank.desc())).first()
    top.min_spend = top.min_spend + 1000
    demo.add(top)
    demo.commit()
    after = page_view(demo, "barrier")
    assert after["stored"] is None, "a changed threshold: the reach is computed now"
    assert after["tiers"].set_index("tier").loc[top.name, "min_spend"] == top.min_spend
