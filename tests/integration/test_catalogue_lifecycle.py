"""Rewards, campaigns, goals, KPI targets and segments: edit, clone, archive, restore, delete (archived when referenced)."""

from __future__ import annotations

from datetime import date

import pytest
from sqlmodel import select

from db.models import AuditLog, Campaign, Goal, KpiTarget, Reward, Segment
from loyalty.access.roles import Actor
from loyalty.errors import InvalidInput, NeedsConfirmation, PermissionDenied, RewardUnavailable
from loyalty.ledger.redemptions import list_rewards, redeem_reward
from loyalty.program.campaigns import (
    activate_campaign,
    archive_campaign,
    campaign_overview,
    clone_campaign,
    delete_campaign,
    edit_campaign,
    end_campaign,
    restore_campaign,
    save_campaign,
)
from loyalty.program.goals import (
    archive_goal,
    archive_kpi_target,
    clone_goal,
    clone_kpi_target,
    delete_goal,
    goal_status,
    list_goals,
    restore_goal,
    restore_kpi_target,
    save_goal,
    save_kpi_target,
)
from loyalty.program.rewards import archive_reward, clone_reward, delete_reward, restore_reward, save_reward
from loyalty.program.segments import archive_segment, clone_segment, delete_segment, list_segments, restore_segment, save_segment
from tests.factories import make_member, make_purchase, make_reward, utc

MANAGER = Actor("max", "manager")
OPERATIONS = Actor("olga", "operations")
START, END = utc(2027, 3, 1), utc(2027, 3, 31)


def _actions(session, entity: str) -> list[str]:
    return session.exec(select(AuditLog.action).where(AuditLog.entity == entity).order_by(AuditLog.id)).all()


def _draft(session, name="Spring double points", **overrides):
    fields = {"kind": "multiplier", "rule": {"multiplier": 2.0}, "starts_at": START, "ends_at": END, "holdout_pct": 0.1} | overrides
    return save_campaign(session=session, actor=MANAGER, name=name, **fields)


# --- rewards ------------------------------------------------------------------------------------


def test_a_reward_is_edited_cloned_archived_and_restored_with_an_audit_row_each(session):
    reward = save_reward(session=session, actor=MANAGER, name="Tote bag", kind="product", points_cost=500, stock=20)
    save_reward(session=session, actor=MANAGER, reward_id=reward.id, points_cost=450, stock_seen=20)
    clone = clone_reward(session=session, actor=MANAGER, reward_id=reward.id)
    assert (clone.name, clone.points_cost, clone.stock, clone.kind) == ("Tote bag (copy)", 450, 20, "product")
    assert clone_reward(session=session, actor=MANAGER, reward_id=reward.id).name == "Tote bag (copy 2)"

    archive_reward(session=session, actor=MANAGER, reward_id=reward.id)
    assert [r["name"] for r in list_rewards(session)] == ["Tote bag (copy)", "Tote bag (copy 2)"]
    assert {r["name"]: r["archived"] for r in list_rewards(session, include_archived=True)}["Tote bag"] is True
    with pytest.raises(InvalidInput, match="Tote bag is archived: restore it"):
        save_reward(session=session, actor=MANAGER, reward_id=reward.id, points_cost=400)
    restore_reward(session=session, actor=MANAGER, reward_id=reward.id)
    assert "Tote bag" in [r["name"] for r in list_rewards(session)]
    assert _actions(session, "reward") == [
        "reward.create",
        "reward.update",
        "reward.create",
        "reward.clone",
        "reward.create",
        "reward.clone",
        "reward.archive",
        "reward.restore",
    ]


def test_a_reward_never_redeemed_is_deleted(session):
    reward = make_reward(session, name="Unused")
    removal = delete_reward(session=session, actor=MANAGER, reward_id=reward.id)
    assert (removal.outcome, removal.message) == ("deleted", "Unused deleted (audited).")
    session.expire_all()
    assert session.get(Reward, reward.id) is None
    assert _actions(session, "reward") == ["reward.delete"]


