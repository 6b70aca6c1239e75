"""What-if simulator: a small program replayed by hand, scenarios saved, compared and drafted."""

from __future__ import annotations

from datetime import date

import pytest
from sqlmodel import select

from db.models import AuditLog, Reward, Scenario, Tier
from loyalty.access.roles import SYSTEM_CLI, Actor
from loyalty.decisions.whatif import (
    apply_scenario_tiers,
    compare_scenarios,
    delete_scenario,
    draft_from_scenario,
    list_scenarios,
    save_scenario,
    simulate,
    summary_frame,
    tiers_frame,
)
from loyalty.errors import InvalidInput, PermissionDenied
from loyalty.ledger.redemptions import redeem_reward
from loyalty.program.tiers import save_tiers
from tests.factories import make_member, make_purchase, make_reward, utc

# The window: the 12 months before January 2026, i.e. January to December 2025.
AS_OF = date(2026, 1, 15)
BASE = {"name": "Base", "min_spend": 0, "min_purchases": 0, "window_months": 12, "multiplier": 1.0, "benefits": "", "grace_months": 0}
GOLD = {"name": "Gold", "min_spend": 300, "min_purchases": 2, "window_months": 12, "multiplier": 2.0, "benefits": "lounge", "grace_months": 0}
ANALYST, MANAGER, OPERATIONS = Actor("ana", "analyst"), Actor("max", "manager"), Actor("ops", "operations")


@pytest.fixture
def program(session):
    """Two tiers, one reward (Coffee, 100 points), three members; earn 1 point per unit, expiry 12 months, point 0.01."""
    save_tiers(session=session, tiers=[BASE, GOLD], actor=SYSTEM_CLI)
    coffee = make_reward(session, name="Coffee", points_cost=100)
    anna, ben, _carl = (make_member(session, joined_at=utc(2024, 1, 1)) for _ in range(3))  # Carl never buys
    make_purchase(session, anna, 200.0, occurred_at=utc(2025, 2, 10))
    make_purchase(session, anna, 150.25, occurred_at=utc(2025, 3, 10))
    redeem_reward(session=session, member_id=anna.id, reward_id=coffee.id, actor=SYSTEM_CLI, now=utc(2025, 4, 5))
    make_purchase(session, ben, 80.0, occurred_at=utc(2024, 3, 5))  # warm-up year: expires inside the window
    make_purchase(session, ben, 40.0, occurred_at=utc(2025, 6, 20))
    refunded = make_purchase(session, ben, 500.0, occurred_at=utc(2025, 7, 1))
    from loyalty.ledger.entries import reverse_purchase

    reverse_purchase(session=session, purchase_id=refunded, actor=SYSTEM_CLI)
    return {"coffee": coffee}


def scenario_changes(coffee_id: int) -> dict:
    return {"tiers": [BASE, {**GOLD, "min_spend": 500}], "points_per_currency_unit": 2, "expiry_months": 6, "reward_costs": {coffee_id: 150}}


def test_the_current_rules_replay_matches_the_hand_computed_year(session, program):
    # Anna: Feb 200 and Mar 150 points at Base; Gold from April (350.25 spent, 2 purchases); redeems Coffee (100) in April.
    # Ben: 80 points from March 2024 expire at the end of March 2025; 40 in June. His 500 purchase was refunded.
    result = simulate(session, as_of=AS_OF)
    current = result["current"]
    assert (result["window_start"], result["window_end"]) == ("2025-01-01", "2026-01-01")
    assert result["members"] == 3
    assert {k: current[k] for k in ("active_members", "points_issued", "points_redeemed", "points_expired", "points_outstanding")} == {
        "active_members": 2,
        "points_issued": 390,
        "points_redeemed": 100,
        "points_expired": 80,
        "points_outstanding": 290,
    }
    assert current["liability"] == pytest.approx(2.90)
    assert current["revenue"] == pytest.approx(390.25)
    assert current["cost_share"] == pytest.approx(3.90 / 390.25)
    assert current["tiers"] == [{"tier": "Base", "members": 2, "reach": 1.0}, {"tier": "Gold", "members": 1, "reach": 0.5}]
    # Anna held 350 points; Ben at most 80 (< 100): one of the two active members reaches Coffee.
    assert current["first_reward"] == "Coffee" and current["first_reward_reach"] == 0.5
    assert result["scenario"] == current


