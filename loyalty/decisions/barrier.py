"""Entry barrier: what share of active members can actually reach each reward and tier.

A reward or tier that needs a threshold most members never cross is an entry barrier,
not a loyalty driver (DOMAIN.md, mistake 6). Each active member's *pace* is measured
over the last ``PACE_MONTHS`` months and projected forward:

* reward: reachable when ``balance + points_pace x horizon >= cost``, where the horizon
  is ``REWARD_HORIZON_MONTHS`` (shortened if the reward stops being available sooner);
  when points expire after E months, a member can never hold more than about
  ``points_pace x E`` points of recent earning, so that cap applies too, unless the
  balance already covers the cost;
* tier: reachable when ``spend_pace x window >= min_spend`` and
  ``purchase_pace x window >= min_purchases`` (both cumulative over the tier's window).

Active members: at least one purchase in the pace window.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from sqlmodel import Session, col, select

from db.models import Reward, Tier, utcnow
from loyalty.settings import get_settings

__all__ = ["BARRIER_FLAG_SHARE", "PACE_MONTHS", "REWARD_HORIZON_MONTHS", "barrier_inputs", "entry_barrier", "member_pace"]

PACE_MONTHS = 6
REWARD_HORIZON_MONTHS = 12
BARRIER_FLAG_SHARE = 0.25  # flagged when fewer than this share of active members can reach it
_DAYS_PER_MONTH = 365.25 / 12


def member_pace(session: Session, *, now: datetime | None = None, pace_months: int = PACE_MONTHS) -> pd.DataFrame:
    """Active members with balance and monthly pace of spend, purchases and points earned.

    Two reads (the window's purchases; every ledger entry's member, points and whether
    it is earning inside the window) summed per member in Polars: SQLite's ``GROUP BY
    member_id`` over a ten-million-row ledger takes tens of seconds.
    """
    import polars as pl

    from loyalty.analytics.data import fetch_frame

    now = now or utcnow()
    since = now - timedelta(days=pace_months * _DAYS_PER_MONTH)
    window = {"since": since, "now": now}
    activity = (
        fetch_frame(
            session,
            "SELECT member_id, amount FROM purchase WHERE occurred_at >= :since AND occurred_at < :now AND refunded_at IS NULL",
            {"member_id": pl.Int64, "amount": pl.Float64},
            params=window,
        )
        .group_by("member_id")
        .agg(spend=pl.col("amount").sum(), purchases=pl.len())
    )
    if activity.is_empty():
        return pd.DataFrame(columns=["member_id", "balance", "spend_pace", "purchase_pace", "points_pace"])
    ledger = (
        fetch_frame(
            session,
            "SELECT member_id, points, CASE WHEN kind IN ('earn', 'bonus') AND occurred_at >= "
            ":since AND occurred_at < :now THEN 1 ELSE 0 END AS recent FROM ledger_entry",
            {"member_id": pl.Int64, "points": pl.Int64, "recent": pl.Int8},
            params=window,
        )
        .group_by("member_id")
        .agg(balance=pl.col("points").sum(), earned=pl.col("points").filter(pl.col("recent") == 1).sum())
    )
    frame = activity.join(ledger, on="member_id", how="left").fill_null(0).sort("member_id").to_pandas()
    return pd.DataFrame(
        {
            "member_id": frame["member_id"].astype("int64"),
            "balance": frame["balance"].astype("int64"),
            "spend_pace": frame["spend"].astype(float) / pace_months,
            "purchase_pace": frame["purchases"].astype(float) / pace_months,
            "points_pace": frame["earned"].astype(float) / pace_months,
        }
    )


def barrier_inputs(session: Session) -> str:
    """What :func:`entry_barrier` depends on besides the members' pace, as one text: the active
    rewards' costs and dates, the tiers' thresholds, the expiry setting. A stored barrier with
    another text is out of date (a tier or reward was changed since)."""
    rewards = session.exec(
        select(Reward.id, Reward.name, Reward.points_cost, Reward.available_until)
        .where(col(Reward.active).is_(True), col(Reward.archived_at).is_(None))
        .order_by(col(Reward.id))
    ).all()
    tiers = [(t.id, t.name, t.rank, t.min_spend, t.min_purchases, t.window_months) for t in session.exec(select(Tier).order_by(col(Tier.id)))]
    return json.dumps([[list(r) for r in rewards], [list(t) for t in tiers], get_settings(session).expiry_months], default=str)


def entry_barrier(session: Session, *, now: datetime | None = None) -> dict[str, pd.DataFrame]:
    """``{"rewards": ..., "tiers": ...}``: for each, the share of active members who can reach it."""
    now = now or utcnow()
    pace = member_pace(session, now=now)
    active = len(pace)
    expiry = get_settings(session).expiry_months
    balance = pace["balance"].to_numpy(dtype=float)
    points_pace = pace["points_pace"].to_numpy()

    reward_rows = []
    for reward in session.exec(
        select(Reward).where(col(Reward.active).is_(True), col(Reward.archived_at).is_(None)).order_by(col(Reward.points_cost))
    ):
        horizon: float = REWARD_HORIZON_MONTHS
        if reward.available_until is not None:
            horizon = max(0.0, min(horizon, (reward.available_until - now).days / _DAYS_PER_MONTH))
        projected = balance + points_pace * horizon
        if expiry > 0:
            projected = np.maximum(balance, np.minimum(projected, points_pace * expiry))
        reachable = int((projected >= reward.points_cost).sum())
        reward_rows.append(
            {
                "reward_id": reward.id,
                "reward": reward.name,
                "points_cost": reward.points_cost,
                "reachable_members": reachable,
                "active_members": active,
            }
        )

    tier_rows = []
    for tier in session.exec(select(Tier).order_by(col(Tier.rank))):
        ok = (pace["spend_pace"].to_numpy() * tier.window_months >= tier.min_spend) & (
            pace["purchase_pace"].to_numpy() * tier.window_months >= tier.min_purchases
        )
        tier_rows.append(
            {
                "tier_id": tier.id,
                "tier": tier.name,
                "min_spend": tier.min_spend,
                "min_purchases": tier.min_purchases,
                "reachable_members": int(ok.sum()),
                "active_members": active,
            }
        )

    result = {}
    for key, rows in (("rewards", reward_rows), ("tiers", tier_rows)):
        frame = pd.DataFrame(rows)
        if not frame.empty:
            frame["reachable_share"] = frame["reachable_members"] / active if active else 0.0
            frame["barrier"] = frame["reachable_share"] < BARRIER_FLAG_SHARE
        result[key] = frame
    return result
