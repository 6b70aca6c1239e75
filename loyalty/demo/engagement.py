"""The demo's engagement: two challenges, referrals (about one member in ten), a month of messages.

Challenges and referrals started three months before the end of the history.

Run at the end of the history, before the last expiry: the challenges' completions and the
referral bonuses are paid by the same functions a live purchase calls, over the purchases
the history made, dated at the purchase that earned them (so bonuses older than the expiry
period expire with the last run, as they would have). Then a month of the daily
member-messages job, each day's CSV handed to the e-mail provider except the last.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from sqlalchemy import text

from db.engine import sql_moment
from loyalty.demo.state import Simulation
from loyalty.engagement.messages import queue_messages
from loyalty.ledger.challenges import define_challenge, evaluate_purchases
from loyalty.ledger.referrals import pay_referrals, record_referrals

__all__ = ["add_engagement", "add_messages"]

REFERRED_SHARE = 0.10
CHALLENGE_MONTHS = 3  # the challenges started this many months before now
MESSAGE_DAYS = 30


def add_engagement(sim: Simulation) -> None:
    """The two challenges and the referrals, paid over the history's purchases."""
    session, actor = sim.session, sim.actor
    starts = (pd.Timestamp(sim.now).tz_convert("UTC").normalize() - pd.DateOffset(months=CHALLENGE_MONTHS)).to_pydatetime()
    define_challenge(session, name="Three visits in 30 days", purchases=3, within_days=30, points=300, badge="Regular", starts=starts, actor=actor)
    define_challenge(session, name="Eco explorer", purchases=2, category="eco-friendly", points=200, badge="Eco explorer", starts=starts, actor=actor)
    recent = pd.DataFrame(
        session.execute(
            text("SELECT member_id, occurred_at, category FROM purchase WHERE occurred_at >= :s AND refunded_at IS NULL"),
            {"s": sql_moment(session, starts)},
        ).all(),
        columns=["member_id", "occurred_at", "category"],
    )
    completions = evaluate_purchases(session, recent, actor="system")
    _refer(sim, starts)
    paid = pay_referrals(session, pd.DataFrame({"member_id": sim.member_ids}), actor="system")
    sim.counts["ledger_entries"] += sum(1 for c in completions if c.points) + 2 * paid
    sim.counts["challenge_completions"] = len(completions)
    sim.counts["referrals_paid"] = paid


def _refer(sim: Simulation, since: datetime) -> None:
    """About one member in ten joined with the code of a member who joined before them: the
    referral programme started with the challenges, so the referred are among those who joined
    since then (their bonuses are paid after the history's earlier expiry runs, as live ones)."""
    order = np.argsort(sim.joined, kind="stable")
    rank = np.empty(sim.n, dtype=np.int64)
    rank[order] = np.arange(sim.n)
    recent = np.flatnonzero((sim.joined >= int(since.timestamp())) & (rank > 0))
    referees = np.sort(sim.rng.choice(recent, size=min(len(recent), int(round(REFERRED_SHARE * sim.n))), replace=False))
    referrers = order[(sim.rng.random(len(referees)) * rank[referees]).astype(np.int64)]  # someone who joined earlier
    joined = list(pd.to_datetime(sim.joined[referees], unit="s", utc=True).to_pydatetime())
    sim.counts["referrals"] = record_referrals(sim.session, sim.member_ids[referees], sim.member_ids[referrers], at=joined)


def add_messages(sim: Simulation) -> None:
    """The daily member-messages job over the last month; every day's CSV but the last handed over."""
    session = sim.session
    now = sim.now
    queued = 0
    for days_back in range(MESSAGE_DAYS, -1, -1):
        day: datetime = now - timedelta(days=days_back)
        queued += queue_messages(session, now=day)["queued"]
        if days_back:
            session.execute(
                text("UPDATE member_message SET status = 'sent', sent_at = created_at, attempts = 1 WHERE status = 'queued' AND channel = 'csv'")
            )
    sim.counts["messages_queued"] = queued
