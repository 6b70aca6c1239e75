"""Tiers and Rewards pages: the table edit, the refusal, the reward form, the barrier chart."""

from __future__ import annotations

import pytest
from sqlmodel import select

from db.models import Reward, Tier
from loyalty.access.roles import SYSTEM_CLI
from loyalty.program.rewards import save_reward
from loyalty.program.tiers import save_tiers
from tests.factories import make_member, make_purchase, utc
from tests.pages.conftest import figure, form_key_of, open_page

BASE = {"window_months": 12, "benefits": "", "grace_months": 0}


@pytest.fixture
def tiers(session):
    save_tiers(
        session=session,
        tiers=[
            {**BASE, "name": "Bronze", "min_spend": 0, "min_purchases": 0, "multiplier": 1.0},
            {**BASE, "name": "Silver", "min_spend": 500, "min_purchases": 5, "multiplier": 1.25},
        ],
        actor=SYSTEM_CLI,
    )
    bronze = session.exec(select(Tier).where(Tier.name == "Bronze")).one()
    member = make_member(session, tier_id=bronze.id)
    make_purchase(session, member, 80.0, occurred_at=utc(2026, 11, 1))
    return session


def test_the_tiers_page_charts_members_per_tier(app, tiers):
    at = open_page(app, "analyst", "pages/tiers.py")
    chart = figure(at, 0)
    assert dict(zip(chart["data"][0]["x"], chart["data"][0]["y"])) == {"Bronze": 1, "Silver": 0}
    assert not [b for b in at.button if b.label == "Save tiers"], "an analyst cannot change tiers"


def test_a_manager_gets_an_editable_tier_table_with_a_save_button(app, tiers):
    # AppTest does not apply cell edits to st.data_editor; the browser test edits a cell.
    at = open_page(app, "manager", "pages/tiers.py")
    assert at.data_editor(key="tiers_editor").editing_mode == "dynamic"
    assert [b for b in at.button if b.label == "Save tiers"]


def test_a_manager_adds_a_reward_and_an_invalid_one_is_explained(app, tiers, session):
    at = open_page(app, "manager", "pages/rewards.py")
    assert "catalogue is empty" in at.info[0].value
    at.text_input(key=f"{form_key_of(at, 'rewards')}_name").input("Reusable bag")
    at.button(key=f"{form_key_of(at, 'rewards')}_submit").click().run()
    assert "Reusable bag saved" in at.success[0].value
    at.text_input(key=f"{form_key_of(at, 'rewards')}_name").input("Partner lounge")
    at.selectbox(key=f"{form_key_of(at, 'rewards')}_kind").set_value("partner")
    at.button(key=f"{form_key_of(at, 'rewards')}_submit").click().run()
    assert "partner's name" in at.error[0].value
    session.rollback()  # end the test session's read snapshot to see the page's commits
    assert session.exec(select(Reward.name)).all() == ["Reusable bag"]


def test_the_rewards_page_shows_the_share_of_members_who_can_reach_each_reward(app, tiers, session):
    save_reward(session=session, actor=SYSTEM_CLI, name="Coffee", kind="product", points_cost=50)
    save_reward(session=session, actor=SYSTEM_CLI, name="Flight", kind="experience", points_cost=100000)
    at = open_page(app, "analyst", "pages/rewards.py")
    chart = figure(at, 0)
    shares = dict(zip(chart["data"][0]["y"], chart["data"][0]["x"]))
    assert shares == {"Coffee": 100.0, "Flight": 0.0}
    assert "Flight" in at.warning[0].value