def test_deleting_a_redeemed_reward_archives_it_instead_and_it_can_no_longer_be_redeemed(session):
    member = make_member(session)
    make_purchase(session, member, 500.0, occurred_at=utc(2026, 5, 1))
    reward = make_reward(session, name="Coffee", points_cost=100)
    redeem_reward(session=session, member_id=member.id, reward_id=reward.id, actor=OPERATIONS, now=utc(2026, 5, 2))

    removal = delete_reward(session=session, actor=MANAGER, reward_id=reward.id)

    assert removal.outcome == "archived"
    assert removal.message == "Coffee is referred to by 1 redemption, so it was archived instead of deleted (audited)."
    session.expire_all()
    assert session.get(Reward, reward.id).archived_at is not None
    assert list_rewards(session) == []
    with pytest.raises(RewardUnavailable, match="archived"):
        redeem_reward(session=session, member_id=member.id, reward_id=reward.id, actor=OPERATIONS, now=utc(2026, 5, 3))
    audit = session.exec(select(AuditLog).where(AuditLog.action == "reward.archive")).one()
    assert audit.after["instead_of_delete"] == "referred to by 1 redemption"


def test_only_the_program_configurers_archive(session):
    reward = make_reward(session)
    with pytest.raises(PermissionDenied):
        archive_reward(session=session, actor=OPERATIONS, reward_id=reward.id)


# --- campaigns ----------------------------------------------------------------------------------


def test_a_draft_campaign_is_edited_but_a_started_one_is_refused_and_must_be_cloned(session):
    draft = _draft(session)
    edited = edit_campaign(session=session, actor=MANAGER, campaign_id=draft.id, rule={"multiplier": 3.0}, budget_points=9000)
    assert (edited.rule, edited.budget_points) == ({"multiplier": 3.0}, 9000)
    activate_campaign(session=session, campaign_id=draft.id, actor=MANAGER, now=utc(2027, 2, 1))
    with pytest.raises(InvalidInput, match="Spring double points is scheduled: only a draft can be edited. Clone it"):
        edit_campaign(session=session, actor=MANAGER, campaign_id=draft.id, rule={"multiplier": 4.0})

    clone = clone_campaign(session=session, actor=MANAGER, campaign_id=draft.id, now=utc(2027, 2, 1))

    assert (clone.name, clone.status, clone.rule, clone.budget_points, clone.holdout_pct) == (
        "Spring double points (copy)",
        "draft",
        {"multiplier": 3.0},
        9000,
        0.1,
    )
    assert (clone.starts_at, clone.ends_at) == (START, END)  # not started yet: same dates
    assert _actions(session, "campaign")[-2:] == ["campaign.create", "campaign.clone"]


def test_a_clone_of_a_past_campaign_runs_as_long_from_tomorrow(session):
    draft = _draft(session, name="Old", starts_at=utc(2026, 1, 1), ends_at=utc(2026, 1, 11))
    clone = clone_campaign(session=session, actor=MANAGER, campaign_id=draft.id, now=utc(2026, 6, 15, 14))
    assert (clone.starts_at, clone.ends_at) == (utc(2026, 6, 16), utc(2026, 6, 26))


def test_a_campaign_that_gave_points_is_archived_not_deleted_and_a_running_one_must_end_first(session):
    member = make_member(session)
    campaign = _draft(session, name="Live", holdout_pct=0.0)
    activate_campaign(session=session, campaign_id=campaign.id, actor=MANAGER, now=utc(2027, 3, 2))
    make_purchase(session, member, 40.0, occurred_at=utc(2027, 3, 5))
    with pytest.raises(InvalidInput, match="Live is active: end it before archiving or deleting it"):
        delete_campaign(session=session, actor=MANAGER, campaign_id=campaign.id)
    end_campaign(session=session, campaign_id=campaign.id, actor=MANAGER, now=utc(2027, 3, 10))

    removal = delete_campaign(session=session, actor=MANAGER, campaign_id=campaign.id)

    assert removal.outcome == "archived"
    assert removal.references == (("ledger entry", 1), ("assigned member", 1))
    assert campaign_overview(session).empty
    assert campaign_overview(session, include_archived=True)["archived"].tolist() == [True]
    restore_campaign(session=session, actor=MANAGER, campaign_id=campaign.id)
    assert campaign_overview(session)["name"].tolist() == ["Live"]


