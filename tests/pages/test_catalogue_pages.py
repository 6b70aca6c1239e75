"""Rewards, Campaigns, Goals and Segments pages: a new record's form starts blank; edit, clone, archive and restore."""

from __future__ import annotations

import pytest
from sqlmodel import select

from db.models import Campaign, Goal, KpiTarget, Reward, Segment, Tier
from loyalty.access.roles import SYSTEM_CLI
from loyalty.program.tiers import save_tiers
from tests.pages.conftest import open_page

BASE = {"window_months": 12, "benefits": "", "grace_months": 0}


def _button(at, label):
    return next(b for b in at.button if b.label == label)


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
    return session


def _widget(at, kind: str, label: str):
    return next(w for w in getattr(at, kind) if w.label == label)


REWARD_FIELDS = {
    "Name": "text_input",
    "Kind": "selectbox",
    "Points cost": "number_input",
    "Limited stock": "checkbox",
    "Stock": "number_input",
    "Only for tier and above": "selectbox",
    "Partner (for partner rewards)": "text_input",
    "Active": "checkbox",
}


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
        ("Lounge pass", 7, silver),
        ("Spa day", 3, silver),
    ]


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
    assert any("is archived: restore it to change it" in i.value for i in at.info)
    _button(at, "Restore").click().run()
    assert at.success[0].value == "Lounge pass (copy) restored (audited)."
    session.rollback()
    assert session.exec(select(Reward.name, Reward.stock, Reward.archived_at).order_by(Reward.id)).all() == [
        ("Lounge pass", 9, None),
        ("Lounge pass (copy)", 9, None),
    ]


def test_a_new_campaign_form_is_blank_after_creating_one_and_a_draft_is_edited(app, session):
    at = open_page(app, "manager", "pages/campaigns.py")
    _widget(at, "text_input", "Campaign name").input("Triple week")
    _widget(at, "number_input", "Points multiplier (2 = double points)").set_value(3.0)
    _widget(at, "number_input", "Points budget (0 = no cap)").set_value(5000)
    _button(at, "Save as draft").click().run()
    assert at.success[0].value == "Triple week saved as a draft. Check the preview, then activate it."
    assert at.selectbox(key="campaigns_choice").value == "Triple week"
    # Editing the draft: its values, then saved.
    assert _widget(at, "text_input", "Campaign name").value == "Triple week"
    assert _widget(at, "number_input", "Points budget (0 = no cap)").value == 5000
    _widget(at, "number_input", "Points budget (0 = no cap)").set_value(8000)
    _button(at, "Save changes").click().run()
    at.selectbox(key="campaigns_choice").set_value("New campaign").run()
    assert _widget(at, "text_input", "Campaign name").value == ""
    assert _widget(at, "number_input", "Points multiplier (2 = double points)").value == 2.0
    assert _widget(at, "number_input", "Points budget (0 = no cap)").value == 0
    session.rollback()
    assert session.exec(select(Campaign.name, Campaign.rule, Campaign.budget_points)).all() == [("Triple week", {"multiplier": 3.0}, 8000)]


def test_a_started_campaign_says_only_a_draft_can_be_edited_and_is_cloned(app, session):
    at = open_page(app, "manager", "pages/campaigns.py")
    _widget(at, "text_input", "Campaign name").input("Now on")
    _button(at, "Save as draft").click().run()
    _button(at, "Activate").click().run()
    assert any("only a draft can be edited. Clone it" in i.value for i in at.info)
    assert not [b for b in at.button if b.label == "Save changes"]
    _button(at, "Clone").click().run()
    assert at.selectbox(key="campaigns_choice").value == "Now on (copy)"
    assert _widget(at, "text_input", "Campaign name").value == "Now on (copy)"
    session.rollback()
    assert sorted(session.exec(select(Campaign.name, Campaign.status)).all()) == [("Now on", "active"), ("Now on (copy)", "draft")]


def test_a_multiplier_above_ten_times_asks_to_confirm_before_saving(app, session):
    at = open_page(app, "manager", "pages/campaigns.py")
    _widget(at, "text_input", "Campaign name").input("Mega points")
    _widget(at, "number_input", "Points multiplier (2 = double points)").set_value(12.0).run()
    assert any("An earn multiplier of 12x is above 10x." in w.value for w in at.warning)
    _button(at, "Save as draft").click().run()
    assert at.error[0].value == "An earn multiplier of 12x is above 10x. Confirm to save it anyway."
    session.rollback()
    assert session.exec(select(Campaign)).all() == []
    _widget(at, "checkbox", "Yes, save it with these values").check()
    _button(at, "Save as draft").click().run()
    assert at.success[0].value.startswith("Mega points saved as a draft")
    session.rollback()
    assert session.exec(select(Campaign.rule)).all() == [{"multiplier": 12.0}]


def test_goal_and_target_forms_start_blank_after_adding_and_a_goal_with_targets_is_archived_not_deleted(app, session):
    at = open_page(app, "manager", "pages/goals.py")
    _widget(at, "text_input", "Goal name").input("Win them back")
    _widget(at, "text_input", "Owner").input("Rita")
    _button(at, "Add goal").click().run()
    assert at.success[0].value == "Goal Win them back saved (audited)."
    assert (_widget(at, "text_input", "Goal name").value, _widget(at, "text_input", "Owner").value) == ("", "")
    _widget(at, "number_input", "Target value (shares as 0-1, e.g. 0.35)").set_value(250.0)
    _button(at, "Add target").click().run()
    assert at.success[0].value == "KPI target saved (audited)."
    assert _widget(at, "number_input", "Target value (shares as 0-1, e.g. 0.35)").value == 0.0
    at.selectbox(key="goals_choice").set_value("Win them back").run()
    assert _widget(at, "text_input", "Owner").value == "Rita"
    _button(at, "Delete").click().run()
    assert at.success[0].value == "Win them back is referred to by 1 KPI target, so it was archived instead of deleted (audited)."
    assert at.selectbox(key="goals_choice").options == ["New goal"]
    session.rollback()
    goal = session.exec(select(Goal)).one()
    assert goal.archived_at is not None and session.exec(select(KpiTarget.target_value)).all() == [250.0]


def test_after_saving_a_segment_the_builder_starts_blank_and_the_saved_one_is_edited_with_its_rules(app, session):
    at = open_page(app, "manager", "pages/segments.py")
    _widget(at, "multiselect", "Acquisition channel").set_value(["web"])
    _widget(at, "text_input", "Segment name").input("Web joiners")
    _button(at, "Save segment").click().run()
    assert at.success[0].value == "Segment Web joiners saved (audited)."
    assert _widget(at, "multiselect", "Acquisition channel").value == []
    assert _widget(at, "text_input", "Segment name").value == ""
    at.selectbox(key="segments_choice").set_value("Web joiners").run()
    assert _widget(at, "multiselect", "Acquisition channel").value == ["web"]
    _button(at, "Clone").click().run()
    assert at.selectbox(key="segments_choice").value == "Web joiners (copy)"
    session.rollback()
    assert session.exec(select(Segment.name, Segment.rules).order_by(Segment.id)).all() == [
        ("Web joiners", {"acquisition_channel": ["web"]}),
        ("Web joiners (copy)", {"acquisition_channel": ["web"]}),
    ]