def test_a_scenario_replay_matches_the_hand_computed_year(session, program):
    # Gold needs 500 (Anna stays Base), 2 points per unit, expiry 6 months, Coffee 150.
    # Anna: 400 (Feb) + 300 (Mar) = 700; redeems 100 x 150/100 x 700/350 = 300 in April (from the February lot);
    #       the rest of February (100) expires at the end of August, March (300) at the end of September.
    # Ben: 160 from March 2024 expired in September 2024 (warm-up); 80 from June expire at the end of December.
    result = simulate(session, changes=scenario_changes(program["coffee"].id), as_of=AS_OF)
    scenario = result["scenario"]
    assert {k: scenario[k] for k in ("points_issued", "points_redeemed", "points_expired", "points_outstanding")} == {
        "points_issued": 780,
        "points_redeemed": 300,
        "points_expired": 480,
        "points_outstanding": 0,
    }
    assert scenario["liability"] == 0
    assert scenario["cost_share"] == pytest.approx(7.80 / 390.25)
    assert scenario["tiers"] == [{"tier": "Base", "members": 3, "reach": 1.0}, {"tier": "Gold", "members": 0, "reach": 0.0}]
    assert scenario["rewards"] == [{"reward_id": program["coffee"].id, "reward": "Coffee", "points_cost": 150, "reach": 0.5}]
    assert scenario["monthly"]["expired"] == [0, 0, 0, 0, 0, 0, 0, 100, 300, 0, 0, 80]

    summary = summary_frame(result).set_index("metric")
    assert summary.loc["points_issued", ["current", "scenario", "difference"]].tolist() == [390, 780, 390]
    assert summary.loc["liability", "difference"] == pytest.approx(-2.90)
    tiers = tiers_frame(result)
    assert tiers[["tier", "members_current", "members_scenario", "difference"]].values.tolist() == [["Base", 2, 3, 1], ["Gold", 1, 0, -1]]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"expiry_months": -1}, "expiry_months"),
        ({"points_per_currency_unit": -0.5}, "points_per_currency_unit"),
        ({"reward_costs": {"COFFEE": 0}}, "Coffee's points cost must be a whole number above 0"),
        ({"tiers": [BASE, {**GOLD, "name": "base"}]}, "unique"),
        ({"tiers": [BASE, {**GOLD, "min_spend": 0, "min_purchases": 0}]}, "same thresholds"),
        ({"tiers": [BASE, {**GOLD, "multiplier": None}]}, "multiplier is missing"),
        ({"bonus": 3}, "Unknown change"),
    ],
    ids=[
        "negative expiry",
        "negative earn rate",
        "zero cost",
        "duplicate tier name",
        "thresholds not increasing",
        "missing multiplier",
        "unknown key",
    ],
)
def test_invalid_changes_are_refused_naming_the_field(session, program, changes, message):
    if "reward_costs" in changes:
        changes = {"reward_costs": {program["coffee"].id: 0}}
    with pytest.raises(InvalidInput, match=message):
        simulate(session, changes=changes, as_of=AS_OF)


