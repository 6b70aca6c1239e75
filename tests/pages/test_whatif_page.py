"""What-if page: run a scenario, read its numbers and charts, save it, compare, draft."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from db.models import Scenario
from loyalty.access.roles import SYSTEM_CLI, Actor
from loyalty.decisions.whatif import save_scenario, window_of
from loyalty.program.tiers import save_tiers
from tests.factories import make_member, make_purchase, make_reward, utc
from tests.pages.conftest import figure, open_page

BASE = {"window_months": 12, "benefits": "", "grace_months": 0}


@pytest.fixture
def program(session):
    """One member who spent 200, 50 and 100 in three months of the default window (the last 12 complete months)."""
    save_tiers(
        session=session,
        tiers=[
            {**BASE, "name": "Bronze", "min_spend": 0, "min_purchases": 0, "multiplier": 1.0},
            {**BASE, "name": "Silver", "min_spend": 240, "min_purchases": 2, "multiplier": 1.5},
        ],
        actor=SYSTEM_CLI,
    )
    make_reward(session, name="Coffee", points_cost=100)
    start, _ = window_of()
    member = make_member(session, joined_at=utc(2020, 1, 1))
    first = utc(start.year, start.month, start.day) + timedelta(days=40)
    make_purchase(session, member, 200.0, occurred_at=first)
    make_purchase(session, member, 50.0, occurred_at=first + timedelta(days=31))
    make_purchase(session, member, 100.0, occurred_at=first + timedelta(days=62))
    return session


def metric(at, label: str):
    return next(m for m in at.metric if m.label == label)


@pytest.mark.calendar
def test_an_analyst_runs_a_scenario_sees_the_numbers_and_saves_it(app, program, session):
    at = open_page(app, "analyst", "pages/whatif.py")
    assert not at.metric, "nothing is shown before a run"
    at.number_input(key="whatif_rate").set_value(2.0)
    next(b for b in at.button if b.label == "Run").click().run()
    assert not at.exception, at.exception
    # Current: 200 and 50 at Bronze; Silver from the third month (250 spent, 2 purchases): 100 x 1.5 = 150; 400 in all.
    # Scenario at 2 points per unit: 400 + 100 + 300 = 800.
    issued = metric(at, "Points issued")
    assert (issued.value, issued.delta) == ("800", "+400 (+100.0%)")
    assert metric(at, "Can reach the first reward").value == "100.0%"
    tiers = figure(at, 0)
    assert [bar["y"] for bar in tiers["data"]] == [[0, 1], [0, 1]]
    flows = figure(at, 1)
    assert dict(zip(flows["data"][1]["x"], flows["data"][1]["y"]))["Issued"] == 800

    at.text_input(key="whatif_name").input("Double points")
    next(b for b in at.button if b.label == "Save scenario").click().run()
    assert "Double points" in at.success[0].value
    session.rollback()
    saved = session.exec(select(Scenario)).one()
    assert (saved.name, saved.created_by, saved.changes) == ("Double points", "test-analyst", {"points_per_currency_unit": 2.0})
    assert saved.result["scenario"]["points_issued"] == 800
    draft = next(b for b in at.button if b.label == "Create drafts from this scenario")
    assert draft.disabled and "manager" in draft.help


@pytest.mark.calendar
def test_saved_scenarios_are_compared_side_by_side(app, program, session):
    for name, rate in (("Double", 2), ("Half", 0.5)):
        save_scenario(session=session, actor=Actor("ana", "analyst"), name=name, changes={"points_per_currency_unit": rate})
    at = open_page(app, "manager", "pages/whatif.py")
    table = at.dataframe[-1].value
    row = table[table["Measure"] == "Points issued"].iloc[0]
    assert (row["Current rules"], row["Half"], row["Double"]) == ("400", "200", "800")
    chart = figure(at, 0)
    changes = {bar["name"]: dict(zip(bar["y"], bar["x"])) for bar in chart["data"]}
    assert changes["Double"]["Points issued"] == pytest.approx(100.0)
    assert not next(b for b in at.button if b.label == "Create drafts from this scenario").disabled


def test_the_page_says_so_when_the_window_has_no_purchases(app, session):
    at = open_page(app, "analyst", "pages/whatif.py")
    assert "nothing to replay" in at.info[0].value
