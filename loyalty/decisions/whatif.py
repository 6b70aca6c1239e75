"""What-if simulator: the last 12 months of real purchases replayed under changed rules.

A scenario changes any of: the tiers (thresholds, windows, multipliers, grace), the earn
rate (``points_per_currency_unit``), reward costs and the expiry period. The simulator
replays real member behaviour twice, under the current rules and under the scenario's,
with the same model, and returns both side by side: so the difference is the effect of
the change, not of the model.

The model (calendar months, UTC; vectorised over members, a loop over months only)
--------------------------------------------------------------------------------------
* **Window**: the 12 complete calendar months before the month of ``as_of`` (default
  today: the last 12 complete months). Before it, a **warm-up** of ``max(12, expiry)``
  months (at most :data:`MAX_WARMUP_MONTHS`) is replayed under the same rules, so members
  enter the window with the balance and the lot ages those rules would have given them;
  and before that, enough months for the tiers' rolling windows. Points earned before
  the warm-up are outside the replay (they matter only when points never expire or
  expire after more than :data:`MAX_WARMUP_MONTHS`).
* **Purchases**: the real ones, refunded purchases left out (a refund takes back the
  points it earned, so it ends up neither revenue nor points), read in one query.
* **Tiers** (as :func:`loyalty.evaluation.tiers.evaluate_tiers`): evaluated at the start of
  every month on each tier's trailing window of spend **and** purchase count
  (:func:`loyalty.program.tiers.qualifying_tier_index`); upgrades at once, a downgrade once the
  grace period of the tier, counted from the month it was reached, is over. At the
  start of the replay every member is in the tier they qualify for.
* **Earn** (as :mod:`loyalty.ledger.earning`): every purchase earns
  ``floor(amount x earn rate x multiplier of the member's tier that month)``; a member
  in no tier earns at 1x. Campaign bonuses and manual adjustments are not replayed
  (they do not depend on these rules), so "points issued" is base earn.
* **Redemptions**: behaviour is held fixed as *each member's real redeemed share of
  what they earn*, at the months they really redeemed: a member's real (not cancelled)
  redemptions in a month are scaled by ``scenario earn / current earn`` over the
  replay (earning twice as much, they redeem twice as many points) and by the reward's
  ``scenario cost / current cost`` (the same rewards take more or fewer points); the
  result is capped by the member's balance at that moment. Under the current rules this
  is the real redemptions, capped by the replayed balance.
* **Expiry** (as :mod:`loyalty.ledger.entries`, FIFO): the lots of month ``t`` expire at the end
  of month ``t + expiry`` (as the demo program's month boundaries); what expires is
  ``max(0, lots due - points already consumed)``. Within a month: earn, then redeem,
  then expire.
* **Outputs per rule set**: members per tier at the end of the window (every member not
  erased who joined before it, with or without purchases); points issued, redeemed and
  expired in the window; points outstanding at its end and their money value
  (``point_value``); the **entry barrier** among active members (a purchase in the
  window): the share who qualified for each tier at some monthly evaluation in the
  window, and the share who at some month end held enough points (balance plus what
  they redeemed in the window so far) for each active reward, the cheapest being the
  *first reward*; program cost as a share of revenue = money value of points issued /
  revenue of the window.

Speed
-----
Everything after the reads is numpy over month-major ``(months, members)`` arrays: a
loop over the ~25 replayed months, never over members. Measured here (2 shared cores,
SQLite, :func:`bench_whatif`): the 100,000-member demo program (644,502 purchases read)
answers in 0.8 s warm, 2.1 s cold (first read starts the ADBC reader process); the
replay alone on a synthetic 1,000,000 members with 6.4M purchases takes about 11 s for
both rule sets and 2.5 GB, so about 15-17 s with the reads at that size.

Scenarios
---------
:func:`save_scenario` stores a scenario's changes and result (``scenario`` table),
audited, with permission ``segments.manage``: saving a what-if is analysis work, like a
segment, that admins, managers *and* analysts do; it changes nothing in the program.
:func:`draft_from_scenario` (``program.configure``) never applies rules silently:

* each changed reward cost becomes a **new, inactive** copy of the reward named
  ``"<reward> [draft: <scenario>]"`` with the scenario's cost, through the audited
  :func:`loyalty.program.rewards.save_reward` (rewards have a draft state: inactive);
* tiers have no draft state, so the tier change is returned as a **proposed table**
  (matched to the existing tiers by name, keeping their ids) and only written by
  :func:`apply_scenario_tiers`, which needs ``program.configure`` *and* an explicit
  ``confirm=True``, through the audited :func:`loyalty.program.tiers.save_tiers`;
* an earn-rate or expiry change is returned as proposed settings for an administrator
  (the Settings page; ``settings.manage``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
from sqlalchemy import func
from sqlmodel import Session, col, select

from db.engine import write_transaction
from db.models import Member, Purchase, Reward, Scenario
from loyalty.access.audit import record_audit
from loyalty.access.roles import Actor, require
from loyalty.analytics.data import Reader, epoch_sql, fetch_frame, load_purchases, range_conditions, where_clause
from loyalty.errors import InvalidInput, NotFound
from loyalty.ledger.earning import base_points
from loyalty.periods import add_months, month_start
from loyalty.program.rewards import save_reward
from loyalty.program.tiers import list_tiers, qualifying_tier_index, save_tiers, validate_tiers
from loyalty.settings import get_settings

__all__ = [
    "CHANGE_KEYS",
    "MAX_WARMUP_MONTHS",
    "SCENARIO_PERMISSION",
    "WINDOW_MONTHS",
    "Rules",
    "apply_scenario_tiers",
    "bench_whatif",
    "changes_from_inputs",
    "compare_scenarios",
    "current_program",
    "current_rules",
    "delete_scenario",
    "draft_from_scenario",
    "flows_frame",
    "list_scenarios",
    "replay",
    "save_scenario",
    "scenario_rules",
    "simulate",
    "summary_frame",
    "tiers_frame",
    "window_label",
    "window_of",
    "has_window_purchases",
]

WINDOW_MONTHS = 12
MIN_WARMUP_MONTHS = 12
MAX_WARMUP_MONTHS = 24
SCENARIO_PERMISSION = "segments.manage"
CHANGE_KEYS = ("tiers", "points_per_currency_unit", "expiry_months", "reward_costs")
TIER_RULE_FIELDS = ("name", "min_spend", "min_purchases", "window_months", "multiplier", "grace_months")
# Window sums are differences of cumulative sums: keep 399.9999999 from missing a 400 threshold.
_SPEND_TOLERANCE = 1e-6
NO_TIER = "(no tier)"

# (key, label, kind) of the headline numbers, in the order the page shows them.
METRICS: tuple[tuple[str, str, str], ...] = (
    ("active_members", "Active members", "count"),
    ("points_issued", "Points issued", "count"),
    ("points_redeemed", "Points redeemed", "count"),
    ("points_expired", "Points expired", "count"),
    ("points_outstanding", "Points outstanding", "count"),
    ("liability", "Outstanding liability", "money"),
    ("first_reward_reach", "Can reach the first reward", "share"),
    ("cost_share", "Program cost / revenue", "share"),
)


# --- rules -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rules:
    """One rule set: tiers lowest first (cleaned by ``validate_tiers``), earn rate, expiry, costs."""

    tiers: tuple[dict[str, Any], ...]
    earn_rate: float
    expiry_months: int
    reward_costs: dict[int, int] = field(default_factory=dict)  # every reward: id -> points cost

    def as_json(self, reward_names: dict[int, str]) -> dict[str, Any]:
        return {
            "tiers": [{f: t[f] for f in TIER_RULE_FIELDS} for t in self.tiers],
            "points_per_currency_unit": self.earn_rate,
            "expiry_months": self.expiry_months,
            "reward_costs": {reward_names.get(i, str(i)): c for i, c in sorted(self.reward_costs.items())},
        }


def current_program(session: Session) -> dict[str, Any]:
    """What the What-if page prefills: ``tiers`` (frame as ``list_tiers``), ``rewards`` (frame
    ``id, name, points_cost, active``), ``points_per_currency_unit``, ``expiry_months``,
    ``point_value``, ``currency``."""
    settings = get_settings(session)
    rewards = pd.DataFrame(
        session.exec(
            select(col(Reward.id), col(Reward.name), col(Reward.points_cost), col(Reward.active)).order_by(col(Reward.points_cost), col(Reward.id))
        ).all(),
        columns=["id", "name", "points_cost", "active"],
    )
    return {
        "tiers": list_tiers(session),
        "rewards": rewards,
        "points_per_currency_unit": float(settings.points_per_currency_unit),
        "expiry_months": int(settings.expiry_months),
        "point_value": float(settings.point_value),
        "currency": settings.currency,
    }


def _reward_names(session: Session) -> dict[int, str]:
    return {reward_id: name for reward_id, name in session.exec(select(Reward.id, Reward.name)).all() if reward_id is not None}


def current_rules(session: Session) -> Rules:
    """The program's rules now: tiers, settings and reward costs."""
    program = current_program(session)
    tiers = program["tiers"].drop(columns=["members"]).to_dict("records")
    return Rules(
        tiers=tuple(validate_tiers(tiers)) if tiers else (),
        earn_rate=program["points_per_currency_unit"],
        expiry_months=program["expiry_months"],
        reward_costs={int(i): int(c) for i, c in zip(program["rewards"]["id"], program["rewards"]["points_cost"])},
    )