def test_an_unused_draft_is_deleted_and_an_archived_draft_cannot_start(session):
    unused = _draft(session, name="Never mind")
    assert delete_campaign(session=session, actor=MANAGER, campaign_id=unused.id).outcome == "deleted"
    session.expire_all()
    assert session.get(Campaign, unused.id) is None
    kept = _draft(session, name="Later")
    archive_campaign(session=session, actor=MANAGER, campaign_id=kept.id)
    with pytest.raises(InvalidInput, match="Later is archived: restore it before starting it"):
        activate_campaign(session=session, campaign_id=kept.id, actor=MANAGER, now=utc(2027, 2, 1))
    restore_campaign(session=session, actor=MANAGER, campaign_id=kept.id)
    assert activate_campaign(session=session, campaign_id=kept.id, actor=MANAGER, now=utc(2027, 2, 1)).status == "scheduled"
    assert _actions(session, "campaign") == [
        "campaign.create",
        "campaign.delete",
        "campaign.create",
        "campaign.archive",
        "campaign.restore",
        "campaign.activate",
    ]


@pytest.mark.parametrize(
    "fields,reason",
    [
        ({"rule": {"multiplier": 12.0}}, "An earn multiplier of 12x is above 10x."),
        ({"budget_points": 600_000}, "A points budget of 600,000 is above 500,000."),
    ],
    ids=["multiplier-above-10x", "budget-above-limit"],
)
def test_a_large_multiplier_or_budget_is_saved_only_once_confirmed(session, fields, reason):
    with pytest.raises(NeedsConfirmation, match=reason):
        _draft(session, name="Big", **fields)
    assert session.exec(select(Campaign)).all() == []
    saved = _draft(session, name="Big", confirmed=True, **fields)
    # Changing something else later does not ask again; raising it further does.
    edit_campaign(session=session, actor=MANAGER, campaign_id=saved.id, holdout_pct=0.2)
    bigger = {"rule": {"multiplier": 15.0}} if "rule" in fields else {"budget_points": 700_000}
    with pytest.raises(NeedsConfirmation):
        edit_campaign(session=session, actor=MANAGER, campaign_id=saved.id, **bigger)


def test_ten_times_points_needs_no_confirmation(session):
    assert _draft(session, name="Tenfold", rule={"multiplier": 10.0}).rule == {"multiplier": 10.0}


# --- goals and KPI targets ------------------------------------------------------------------------


def _goal(session, name="Grow membership 2027"):
    return save_goal(
        session=session,
        actor=MANAGER,
        name=name,
        objective="grow_membership",
        owner="Rita",
        starts_on=date(2027, 1, 1),
        ends_on=date(2027, 12, 31),
        strategy="Referral push",
    )


def test_a_goal_is_cloned_with_its_targets_and_archiving_hides_it_and_its_targets(session):
    goal = _goal(session)
    save_goal(
        session=session,
        actor=MANAGER,
        goal_id=goal.id,
        name=goal.name,
        objective="grow_membership",
        owner="Sam",
        starts_on=date(2027, 1, 1),
        ends_on=date(2027, 12, 31),
    )
    target = save_kpi_target(session=session, actor=MANAGER, goal_id=goal.id, metric="active_members", target_value=500)
    archived_target = save_kpi_target(session=session, actor=MANAGER, goal_id=goal.id, metric="retention_rate", target_value=0.4)
    archive_kpi_target(session=session, actor=MANAGER, target_id=archived_target.id)

    clone = clone_goal(session=session, actor=MANAGER, goal_id=goal.id)

    assert (clone.name, clone.owner, clone.objective) == ("Grow membership 2027 (copy)", "Sam", "grow_membership")
    status = goal_status(session)
    assert sorted(zip(status["goal"], status["metric"])) == [
        ("Grow membership 2027", "active_members"),
        ("Grow membership 2027 (copy)", "active_members"),
    ]
    archive_goal(session=session, actor=MANAGER, goal_id=goal.id)
    assert list_goals(session)["name"].tolist() == ["Grow membership 2027 (copy)"]
    assert goal_status(session)["goal"].tolist() == ["Grow membership 2027 (copy)"]
    every = goal_status(session, include_archived=True).set_index("target_id")
    assert every.loc[target.id, "archived"] and every.loc[archived_target.id, "archived"]
    with pytest.raises(InvalidInput, match="archived: restore it before giving it targets"):
        save_kpi_target(session=session, actor=MANAGER, goal_id=goal.id, metric="nps", target_value=30)
    restore_goal(session=session, actor=MANAGER, goal_id=goal.id)
    restore_kpi_target(session=session, actor=MANAGER, target_id=archived_target.id)
    assert len(goal_status(session)) == 3  # two on the goal, one on its copy (archived targets are not copied)


