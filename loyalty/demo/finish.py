"""The end of the history: the expiry run at ``now``, reward stock, scheduled campaigns, segments, goals."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
from sqlalchemy import bindparam, text, update

from db.models import KpiTarget, Reward, Segment, stored_id
from loyalty.access.audit import record_audit
from loyalty.demo.engagement import add_engagement, add_messages
from loyalty.demo.parameters import ACQUISITION_CHANNELS, GOALS, SEGMENTS, TARGET_DIRECTIONS, TargetPlan
from loyalty.demo.state import Simulation
from loyalty.ledger.entries import expire_points
from loyalty.program.campaigns import activate_campaign


def finish_history(sim: Simulation) -> None:
    """The end of the history: expiry at ``now``, reward stock left, scheduled campaigns, segments, goals."""
    session, actor = sim.session, sim.actor
    add_engagement(sim)  # challenges and referrals paid over the history, before its last expiry
    # The last boundary is `now` itself, not a 1st of the month: the ledger's own
    # expiry run computes it exactly.
    if sim.expiry_months > 0:
        sim.counts["ledger_entries"] += expire_points(session=session, as_of=sim.now, actor=actor)
    table = Reward.__table__  # type: ignore[attr-defined]  # set by SQLModel at class creation, not in its stubs
    limited = np.flatnonzero(sim.reward_stock >= 0)
    if len(limited):
        session.execute(
            update(table).where(table.c.id == bindparam("reward")).values(stock=bindparam("left")),
            [{"reward": int(sim.reward_ids[r]), "left": int(sim.reward_stock[r])} for r in limited],
        )
    for campaign, plan, _ in sim.campaigns:
        if plan.lifecycle == "schedule":
            activate_campaign(session=session, campaign_id=stored_id(campaign), actor=actor, now=sim.now)
            sim.counts["campaign_assignments"] += int(
                session.execute(text("SELECT COUNT(*) FROM campaign_assignment WHERE campaign_id = :c"), {"c": campaign.id}).scalar_one()
            )
    sim.segment_ids = {}
    for name, description, rules in SEGMENTS:
        segment = Segment(name=name, description=description, rules=rules, created_by=actor.username)
        session.add(segment)
        session.flush()
        sim.segment_ids[name] = stored_id(segment)
    sim.points_outstanding = int(session.execute(text("SELECT COALESCE(SUM(points), 0) FROM ledger_entry")).scalar_one())
    _create_goals(sim)
    add_messages(sim)
    record_audit(
        session,
        actor=actor,
        action="demo.create",
        entity="program",
        after={"members": sim.n, "months": len(sim.b) - 1, "purchases": sim.counts["purchases"], "now": sim.now.isoformat()},
    )


def _baselines(sim: Simulation) -> dict[tuple[str, str | None], float]:
    """Each KPI over the last three complete months, for targets near today's level."""
    recent = sim.monthly[-4:-1] if len(sim.monthly) >= 4 else sim.monthly[:-1] or sim.monthly
    previous = sim.monthly[-5:-2] if len(sim.monthly) >= 5 else recent
    active = [int(m.active.sum()) for m in recent]
    purchases = [m.purchases for m in recent]
    revenue = [m.revenue for m in recent]
    retention, social_retention = [], []
    social = sim.channel == list(ACQUISITION_CHANNELS).index("social_ads")
    for before, this in zip(previous, recent):
        kept = before.active & this.active
        retention.append(kept.sum() / max(before.active.sum(), 1))
        social_retention.append((kept & social).sum() / max((before.active & social).sum(), 1))
    scores = np.concatenate([s for m in sim.monthly[-6:] for s in m.scores] or [np.zeros(0)])
    nps = 100.0 * ((scores >= 9).mean() - (scores <= 6).mean()) if len(scores) else 0.0
    buyers = np.flatnonzero(sim.has_bought)
    earned = sum(m.earned for m in recent)
    return {
        ("new_members", None): _mean([m.new_members for m in recent]),
        ("active_members", None): _mean(active),
        ("average_transaction_value", None): sum(revenue) / max(sum(purchases), 1),
        ("purchase_frequency", None): sum(purchases) / max(sum(active), 1),
        ("revenue_per_member", None): sum(revenue) / max(int(np.logical_or.reduce([m.active for m in recent]).sum()), 1),
        ("historical_clv", None): sum(m.revenue for m in sim.monthly) / max(len(buyers), 1),
        ("retention_rate", None): _mean(retention),
        ("retention_rate", "Social-ads recruits"): _mean(social_retention),
        ("repeat_purchase_rate", None): sum(m.repeat_buyers for m in recent) / max(sum(active), 1),
        ("nps", None): nps,
        ("points_outstanding", None): float(sim.points_outstanding),
        ("redemption_rate", None): sum(m.redeemed for m in recent) / max(earned, 1),
    }


def _create_goals(sim: Simulation) -> None:
    """The goals, each with KPI targets set near the level of the last complete months."""
    from loyalty.program.goals import save_goal

    baselines = _baselines(sim)
    today = sim.now.date()
    starts_on = (pd.Timestamp(today).replace(day=1) - pd.DateOffset(months=2)).date()
    ends_on = (pd.Timestamp(today).replace(day=1) + pd.DateOffset(months=10)).date() - timedelta(days=1)
    sim.goal_count = sim.target_count = 0
    for name, objective, owner, frequency, strategy, targets in GOALS:
        goal = save_goal(
            session=sim.session,
            actor=sim.actor,
            name=name,
            objective=objective,
            owner=owner,
            starts_on=starts_on,
            ends_on=ends_on,
            reporting_frequency=frequency,
            strategy=strategy,
        )
        sim.goal_count += 1
        for plan in targets:
            # Written as loyalty.program.goals.save_kpi_target does, without importing the
            # analytics catalogue (scipy and all: seconds) only to check names this
            # module's tests already check against it.
            target = KpiTarget(
                goal_id=stored_id(goal),
                metric=plan.metric,
                period=plan.period,
                target_value=_target_value(baselines[(plan.metric, plan.segment)], plan),
                direction=TARGET_DIRECTIONS.get(plan.metric, "up"),
                segment_id=sim.segment_ids[plan.segment] if plan.segment else None,
            )
            sim.session.add(target)
            sim.session.flush()
            record_audit(sim.session, actor=sim.actor, action="kpi_target.save", entity="kpi_target", entity_id=target.id, after=target.model_dump())
            sim.target_count += 1


def _mean(values: list[float] | list[int]) -> float:
    """The mean, 0 for no values."""
    return float(np.mean(values)) if len(values) else 0.0


def _target_value(baseline: float, target: TargetPlan) -> float:
    """A target from its baseline, rounded as the metric is shown (rates at most 1)."""
    value = baseline + target.amount if target.how == "plus" else baseline * target.amount
    if target.metric in ("new_members", "active_members", "points_outstanding", "nps"):
        return float(round(value))
    if target.metric in ("retention_rate", "repeat_purchase_rate", "redemption_rate"):
        return float(min(round(value, 3), 1.0))
    return float(round(value, 2))
