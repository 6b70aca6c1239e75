"""At each 1st of the month: expiry of lots past their date, the tier evaluation, campaigns starting."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
from sqlalchemy import bindparam, update

from db.bulk import insert_frame
from db.models import Campaign, Member, stored_id
from loyalty.demo.parameters import ACQUISITION_CHANNELS, DAY, CampaignPlan
from loyalty.demo.state import Simulation
from loyalty.demo.timeline import as_datetime, as_timestamps, object_array
from loyalty.ledger.entries import EXPIRE
from loyalty.program.campaigns import stable_uniform
from loyalty.program.tiers import qualifying_tier_index


def month_boundary(sim: Simulation, j: int) -> None:
    """At boundary ``j`` (a 1st of the month), in this order: expiry, tier evaluation, campaigns starting."""
    moment = int(sim.b[j])
    _expire_lots(sim, j, moment)
    _evaluate_tiers(sim, j, moment)
    for campaign, plan, start_index in sim.campaigns:
        if start_index == j:
            _assign_campaign(sim, campaign, plan, moment)


def _expire_lots(sim: Simulation, j: int, moment: int) -> None:
    """Expire each member's ``max(0, P(t) - D(t))``: lots now past their date, less what was debited (FIFO)."""
    if sim.expiry_months > 0 and j - sim.expiry_months - 1 >= 0:
        sim.due += sim.lots[(j - sim.expiry_months - 1) % len(sim.lots)]
        expired = np.maximum(0, sim.due - sim.debited)
        who = np.flatnonzero(expired)
        if len(who):
            sim.debited[who] += expired[who]
            sim.write_ledger(
                pd.DataFrame(
                    {
                        "member_id": sim.member_ids[who],
                        "kind": EXPIRE,
                        "points": -expired[who],
                        "occurred_at": as_timestamps(np.full(len(who), moment)),
                        "reason": "lots past their expiry date",
                    }
                )
            )


def _evaluate_tiers(sim: Simulation, j: int, moment: int) -> None:
    """The monthly tier evaluation, by the rule of ``loyalty.evaluation.tiers``'s job.

    Upgrades at once; a downgrade only once the tier's grace period, counted from
    the day the member reached it, is over. Movements read as the job writes them.
    """
    member = np.flatnonzero(sim.joined < moment)
    if not len(member):
        return
    spend = sim.window_spend.sum(axis=0)[member]
    count = sim.window_count.sum(axis=0)[member]
    qualified = np.maximum(qualifying_tier_index(spend, count, sim.tier_min_spend, sim.tier_min_purchases), 0)
    current = sim.tier[member]
    # Boundaries are 1sts of the month, so "tier_since + grace months" is a boundary index.
    down = (qualified < current) & (j >= sim.tier_reached[member] + sim.tier_grace[current])
    moved = (qualified > current) | down
    if not moved.any():
        return
    who, old, new = member[moved], current[moved], qualified[moved]
    sim.tier[who] = new
    sim.tier_reached[who] = j
    reason = _movement_reasons(sim, spend[moved], count[moved], old, new)
    when = as_datetime(moment)
    insert_frame(
        sim.session,
        "tier_movement",
        pd.DataFrame(
            {
                "member_id": sim.member_ids[who],
                "from_tier_id": sim.tier_ids[old],
                "to_tier_id": sim.tier_ids[new],
                "moved_at": as_timestamps(np.full(len(who), moment)),
                "reason": reason.to_numpy(),
                # As the job: an evaluation as of day D takes effect at D + 1, 00:00 UTC.
                "as_of": np.full(len(who), (when - timedelta(days=1)).date(), dtype=object),
            }
        ),
    )
    sim.counts["tier_movements"] += len(who)
    table = Member.__table__  # type: ignore[attr-defined]  # set by SQLModel at class creation, not in its stubs
    sim.session.execute(
        update(table).where(table.c.id == bindparam("member")).values(tier_id=bindparam("tier"), tier_since=bindparam("since")),
        [{"member": int(m), "tier": int(t), "since": when} for m, t in zip(sim.member_ids[who], sim.tier_ids[new])],
    )


def _movement_reasons(sim: Simulation, spend: np.ndarray, count: np.ndarray, old: np.ndarray, new: np.ndarray) -> pd.Series:
    """Why each member moved, worded as the tier evaluation job words it."""
    names = object_array(sim.tier_names)
    bought = pd.Series(count)
    lead = (
        "spent "
        + pd.Series(spend).map("{:,.2f}".format)
        + " and bought "
        + pd.Series(np.where(bought == 1, "once", bought.astype(str) + " times"))
        + " in the last 12 months"
    )
    needs = (
        " (needs "
        + pd.Series(sim.tier_min_spend[old]).map("{:,.2f}".format)
        + " and "
        + pd.Series(sim.tier_min_purchases[old]).astype(str)
        + " purchases)"
    )
    grace = pd.Series(np.where(sim.tier_grace[old] > 0, " and its " + pd.Series(sim.tier_grace[old]).astype(str) + "-month grace period is over", ""))
    reason = pd.Series(
        np.where(
            new > old,
            (lead + ": qualifies for " + pd.Series(names[new])).to_numpy(),
            (lead + ": below " + pd.Series(names[old]) + needs + grace + ": moves to " + pd.Series(names[new])).to_numpy(),
        )
    )
    return reason


def _eligible(sim: Simulation, plan: CampaignPlan, moment: int) -> np.ndarray:
    """Member indexes eligible at the campaign's start (as ``campaigns.eligible_members``)."""
    ok = sim.joined < moment
    rules = plan.eligibility
    if rules.get("tiers"):
        ok &= np.isin(sim.tier, [sim.tier_names.index(t) for t in rules["tiers"]])
    if rules.get("acquisition_channels"):
        ok &= np.isin(sim.channel, [list(ACQUISITION_CHANNELS).index(c) for c in rules["acquisition_channels"]])
    if plan.kind == "win_back":
        inactive = moment - int(plan.rule["inactive_days"]) * DAY
        ok &= sim.has_bought & (sim.last_purchase < inactive)
    return np.flatnonzero(ok)


def _assign_campaign(sim: Simulation, campaign: Campaign, plan: CampaignPlan, moment: int) -> None:
    """Assign a starting campaign's eligible members, with the stable holdout of ``activate_campaign``."""
    member = _eligible(sim, plan, moment)
    holdout = stable_uniform(stored_id(campaign), sim.member_ids[member]) < campaign.holdout_pct
    insert_frame(
        sim.session,
        "campaign_assignment",
        pd.DataFrame(
            {
                "campaign_id": stored_id(campaign),
                "member_id": sim.member_ids[member],
                "group": np.where(holdout, "holdout", "treatment"),
                "assigned_at": as_timestamps(np.full(len(member), moment)),
            }
        ),
    )
    sim.counts["campaign_assignments"] += len(member)
    treated = member[~holdout]
    sim.treated[stored_id(campaign)] = treated
    if plan.revive:
        # A win-back brings some lapsed members back; the holdout shows how many
        # would have come back anyway (none, here).
        lapsed = treated[~sim.alive[treated] & ~sim.never_buys[treated]]
        sim.alive[lapsed[sim.rng.random(len(lapsed)) < plan.revive]] = True
