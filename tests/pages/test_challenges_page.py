"""The Challenges page: results of each challenge, and a manager defining one."""

from __future__ import annotations

from datetime import date

import pytest
import time_machine

from loyalty.access.roles import Actor
from loyalty.ledger.challenges import define_challenge, list_challenges
from tests.factories import make_member, make_purchase, utc
from tests.pages.conftest import open_page

MANAGER = Actor("maria", "manager")


@pytest.fixture
def frozen():
    with time_machine.travel(utc(2026, 3, 20, 12)):
        yield


def test_an_analyst_sees_the_empty_state_and_no_form(app, frozen):
    at = open_page(app, "analyst", "pages/challenges.py")
    assert not at.exception
    assert at.info[0].value == "No challenge yet."
    assert not [b for b in at.button if b.label == "Save challenge"]


def test_results_count_participants_completions_close_members_and_cost(app, session, frozen):
    define_challenge(session, name="Three buys", purchases=3, within_days=60, points=500, badge="Regular", starts=utc(2026, 1, 1), actor=MANAGER)
    done, close, far = (make_member(session) for _ in range(3))
    for day in (2, 9, 16):
        make_purchase(session, done, 20, utc(2026, 3, day))
    make_purchase(session, close, 20, utc(2026, 3, 2))
    make_purchase(session, close, 20, utc(2026, 3, 3))
    make_purchase(session, far, 20, utc(2026, 1, 5))  # outside the 60 days now: progress 0
    at = open_page(app, "analyst", "pages/challenges.py")
    assert not at.exception
    row = at.dataframe[0].value.iloc[0]
    assert (row["participants"], row["members_completed"], row["close"], row["completions"], row["points_paid"]) == (3, 1, 1, 1, 500)
    assert row["completion_rate"] == pytest.approx(1 / 3) and row["cost"] == 5.0  # 500 points at 0.01
    assert (row["goal"], row["reward"]) == ("3 purchases within 60 days", "500 pts + badge Regular")
    assert {m.label: m.value for m in at.metric}["Cost of rewards paid"] == "EUR 5.00"
    assert len(at.get("plotly_chart")) == 1


def test_a_manager_defines_a_challenge_and_a_fraction_of_a_purchase_is_refused_by_name(app, session, frozen):
    at = open_page(app, "manager", "pages/challenges.py")
    at.text_input(key="challenges_name").input("Eco trio")
    at.radio(key="challenges_goal").set_value("purchases")
    at.number_input(key="challenges_target").set_value(2.5)
    at.text_input(key="challenges_category").input("eco")
    at.date_input(key="challenges_starts").set_value(date(2026, 4, 1))
    at.button(key="challenges_save").click().run()
    assert "purchases: a whole number from 1 to 1,000 (you entered 2.5)" in at.error[0].value
    assert list_challenges(session) == []
    at.number_input(key="challenges_target").set_value(3.0)
    at.button(key="challenges_save").click().run()
    assert "Challenge Eco trio saved (audited): it counts purchases from 2026-04-01." in at.success[0].value
    session.rollback()  # a new snapshot: the page saved through its own connection
    (saved,) = list_challenges(session)
    assert (saved["kind"], saved["target"], saved["within_days"], saved["category"], saved["points"]) == ("purchases", 3, 30, "eco", 200)
    assert at.dataframe[0].value["name"].tolist() == ["Eco trio"]


def test_the_effect_of_a_challenge_with_a_holdout_is_measured_on_demand(app, session, frozen):
    define_challenge(session, name="Held back", purchases=2, points=100, starts=utc(2026, 1, 1), holdout_pct=0.5, actor=MANAGER)
    for n in range(12):
        make_purchase(session, make_member(session, joined_at=utc(2025, 6, 1)), 20, utc(2026, 2, 1 + n))
    at = open_page(app, "analyst", "pages/challenges.py")
    assert at.selectbox(key="challenges_effect_name").value == "Held back"
    at.button(key="challenges_measure").click().run()
    assert not at.exception
    shown = at.dataframe[1].value
    assert shown["per member"].tolist() == ["purchases", "revenue"] and (shown["with the challenge"] == shown["holdout"]).all()
    assert any("No difference shown (the interval includes 0)" in m.value for m in at.markdown)


def test_a_preview_counts_members_who_already_meet_it_or_are_half_way_and_saves_nothing(app, session, frozen):
    from loyalty.program.segments import save_segment

    first, second, third = (make_member(session, joined_at=utc(2025, 6, 1)) for _ in range(3))
    for member, purchases in ((first, 4), (second, 2), (third, 1)):
        for n in range(purchases):
            make_purchase(session, member, 20, utc(2026, 3, 1 + n))
    save_segment(session=session, actor=MANAGER, name="Web joiners", rules={"acquisition_channel": ["web"]})
    at = open_page(app, "manager", "pages/challenges.py")
    assert at.selectbox(key="challenges_segment").options == ["everyone", "Web joiners"]
    at.number_input(key="challenges_target").set_value(4.0)
    at.date_input(key="challenges_starts").set_value(date(2026, 3, 1))
    at.button(key="challenges_preview").click().run()
    assert not at.exception
    assert "4 purchases within 30 days: 3 members have a purchase that counts so far; 1 already meet it" in at.info[-1].value
    assert "and 1 are half way or more" in at.info[-1].value
    assert list_challenges(session) == []
