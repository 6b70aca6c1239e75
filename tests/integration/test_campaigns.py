"""Campaigns: validation, lifecycle, holdout, the earn engine's stacking rules and budget caps."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest
from sqlmodel import select

from db.models import AuditLog, CampaignAssignment, LedgerEntry
from loyalty.access.roles import Actor
from loyalty.decisions.planner import preview_campaign
from loyalty.errors import InvalidInput, PermissionDenied
from loyalty.ledger.entries import balance, reverse_purchase
from loyalty.program.campaigns import activate_campaign, campaign_overview, end_campaign, pause_campaign, save_campaign, stable_uniform
from tests.factories import make_member, make_purchase, make_tier, utc

MANAGER = Actor("max", "manager")
START, END, NOW = utc(2026, 11, 1), utc(2026, 12, 1), utc(2026, 10, 31)


def _campaign(session, kind="multiplier", rule=None, **extra):
    values = {
        "name": extra.pop("name", f"{kind} campaign"),
        "kind": kind,
        "starts_at": START,
        "ends_at": END,
        "rule": rule if rule is not None else {"multiplier": 2.0},
        **extra,
    }
    campaign = save_campaign(session=session, actor=MANAGER, **values)
    return activate_campaign(session=session, campaign_id=campaign.id, actor=MANAGER, now=NOW)


def _points_by_campaign(session, purchase_id):
    rows = session.exec(select(LedgerEntry.campaign_id, LedgerEntry.points).where(LedgerEntry.purchase_id == purchase_id)).all()
    return sorted((c or 0, p) for c, p in rows)


def test_a_double_points_campaign_doubles_points_inside_its_window_only(session):
    member = make_member(session)
    campaign = _campaign(session)
    inside = make_purchase(session, member, 40.0, occurred_at=utc(2026, 11, 10))
    outside = make_purchase(session, member, 40.0, occurred_at=utc(2026, 12, 2))
    assert _points_by_campaign(session, inside) == [(0, 40), (campaign.id, 40)]
    assert _points_by_campaign(session, outside) == [(0, 40)]


def test_multipliers_take_the_highest_and_fixed_bonuses_add(session):
    member = make_member(session)
    double = _campaign(session, name="double", rule={"multiplier": 2.0})
    triple = _campaign(session, name="eco triple", kind="category_bonus", rule={"categories": ["eco-friendly"], "multiplier": 3.0})
    fixed = _campaign(session, name="fifty", kind="fixed_bonus", rule={"points": 50, "min_amount": 10})
    eco = make_purchase(session, member, 100.0, occurred_at=utc(2026, 11, 5), category="eco-friendly")
    other = make_purchase(session, member, 100.0, occurred_at=utc(2026, 11, 6), category="grocery")
    small = make_purchase(session, member, 5.0, occurred_at=utc(2026, 11, 7), category="grocery")
    # eco: base 100, the triple's extra 200 (not 100 + 200), plus 50 fixed.
    assert _points_by_campaign(session, eco) == sorted([(0, 100), (triple.id, 200), (fixed.id, 50)])
    assert _points_by_campaign(session, other) == sorted([(0, 100), (double.id, 100), (fixed.id, 50)])
    # below the fixed bonus's minimum amount: only the multiplier.
    assert _points_by_campaign(session, small) == sorted([(0, 5), (double.id, 5)])


def test_points_are_earned_on_the_amount_paid_after_discount(session):
    member = make_member(session)
    _campaign(session)
    paid = make_purchase(session, member, 19.99, occurred_at=utc(2026, 11, 5))
    assert sum(p for _, p in _points_by_campaign(session, paid)) == 19 + 19


def test_the_holdout_group_gets_nothing_and_is_stable(session):
    members = [make_member(session) for _ in range(200)]
    campaign = _campaign(session, holdout_pct=0.2)
    groups = dict(session.exec(select(CampaignAssignment.member_id, CampaignAssignment.group)).all())
    holdout = [m for m in members if groups[m.id] == "holdout"]
    treated = [m for m in members if groups[m.id] == "treatment"]
    assert 20 <= len(holdout) <= 60
    ids = np.array([m.id for m in members])
    assert ((stable_uniform(campaign.id, ids) < 0.2) == np.array([groups[i] == "holdout" for i in ids])).all()
    h = make_purchase(session, holdout[0], 50.0, occurred_at=utc(2026, 11, 5))
    t = make_purchase(session, treated[0], 50.0, occurred_at=utc(2026, 11, 5))
    assert _points_by_campaign(session, h) == [(0, 50)]
    assert _points_by_campaign(session, t) == [(0, 50), (campaign.id, 50)]


def test_a_spend_threshold_bonus_is_paid_once_when_cumulative_spend_crosses_it(session):
    member = make_member(session)
    campaign = _campaign(session, kind="spend_threshold", rule={"spend": 300, "points": 500})
    first = make_purchase(session, member, 200.0, occurred_at=utc(2026, 11, 2))
    crossing = make_purchase(session, member, 150.0, occurred_at=utc(2026, 11, 9))
    later = make_purchase(session, member, 400.0, occurred_at=utc(2026, 11, 20))
    assert _points_by_campaign(session, first) == [(0, 200)]
    assert _points_by_campaign(session, crossing) == [(0, 150), (campaign.id, 500)]
    assert _points_by_campaign(session, later) == [(0, 400)]


def test_win_back_targets_only_lapsed_members_and_pays_on_their_first_return(session):
    lapsed, regular, never = make_member(session), make_member(session), make_member(session)
    make_purchase(session, lapsed, 10.0, occurred_at=utc(2026, 3, 1))
    make_purchase(session, regular, 10.0, occurred_at=utc(2026, 10, 20))
    campaign = _campaign(session, kind="win_back", rule={"inactive_days": 90, "points": 300})
    assigned = set(session.exec(select(CampaignAssignment.member_id)).all())
    assert assigned == {lapsed.id}
    back = make_purchase(session, lapsed, 20.0, occurred_at=utc(2026, 11, 3))
    again = make_purchase(session, lapsed, 20.0, occurred_at=utc(2026, 11, 4))
    assert _points_by_campaign(session, back) == [(0, 20), (campaign.id, 300)]
    assert _points_by_campaign(session, again) == [(0, 20)]
    assert never.id not in assigned


def test_a_birthday_bonus_is_paid_near_the_birthday_once(session):
    member = make_member(session, birth_date=date(1990, 11, 15))
    campaign = _campaign(session, kind="birthday", rule={"points": 200, "window_days": 7, "occasion": "birthday"})
    early = make_purchase(session, member, 10.0, occurred_at=utc(2026, 11, 2))
    near = make_purchase(session, member, 10.0, occurred_at=utc(2026, 11, 12))
    nearer = make_purchase(session, member, 10.0, occurred_at=utc(2026, 11, 15))
    assert _points_by_campaign(session, early) == [(0, 10)]
    assert _points_by_campaign(session, near) == [(0, 10), (campaign.id, 200)]
    assert _points_by_campaign(session, nearer) == [(0, 10)]


def test_a_tier_only_offer_reaches_only_its_tiers(session):
    gold = make_tier(session, name="Gold", multiplier=1.0)
    vip, ordinary = make_member(session, tier_id=gold.id), make_member(session)
    campaign = _campaign(session, kind="tier_offer", rule={"points": 100}, eligibility={"tiers": ["Gold"]})
    a = make_purchase(session, vip, 10.0, occurred_at=utc(2026, 11, 5))
    b = make_purchase(session, ordinary, 10.0, occurred_at=utc(2026, 11, 5))
    assert _points_by_campaign(session, a) == [(0, 10), (campaign.id, 100)]
    assert _points_by_campaign(session, b) == [(0, 10)]


def test_earning_stops_when_the_budget_is_reached(session):
    members = [make_member(session) for _ in range(3)]
    campaign = _campaign(session, kind="fixed_bonus", rule={"points": 40}, budget_points=100)
    pids = [make_purchase(session, m, 10.0, occurred_at=utc(2026, 11, 5 + i)) for i, m in enumerate(members)]
    awarded = [dict(_points_by_campaign(session, p)).get(campaign.id, 0) for p in pids]
    assert awarded == [40, 40, 20]
    overview = campaign_overview(session).set_index("id")
    assert overview.loc[campaign.id, "points_awarded"] == 100
    assert overview.loc[campaign.id, "budget_burned"] == pytest.approx(1.0)


def test_a_refund_takes_back_the_campaign_bonus_too(session):
    member = make_member(session)
    _campaign(session)
    purchase = make_purchase(session, member, 30.0, occurred_at=utc(2026, 11, 5))
    assert balance(session, member.id) == 60
    assert reverse_purchase(session=session, purchase_id=purchase, actor=Actor("ops", "operations")) == 60
    assert balance(session, member.id) == 0


@pytest.mark.parametrize(
    "fields,message",
    [
        ({"kind": "multiplier", "rule": {"multiplier": 1.0}}, "multiplier above 1"),
        ({"kind": "category_bonus", "rule": {"multiplier": 2}}, "at least one category"),
        ({"kind": "fixed_bonus", "rule": {"points": 0}}, "points above 0"),
        ({"kind": "spend_threshold", "rule": {"points": 10}}, "spend to reach"),
        ({"kind": "tier_offer", "rule": {"points": 10}}, "needs the tiers"),
        ({"kind": "multiplier", "rule": {"multiplier": 2}, "holdout_pct": 0.7}, "between 0 % and 50 %"),
        ({"kind": "multiplier", "rule": {"multiplier": 2}, "ends_at": utc(2026, 10, 1)}, "ends before it starts"),
        ({"kind": "multiplier", "rule": {"multiplier": 2}, "budget_points": -5}, "budget must be above 0"),
        ({"kind": "lottery", "rule": {}}, "Unknown campaign type"),
    ],
    ids=[
        "multiplier-1",
        "category-missing",
        "zero-points",
        "threshold-missing",
        "tier-offer-no-tiers",
        "holdout-too-big",
        "reversed-dates",
        "negative-budget",
        "unknown-kind",
    ],
)
def test_invalid_campaigns_are_refused_in_plain_words(session, fields, message):
    with pytest.raises(InvalidInput, match=message):
        save_campaign(session=session, actor=MANAGER, name="bad", starts_at=START, ends_at=fields.pop("ends_at", END), **fields)


def test_lifecycle_and_changes_to_a_running_campaign_are_audited(session):
    draft = save_campaign(session=session, actor=MANAGER, name="Autumn", kind="multiplier", rule={"multiplier": 2}, starts_at=START, ends_at=END)
    assert draft.status == "draft"
    scheduled = activate_campaign(session=session, campaign_id=draft.id, actor=MANAGER, now=NOW)
    assert scheduled.status == "scheduled"
    save_campaign(session=session, actor=MANAGER, campaign_id=draft.id, budget_points=5000)
    with pytest.raises(InvalidInput, match="holdout_pct cannot change"):
        save_campaign(session=session, actor=MANAGER, campaign_id=draft.id, holdout_pct=0.3)
    assert pause_campaign(session=session, campaign_id=draft.id, actor=MANAGER).status == "paused"
    assert activate_campaign(session=session, campaign_id=draft.id, actor=MANAGER, now=utc(2026, 11, 2)).status == "active"
    ended = end_campaign(session=session, campaign_id=draft.id, actor=MANAGER, now=utc(2026, 11, 20))
    assert ended.status == "ended" and ended.ends_at == utc(2026, 11, 20)
    actions = session.exec(select(AuditLog.action).order_by(AuditLog.id)).all()
    assert actions == ["campaign.create", "campaign.activate", "campaign.update_running", "campaign.paused", "campaign.activate", "campaign.ended"]


def test_a_paused_campaign_gives_no_bonus(session):
    member = make_member(session)
    campaign = _campaign(session)
    pause_campaign(session=session, campaign_id=campaign.id, actor=MANAGER)
    pid = make_purchase(session, member, 10.0, occurred_at=utc(2026, 11, 5))
    assert _points_by_campaign(session, pid) == [(0, 10)]


def test_the_preview_counts_eligible_members_and_estimates_the_cost(session):
    members = [make_member(session) for _ in range(10)]
    for m in members:
        make_purchase(session, m, 30.0, occurred_at=utc(2026, 10, 1))
    draft = save_campaign(
        session=session,
        actor=MANAGER,
        name="Preview",
        kind="multiplier",
        rule={"multiplier": 2},
        starts_at=START,
        ends_at=utc(2026, 11, 16),
        holdout_pct=0.0,
    )
    preview = preview_campaign(session, draft.id, now=NOW)
    # 10 members x 30 extra points over the last 90 days, scaled to a 15-day campaign: 300 x 15/90 = 50.
    assert preview == {
        "eligible": 10,
        "treatment": 10,
        "holdout": 0,
        "estimated_points": 50,
        "lookback_days": 90,
        "replayed_members": 10,
        "purchases_in_window": 10,
        "purchases_needed": 10,
        "not_enough_history": None,
    }


def test_an_operations_user_cannot_configure_campaigns(session):
    with pytest.raises(PermissionDenied):
        save_campaign(
            session=session, actor=Actor("ops", "operations"), name="x", kind="multiplier", rule={"multiplier": 2}, starts_at=START, ends_at=END
        )


def test_a_birthday_bonus_reaches_across_the_new_year(session):
    member = make_member(session, birth_date=date(1990, 12, 30))
    campaign = save_campaign(
        session=session,
        actor=MANAGER,
        name="New year birthdays",
        kind="birthday",
        rule={"points": 200, "window_days": 7, "occasion": "birthday"},
        starts_at=utc(2026, 12, 1),
        ends_at=utc(2027, 2, 1),
    )
    activate_campaign(session=session, campaign_id=campaign.id, actor=MANAGER, now=utc(2026, 11, 30))
    january = make_purchase(session, member, 10.0, occurred_at=utc(2027, 1, 2))
    assert _points_by_campaign(session, january) == [(0, 10), (campaign.id, 200)]
