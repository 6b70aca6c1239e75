"""One simulated month: purchases (and refunds), then redemptions, then NPS answers."""

from __future__ import annotations

import numpy as np

from loyalty.demo.feedback import collect_feedback
from loyalty.demo.parameters import MIN_WINDOW
from loyalty.demo.purchases import simulate_purchases
from loyalty.demo.redemptions import simulate_redemptions
from loyalty.demo.state import MonthStats, Simulation


def simulate_month(sim: Simulation, k: int) -> None:
    """Simulate month ``k`` (between boundaries ``k`` and ``k + 1``) and keep its figures in ``sim.monthly``.

    Each member's redemption and answer come after their last purchase of the month,
    so a redemption only spends points the member holds.
    """
    month_start, month_end = int(sim.b[k]), int(sim.b[k + 1])
    lo = np.maximum(month_start, sim.joined)
    present = (sim.joined < month_end) & (month_end - lo >= MIN_WINDOW)
    stats = MonthStats(new_members=int((sim.join_month == k).sum()), active=np.zeros(sim.n, dtype=bool))
    sim.month_lots = np.zeros(sim.n, dtype=np.int64)
    sim.last_of_month = np.full(sim.n, -1, dtype=np.int64)
    sim.window_spend[k % 12] = 0.0
    sim.window_count[k % 12] = 0

    simulate_purchases(sim, k, stats, lo, present, month_start, month_end)

    # Each member's remaining events of the month come after their last purchase.
    settle_from = np.where(sim.last_of_month >= 0, sim.last_of_month, lo)
    if sim.redemptions_on:
        simulate_redemptions(sim, k, stats, settle_from, month_end, present)
    collect_feedback(sim, k, stats, settle_from, month_end, lo, present)
    sim.lots[k % len(sim.lots)] = sim.month_lots
    sim.credited += sim.month_lots
    sim.monthly.append(stats)