def _number(value: Any, what: str, cast: type) -> Any:
    try:
        number = cast(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{what} must be a number, not {value!r}.") from None
    if isinstance(value, float) and cast is int and value != int(value):
        raise InvalidInput(f"{what} must be a whole number, not {value!r}.")
    if isinstance(number, float) and np.isnan(number):
        raise InvalidInput(f"{what} is missing.")
    return number


def normalise_changes(changes: dict[str, Any], current: Rules, reward_names: dict[int, str]) -> dict[str, Any]:
    """Validate ``changes`` and return them JSON-ready; refusals name the field.

    ``changes`` may hold ``tiers`` (rows lowest first, as ``validate_tiers`` takes them;
    an ``id`` keeps the existing tier), ``points_per_currency_unit`` (>= 0),
    ``expiry_months`` (whole number >= 0, 0 = never) and ``reward_costs`` (reward id ->
    whole number > 0).
    """
    if not isinstance(changes, dict):
        raise InvalidInput("The changes must be a mapping of rule -> new value.")
    unknown = set(changes) - set(CHANGE_KEYS)
    if unknown:
        raise InvalidInput(f"Unknown change(s): {', '.join(sorted(unknown))}; choose from {', '.join(CHANGE_KEYS)}.")
    clean: dict[str, Any] = {}
    if changes.get("tiers") is not None:
        rows = [dict(r) for r in changes["tiers"]]
        validated = validate_tiers(rows)
        clean["tiers"] = [
            {**({"id": int(raw["id"])} if raw.get("id") is not None and not pd.isna(raw.get("id")) else {}), **v} for raw, v in zip(rows, validated)
        ]
    if changes.get("points_per_currency_unit") is not None:
        rate = _number(changes["points_per_currency_unit"], "points_per_currency_unit (the earn rate)", float)
        if rate < 0:
            raise InvalidInput(f"points_per_currency_unit (the earn rate) cannot be negative (got {rate:g}).")
        clean["points_per_currency_unit"] = rate
    if changes.get("expiry_months") is not None:
        months = _number(changes["expiry_months"], "expiry_months (the expiry period)", int)
        if months < 0:
            raise InvalidInput(f"expiry_months (the expiry period) cannot be negative (got {months}); 0 means points never expire.")
        clean["expiry_months"] = months
    if changes.get("reward_costs"):
        costs = {}
        for key, cost in dict(changes["reward_costs"]).items():
            reward_id = _number(key, "reward_costs: a reward id", int)
            if reward_id not in current.reward_costs:
                raise InvalidInput(f"reward_costs: there is no reward with id {reward_id}.")
            name = reward_names.get(reward_id, str(reward_id))
            value = _number(cost, f"reward_costs: {name}'s points cost", int)
            if value <= 0:
                raise InvalidInput(f"reward_costs: {name}'s points cost must be a whole number above 0 (got {value}).")
            costs[str(reward_id)] = value
        clean["reward_costs"] = costs
    return clean


def scenario_rules(current: Rules, changes: dict[str, Any]) -> Rules:
    """``current`` with normalised ``changes`` applied."""
    tiers = current.tiers if "tiers" not in changes else tuple(validate_tiers([dict(t) for t in changes["tiers"]]))
    costs = {**current.reward_costs, **{int(k): int(v) for k, v in changes.get("reward_costs", {}).items()}}
    return Rules(
        tiers=tiers,
        earn_rate=float(changes.get("points_per_currency_unit", current.earn_rate)),
        expiry_months=int(changes.get("expiry_months", current.expiry_months)),
        reward_costs=costs,
    )


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None or (isinstance(a, float) and np.isnan(a)) or (isinstance(b, float) and np.isnan(b)):
        return False
    try:
        return abs(float(a) - float(b)) < 1e-9
    except (TypeError, ValueError):
        return str(a).strip() == str(b).strip()


def changes_from_inputs(
    program: dict[str, Any], *, tiers: list[dict[str, Any]], points_per_currency_unit: float, expiry_months: int, rewards: list[dict[str, Any]]
) -> dict[str, Any]:
    """The changes an edited form holds against ``program`` (:func:`current_program`): only what differs.

    ``tiers`` rows need not carry ``benefits``: a row with the ``id`` of an existing tier keeps its benefits.
    """
    changes: dict[str, Any] = {}
    now = program["tiers"].to_dict("records")
    if len(tiers) != len(now) or any(not _same(row.get(f), old[f]) for row, old in zip(tiers, now) for f in TIER_RULE_FIELDS):
        benefits = {int(t["id"]): t["benefits"] for t in now}
        changes["tiers"] = [
            {
                **row,
                "benefits": row.get("benefits") or benefits.get(int(row["id"]), "")
                if row.get("id") is not None and not pd.isna(row.get("id"))
                else row.get("benefits", ""),
            }
            for row in tiers
        ]
    if not _same(points_per_currency_unit, program["points_per_currency_unit"]):
        changes["points_per_currency_unit"] = points_per_currency_unit
    if not _same(expiry_months, program["expiry_months"]):
        changes["expiry_months"] = expiry_months
    costs = dict(zip(program["rewards"]["id"].astype(int), program["rewards"]["points_cost"]))
    changed = {int(r["id"]): r["points_cost"] for r in rewards if int(r["id"]) in costs and not _same(r["points_cost"], costs[int(r["id"])])}
    if changed:
        changes["reward_costs"] = changed
    return changes


# --- history ---------------------------------------------------------------------------------------


def window_of(as_of: date | None = None) -> tuple[date, date]:
    """``(start, end)`` of the replayed window: the 12 complete months before ``as_of``'s month."""
    end = month_start(as_of or datetime.now(UTC).date())
    return add_months(end, -WINDOW_MONTHS), end


def has_window_purchases(session: Session, *, as_of: date | None = None) -> bool:
    """Whether the replayed window holds a purchase (not refunded): without one there is nothing
    to replay. One row looked up, not the window's millions counted."""
    start, end = (datetime(d.year, d.month, 1, tzinfo=UTC) for d in window_of(as_of))
    found = session.exec(
        select(Purchase.id).where(Purchase.occurred_at >= start, Purchase.occurred_at < end, col(Purchase.refunded_at).is_(None)).limit(1)
    ).first()
    return found is not None


def window_label(as_of: date | None = None) -> str:
    """``"Nov 2025 – Oct 2026"``: the months of the replayed window."""
    start, end = window_of(as_of)
    return f"{start:%b %Y} – {add_months(end, -1):%b %Y}"


@dataclass
class History:
    """Real behaviour on a monthly grid: months ``0..T-1`` from ``read_start``.

    The replay covers months ``lookback .. T-1`` (``warmup`` months, then the window).
    """

    window_start: date
    window_end: date
    read_start: date
    lookback: int
    warmup: int
    member_ids: np.ndarray
    erased: np.ndarray
    purchase_member: np.ndarray
    purchase_month: np.ndarray
    purchase_amount: np.ndarray
    # Month-major (T + 1, members): spend and purchases before the start of each month. A
    # month's row is contiguous, which the month-by-month passes read (3x faster at 1M members).
    spend_cum: np.ndarray
    count_cum: np.ndarray
    redemption_member: np.ndarray
    redemption_month: np.ndarray  # replay month index
    redemption_reward: np.ndarray
    redemption_points: np.ndarray
    members_total: int  # not erased and joined before the window end
    reward_names: dict[int, str]
    active_rewards: list[int]

    @property
    def months(self) -> int:
        return self.spend_cum.shape[0] - 1

    @property
    def replay_months(self) -> int:
        return self.months - self.lookback


def _month_numbers(seconds: np.ndarray) -> np.ndarray:
    return seconds.astype("datetime64[s]").astype("datetime64[M]").astype(np.int64)


def _month_number(day: date) -> int:
    return (day.year - 1970) * 12 + day.month - 1


def load_history(session: Session, *, as_of: date | None, lookback: int, warmup: int, reader: Reader = "auto") -> History:
    """Purchases (one query), redemptions, members and rewards for a replay."""
    window_start, window_end = window_of(as_of)
    replay_start = add_months(window_start, -warmup)
    read_start = add_months(replay_start, -lookback)
    months = lookback + warmup + WINDOW_MONTHS
    base = _month_number(read_start)

    purchases = load_purchases(session, start=read_start, end=window_end, columns=("member_id", "occurred_at", "amount"), reader=reader)
    seconds = purchases["occurred_at"].dt.epoch("s").to_numpy()
    member_ids, member_pos = np.unique(purchases["member_id"].to_numpy(), return_inverse=True)
    month = _month_numbers(seconds) - base
    amount = purchases["amount"].to_numpy().astype(np.float64)
    n = len(member_ids)
    flat = month * n + member_pos
    spend_cum = np.zeros((months + 1, n))
    np.cumsum(np.bincount(flat, weights=amount, minlength=n * months).reshape(months, n), axis=0, out=spend_cum[1:])
    count_cum = np.zeros((months + 1, n), dtype=np.int32)
    np.cumsum(np.bincount(flat, minlength=n * months).reshape(months, n), axis=0, out=count_cum[1:])

    dialect = session.get_bind().dialect.name
    conditions, window = range_conditions("requested_at", replay_start, window_end)
    redemptions = fetch_frame(
        session,
        f"SELECT member_id, reward_id, {epoch_sql(dialect, 'requested_at')} AS requested, points FROM redemption "
        + where_clause(["status <> 'cancelled'", *conditions]),
        {"member_id": pl.Int64, "reward_id": pl.Int64, "requested": pl.Int64, "points": pl.Int64},
        params=window,
        reader=reader,
    )
    r_member = redemptions["member_id"].to_numpy()
    position = np.searchsorted(member_ids, r_member)
    known = (position < n) & (member_ids[np.minimum(position, max(n - 1, 0))] == r_member) if n else np.zeros(len(r_member), bool)

    erased_ids = np.asarray(session.exec(select(Member.id).where(col(Member.erased_at).is_not(None))).all(), dtype=np.int64)
    end_moment = datetime(window_end.year, window_end.month, 1, tzinfo=UTC)
    total = int(session.exec(select(func.count()).select_from(Member).where(col(Member.erased_at).is_(None), Member.joined_at < end_moment)).one())
    rewards = session.exec(select(Reward.id, Reward.name, Reward.active)).all()
    return History(
        window_start=window_start,
        window_end=window_end,
        read_start=read_start,
        lookback=lookback,
        warmup=warmup,
        member_ids=member_ids,
        erased=np.isin(member_ids, erased_ids),
        purchase_member=member_pos,
        purchase_month=month,
        purchase_amount=amount,
        spend_cum=spend_cum,
        count_cum=count_cum,
        redemption_member=position[known],
        redemption_month=(_month_numbers(redemptions["requested"].to_numpy()) - base - lookback)[known],
        redemption_reward=redemptions["reward_id"].to_numpy()[known],
        redemption_points=redemptions["points"].to_numpy()[known].astype(np.float64),
        members_total=total,
        reward_names={int(i): name for i, name, _ in rewards if i is not None},
        active_rewards=[int(i) for i, _, active in rewards if active and i is not None],
    )


# --- the replay --------------------------------------------------------------------------------------


def _qualified(history: History, rules: Rules, month: int) -> np.ndarray:
    """Highest tier index each member qualifies for at the start of ``month`` (-1: none)."""
    n = len(history.member_ids)
    result = np.full(n, -1, dtype=np.int64)
    windows = np.array([t["window_months"] for t in rules.tiers], dtype=np.int64)
    min_spend = np.array([t["min_spend"] for t in rules.tiers], dtype=float)
    min_purchases = np.array([t["min_purchases"] for t in rules.tiers], dtype=np.int64)
    for months in np.unique(windows):
        group = np.flatnonzero(windows == months)
        lo = max(month - int(months), 0)
        spend = history.spend_cum[month] - history.spend_cum[lo] + _SPEND_TOLERANCE
        count = history.count_cum[month] - history.count_cum[lo]
        local = qualifying_tier_index(spend, count, min_spend[group], min_purchases[group])
        result = np.maximum(result, np.where(local >= 0, group[np.maximum(local, 0)], -1))
    return result


def _tier_paths(history: History, rules: Rules) -> tuple[np.ndarray, np.ndarray]:
    """Tier (with grace) and qualification at the start of every replay month and at the end."""
    n, replay = len(history.member_ids), history.replay_months
    path = np.full((replay + 1, n), -1, dtype=np.int16)  # month-major, as History
    qualified = np.full((replay + 1, n), -1, dtype=np.int16)
    if not rules.tiers:
        return path, qualified
    grace = np.array([t["grace_months"] for t in rules.tiers], dtype=np.int64)
    tier = reached = np.zeros(n, dtype=np.int64)
    for r in range(replay + 1):
        q = _qualified(history, rules, history.lookback + r)
        if r == 0:
            tier, reached = q, np.zeros(n, dtype=np.int64)
        else:
            down = (q < tier) & (r - reached >= grace[np.maximum(tier, 0)])
            moved = (q > tier) | down
            tier, reached = np.where(moved, q, tier), np.where(moved, r, reached)
        path[r], qualified[r] = tier, q
    return path, qualified


def _earned(history: History, rules: Rules, path: np.ndarray) -> np.ndarray:
    """Points earned per member and replay month: ``floor(amount x rate x multiplier)`` per purchase."""
    n, replay = len(history.member_ids), history.replay_months
    inside = history.purchase_month >= history.lookback
    member, month = history.purchase_member[inside], history.purchase_month[inside] - history.lookback
    multipliers = np.array([t["multiplier"] for t in rules.tiers] + [1.0], dtype=float)  # index -1: no tier
    tier = path[month, member]
    points = base_points(pd.Series(history.purchase_amount[inside]), pd.Series(multipliers[tier]), rules.earn_rate)
    return np.bincount(month * n + member, weights=points, minlength=n * replay).reshape(replay, n)


def _demand(history: History, rules: Rules, current: Rules, scale: np.ndarray) -> np.ndarray:
    """Points each member would redeem per replay month: real redemptions x cost change x earn change."""
    n, replay = len(history.member_ids), history.replay_months
    size = 1 + max(
        max(current.reward_costs, default=0),
        max(rules.reward_costs, default=0),
        int(history.redemption_reward.max()) if len(history.redemption_reward) else 0,
    )
    now, new = np.zeros(size), np.zeros(size)
    now[list(current.reward_costs)] = list(current.reward_costs.values())
    new[list(rules.reward_costs)] = list(rules.reward_costs.values())
    factor_of = np.where(now > 0, new / np.where(now > 0, now, 1), 1.0)  # a reward unknown to both: unchanged
    demand = np.bincount(
        history.redemption_month * n + history.redemption_member,
        weights=history.redemption_points * factor_of[history.redemption_reward],
        minlength=n * replay,
    ).reshape(replay, n)
    return demand * scale[None, :]


def _ledger(history: History, rules: Rules, earned: np.ndarray, demand: np.ndarray) -> dict[str, Any]:
    """Month-by-month points flow (FIFO expiry) over all members at once."""
    n, replay, warmup = len(history.member_ids), history.replay_months, history.warmup
    expiry = rules.expiry_months
    credited, debited, due = np.zeros(n), np.zeros(n), np.zeros(n)
    redeemed_in_window, peak = np.zeros(n), np.zeros(n)
    flows: dict[str, list[int]] = {"issued": [], "redeemed": [], "expired": [], "outstanding": []}
    for r in range(replay):
        credited += earned[r]
        redeemed = np.minimum(demand[r], np.maximum(credited - debited, 0.0))
        debited += redeemed
        expired = np.zeros(n)
        if expiry > 0 and r - expiry >= 0:
            due += earned[r - expiry]
            expired = np.maximum(0.0, due - debited)
            debited += expired
        if r >= warmup:
            redeemed_in_window += redeemed
            np.maximum(peak, credited - debited + redeemed_in_window, out=peak)
            for key, value in (("issued", earned[r]), ("redeemed", redeemed), ("expired", expired)):
                flows[key].append(round(float(value.sum())))
            flows["outstanding"].append(round(float((credited - debited).sum())))
    return {"flows": flows, "balance": credited - debited, "peak": peak}


def _share(part: float, whole: float) -> float | None:
    return float(part) / float(whole) if whole else None


def replay(
    history: History, rules: Rules, *, demand: np.ndarray, path: np.ndarray, qualified: np.ndarray, earned: np.ndarray, point_value: float
) -> dict[str, Any]:
    """The JSON-ready outcome of one rule set on ``history`` (see the module notes)."""
    ledger = _ledger(history, rules, earned, demand)
    first = history.lookback + history.warmup
    spend = history.spend_cum[first + WINDOW_MONTHS] - history.spend_cum[first]
    active = (history.count_cum[first + WINDOW_MONTHS] - history.count_cum[first]) > 0
    n_active = int(active.sum())
    names = [t["name"] for t in rules.tiers]

    end_tier = path[-1][~history.erased].astype(np.int64)
    idle = history.members_total - len(end_tier)  # members with no purchase in the replay at all
    idle_tier = int(_qualified_idle(rules))
    counts = np.bincount(end_tier + 1, minlength=len(names) + 1)
    counts[idle_tier + 1] += max(idle, 0)
    best = qualified[history.warmup :, active].max(axis=0) if n_active else np.zeros(0, dtype=np.int64)
    tiers = [{"tier": name, "members": int(counts[k + 1]), "reach": _share(int((best >= k).sum()), n_active)} for k, name in enumerate(names)]
    if counts[0]:
        tiers.insert(0, {"tier": NO_TIER, "members": int(counts[0]), "reach": None})

    peak = np.sort(ledger["peak"][active])
    rewards: list[dict[str, Any]] = sorted(
        (
            {"reward_id": i, "reward": history.reward_names[i], "points_cost": rules.reward_costs[i]}
            for i in history.active_rewards
            if i in rules.reward_costs
        ),
        key=lambda r: (r["points_cost"], r["reward_id"]),
    )
    for reward in rewards:
        reward["reach"] = _share(len(peak) - int(np.searchsorted(peak, reward["points_cost"] - 1e-9)), n_active)
    flows = ledger["flows"]
    issued, outstanding = int(sum(flows["issued"])), round(float(ledger["balance"].sum()))
    revenue = float(spend.sum())
    return {
        "active_members": n_active,
        "points_issued": issued,
        "points_redeemed": int(sum(flows["redeemed"])),
        "points_expired": int(sum(flows["expired"])),
        "points_outstanding": outstanding,
        "liability": outstanding * point_value,
        "revenue": revenue,
        "cost_share": _share(issued * point_value, revenue),
        "first_reward": rewards[0]["reward"] if rewards else None,
        "first_reward_reach": rewards[0]["reach"] if rewards else None,
        "tiers": tiers,
        "rewards": rewards,
        "monthly": {"month": [add_months(history.window_start, i).isoformat() for i in range(WINDOW_MONTHS)], **flows},
    }


def _qualified_idle(rules: Rules) -> int:
    """The tier of a member with no spend and no purchases."""
    if not rules.tiers:
        return -1
    zero = np.zeros(1)
    return int(
        qualifying_tier_index(
            zero, zero.astype(np.int64), np.array([t["min_spend"] for t in rules.tiers]), np.array([t["min_purchases"] for t in rules.tiers])
        )[0]
    )


def simulate(
    session: Session,
    *,
    changes: dict[str, Any] | None = None,
    as_of: date | None = None,
    reader: Reader = "auto",
    timings: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Replay the last 12 months under the current rules and under ``changes``.

    Parameters
    ----------
    changes
        See :func:`normalise_changes`; empty or ``None`` replays the current rules twice.
    as_of
        The window is the 12 complete calendar months before this day's month (default today).
    timings
        If given, filled with seconds spent loading and replaying.

    Returns
    -------
    dict
        JSON-ready: ``window_start, window_end, members, purchases, currency, point_value,
        changes`` (normalised), ``rules`` (``current`` and ``scenario`` in plain terms), and
        ``current`` / ``scenario`` outcomes (see :func:`replay`). :func:`summary_frame`,
        :func:`tiers_frame` and :func:`flows_frame` put them side by side.
    """
    started = time.perf_counter()
    settings = get_settings(session)
    current = current_rules(session)
    names = _reward_names(session)
    clean = normalise_changes(changes or {}, current, names)
    scenario = scenario_rules(current, clean)
    lookback = max([t["window_months"] for t in (*current.tiers, *scenario.tiers)] or [0])
    warmup = min(max(MIN_WARMUP_MONTHS, current.expiry_months, scenario.expiry_months), MAX_WARMUP_MONTHS)
    history = load_history(session, as_of=as_of, lookback=lookback, warmup=warmup, reader=reader)
    loaded = time.perf_counter()

    paths = {key: _tier_paths(history, rules) for key, rules in (("current", current), ("scenario", scenario))}
    earned = {key: _earned(history, rules, paths[key][0]) for key, rules in (("current", current), ("scenario", scenario))}
    before, after = earned["current"].sum(axis=0), earned["scenario"].sum(axis=0)
    earn_change = np.where(before > 0, after / np.where(before > 0, before, 1), 1.0)
    outcome = {}
    for key, rules, scale in (("current", current, np.ones(len(before))), ("scenario", scenario, earn_change)):
        demand = _demand(history, rules, current, scale)
        outcome[key] = replay(
            history, rules, demand=demand, path=paths[key][0], qualified=paths[key][1], earned=earned[key], point_value=float(settings.point_value)
        )
    if timings is not None:
        timings.update(
            {
                "load_s": loaded - started,
                "replay_s": time.perf_counter() - loaded,
                "total_s": time.perf_counter() - started,
                "members": len(history.member_ids),
                "purchases": len(history.purchase_amount),
            }
        )
    return {
        "window_start": history.window_start.isoformat(),
        "window_end": history.window_end.isoformat(),
        "members": history.members_total,
        "purchases": int((history.purchase_month >= history.lookback + history.warmup).sum()),
        "currency": settings.currency,
        "point_value": float(settings.point_value),
        "changes": clean,
        "rules": {"current": current.as_json(names), "scenario": scenario.as_json(names)},
        "current": outcome["current"],
        "scenario": outcome["scenario"],
    }


def bench_whatif(session: Session, *, changes: dict[str, Any] | None = None, as_of: date | None = None, repeats: int = 1) -> dict[str, Any]:
    """Time :func:`simulate` (best of ``repeats``): ``load_s, replay_s, total_s, members, purchases``."""
    changes = changes if changes is not None else {"points_per_currency_unit": 1.5, "expiry_months": 6}
    best: dict[str, float] = {}
    for _ in range(max(repeats, 1)):
        timings: dict[str, float] = {}
        simulate(session, changes=changes, as_of=as_of, timings=timings)
        if not best or timings["total_s"] < best["total_s"]:
            best = timings
    return best


# --- side by side ------------------------------------------------------------------------------------


def _difference(current: Any, scenario: Any) -> Any:
    if current is None or scenario is None:
        return None
    return scenario - current


def summary_frame(result: dict[str, Any]) -> pd.DataFrame:
    """``metric, label, kind, current, scenario, difference`` for the headline numbers."""
    rows = [
        {
            "metric": key,
            "label": label,
            "kind": kind,
            "current": result["current"][key],
            "scenario": result["scenario"][key],
            "difference": _difference(result["current"][key], result["scenario"][key]),
        }
        for key, label, kind in METRICS
    ]
    return pd.DataFrame(rows)


def tiers_frame(result: dict[str, Any]) -> pd.DataFrame:
    """``tier, members_current, members_scenario, difference, reach_current, reach_scenario`` (tiers by name)."""

    def frame(side: str) -> pd.DataFrame:
        return pd.DataFrame(result[side]["tiers"], columns=["tier", "members", "reach"]).set_index("tier")

    joined = frame("current").join(frame("scenario"), how="outer", lsuffix="_current", rsuffix="_scenario", sort=False)
    order = [t["tier"] for t in result["current"]["tiers"]] + [t["tier"] for t in result["scenario"]["tiers"]]
    joined = joined.loc[list(dict.fromkeys(order))]
    joined[["members_current", "members_scenario"]] = joined[["members_current", "members_scenario"]].fillna(0).astype(int)
    joined["difference"] = joined["members_scenario"] - joined["members_current"]
    return joined.reset_index()[["tier", "members_current", "members_scenario", "difference", "reach_current", "reach_scenario"]]


def flows_frame(result: dict[str, Any]) -> pd.DataFrame:
    """``measure, current, scenario, difference`` for points issued, redeemed, expired and outstanding."""
    rows = [
        {"measure": measure.capitalize(), "current": result["current"][f"points_{measure}"], "scenario": result["scenario"][f"points_{measure}"]}
        for measure in ("issued", "redeemed", "expired", "outstanding")
    ]
    frame = pd.DataFrame(rows)
    frame["difference"] = frame["scenario"] - frame["current"]
    return frame


# --- scenarios -----------------------------------------------------------------------------------------


def save_scenario(
    *,
    session: Session,
    actor: Actor,
    name: str,
    changes: dict[str, Any],
    description: str = "",
    as_of: date | None = None,
    result: dict[str, Any] | None = None,
) -> Scenario:
    """Replay ``changes`` (or take the ``result`` of a run of the same changes) and store both, audited.

    Permission ``segments.manage`` (admin, manager, analyst): saving changes nothing in the program.
    """
    require(actor, SCENARIO_PERMISSION)
    name = (name or "").strip()
    if not name:
        raise InvalidInput("name: a scenario needs a name.")
    if len(name) > 200:
        raise InvalidInput(f"name: at most 200 characters (got {len(name)}).")
    if result is None or result.get("changes") != normalise_changes(changes, current_rules(session), _reward_names(session)):
        result = simulate(session, changes=changes, as_of=as_of)
    with write_transaction(session):
        if session.exec(select(Scenario.id).where(Scenario.name == name)).first() is not None:
            raise InvalidInput(f"name: a scenario named {name!r} already exists.")
        scenario = Scenario(
            name=name,
            description=description.strip(),
            changes=result["changes"],
            result=result,
            window_start=date.fromisoformat(result["window_start"]),
            window_end=date.fromisoformat(result["window_end"]),
            created_by=actor.username,
        )
        session.add(scenario)
        session.flush()
        record_audit(
            session,
            actor=actor,
            action="scenario.save",
            entity="scenario",
            entity_id=scenario.id,
            after={"name": name, "changes": result["changes"], "window_start": result["window_start"], "window_end": result["window_end"]},
        )
    session.refresh(scenario)
    return scenario


def list_scenarios(session: Session) -> pd.DataFrame:
    """Saved scenarios, newest first: ``id, name, description, window_start, window_end, created_by, created_at``
    and the scenario's headline numbers."""
    columns = [
        "id",
        "name",
        "description",
        "window_start",
        "window_end",
        "created_by",
        "created_at",
        "points_issued",
        "liability",
        "first_reward_reach",
        "cost_share",
    ]
    rows = [
        {
            "id": s.id,
            "name": s.name,
            "description": s.description,
            "window_start": s.window_start,
            "window_end": s.window_end,
            "created_by": s.created_by,
            "created_at": s.created_at,
            **{k: (s.result.get("scenario") or {}).get(k) for k in ("points_issued", "liability", "first_reward_reach", "cost_share")},
        }
        for s in session.exec(select(Scenario).order_by(col(Scenario.created_at).desc(), col(Scenario.id).desc()))
    ]
    return pd.DataFrame(rows, columns=columns)


def _scenario(session: Session, scenario_id: int) -> Scenario:
    scenario = session.get(Scenario, scenario_id)
    if scenario is None:
        raise NotFound(f"No scenario with id {scenario_id}.")
    return scenario


def delete_scenario(*, session: Session, actor: Actor, scenario_id: int) -> str:
    """Remove a saved scenario (audited, with what it held); returns its name."""
    require(actor, SCENARIO_PERMISSION)
    with write_transaction(session):
        scenario = _scenario(session, scenario_id)
        record_audit(
            session,
            actor=actor,
            action="scenario.delete",
            entity="scenario",
            entity_id=scenario_id,
            before={"name": scenario.name, "changes": scenario.changes},
        )
        session.delete(scenario)
    return scenario.name


def compare_scenarios(session: Session, ids: list[int]) -> pd.DataFrame:
    """Stored results side by side: one row per measure, a column ``Current rules`` (from the
    newest of the scenarios) and one per scenario, in the order of ``ids``.

    Rows: the headline numbers (``metric``, ``label``, ``kind``), then members per tier
    (``tier:<name>``) and the share who can reach each tier (``reach:<name>``).
    """
    scenarios = [_scenario(session, int(i)) for i in ids]
    if not scenarios:
        return pd.DataFrame(columns=["metric", "label", "kind", "Current rules"])
    newest = max(scenarios, key=lambda s: (s.created_at, s.id or 0))

    def values(outcome: dict[str, Any]) -> dict[str, Any]:
        out = {key: outcome.get(key) for key, _, _ in METRICS}
        for tier in outcome.get("tiers", []):
            out[f"tier:{tier['tier']}"] = tier["members"]
            out[f"reach:{tier['tier']}"] = tier["reach"]
        return out

    columns = {"Current rules": values(newest.result["current"])}
    for s in scenarios:
        columns[s.name] = values(s.result["scenario"])
    keys = list(dict.fromkeys(k for col in columns.values() for k in col))
    labels = {key: (label, kind) for key, label, kind in METRICS}
    rows = []
    for key in keys:
        label, kind = labels.get(key) or ((f"Members in {key[5:]}", "count") if key.startswith("tier:") else (f"Can reach {key[6:]}", "share"))
        rows.append({"metric": key, "label": label, "kind": kind, **{name: col.get(key) for name, col in columns.items()}})
    return pd.DataFrame(rows)


def _proposed_tiers(session: Session, scenario: Scenario) -> list[dict[str, Any]] | None:
    if "tiers" not in scenario.changes:
        return None
    existing = {row["name"].lower(): int(row["id"]) for row in list_tiers(session).to_dict("records")}
    proposed = []
    for row in scenario.changes["tiers"]:
        tier = {k: v for k, v in row.items() if k != "id"}
        tier_id = row.get("id") if row.get("id") in existing.values() else existing.get(str(row["name"]).lower())
        proposed.append({"id": tier_id, **tier})
    return proposed


def draft_from_scenario(*, session: Session, actor: Actor, scenario_id: int) -> dict[str, Any]:
    """Turn a scenario into drafts, applying nothing (see the module notes); one transaction, audited.

    Returns
    -------
    dict
        ``rewards``: the inactive draft rewards created (``id, name, points_cost, from_reward``);
        ``tiers``: the proposed tier table for :func:`apply_scenario_tiers` (``None`` if the
        scenario keeps the tiers); ``settings``: proposed settings for an administrator.
    """
    require(actor, "program.configure")
    scenario = _scenario(session, scenario_id)
    created = []
    with write_transaction(session):
        for key, cost in scenario.changes.get("reward_costs", {}).items():
            original = session.get(Reward, int(key))
            if original is None:
                raise NotFound(f"The reward with id {key} in scenario {scenario.name!r} no longer exists.")
            if original.points_cost == int(cost):
                continue
            name = f"{original.name} [draft: {scenario.name}]"[:200]
            if session.exec(select(Reward.id).where(Reward.name == name)).first() is not None:
                raise InvalidInput(f"A draft of {original.name} from scenario {scenario.name!r} already exists ({name!r}).")
            draft = save_reward(
                session=session,
                actor=actor,
                name=name,
                kind=original.kind,
                description=original.description,
                points_cost=int(cost),
                stock=original.stock,
                min_tier_id=original.min_tier_id,
                partner=original.partner,
                available_from=original.available_from,
                available_until=original.available_until,
                active=False,
            )
            created.append({"id": draft.id, "name": draft.name, "points_cost": draft.points_cost, "from_reward": original.name})
        proposal = {
            "rewards": created,
            "tiers": _proposed_tiers(session, scenario),
            "settings": {k: scenario.changes[k] for k in ("points_per_currency_unit", "expiry_months") if k in scenario.changes},
        }
        record_audit(session, actor=actor, action="scenario.draft", entity="scenario", entity_id=scenario.id, after=proposal)
    return proposal


def apply_scenario_tiers(*, session: Session, actor: Actor, scenario_id: int, confirm: bool = False) -> pd.DataFrame:
    """Replace the tier table with the scenario's, only with ``confirm=True`` (``program.configure``).

    Goes through :func:`loyalty.program.tiers.save_tiers` (validated and audited there) and adds a
    ``scenario.apply_tiers`` audit row in the same transaction. Members move at the next
    tier evaluation.
    """
    require(actor, "program.configure")
    if not confirm:
        raise InvalidInput("confirm: applying a scenario's tiers changes the live program; confirm it explicitly.")
    scenario = _scenario(session, scenario_id)
    proposed = _proposed_tiers(session, scenario)
    if proposed is None:
        raise InvalidInput(f"Scenario {scenario.name!r} does not change the tiers.")
    with write_transaction(session):
        record_audit(session, actor=actor, action="scenario.apply_tiers", entity="scenario", entity_id=scenario.id, after=proposed)
        return save_tiers(session=session, tiers=[{**t, "benefits": t.get("benefits", [])} for t in proposed], actor=actor)