def test_a_kpi_target_is_cloned_on_its_goal_and_edited(session):
    goal = _goal(session)
    target = save_kpi_target(session=session, actor=MANAGER, goal_id=goal.id, metric="active_members", target_value=500)
    copy = clone_kpi_target(session=session, actor=MANAGER, target_id=target.id)
    save_kpi_target(session=session, actor=MANAGER, target_id=copy.id, goal_id=goal.id, metric="active_members", target_value=800, period="quarter")
    session.expire_all()
    rows = session.exec(select(KpiTarget.target_value, KpiTarget.period).order_by(KpiTarget.id)).all()
    assert rows == [(500.0, "month"), (800.0, "quarter")]
    assert _actions(session, "kpi_target") == ["kpi_target.save", "kpi_target.save", "kpi_target.clone", "kpi_target.save"]


def test_a_goal_with_targets_is_archived_instead_of_deleted_one_without_is_deleted(session):
    with_targets, empty = _goal(session), _goal(session, name="Someday")
    save_kpi_target(session=session, actor=MANAGER, goal_id=with_targets.id, metric="active_members", target_value=500)
    assert delete_goal(session=session, actor=MANAGER, goal_id=with_targets.id).references == (("KPI target", 1),)
    assert delete_goal(session=session, actor=MANAGER, goal_id=empty.id).outcome == "deleted"
    session.expire_all()
    assert session.get(Goal, empty.id) is None and session.get(Goal, with_targets.id).archived_at is not None


# --- segments ---------------------------------------------------------------------------------------


def test_a_segment_in_use_is_archived_instead_of_deleted_cloned_and_restored(session):
    segment = save_segment(session=session, actor=MANAGER, name="Web joiners", rules={"acquisition_channel": ["web"]}, description="Web")
    save_segment(session=session, actor=MANAGER, segment_id=segment.id, name="Web joiners", rules={"acquisition_channel": ["web", "app"]})
    unused = clone_segment(session=session, actor=MANAGER, segment_id=segment.id)
    assert (unused.name, unused.rules) == ("Web joiners (copy)", {"acquisition_channel": ["web", "app"]})
    _draft(session, name="For web joiners", eligibility={"segment_id": segment.id})

    removal = delete_segment(session=session, actor=MANAGER, segment_id=segment.id)

    assert removal.outcome == "archived" and removal.references == (("campaign", 1),)
    assert list_segments(session)["name"].tolist() == ["Web joiners (copy)"]
    assert list_segments(session, include_archived=True)["archived"].tolist() == [True, False]
    assert delete_segment(session=session, actor=MANAGER, segment_id=unused.id).outcome == "deleted"
    restore_segment(session=session, actor=MANAGER, segment_id=segment.id)
    archive_segment(session=session, actor=MANAGER, segment_id=segment.id)
    with pytest.raises(InvalidInput, match="already archived"):
        archive_segment(session=session, actor=MANAGER, segment_id=segment.id)
    session.expire_all()
    assert session.get(Segment, unused.id) is None
    assert _actions(session, "segment") == [
        "segment.create",
        "segment.update",
        "segment.create",
        "segment.clone",
        "segment.archive",
        "segment.delete",
        "segment.restore",
        "segment.archive",
    ]
