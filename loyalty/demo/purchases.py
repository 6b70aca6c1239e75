"""The month's purchases: who buys (rate, season, campaign uplift, dropout), what, where; refunds."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sqlalchemy import Integer, bindparam, cast, func, text, update
from sqlmodel import col, select

from db.models import Purchase, stored_id
from loyalty.demo.parameters import (
    APP_STORE,
    CAMPAIGN_SAFE_CHUNK,
    CATEGORIES,
    CATEGORY_PRICE,
    CATEGORY_SHARE,
    DAY,
    HOME_STORE_SHARE,
    LOOKUP_CHUNK,
    MIN_AMOUNT,
    MIN_WINDOW,
    MONTH,
    ONLINE_STORE,
    PURCHASE_CHANNELS,
    PURCHASE_CHUNK,
    REFUND_RATE,
    SEASON,
    SPEND_P,
    eco_category_shares,
)
from loyalty.demo.state import MonthStats, Simulation
from loyalty.demo.timeline import as_datetime, as_seconds, as_timestamps, choose, object_array, shop_times
from loyalty.ledger.earning import base_points
from loyalty.ledger.entries import REVERSE
from loyalty.ledger.purchases import PURCHASE_COLUMNS, add_purchases


def simulate_purchases(sim: Simulation, k: int, stats: MonthStats, lo: np.ndarray, present: np.ndarray, month_start: int, month_end: int) -> None:
    """Month ``k``'s purchases: candidates drawn, thinned by dropout, written in time order with their refunds."""
    member, moment = _candidates(sim, k, lo, present, month_start, month_end)
    member, moment = _dropout(sim, member, moment)
    order = np.lexsort((member, moment))  # time order: purchase ids grow with time
    if len(member):
        _write_purchases(sim, k, stats, member[order], moment[order], month_end)


def _candidates(sim: Simulation, k: int, lo: np.ndarray, present: np.ndarray, month_start: int, month_end: int) -> tuple[np.ndarray, np.ndarray]:
    """Purchases before dropout: the visit at enrolment, the member's own rate, campaign uplift."""
    rng = sim.rng
    season = SEASON[sim.calendar_month[k]]
    members, times = [], []
    joining = np.flatnonzero((sim.join_month == k) & sim.buys_at_join & present)
    members.append(joining)
    times.append(sim.joined[joining] + rng.integers(60, 1800, size=len(joining)))
    buying = np.flatnonzero(sim.alive & present)
    expected = sim.rate_per_month[buying] * season * (month_end - lo[buying]) / MONTH
    _add_candidates(sim, members, times, buying, rng.poisson(expected), lo[buying], np.full(len(buying), month_end))
    for campaign, plan, _ in sim.campaigns:
        treated = sim.treated.get(stored_id(campaign))
        start, end = as_seconds(campaign.starts_at), as_seconds(campaign.ends_at)
        if treated is None or end <= month_start or start >= month_end:
            continue
        # Extra purchases inside the campaign's own window: the uplift a holdout
        # comparison later measures.
        treated = treated[sim.alive[treated] & present[treated]]
        window_lo = np.maximum(lo[treated], start)
        window_hi = np.full(len(treated), min(month_end, end))
        if plan.kind == "birthday":
            # Only around the birthday, where the bonus is earned (the part of that
            # week falling in the next or previous month is left out).
            treated = treated[sim.birth_month[treated] == sim.calendar_month[k]]
            birthday = sim.month_first[k] + (sim.birth_day[treated] - 1) * DAY
            days = int(plan.rule["window_days"]) * DAY
            window_lo = np.maximum(np.maximum(lo[treated], start), birthday - days)
            window_hi = np.minimum(min(month_end, end), birthday + days + DAY)
        room = window_hi - window_lo >= MIN_WINDOW
        treated, window_lo, window_hi = treated[room], window_lo[room], window_hi[room]
        extra = sim.rate_per_month[treated] * season * plan.uplift * (window_hi - window_lo) / MONTH
        _add_candidates(sim, members, times, treated, rng.poisson(extra), window_lo, window_hi)
    return np.concatenate(members), np.concatenate(times)


