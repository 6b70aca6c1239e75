"""Step 2, the members: who joins when, through which channel, and how each of them behaves."""

from __future__ import annotations

import numpy as np
import pandas as pd

from db.bulk import allocate_ids, insert_frame
from db.models import utcnow
from loyalty.demo.parameters import (
    ACQUISITION_CHANNELS,
    CITIES,
    ECO_MEMBER_SHARE,
    FIRST_NAMES,
    JOIN_GROWTH,
    LAST_NAMES,
    MIN_WINDOW,
    RATE_SCALE,
    RATE_SHAPE,
    SEASON,
    SPEND_GAMMA,
    SPEND_Q,
)
from loyalty.demo.state import Simulation
from loyalty.demo.timeline import as_timestamps, object_array, shop_times


def create_members(sim: Simulation) -> None:
    """Draw the members (when they join, how they behave, who they are), insert them, start their state.

    The draws come in a fixed order from the run's one generator: joins, behaviour,
    personal details. Members are numbered in order of joining (M0000001 first).
    """
    _draw_joins(sim)
    _draw_behaviour(sim)
    frame = _draw_details(sim)
    sim.member_ids = allocate_ids(sim.session, "member", sim.n)
    insert_frame(sim.session, "member", frame.assign(id=sim.member_ids)[["id", *frame.columns]])
    _start_state(sim)


def _draw_joins(sim: Simulation) -> None:
    """Each member's acquisition channel and moment of joining: a growing program, more joins in busy months."""
    rng, n, b = sim.rng, sim.n, sim.b
    profiles = list(ACQUISITION_CHANNELS.values())
    shares = np.array([p.share for p in profiles])
    channel = rng.choice(len(profiles), size=n, p=shares / shares.sum())
    lengths = np.diff(b).astype(np.float64)
    middle = (b[:-1] + b[1:]) / 2
    growth = JOIN_GROWTH[0] + (JOIN_GROWTH[1] - JOIN_GROWTH[0]) * (middle - b[0]) / (b[-1] - b[0])
    weight = lengths * growth * SEASON[sim.calendar_month]
    month = rng.choice(sim.intervals, size=n, p=weight / weight.sum())
    lo, hi = b[month], np.minimum(b[month + 1], b[-1] - MIN_WINDOW)
    joined = shop_times(rng, lo, np.maximum(hi, lo + 2))
    order = np.argsort(joined, kind="stable")  # M0000001 is the first member to join
    sim.joined, sim.channel = joined[order], channel[order]
    sim.join_month = np.searchsorted(b, sim.joined, side="right") - 1


def _draw_behaviour(sim: Simulation) -> None:
    """Purchase rate, dropout, spend level, never buying or buying at once, eco leaning, satisfaction."""
    rng, n, ch = sim.rng, sim.n, sim.channel
    profiles = list(ACQUISITION_CHANNELS.values())
    rate_factor = np.array([p.rate for p in profiles])[ch]
    sim.rate_per_month = rng.gamma(RATE_SHAPE, RATE_SCALE, size=n) * rate_factor
    dropout_a = np.array([p.dropout[0] for p in profiles])[ch]
    dropout_b = np.array([p.dropout[1] for p in profiles])[ch]
    sim.dropout = np.clip(rng.beta(dropout_a, dropout_b), 1e-4, 0.95)
    sim.spend_rate = rng.gamma(SPEND_Q, 1.0 / SPEND_GAMMA, size=n)  # nu of the Gamma-Gamma model
    sim.never_buys = rng.random(n) < np.array([p.never_buys for p in profiles])[ch]
    sim.buys_at_join = ~sim.never_buys & (rng.random(n) < np.array([p.buys_at_join for p in profiles])[ch])
    sim.eco = rng.random(n) < ECO_MEMBER_SHARE
    sim.satisfaction = (
        0.4 * (np.log(sim.rate_per_month) - np.log(RATE_SHAPE * RATE_SCALE))
        + rng.normal(0.0, 1.0, size=n)
        + np.array([p.satisfaction for p in profiles])[ch]
    )
    sim.purchase_channel_probs = np.array([p.purchase_channels for p in profiles])


