"""Rewards, Campaigns, Goals and Segments pages: a new record's form starts blank; edit, clone, archive and restore."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlmodel import select

from db.models import Campaign, Goal, KpiTarget, Reward, Segment, Tier
from loyalty.access import SYSTEM_CLI
from loyalty.goals import save_goal
from loyalty.tiers import save_tiers
from tests.pages.conftest import open_page

BASE = {"window_months": 12, "benefits": "", "grace_months": 0}


def _button(at, label):
    return next(b for b in at.button if b.label == label)


@pytest.fixture
def tiers(session):
    save_tiers(session=session, tiers=[{**BASE, "name": "Bronze", "min_spend": 0, "min_purchases": 0, "multiplier": 1.0},
                                       {**BASE, "name": "Silver", "min_spend": 500, "min_purchases": 5, "multiplier": 1.25}], actor=SYSTEM_CLI)
    return session


def _widget(at, kind: str, label: str):
    return next(w for w in getattr(at, kind) if w.label == label)


REWARD_FIELDS = {"Name": "text_input", "Kind": "selectbox", "Points cost": "number_input", "Limited stock": "checkbox", "Stock": "number_input",
                 "Only for tier and above": "selectbox", "Partner (for partner rewards)": "text_input", "Active": "checkbox"}


def _reward_form(at) -> dict:
    return {label: _widget(at, kind, label).value for label, kind in REWARD_FIELDS.items()}


def _fill_reward(at, name: str, *, stock: int, tier_id: int) -> None:
    _widget(at, "text_input", "Name").input(name)
    _widget(at, "number_input", "Points cost").set_value(900)
    _widget(at, "checkbox", "Limited stock").check()
    _widget(at, "number_input", "Stock").set_value(stock)
    _widget(at, "selectbox", "Only for tier and above").set_value(tier_id)
    _button(at, "Save reward").click().run()
    assert not at.exception, at.exception


def test_after_creating_a_reward_the_next_new_reward_form_is_blank(app, tiers, session):
    silver = session.exec(select(Tier.id).where(Tier.name == "Silver")).one()
    at = open_page(app, "manager", "pages/rewards.py")
    blank = _reward_form(at)
    assert blank["Name"] == "" and blank["Stock"] == 0 and blank["Only for tier and above"] is None

    _fill_reward(at, "Lounge pass", stock=7, tier_id=silver)

    assert at.success[0].value == "Lounge pass saved (audited)."
    assert at.selectbox(key="rewards_choice").value == "New reward"
    assert _reward_form(at) == blank
    _fill_reward(at, "Spa day", stock=3, tier_id=silver)
    assert _reward_form(at) == blank
    session.rollback()
    assert session.exec(select(Reward.name, Reward.stock, Reward.min_tier_id).order_by(Reward.id)).all() == [
        ("Lounge pass", 7, silver), ("Spa day", 3, silver)]


def test_a_reward_is_edited_cloned_archived_and_restored_on_the_page(app, tiers, session):
    at = open_page(app, "manager", "pages/rewards.py")
    _fill_reward(at, "Lounge pass", stock=7, tier_id=None)
    at.selectbox(key="rewards_choice").set_value("Lounge pass").run()
    assert _reward_form(at)["Stock"] == 7
    _widget(at, "number_input", "Stock").set_value(9)
    _button(at, "Save reward").click().run()
    assert at.success[0].value == "Lounge pass saved (audited)." and _reward_form(at)["Stock"] == 9
    _button(at, "Clone").click().run()
    assert at.selectbox(key="rewards_choice").value == "Lounge pass (copy)"
    assert _reward_form(at)["Name"] == "Lounge pass (copy)"
    _button(at, "Archive").click().run()
    assert "Lounge pass (copy) archived" in at.success[0].value
    assert at.selectbox(key="rewards_choice").options == ["New reward", "Lounge pass"]
    at.toggle(key="rewards_show_archived").set_value(True).run()
    at.selectbox(key="rewards_choice").set_value("Lounge pass (copy)").run()
    assert "is archived: restore it to change it" in at.info[0].value
    _button(at, "Restore").click().run()
    assert at.success[0].value == "Lounge pass (copy) restored (audited)."
    session.rollback()
    assert session.exec(select(Reward.name, Reward.stock, Reward.archived_at).order_by(Reward.id)).all() == [
        ("Lounge pass", 9, None), ("Lounge pass (copy)", 9, None)]