def _add_candidates(
    sim: Simulation, members: list[np.ndarray], times: list[np.ndarray], who: np.ndarray, count: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> None:
    """Add ``count[i]`` purchases of member ``who[i]`` at shop times in ``(lo[i], hi[i])``."""
    rows = np.repeat(np.arange(len(who)), count)
    members.append(who[rows])
    times.append(shop_times(sim.rng, lo[rows], hi[rows]))


def _dropout(sim: Simulation, member: np.ndarray, moment: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """BG/NBD: after each repeat purchase the member leaves with probability ``dropout``."""
    order = np.lexsort((moment, member))
    member, moment = member[order], moment[order]
    n_candidates = np.bincount(member, minlength=sim.n)
    first_ever = (~sim.has_bought & (n_candidates > 0)).astype(np.int64)
    repeats = n_candidates - first_ever
    who = np.flatnonzero(repeats > 0)
    leaves_after = sim.rng.geometric(sim.dropout[who])
    leaves = leaves_after <= repeats[who]
    keep = n_candidates.copy()
    keep[who[leaves]] = first_ever[who[leaves]] + leaves_after[leaves]
    sim.alive[who[leaves]] = False
    starts = np.cumsum(n_candidates) - n_candidates
    rank = np.arange(len(member)) - starts[member]
    kept = rank < keep[member]
    return member[kept], moment[kept]


def _write_purchases(sim: Simulation, k: int, stats: MonthStats, member: np.ndarray, moment: np.ndarray, month_end: int) -> None:
    """Write month ``k``'s purchases (in time order) with their points, refund a few, keep the month's figures."""
    frame, category, amount, external = _draw_baskets(sim, member, moment)
    earn, bonus_purchase, bonus_points = _earn(sim, k, frame, member, moment, month_end)
    refunded = _refunds(sim, member, category, earn, external, bonus_purchase, bonus_points, month_end)
    _keep_figures(sim, k, stats, member, moment, amount, ~refunded)


def _draw_baskets(sim: Simulation, member: np.ndarray, moment: np.ndarray) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, list[str]]:
    """What each purchase is: category, channel, store, amount and external id; as rows for ``add_purchases``."""
    rng, n_rows = sim.rng, len(member)
    category = choose(rng, np.vstack([CATEGORY_SHARE, eco_category_shares()]), sim.eco[member].astype(np.int64))
    channel = choose(rng, sim.purchase_channel_probs, sim.channel[member])
    away = rng.random(n_rows) >= HOME_STORE_SHARE
    store_index = np.where(away, rng.integers(0, len(sim.store_names), size=n_rows), sim.home_store[member])
    store = np.where(channel == 0, sim.store_names[store_index], np.where(channel == 1, ONLINE_STORE, APP_STORE))
    amount = rng.gamma(SPEND_P, 1.0 / sim.spend_rate[member]) * CATEGORY_PRICE[category]
    amount = np.maximum(np.round(amount, 2), MIN_AMOUNT)
    first_number = sim.next_purchase_number
    sim.next_purchase_number += n_rows
    external = [f"P{i:09d}" for i in range(first_number, first_number + n_rows)]
    frame = pd.DataFrame(
        {
            "external_id": external,
            "member_id": sim.member_ids[member],
            "occurred_at": as_timestamps(moment),
            "amount": amount,
            "channel": object_array(PURCHASE_CHANNELS)[channel],
            "store": store,
            "category": object_array(CATEGORIES)[category],
        }
    )[PURCHASE_COLUMNS]
    return frame, category, amount, external


def _earn(
    sim: Simulation, k: int, frame: pd.DataFrame, member: np.ndarray, moment: np.ndarray, month_end: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Add the purchases through the earn engine; the base points of each, and the bonuses (purchase, points).

    The lots just written are added to the month's: base points as the earn engine
    computes them (the same function and tier multipliers), plus the campaign bonuses
    read back.
    """
    last_id = int(sim.session.execute(text("SELECT COALESCE(MAX(id), 0) FROM purchase")).scalar_one())
    chunk = CAMPAIGN_SAFE_CHUNK if _lookup_campaign_running(sim, int(sim.b[k]), month_end) else PURCHASE_CHUNK
    written, entries = add_purchases(sim.session, frame, actor=sim.actor, chunk_rows=chunk)
    sim.counts["purchases"] += written
    sim.counts["ledger_entries"] += entries

    earn = base_points(frame["amount"], pd.Series(sim.tier_multiplier[sim.tier[member]]), sim.rate)
    bonus = sim.session.execute(
        text("SELECT purchase_id, member_id, points FROM ledger_entry WHERE kind = 'bonus' AND purchase_id > :p"), {"p": last_id}
    ).all()
    bonus_purchase = np.array([r[0] for r in bonus], dtype=np.int64)
    bonus_member = np.searchsorted(sim.member_ids, np.array([r[1] for r in bonus], dtype=np.int64))
    bonus_points = np.array([r[2] for r in bonus], dtype=np.int64)
    sim.month_lots += np.bincount(member, weights=earn, minlength=sim.n).astype(np.int64)
    sim.month_lots += np.bincount(bonus_member, weights=bonus_points, minlength=sim.n).astype(np.int64)
    np.maximum.at(sim.last_of_month, member, moment)
    return earn, bonus_purchase, bonus_points


def _keep_figures(sim: Simulation, k: int, stats: MonthStats, member: np.ndarray, moment: np.ndarray, amount: np.ndarray, kept: np.ndarray) -> None:
    """The purchases not refunded: the tier window's spend and count, last purchases, the month's figures."""
    slot = k % 12
    sim.window_spend[slot] = np.bincount(member[kept], weights=amount[kept], minlength=sim.n)
    sim.window_count[slot] = np.bincount(member[kept], minlength=sim.n)
    sim.has_bought[member] = True
    np.maximum.at(sim.last_purchase, member, moment)

    visits = pd.DataFrame({"member": member[kept], "day": moment[kept] // DAY}).drop_duplicates()
    days_per_member = np.bincount(visits["member"].to_numpy(), minlength=sim.n)
    stats.active = sim.window_count[slot] > 0
    stats.repeat_buyers = int((days_per_member >= 2).sum())
    stats.purchases = int(kept.sum())
    stats.revenue = float(amount[kept].sum())
    stats.earned = int(sim.month_lots.sum())


def _lookup_campaign_running(sim: Simulation, month_start: int, month_end: int) -> bool:
    """Whether a campaign that looks purchases up by id (spend threshold, birthday) runs in the month."""
    return any(
        plan.kind in ("spend_threshold", "birthday") and as_seconds(campaign.starts_at) < month_end and as_seconds(campaign.ends_at) > month_start
        for campaign, plan, start_index in sim.campaigns
        if start_index >= 0
    )


def _purchase_ids(sim: Simulation, external: list[str]) -> np.ndarray:
    """Our ids of the purchases with these external ids, in their order."""
    ids: dict[str, int] = {}
    for start in range(0, len(external), LOOKUP_CHUNK):
        keys = external[start : start + LOOKUP_CHUNK]
        ids.update(sim.session.execute(select(Purchase.external_id, Purchase.id).where(col(Purchase.external_id).in_(keys))).tuples().all())
    return np.array([ids[e] for e in external], dtype=np.int64)


def _refunds(
    sim: Simulation,
    member: np.ndarray,
    category: np.ndarray,
    earn: np.ndarray,
    external: list[str],
    bonus_purchase: np.ndarray,
    bonus_points: np.ndarray,
    month_end: int,
) -> np.ndarray:
    """Refund a few purchases, after the member's last purchase of the month.

    The ``reverse`` entry takes back exactly what the purchase earned (base and
    bonus); those points are in the balance then, so it never goes below zero.
    """
    rng = sim.rng
    room = month_end - sim.last_of_month[member]
    refunded = (rng.random(len(member)) < REFUND_RATE[category]) & (room >= MIN_WINDOW)
    rows = np.flatnonzero(refunded)
    if not len(rows):
        return refunded
    ids = _purchase_ids(sim, [external[i] for i in rows])
    order = np.argsort(bonus_purchase)
    sorted_ids, sorted_points = bonus_purchase[order], bonus_points[order]
    total_before = np.concatenate([[0], np.cumsum(sorted_points)])
    points = earn[rows] + (total_before[np.searchsorted(sorted_ids, ids, "right")] - total_before[np.searchsorted(sorted_ids, ids, "left")])
    # In the first half of the time left after the member's last purchase; a
    # redemption, if any, comes in the second half.
    last = sim.last_of_month[member[rows]]
    when = last + 60 + (rng.random(len(rows)) * (0.45 * (month_end - last) - 60)).astype(np.int64)
    table = Purchase.__table__  # type: ignore[attr-defined]  # set by SQLModel at class creation, not in its stubs
    sim.session.execute(
        update(table)
        .where(table.c.id == bindparam("purchase"))
        .values(refunded_at=bindparam("at"), returned_cents=cast(func.round(table.c.amount * 100), Integer)),
        [{"purchase": int(p), "at": as_datetime(t)} for p, t in zip(ids, when)],
    )
    with_points = points > 0
    sim.write_ledger(
        pd.DataFrame(
            {
                "member_id": sim.member_ids[member[rows][with_points]],
                "kind": REVERSE,
                "points": -points[with_points],
                "occurred_at": as_timestamps(when[with_points]),
                "purchase_id": ids[with_points],
                "reason": "refund",
            }
        )
    )
    np.add.at(sim.debited, member[rows], points)
    sim.counts["refunds"] += len(rows)
    return refunded
