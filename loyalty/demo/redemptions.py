"""The month's redemptions: at most one per member, of points they hold, some cancelled."""

from __future__ import annotations

import numpy as np
import pandas as pd

from db.bulk import allocate_ids, insert_frame
from loyalty.demo.parameters import (
    CANCEL_NOTES,
    CANCEL_SHARE,
    DAY,
    FULFIL_DAYS,
    HANDLED_BY,
    MIN_WINDOW,
    REDEEM_PROPENSITY_ACTIVE,
    REDEEM_PROPENSITY_LAPSED,
    VALUE_PREFERENCE,
)
from loyalty.demo.state import MonthStats, Simulation
from loyalty.demo.timeline import as_seconds, as_timestamps, object_array
from loyalty.ledger.entries import REDEEM, REVERSE, expiry_dates


def simulate_redemptions(sim: Simulation, k: int, stats: MonthStats, settle_from: np.ndarray, month_end: int, present: np.ndarray) -> None:
    """At most one redemption per member and month, of points the member holds then; a few cancelled."""
    requests = _requests(sim, k, settle_from, month_end, present)
    if requests is None:
        return
    who, pick, when = requests
    if not len(who):
        return
    _write_redemptions(sim, stats, who, pick, when, month_end)


def _requests(
    sim: Simulation, k: int, settle_from: np.ndarray, month_end: int, present: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Who redeems (member), which reward (index) and when; None when nobody can.

    A member redeems a reward they can afford and their tier allows, leaning to the
    bigger ones; limited stock goes to the earliest requests.
    """
    rng = sim.rng
    balance = sim.credited + sim.month_lots - sim.debited
    room = month_end - settle_from
    open_rewards = sim.reward_available[:, k] & (sim.reward_stock != 0)
    if not open_rewards.any():
        return None
    cheapest = sim.reward_cost[open_rewards].min()
    propensity = np.where(sim.alive & ~sim.never_buys, REDEEM_PROPENSITY_ACTIVE, REDEEM_PROPENSITY_LAPSED)
    who = np.flatnonzero(present & (room >= MIN_WINDOW) & (balance >= cheapest) & (rng.random(sim.n) < propensity))
    if not len(who):
        return None
    reachable = (sim.reward_cost[None, :] <= balance[who, None]) & open_rewards[None, :] & (sim.reward_min_rank[None, :] <= sim.tier[who, None])
    preference = sim.reward_weight * (sim.reward_cost / sim.reward_cost.min()) ** VALUE_PREFERENCE
    cumulative = np.cumsum(reachable * preference[None, :], axis=1)
    threshold = rng.random(len(who)) * cumulative[:, -1]
    pick = np.minimum((cumulative <= threshold[:, None]).sum(axis=1), len(sim.reward_ids) - 1)
    when = settle_from[who] + (room[who] * (0.5 + 0.45 * rng.random(len(who)))).astype(np.int64)
    # Limited stock goes to the earliest requests; later ones find it sold out.
    keep = np.ones(len(who), dtype=bool)
    for reward in np.flatnonzero(sim.reward_stock >= 0):
        asked = np.flatnonzero(pick == reward)
        if len(asked) > sim.reward_stock[reward]:
            keep[asked[np.argsort(when[asked], kind="stable")][sim.reward_stock[reward] :]] = False
    return who[keep], pick[keep], when[keep]


def _write_redemptions(sim: Simulation, stats: MonthStats, who: np.ndarray, pick: np.ndarray, when: np.ndarray, month_end: int) -> None:
    """Write the redemptions, their ``redeem`` entries, and for the cancelled ones the points returned."""
    rng, count = sim.rng, len(who)
    cost = sim.reward_cost[pick]
    cancelled = rng.random(count) < CANCEL_SHARE
    cancelled_at = when + 60 + (rng.random(count) * (month_end - when - 120) * 0.9).astype(np.int64)
    fulfilled_at = when + rng.integers(FULFIL_DAYS[0] * DAY, FULFIL_DAYS[1] * DAY, size=count)
    fulfilled = ~cancelled & (fulfilled_at <= as_seconds(sim.now))
    status = np.where(cancelled, "cancelled", np.where(fulfilled, "fulfilled", "requested"))
    note = np.where(cancelled, object_array(CANCEL_NOTES)[rng.integers(0, len(CANCEL_NOTES), size=count)], "")
    ids = allocate_ids(sim.session, "redemption", count)
    insert_frame(
        sim.session,
        "redemption",
        pd.DataFrame(
            {
                "id": ids,
                "member_id": sim.member_ids[who],
                "reward_id": sim.reward_ids[pick],
                "points": cost,
                "status": status,
                "requested_at": as_timestamps(when),
                "fulfilled_at": as_timestamps(fulfilled_at).where(fulfilled),
                "cancelled_at": as_timestamps(cancelled_at).where(cancelled),
                "handled_by": np.where(status == "requested", "", HANDLED_BY),
                "note": note,
            }
        ),
    )
    sim.write_ledger(
        pd.DataFrame(
            {
                "member_id": sim.member_ids[who],
                "kind": REDEEM,
                "points": -cost,
                "occurred_at": as_timestamps(when),
                "redemption_id": ids,
                "reason": "redeemed " + pd.Series(sim.reward_names[pick]),
            }
        )
    )
    returned_at = as_timestamps(cancelled_at[cancelled])
    # Returned points are a new lot with a fresh expiry period, as cancel_redemption writes.
    sim.write_ledger(
        pd.DataFrame(
            {
                "member_id": sim.member_ids[who[cancelled]],
                "kind": REVERSE,
                "points": cost[cancelled],
                "occurred_at": returned_at,
                "expires_at": _returned_lot_expiry(sim, returned_at),
                "redemption_id": ids[cancelled],
                "reason": "redemption cancelled: " + pd.Series(note[cancelled], dtype=object),
            }
        )
    )
    sim.debited[who] += cost
    np.add.at(sim.month_lots, who[cancelled], cost[cancelled])
    limited = sim.reward_stock >= 0
    taken = np.bincount(pick[~cancelled], minlength=len(sim.reward_ids))
    sim.reward_stock[limited] -= taken[limited]
    sim.counts["redemptions"] += count
    stats.redeemed = int(cost[~cancelled].sum())


def _returned_lot_expiry(sim: Simulation, moments: pd.Series) -> pd.Series:
    """When points returned at ``moments`` expire (never, without an expiry period)."""
    if sim.expiry_months <= 0:
        return pd.Series(pd.NaT, index=moments.index, dtype=moments.dtype)
    return expiry_dates(moments, sim.expiry_months)