def _draw_details(sim: Simulation) -> pd.DataFrame:
    """Consent, city and home store, birthday and name of each member: their rows of the member table (no id yet)."""
    rng, n, ch = sim.rng, sim.n, sim.channel
    profiles = list(ACQUISITION_CHANNELS.values())
    consent = rng.random(n) < np.array([p.consent for p in profiles])[ch]
    city_share = np.array([c[1] for c in CITIES])
    city = rng.choice(len(CITIES), size=n, p=city_share / city_share.sum())
    stores = [s for c in CITIES for s in c[2]]
    city_first_store = np.cumsum([0] + [len(c[2]) for c in CITIES])[:-1]
    city_store_count = np.array([len(c[2]) for c in CITIES])
    sim.home_store = city_first_store[city] + (rng.random(n) * city_store_count[city]).astype(np.int64)
    sim.store_names = object_array(stores)
    age_days = np.clip(rng.normal(41.0, 13.0, size=n), 18.0, 85.0) * 365.25
    birth = pd.Timestamp(sim.now).tz_localize(None).normalize() - pd.to_timedelta(age_days.astype(np.int64), unit="D")
    sim.birth_month = birth.month.to_numpy() - 1
    # As the earn engine does: a 29 February birthday is kept on the 28th.
    sim.birth_day = np.where((sim.birth_month == 1) & (birth.day.to_numpy() == 29), 28, birth.day.to_numpy())
    first = rng.integers(0, len(FIRST_NAMES), size=n)
    last = rng.integers(0, len(LAST_NAMES), size=n)
    number = np.arange(1, n + 1)
    first_names, last_names = object_array(FIRST_NAMES)[first], object_array(LAST_NAMES)[last]
    return pd.DataFrame(
        {
            "external_id": [f"M{i:07d}" for i in number],
            "name": first_names + " " + last_names,
            "email": [f"{f}.{s}.{i}@example.com".lower().replace(" ", "").replace("ë", "e") for f, s, i in zip(first_names, last_names, number)],
            "phone": "",
            "joined_at": as_timestamps(sim.joined),
            "acquisition_channel": object_array(list(ACQUISITION_CHANNELS))[ch],
            "birth_date": pd.Series(birth).dt.date.to_numpy(),
            "city": object_array([c[0] for c in CITIES])[city],
            "marketing_consent": consent,
            "tier_id": int(sim.tier_ids[0]),
            "tier_since": as_timestamps(sim.joined),
            "created_at": pd.Timestamp(utcnow()),
        }
    )


def _start_state(sim: Simulation) -> None:
    """The state carried from month to month, as it is before the first month."""
    n = sim.n
    sim.alive = ~sim.never_buys
    sim.has_bought = np.zeros(n, dtype=bool)
    sim.last_purchase = np.full(n, -1, dtype=np.int64)
    sim.tier = np.zeros(n, dtype=np.int64)
    sim.tier_reached = np.zeros(n, dtype=np.int64)  # boundary index of tier_since (Bronze never drops)
    sim.window_spend = np.zeros((12, n), dtype=np.float64)  # per month, the tier window
    sim.window_count = np.zeros((12, n), dtype=np.int32)
    slots = max(sim.expiry_months + 1, 1)
    sim.lots = np.zeros((slots, n), dtype=np.int64)  # per month, lots not yet due
    sim.due = np.zeros(n, dtype=np.int64)  # P: lots whose expiry has passed
    sim.credited = np.zeros(n, dtype=np.int64)  # every lot ever
    sim.debited = np.zeros(n, dtype=np.int64)  # D: every debit (redeem, reverse, expire)