def test_analysts_save_and_compare_scenarios_and_each_save_is_audited(session, program):
    richer = save_scenario(session=session, actor=ANALYST, name="Richer", changes=scenario_changes(program["coffee"].id), as_of=AS_OF)
    cheaper = save_scenario(
        session=session,
        actor=MANAGER,
        name="Cheap coffee",
        changes={"reward_costs": {program["coffee"].id: 50}},
        description="halve the coffee",
        as_of=AS_OF,
    )
    assert richer.window_start == date(2025, 1, 1) and richer.result["scenario"]["points_issued"] == 780
    assert list_scenarios(session)["name"].tolist() == ["Cheap coffee", "Richer"]
    audit = session.exec(select(AuditLog).where(AuditLog.action == "scenario.save").order_by(AuditLog.id)).all()
    assert [(a.actor, a.entity_id) for a in audit] == [("ana", str(richer.id)), ("max", str(cheaper.id))]

    table = compare_scenarios(session, [richer.id, cheaper.id]).set_index("metric")
    assert table.loc["points_issued", ["Current rules", "Richer", "Cheap coffee"]].tolist() == [390, 780, 390]
    assert table.loc["tier:Gold", ["Current rules", "Richer", "Cheap coffee"]].tolist() == [1, 0, 1]
    # Coffee at 50: Anna redeems 50 instead of 100, so 50 more points stay outstanding.
    assert table.loc["points_outstanding", "Cheap coffee"] == 340

    with pytest.raises(InvalidInput, match="name: a scenario named 'Richer' already exists"):
        save_scenario(session=session, actor=ANALYST, name="Richer", changes={}, as_of=AS_OF)
    with pytest.raises(PermissionDenied):
        save_scenario(session=session, actor=OPERATIONS, name="Ops", changes={}, as_of=AS_OF)
    with pytest.raises(PermissionDenied):
        delete_scenario(session=session, actor=OPERATIONS, scenario_id=richer.id)
    assert delete_scenario(session=session, actor=ANALYST, scenario_id=cheaper.id) == "Cheap coffee"
    assert session.exec(select(Scenario.name)).all() == ["Richer"]
    assert session.exec(select(AuditLog.before).where(AuditLog.action == "scenario.delete")).one()["name"] == "Cheap coffee"


def test_a_scenario_becomes_drafts_and_its_tiers_apply_only_when_a_manager_confirms(session, program):
    scenario = save_scenario(session=session, actor=ANALYST, name="Richer", changes=scenario_changes(program["coffee"].id), as_of=AS_OF)
    with pytest.raises(PermissionDenied):
        draft_from_scenario(session=session, actor=ANALYST, scenario_id=scenario.id)

    proposal = draft_from_scenario(session=session, actor=MANAGER, scenario_id=scenario.id)
    draft = session.exec(select(Reward).where(Reward.name == "Coffee [draft: Richer]")).one()
    assert (draft.points_cost, draft.active) == (150, False)
    assert session.get(Reward, program["coffee"].id).points_cost == 100, "the live reward is untouched"
    assert proposal["settings"] == {"points_per_currency_unit": 2.0, "expiry_months": 6}
    gold = session.exec(select(Tier).where(Tier.name == "Gold")).one()
    assert [(t["id"], t["name"], t["min_spend"]) for t in proposal["tiers"]][1] == (gold.id, "Gold", 500.0)
    assert gold.min_spend == 300, "tiers are only proposed"
    actions = session.exec(select(AuditLog.action).where(AuditLog.actor == "max").order_by(AuditLog.id)).all()
    assert actions == ["reward.create", "scenario.draft"]

    with pytest.raises(InvalidInput, match="already exists"):
        draft_from_scenario(session=session, actor=MANAGER, scenario_id=scenario.id)
    with pytest.raises(InvalidInput, match="confirm"):
        apply_scenario_tiers(session=session, actor=MANAGER, scenario_id=scenario.id)
    with pytest.raises(PermissionDenied):
        apply_scenario_tiers(session=session, actor=ANALYST, scenario_id=scenario.id, confirm=True)
    tiers = apply_scenario_tiers(session=session, actor=MANAGER, scenario_id=scenario.id, confirm=True)
    assert tiers[["name", "min_spend", "benefits"]].values.tolist() == [["Base", 0.0, ""], ["Gold", 500.0, "lounge"]]
    session.refresh(gold)
    assert gold.min_spend == 500
    assert session.exec(select(AuditLog.action).where(AuditLog.actor == "max").order_by(AuditLog.id.desc()).limit(2)).all() == [
        "tiers.save",
        "scenario.apply_tiers",
    ]


def test_a_window_without_purchases_replays_to_zero(session):
    save_tiers(session=session, tiers=[BASE], actor=SYSTEM_CLI)
    make_member(session)
    result = simulate(session, as_of=AS_OF)
    assert result["purchases"] == 0
    assert result["current"]["points_issued"] == 0 and result["current"]["cost_share"] is None
    assert result["current"]["tiers"] == [{"tier": "Base", "members": 1, "reach": None}]
