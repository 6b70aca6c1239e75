"""The campaign preview follows each campaign type's own rules, and says when history is too short to estimate."""

from __future__ import annotations

import pytest

from loyalty.access.roles import Actor
from loyalty.decisions.planner import expected_campaign_impact, preview_campaign
from loyalty.program.campaigns import MIN_PREVIEW_PURCHASES, save_campaign
from tests.factories import make_member, make_purchase, make_tier, utc

MANAGER = Actor("max", "manager")
NOW = utc(2026, 6, 1)
START, END = utc(2026, 6, 2), utc(2026, 7, 2)  # 30 days
RETURNERS, LAPSED = 12, 5


@pytest.fixture
def program(session):
    """12 members bought in January, were away, and each spent 50 (eco) on 20 May; 5 more bought in January only.

    No tiers' multiplier and 1 point a unit: every May purchase earns 50 base points.
    """
    gold = make_tier(session, name="Gold", multiplier=1.0)
    returners = [make_member(session, tier_id=gold.id, birth_date=utc(1990, 5, 22).date()) for _ in range(RETURNERS)]
    lapsed = [make_member(session) for _ in range(LAPSED)]
    for member in returners + lapsed:
        make_purchase(session, member, 20.0, occurred_at=utc(2026, 1, 10))
    for member in returners:
        make_purchase(session, member, 50.0, occurred_at=utc(2026, 5, 20), category="eco-friendly")
    return {"returners": returners, "lapsed": lapsed}


# Hand-computed: 12 May purchases of 50 base points each.
# Per-purchase kinds replay the last 90 days and scale to the 30-day campaign (x 1/3);
# once-per-member kinds replay the last 30 days, unscaled.
@pytest.mark.parametrize(
    "kind,rule,eligibility,expected",
    [
        ("multiplier", {"multiplier": 2.0}, {}, 12 * 50 // 3),  # 50 extra a purchase
        ("category_bonus", {"multiplier": 3.0, "categories": ["eco-friendly"]}, {}, 12 * 100 // 3),
        ("fixed_bonus", {"points": 20, "min_amount": 10}, {}, 12 * 20 // 3),
        ("tier_offer", {"points": 30}, {"tiers": ["Gold"]}, 12 * 30 // 3),
        ("spend_threshold", {"spend": 40, "points": 500}, {}, 12 * 500),
        ("birthday", {"points": 200, "window_days": 7, "occasion": "birthday"}, {}, 12 * 200),
        # Eligible now: the 5 lapsed members. Replayed: the 17 members inactive 60 days on 2 May, of whom 12 came back.
        ("win_back", {"inactive_days": 60, "points": 300}, {}, round(12 * 300 / 17 * 5)),
    ],
    ids=["multiplier", "category-bonus", "fixed-bonus", "tier-offer", "spend-threshold", "birthday", "win-back"],
)
def test_the_preview_cost_follows_each_campaign_types_own_rule(session, program, kind, rule, eligibility, expected):
    draft = save_campaign(
        session=session,
        actor=MANAGER,
        name=f"Preview {kind}",
        kind=kind,
        rule=rule,
        eligibility=eligibility,
        starts_at=START,
        ends_at=END,
        holdout_pct=0.0,
    )
    preview = preview_campaign(session, draft.id, now=NOW)
    assert preview["estimated_points"] == expected > 0
    assert preview["not_enough_history"] is None


def test_a_win_back_preview_replays_members_inactive_as_long_not_the_listed_ones(session, program):
    listed = sorted(m.id for m in program["lapsed"])
    draft = save_campaign(
        session=session,
        actor=MANAGER,
        name="Come back",
        kind="win_back",
        rule={"inactive_days": 60, "points": 300},
        eligibility={"member_ids": listed},
        starts_at=START,
        ends_at=END,
        holdout_pct=0.0,
    )
    preview = preview_campaign(session, draft.id, now=NOW)
    # The listed members bought nothing lately (that is why they are listed): their stand-ins are
    # the 17 members inactive 60 days on 2 May, 12 of whom came back and would have earned 300 each.
    assert (preview["eligible"], preview["replayed_members"], preview["purchases_in_window"]) == (5, 17, 12)
    assert preview["estimated_points"] == round(12 * 300 / 17 * 5)


def test_the_holdout_gets_nothing_and_the_budget_caps_the_cost(session, program):
    draft = save_campaign(
        session=session,
        actor=MANAGER,
        name="Half held out",
        kind="spend_threshold",
        rule={"spend": 40, "points": 500},
        starts_at=START,
        ends_at=END,
        holdout_pct=0.45,
    )
    preview = preview_campaign(session, draft.id, now=NOW)
    assert preview["treatment"] + preview["holdout"] == RETURNERS + LAPSED and preview["holdout"] > 0
    # 12 x 500 earned by 17 replayed members: 6000 / 17 per treated member.
    assert preview["estimated_points"] == round(6000 / 17 * preview["treatment"])
    capped = save_campaign(
        session=session,
        actor=MANAGER,
        name="Capped",
        kind="spend_threshold",
        rule={"spend": 40, "points": 500},
        starts_at=START,
        ends_at=END,
        holdout_pct=0.0,
        budget_points=1000,
    )
    assert preview_campaign(session, capped.id, now=NOW)["estimated_points"] == 1000


def test_with_too_little_history_the_preview_and_the_expected_impact_say_so_instead_of_zero(session, program):
    draft = save_campaign(
        session=session,
        actor=MANAGER,
        name="Come back",
        kind="win_back",
        rule={"inactive_days": 60, "points": 300},
        starts_at=START,
        ends_at=utc(2026, 6, 9),
        holdout_pct=0.1,
    )  # 7 days: no return in the last 7 days
    preview = preview_campaign(session, draft.id, now=NOW)
    message = f"Not enough history to estimate: 0 purchases in the window, need {MIN_PREVIEW_PURCHASES}"
    assert preview["estimated_points"] is None
    assert preview["not_enough_history"].startswith(message)

    impact = expected_campaign_impact(session, campaign_id=draft.id, now=NOW, preview=preview)

    assert impact.reason.startswith(message)
    assert impact.points_cost is None and impact.cost is None and impact.incremental_revenue is None and impact.uplift_per_member is None


def test_nobody_eligible_costs_nothing(session, program):
    draft = save_campaign(
        session=session,
        actor=MANAGER,
        name="Nobody",
        kind="tier_offer",
        rule={"points": 30},
        eligibility={"tiers": ["Platinum"]},
        starts_at=START,
        ends_at=END,
        holdout_pct=0.0,
    )
    preview = preview_campaign(session, draft.id, now=NOW)
    assert (preview["eligible"], preview["estimated_points"], preview["not_enough_history"]) == (0, 0, None)
