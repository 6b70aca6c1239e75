"""Campaign planner on a small program: a past campaign measured against its holdout predicts a draft."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sqlmodel import select

from db.models import CampaignAssignment
from loyalty.access.roles import Actor
from loyalty.decisions.planner import comparable_campaigns, expected_campaign_impact, plan_holdout, preview_campaign, segment_spend
from loyalty.insights.campaign_results import campaign_results, evaluate_campaigns, store_campaign_results
from loyalty.ledger.entries import reverse_purchase
from loyalty.program.campaigns import activate_campaign, save_campaign
from tests.factories import make_member, make_purchase, utc

MANAGER = Actor("max", "manager")
PAST_START, PAST_END = utc(2026, 3, 1), utc(2026, 3, 11)  # 10 days
NOW = utc(2026, 4, 15)
Z_90PCT = 1.644853627


def _groups(session, campaign_id):
    rows = session.exec(select(CampaignAssignment.member_id, CampaignAssignment.group).where(CampaignAssignment.campaign_id == campaign_id)).all()
    return sorted(m for m, g in rows if g == "treatment"), sorted(m for m, g in rows if g == "holdout")


def _measured_double_points(session, members):
    """A 10-day double-points campaign, 45 % held out: treated members spend 50, held-out ones 20 and 40 in turn."""
    past = save_campaign(
        session=session,
        actor=MANAGER,
        name="March double points",
        kind="multiplier",
        rule={"multiplier": 2.0},
        starts_at=PAST_START,
        ends_at=PAST_END,
        holdout_pct=0.45,
    )
    activate_campaign(session=session, campaign_id=past.id, actor=MANAGER, now=utc(2026, 2, 28))
    treated, held = _groups(session, past.id)
    assert len(treated) >= 2 and len(held) >= 2
    by_id = {m.id: m for m in members}
    for member_id in treated:
        make_purchase(session, by_id[member_id], 50.0, occurred_at=utc(2026, 3, 5))
    holdout_spend = [20.0 if i % 2 == 0 else 40.0 for i in range(len(held))]
    for member_id, amount in zip(held, holdout_spend):
        make_purchase(session, by_id[member_id], amount, occurred_at=utc(2026, 3, 5))
    store_campaign_results(session, evaluate_campaigns(session, cutoff=utc(2026, 4, 1)))
    return past, treated, np.array(holdout_spend)


def test_a_draft_is_estimated_from_a_past_campaign_of_its_kind_measured_against_its_holdout(session):
    members = [make_member(session) for _ in range(20)]
    past, treated, holdout_spend = _measured_double_points(session, members)
    draft = save_campaign(
        session=session,
        actor=MANAGER,
        name="May double points",
        kind="multiplier",
        rule={"multiplier": 2.0},
        starts_at=utc(2026, 5, 1),
        ends_at=utc(2026, 5, 21),
        holdout_pct=0.1,
    )  # 20 days

    impact = expected_campaign_impact(session, campaign_id=draft.id, now=NOW)

    # The past campaign: uplift 50 - mean(holdout spend) per member over 10 days. Treated spend does not
    # vary, so Welch's se is s0 / sqrt(n0) with n0 - 1 degrees of freedom; the planner reads the stored
    # 95 % interval back with the largest degrees of freedom (n1 + n0 - 2), a slightly larger se.
    n1, n0 = len(treated), len(holdout_spend)
    uplift = 50.0 - holdout_spend.mean()
    se = holdout_spend.std(ddof=1) / math.sqrt(n0) * stats.t.ppf(0.975, n0 - 1) / stats.t.ppf(0.975, n1 + n0 - 2)
    comparable = impact.comparable.set_index("campaign_id")
    assert comparable.loc[past.id, "days"] == 10
    assert comparable.loc[past.id, "spend_uplift"] == pytest.approx(uplift)
    assert comparable.loc[past.id, "se"] == pytest.approx(se, rel=1e-9)
    # One comparable campaign: its uplift, doubled for a campaign twice as long, for each treated member.
    preview = preview_campaign(session, draft.id, now=NOW)
    assert (impact.eligible, impact.treatment, impact.holdout) == (20, preview["treatment"], preview["holdout"])
    assert impact.uplift_per_member == pytest.approx(2 * uplift)
    assert (impact.uplift_low, impact.uplift_high) == pytest.approx((2 * uplift - Z_90PCT * 2 * se, 2 * uplift + Z_90PCT * 2 * se))
    assert impact.incremental_revenue == pytest.approx(2 * uplift * impact.treatment)
    assert impact.incremental_revenue_low == pytest.approx((2 * uplift - Z_90PCT * 2 * se) * impact.treatment)
    # Points cost: the preview's replay, at 0.01 a point; net = revenue - cost.
    assert impact.points_cost == preview["estimated_points"] > 0
    assert impact.cost == pytest.approx(impact.points_cost * 0.01)
    assert impact.net == pytest.approx(impact.incremental_revenue - impact.cost)
    assert impact.reason is None
    assert any("Only one comparable campaign" in note for note in impact.notes)


def test_a_draft_of_a_kind_never_measured_says_there_is_no_comparable_history(session):
    members = [make_member(session) for _ in range(20)]
    _measured_double_points(session, members)
    draft = save_campaign(
        session=session,
        actor=MANAGER,
        name="Referral bonus",
        kind="fixed_bonus",
        rule={"points": 100},
        starts_at=utc(2026, 5, 1),
        ends_at=utc(2026, 6, 1),
        holdout_pct=0.1,
    )

    impact = expected_campaign_impact(session, campaign_id=draft.id, now=NOW)

    assert impact.reason.startswith("No comparable history: no fixed bonus per purchase campaign has been measured")
    assert impact.incremental_revenue is None and impact.uplift_per_member is None and impact.net is None
    assert impact.comparable.empty
    assert impact.eligible == 20


def test_a_measured_kind_not_yet_evaluated_points_to_the_evaluation_job(session):
    members = [make_member(session) for _ in range(6)]
    for m in members:
        make_purchase(session, m, 30.0, occurred_at=utc(2026, 1, 5))
    past = save_campaign(
        session=session,
        actor=MANAGER,
        name="Come back",
        kind="win_back",
        rule={"inactive_days": 30, "points": 300},
        starts_at=PAST_START,
        ends_at=PAST_END,
        holdout_pct=0.3,
    )
    activate_campaign(session=session, campaign_id=past.id, actor=MANAGER, now=utc(2026, 2, 28))
    draft = save_campaign(
        session=session,
        actor=MANAGER,
        name="Come back again",
        kind="win_back",
        rule={"inactive_days": 30, "points": 300},
        starts_at=utc(2026, 5, 1),
        ends_at=utc(2026, 6, 1),
        holdout_pct=0.3,
    )

    impact = expected_campaign_impact(session, campaign_id=draft.id, now=NOW)

    assert impact.incremental_revenue is None
    assert "1 win-back campaign(s) with a holdout have run but are not evaluated" in impact.reason
    assert "campaign-evaluation" in impact.reason
    assert campaign_results(session).empty
    assert comparable_campaigns(session, "win_back").empty


def test_the_spend_spread_counts_members_who_bought_nothing_and_leaves_out_refunds_and_older_purchases(session):
    members = [make_member(session) for _ in range(4)]
    for member, amount in zip(members[1:], (10.0, 20.0, 30.0)):
        make_purchase(session, member, amount, occurred_at=utc(2026, 4, 1))
    make_purchase(session, members[0], 500.0, occurred_at=utc(2026, 3, 1))  # before the 30-day window
    refunded = make_purchase(session, members[0], 80.0, occurred_at=utc(2026, 4, 2))
    reverse_purchase(session=session, purchase_id=refunded, actor=Actor("ops", "operations"))

    spend = segment_spend(session, np.array([m.id for m in members]), days=30, as_of=NOW)

    # Spend 0, 10, 20, 30: mean 15, variance (225 + 25 + 25 + 225) / 3 = 166.67.
    assert (spend.members, spend.mean, spend.sigma) == pytest.approx((4, 15.0, math.sqrt(500 / 3)))


def test_holdout_planning_measures_the_eligible_segment_and_sizes_a_relative_target(session):
    members = [make_member(session, acquisition_channel="app") for _ in range(4)] + [make_member(session, acquisition_channel="store")]
    for member, amount in zip(members, (0.0, 10.0, 20.0, 30.0, 1000.0)):
        if amount:
            make_purchase(session, member, amount, occurred_at=utc(2026, 4, 1))

    sizing, segment = plan_holdout(
        session,
        kind="multiplier",
        eligibility={"acquisition_channels": ["app"]},
        rule={"multiplier": 2},
        days=30,
        holdout_pct=0.25,
        target_uplift=2.0,
        relative=True,
        now=NOW,
    )

    sigma = math.sqrt(500 / 3)
    assert (segment.members, segment.mean, segment.sigma) == pytest.approx((4, 15.0, sigma))
    # +200 % of 15 = 30 per member. z = 2.801585: c = 4 * (30 / (2.801585 * 12.9099))^2 = 2.7557 < 4.
    assert sizing.target_uplift == pytest.approx(30.0)
    assert sizing.needed_pct is None and sizing.members_needed_at_half == math.ceil(4 * (2.801585 * sigma / 30) ** 2) == 6
    # At 25 %: 1 held out, 3 treated: mde = z * sigma * sqrt(1/3 + 1/1) = 41.76.
    assert sizing.mde == pytest.approx(2.801585 * sigma * math.sqrt(1 / 3 + 1), rel=1e-6)
