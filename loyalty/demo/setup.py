"""Step 1, the program: tiers, the rewards catalogue and the campaigns whose start falls in the history."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlmodel import col, select

from db.models import Tier
from loyalty.demo.parameters import CAMPAIGNS, REWARDS, TIERS
from loyalty.demo.state import Simulation
from loyalty.demo.timeline import as_datetime, object_array
from loyalty.program.campaigns import save_campaign
from loyalty.program.rewards import save_reward
from loyalty.program.tiers import save_tiers


def set_up_program(sim: Simulation) -> None:
    """The program: tiers (kept in ``sim`` as arrays by rank), the rewards catalogue, the campaigns."""
    session, actor = sim.session, sim.actor
    save_tiers(session=session, tiers=[dict(t) for t in TIERS], actor=actor)
    tiers = session.exec(select(Tier).order_by(col(Tier.rank))).all()
    sim.tier_ids = np.array([t.id for t in tiers], dtype=np.int64)
    sim.tier_names = [t.name for t in tiers]
    sim.tier_multiplier = np.array([t.multiplier for t in tiers], dtype=np.float64)
    sim.tier_min_spend = np.array([t.min_spend for t in tiers], dtype=np.float64)
    sim.tier_min_purchases = np.array([t.min_purchases for t in tiers], dtype=np.int64)
    sim.tier_grace = np.array([t.grace_months for t in tiers], dtype=np.int64)
    rank_of = {t.name: i for i, t in enumerate(tiers)}
    _create_rewards(sim, rank_of)
    _create_campaigns(sim)


def _create_rewards(sim: Simulation, rank_of: dict[str, int]) -> None:
    """The rewards catalogue, with the months each can be redeemed in and its stock per 1,000 members."""
    b, last = sim.b, sim.intervals
    summer = _last_full_summer(sim)
    recent_from = max(1, last - 6)
    ids, costs, weights, stock, min_rank, available = [], [], [], [], [], []
    for plan in REWARDS:
        window: tuple[int, int] = (0, last)  # months [from, until) in which it can be redeemed
        window_fields: dict[str, Any] = {}
        if plan.window == "summer" and summer is not None:
            window = summer
            window_fields = {"available_from": as_datetime(b[summer[0]]), "available_until": as_datetime(b[summer[1]])}
        elif plan.window == "summer":
            window = (0, 0)
        elif plan.window == "recent":
            window = (recent_from, last)
            window_fields = {"available_from": as_datetime(b[recent_from])}
        units = None if plan.stock_per_1000 is None else max(1, round(plan.stock_per_1000 * sim.n / 1000))
        reward = save_reward(
            session=sim.session,
            actor=sim.actor,
            name=plan.name,
            kind=plan.kind,
            description=plan.description,
            points_cost=plan.points_cost,
            stock=units,
            partner=plan.partner,
            active=plan.active,
            min_tier_id=int(sim.tier_ids[rank_of[plan.min_tier]]) if plan.min_tier else None,
            **window_fields,
        )
        ids.append(reward.id)
        costs.append(plan.points_cost)
        weights.append(plan.weight)
        stock.append(-1 if units is None else units)
        min_rank.append(rank_of[plan.min_tier] if plan.min_tier else 0)
        open_months = np.zeros(last, dtype=bool)
        open_months[window[0] : window[1]] = True
        available.append(open_months)
    sim.reward_ids = np.array(ids, dtype=np.int64)
    sim.reward_names = object_array([p.name for p in REWARDS])
    sim.reward_cost = np.array(costs, dtype=np.int64)
    sim.reward_weight = np.array(weights, dtype=np.float64)
    sim.reward_stock = np.array(stock, dtype=np.int64)  # -1: unlimited
    sim.reward_min_rank = np.array(min_rank, dtype=np.int64)
    sim.reward_available = np.array(available)  # rewards x months


def _last_full_summer(sim: Simulation) -> tuple[int, int] | None:
    """Intervals of the last June-August fully inside the history."""
    for k in range(sim.intervals - 3, 0, -1):
        if sim.calendar_month[k] == 5 and k + 3 < len(sim.b) - 1:
            return k, k + 3
    return None


def _create_campaigns(sim: Simulation) -> None:
    """Create the campaigns (validated drafts) whose start falls inside the history.

    Their status is set now, before any purchase: the earn engine then awards their
    bonuses as the history's purchases are added, from the assignments written at
    each campaign's start.
    """
    current = sim.intervals - 1  # the interval starting on the 1st of the current month
    sim.campaigns = []
    for plan in CAMPAIGNS:
        start_index = current - plan.months_back
        if plan.months_back >= 0 and start_index < 1:
            continue  # the history is too short for it
        if plan.months_back >= 0:
            starts_at = as_datetime(sim.b[start_index])
        else:
            starts_at = (pd.Timestamp(sim.b[-2], unit="s", tz="UTC") + pd.DateOffset(months=-plan.months_back)).to_pydatetime()
        ends_at = starts_at + timedelta(days=plan.days)
        campaign = save_campaign(
            session=sim.session,
            actor=sim.actor,
            name=plan.name,
            kind=plan.kind,
            description=plan.description,
            starts_at=starts_at,
            ends_at=ends_at,
            channels=list(plan.channels),
            eligibility=dict(plan.eligibility),
            rule=dict(plan.rule),
            holdout_pct=plan.holdout_pct,
            budget_points=int(plan.budget_per_member * sim.n) if plan.budget_per_member else None,
        )
        if plan.lifecycle == "run":
            campaign.status = "ended" if campaign.ends_at <= sim.now else "active"
            sim.session.add(campaign)
        sim.campaigns.append((campaign, plan, start_index if plan.lifecycle == "run" else -1))
    sim.session.flush()
    sim.treated = {}
