"""The state a demo simulation carries from step to step: program ids, members' behaviour, balances."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd
from sqlmodel import Session

from db.bulk import insert_frame
from db.models import Campaign, utcnow
from loyalty.access.roles import Actor
from loyalty.demo.parameters import CampaignPlan, ProgressFn
from loyalty.demo.timeline import as_datetime, as_seconds, month_boundaries
from loyalty.ledger.outbox import emit_entries
from loyalty.settings import get_settings


@dataclass
class MonthStats:
    """What one simulated month produced, for the goals' baselines."""

    new_members: int = 0
    active: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))  # per member: bought this month
    purchases: int = 0
    revenue: float = 0.0
    repeat_buyers: int = 0
    earned: int = 0
    redeemed: int = 0
    scores: list[np.ndarray] = field(default_factory=list)


class Simulation:
    """One run of the demo: its session, its random generator, and the state every step reads and updates.

    Arrays are indexed by member (in order of joining) unless named otherwise; ``b`` holds
    the boundaries of the simulated months in epoch seconds (history start, each 1st of
    the month, ``now``). Each step sets the attributes it introduces, in the order
    :func:`loyalty.demo.simulation.simulate` calls them.
    """

    # Set by loyalty.demo.setup: the program.
    tier_ids: np.ndarray
    tier_names: list[str]
    tier_multiplier: np.ndarray
    tier_min_spend: np.ndarray
    tier_min_purchases: np.ndarray
    tier_grace: np.ndarray
    reward_ids: np.ndarray
    reward_names: np.ndarray
    reward_cost: np.ndarray
    reward_weight: np.ndarray
    reward_stock: np.ndarray  # -1: unlimited
    reward_min_rank: np.ndarray
    reward_available: np.ndarray  # rewards x months
    campaigns: list[tuple[Campaign, CampaignPlan, int]]  # (campaign, plan, boundary it starts at or -1)
    treated: dict[int, np.ndarray]  # campaign id -> treatment members
    # Set by loyalty.demo.members: who the members are and how they behave.
    member_ids: np.ndarray
    joined: np.ndarray
    channel: np.ndarray
    join_month: np.ndarray
    rate_per_month: np.ndarray
    dropout: np.ndarray
    spend_rate: np.ndarray
    never_buys: np.ndarray
    buys_at_join: np.ndarray
    eco: np.ndarray
    satisfaction: np.ndarray
    home_store: np.ndarray
    store_names: np.ndarray
    purchase_channel_probs: np.ndarray
    birth_month: np.ndarray
    birth_day: np.ndarray
    # State carried from month to month.
    alive: np.ndarray
    has_bought: np.ndarray
    last_purchase: np.ndarray
    tier: np.ndarray
    tier_reached: np.ndarray
    window_spend: np.ndarray
    window_count: np.ndarray
    lots: np.ndarray
    due: np.ndarray
    credited: np.ndarray
    debited: np.ndarray
    # Within the month being simulated.
    month_lots: np.ndarray
    last_of_month: np.ndarray
    # Set by loyalty.demo.finish.
    segment_ids: dict[str, int]
    points_outstanding: int
    goal_count: int
    target_count: int

    def __init__(
        self, session: Session, *, members: int, months: int, seed: int, actor: Actor, now: datetime, redemptions: bool, progress: ProgressFn | None
    ) -> None:
        self.session, self.actor, self.now = session, actor, now
        self.n = members
        self.redemptions_on = redemptions
        self.progress = progress
        self.rng = np.random.default_rng(seed)
        settings = get_settings(session)
        self.rate = float(settings.points_per_currency_unit)
        self.expiry_months = int(settings.expiry_months)
        self.b = month_boundaries(now, months)
        self.intervals = len(self.b) - 1
        self.calendar_month = np.array([pd.Timestamp(as_datetime(s)).month for s in self.b[:-1]]) - 1
        self.month_first = np.array([as_seconds(pd.Timestamp(as_datetime(s)).normalize().replace(day=1)) for s in self.b[:-1]])
        self.counts: dict[str, int] = {
            "purchases": 0,
            "ledger_entries": 0,
            "redemptions": 0,
            "feedback": 0,
            "refunds": 0,
            "tier_movements": 0,
            "campaign_assignments": 0,
        }
        self.next_purchase_number = 1
        self.monthly: list[MonthStats] = []

    def report(self, done: int, total: int) -> None:
        """Tell the caller's progress function, if any, how far the run is."""
        if self.progress:
            self.progress(done, total)

    def write_ledger(self, frame: pd.DataFrame) -> None:
        """Insert ledger entries written by the simulation itself (expiry, refunds, redemptions) and count them."""
        if frame.empty:
            return
        frame = frame.assign(actor=self.actor.username, created_at=pd.Timestamp(utcnow()))
        self.counts["ledger_entries"] += insert_frame(self.session, "ledger_entry", frame)
        emit_entries(self.session, frame)
