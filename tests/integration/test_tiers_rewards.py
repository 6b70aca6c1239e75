"""Tier and reward configuration: validation in plain words, audit, and the entry barrier."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from sqlmodel import select

from db.models import AuditLog, Tier
from loyalty.access.roles import SYSTEM_CLI, Actor
from loyalty.decisions.barrier import entry_barrier
from loyalty.errors import InvalidInput, PermissionDenied
from loyalty.program.rewards import save_reward
from loyalty.program.tiers import TierThresholdsNotIncreasing, list_tiers, qualifying_tier_index, save_tiers
from tests.factories import make_member, make_purchase, make_tier, utc

MANAGER = Actor("max", "manager")
BASE = {"window_months": 12, "benefits": "", "grace_months": 0}


def _tiers(*rows):
    return [{**BASE, "name": n, "min_spend": s, "min_purchases": p, "multiplier": m} for n, s, p, m in rows]


def test_tiers_are_saved_in_order_and_audited(session):
    saved = save_tiers(session=session, tiers=_tiers(("Bronze", 0, 0, 1.0), ("Silver", 500, 5, 1.25), ("Gold", 2000, 12, 1.5)), actor=MANAGER)
    assert list(saved["name"]) == ["Bronze", "Silver", "Gold"]
    assert [t.rank for t in session.exec(select(Tier).order_by(Tier.rank))] == [1, 2, 3]
    assert session.exec(select(AuditLog.action)).all() == ["tiers.save"]


@pytest.mark.parametrize(
    "rows,message",
    [
        (_tiers(("Bronze", 0, 0, 1.0), ("Silver", 500, 5, 1.25), ("Gold", 400, 12, 1.5)), "Gold asks less than Silver"),
        (_tiers(("Bronze", 0, 0, 1.0), ("Silver", 0, 0, 1.25)), "same thresholds"),
        (_tiers(("Bronze", 0, 0, 1.0), ("bronze", 100, 1, 1.0)), "must be unique"),
        (_tiers(("Bronze", -5, 0, 1.0)), "min spend cannot be below 0"),
        (_tiers(("Bronze", 0, 0, 1.0), ("Silver", 100, 1, 0.5)), "earns less"),
        (_tiers(("", 0, 0, 1.0)), "name is empty"),
        ([], "at least one tier"),
    ],
    ids=["thresholds-decrease", "same-thresholds", "duplicate-name", "negative-spend", "lower-multiplier", "no-name", "empty"],
)
def test_invalid_tiers_are_refused_with_a_clear_message_and_nothing_changes(session, rows, message):
    make_tier(session, name="Existing", rank=1)
    with pytest.raises(InvalidInput, match=message):
        save_tiers(session=session, tiers=rows, actor=MANAGER)
    assert [t.name for t in session.exec(select(Tier))] == ["Existing"]


def test_decreasing_thresholds_raise_the_named_error(session):
    with pytest.raises(TierThresholdsNotIncreasing):
        save_tiers(session=session, tiers=_tiers(("A", 100, 1, 1.0), ("B", 50, 2, 1.0)), actor=MANAGER)


def test_a_tier_with_members_cannot_be_removed(session):
    save_tiers(session=session, tiers=_tiers(("Bronze", 0, 0, 1.0), ("Silver", 500, 5, 1.25)), actor=MANAGER)
    silver = session.exec(select(Tier).where(Tier.name == "Silver")).one()
    make_member(session, tier_id=silver.id)
    bronze = session.exec(select(Tier).where(Tier.name == "Bronze")).one()
    with pytest.raises(InvalidInput, match="Silver cannot be removed: 1 members"):
        save_tiers(session=session, tiers=[{**_tiers(("Bronze", 0, 0, 1.0))[0], "id": bronze.id}], actor=MANAGER)


def test_members_per_tier_are_counted(session):
    save_tiers(session=session, tiers=_tiers(("Bronze", 0, 0, 1.0), ("Silver", 500, 5, 1.25)), actor=MANAGER)
    silver = session.exec(select(Tier).where(Tier.name == "Silver")).one()
    make_member(session, tier_id=silver.id)
    make_member(session, tier_id=silver.id)
    assert dict(zip(list_tiers(session)["name"], list_tiers(session)["members"])) == {"Bronze": 0, "Silver": 2}


def test_an_analyst_cannot_change_tiers(session):
    with pytest.raises(PermissionDenied):
        save_tiers(session=session, tiers=_tiers(("Bronze", 0, 0, 1.0)), actor=Actor("ann", "analyst"))


def test_the_highest_tier_met_on_both_spend_and_purchases_is_chosen():
    spend = np.array([0, 600, 600, 2500])
    purchases = np.array([0, 2, 6, 20])
    index = qualifying_tier_index(spend, purchases, np.array([0, 500, 2000]), np.array([0, 5, 12]))
    assert index.tolist() == [0, 0, 1, 2]


@pytest.mark.parametrize(
    "fields,message",
    [
        ({"name": "", "kind": "product", "points_cost": 100}, "needs a name"),
        ({"name": "X", "kind": "voucher", "points_cost": 100}, "Unknown kind"),
        ({"name": "X", "kind": "product", "points_cost": 0}, "above 0"),
        ({"name": "X", "kind": "product", "points_cost": 100, "stock": -1}, "cannot be negative"),
        ({"name": "X", "kind": "product", "points_cost": 100, "stock": 10**12}, "at most 1,000,000,000"),
        ({"name": "X", "kind": "product", "points_cost": 100, "stock": 2.5}, "whole number"),
        ({"name": "X", "kind": "product", "points_cost": 10**12}, "at most 1,000,000,000"),
        ({"name": "X", "kind": "partner", "points_cost": 100}, "partner's name"),
        (
            {"name": "X", "kind": "product", "points_cost": 100, "available_from": utc(2026, 5, 1), "available_until": utc(2026, 4, 1)},
            "ends before it starts",
        ),
    ],
    ids=[
        "no-name",
        "unknown-kind",
        "zero-cost",
        "negative-stock",
        "huge-stock",
        "fractional-stock",
        "huge-cost",
        "partner-without-partner",
        "window-reversed",
    ],
)
def test_invalid_rewards_are_refused(session, fields, message):
    with pytest.raises(InvalidInput, match=message):
        save_reward(session=session, actor=MANAGER, **fields)


def test_a_reward_is_created_then_changed_and_both_are_audited(session):
    reward = save_reward(session=session, actor=MANAGER, name="Tree planted", kind="donation", points_cost=300)
    save_reward(session=session, actor=MANAGER, reward_id=reward.id, points_cost=250, stock=100)
    audits = session.exec(select(AuditLog).order_by(AuditLog.id)).all()
    assert [a.action for a in audits] == ["reward.create", "reward.update"]
    assert audits[1].before["points_cost"] == 300 and audits[1].after["points_cost"] == 250


def test_the_entry_barrier_counts_who_can_reach_each_reward_and_tier(session):
    now = utc(2026, 11, 1)
    save_tiers(session=session, tiers=_tiers(("Bronze", 0, 0, 1.0), ("Gold", 1000, 10, 1.0)), actor=SYSTEM_CLI)
    # Earns 100 points and spends 100 a month for 6 months -> pace 100/month.
    steady = make_member(session)
    for month in range(6):
        make_purchase(session, steady, 100.0, occurred_at=now - timedelta(days=30 * month + 5))
    # One purchase of 30 in the window -> pace 5 points a month.
    occasional = make_member(session)
    make_purchase(session, occasional, 30.0, occurred_at=now - timedelta(days=20))
    # Inactive: last purchase a year ago, not counted.
    inactive = make_member(session)
    make_purchase(session, inactive, 5000.0, occurred_at=now - timedelta(days=400))
    save_reward(session=session, actor=SYSTEM_CLI, name="Coffee", kind="product", points_cost=200)
    save_reward(session=session, actor=SYSTEM_CLI, name="Weekend away", kind="experience", points_cost=5000)

    barrier = entry_barrier(session, now=now)
    rewards = barrier["rewards"].set_index("reward")
    # steady: 600 balance + 100 x 12 = 1800 >= 200, capped at 100 x 12 expiry = 1200 < 5000.
    # occasional: 30 + 5 x 12 = 90 < 200.
    assert rewards.loc["Coffee", "reachable_members"] == 1 and rewards.loc["Coffee", "active_members"] == 2
    assert rewards.loc["Weekend away", "reachable_members"] == 0 and bool(rewards.loc["Weekend away", "barrier"])
    tiers = barrier["tiers"].set_index("tier")
    # Gold needs 1000 spend and 10 purchases in 12 months: steady's pace is 1200 and 12.
    assert tiers.loc["Gold", "reachable_members"] == 1 and tiers.loc["Bronze", "reachable_members"] == 2


def test_saving_a_reward_does_not_put_back_stock_taken_since_the_editor_opened(session):
    reward = save_reward(session=session, actor=MANAGER, name="Mug", kind="product", points_cost=100, stock=10)
    reward.stock = 5  # redemptions took five meanwhile
    session.add(reward)
    session.commit()
    with pytest.raises(InvalidInput, match="stock changed to 5"):
        save_reward(session=session, actor=MANAGER, reward_id=reward.id, stock_seen=10, name="Mug (blue)", stock=10)
    saved = save_reward(session=session, actor=MANAGER, reward_id=reward.id, stock_seen=5, name="Mug (blue)", stock=5)
    assert (saved.name, saved.stock) == ("Mug (blue)", 5)
