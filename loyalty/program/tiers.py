"""Tiers: ordered levels with qualification rules, multipliers and benefits.

A member qualifies for the highest tier whose thresholds they meet over the tier's
rolling window: spend *and* purchase count, both cumulative over the window (not per
purchase). Tier evaluation (a scheduled job) moves members; a downgrade waits for the
tier's grace period.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import func
from sqlmodel import Session, col, select

from db.engine import write_transaction
from db.models import Member, Reward, Tier
from loyalty.access.audit import record_audit
from loyalty.access.roles import Actor, require
from loyalty.bounds import MAX_MULTIPLIER
from loyalty.errors import InvalidInput
from loyalty.formatting import number as readable

__all__ = ["TIER_FIELDS", "TierThresholdsNotIncreasing", "list_tiers", "qualifying_tier_index", "save_tiers", "validate_tiers"]

TIER_FIELDS = ("name", "min_spend", "min_purchases", "window_months", "multiplier", "benefits", "grace_months")


class TierThresholdsNotIncreasing(InvalidInput):
    """A tier does not ask more than the one below it."""


def list_tiers(session: Session) -> pd.DataFrame:
    """Tiers lowest first, with the number of members in each now."""
    counts = dict(session.exec(select(col(Member.tier_id), func.count()).group_by(col(Member.tier_id))).all())
    rows = [
        {
            "id": t.id,
            "name": t.name,
            "min_spend": t.min_spend,
            "min_purchases": t.min_purchases,
            "window_months": t.window_months,
            "multiplier": t.multiplier,
            "benefits": "; ".join(t.benefits or []),
            "grace_months": t.grace_months,
            "members": int(counts.get(t.id, 0)),
        }
        for t in session.exec(select(Tier).order_by(col(Tier.rank)))
    ]
    return pd.DataFrame(rows, columns=["id", *TIER_FIELDS, "members"])


MAX_TIER_SPEND = 1_000_000_000
MAX_TIER_PURCHASES = 1_000_000


def _clean(row: dict[str, Any], line: int) -> dict[str, Any]:
    def number(field: str, cast: type, minimum: float, maximum: float) -> Any:
        value = row.get(field)
        if value is None or (isinstance(value, float) and np.isnan(value)) or value == "":
            raise InvalidInput(f"Tier {line} ({row.get('name') or 'unnamed'}): {field.replace('_', ' ')} is missing.")
        try:
            value = cast(value)
        except (TypeError, ValueError):
            raise InvalidInput(f"Tier {line}: {field.replace('_', ' ')} {value!r} is not a number.") from None
        if not math.isfinite(value):
            raise InvalidInput(f"Tier {line} ({row.get('name')}): {field.replace('_', ' ')} {value!r} is not a number.")
        if value < minimum:
            raise InvalidInput(f"Tier {line} ({row.get('name')}): {field.replace('_', ' ')} cannot be below {minimum:g} (got {value:g}).")
        if value > maximum:
            raise InvalidInput(
                f"Tier {line} ({row.get('name')}): {field.replace('_', ' ')} can be at most {readable(maximum)} (got {readable(value)})."
            )
        return value

    name = str(row.get("name") or "").strip()
    if not name:
        raise InvalidInput(f"Tier {line}: the name is empty.")
    benefits = row.get("benefits") or []
    if isinstance(benefits, str):
        benefits = [b.strip() for b in benefits.replace("\n", ";").split(";") if b.strip()]
    return {
        "name": name,
        "min_spend": number("min_spend", float, 0, MAX_TIER_SPEND),
        "min_purchases": number("min_purchases", int, 0, MAX_TIER_PURCHASES),
        "window_months": number("window_months", int, 1, 120),
        "multiplier": number("multiplier", float, 0, MAX_MULTIPLIER),
        "benefits": list(benefits),
        "grace_months": number("grace_months", int, 0, 120),
    }


def validate_tiers(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Check an ordered list of tiers (lowest first); return them cleaned or raise in plain words."""
    if not rows:
        raise InvalidInput("A program needs at least one tier.")
    cleaned = [_clean(r, i + 1) for i, r in enumerate(rows)]
    names = [r["name"].lower() for r in cleaned]
    duplicates = sorted({r["name"] for r in cleaned if names.count(r["name"].lower()) > 1})
    if duplicates:
        raise InvalidInput(f"Tier names must be unique: {', '.join(duplicates)} appears more than once.")
    for lower, upper in zip(cleaned, cleaned[1:]):
        if upper["min_spend"] < lower["min_spend"] or upper["min_purchases"] < lower["min_purchases"]:
            raise TierThresholdsNotIncreasing(
                f"{upper['name']} asks less than {lower['name']} below it "
                f"(spend {upper['min_spend']:g} vs {lower['min_spend']:g}, purchases {upper['min_purchases']} vs {lower['min_purchases']}): "
                "thresholds must increase from tier to tier."
            )
        if (upper["min_spend"], upper["min_purchases"]) == (lower["min_spend"], lower["min_purchases"]):
            raise TierThresholdsNotIncreasing(
                f"{upper['name']} has the same thresholds as {lower['name']}: a higher tier must ask for more spend or more purchases."
            )
        if upper["multiplier"] < lower["multiplier"]:
            raise InvalidInput(f"{upper['name']} earns less ({upper['multiplier']:g}x) than {lower['name']} below it ({lower['multiplier']:g}x).")
    return cleaned


def save_tiers(*, session: Session, tiers: list[dict[str, Any]], actor: Actor) -> pd.DataFrame:
    """Replace the tier table with ``tiers`` (lowest first; rows with an ``id`` update that tier).

    A tier that still has members, or that a reward requires, cannot be removed.
    """
    require(actor, "program.configure")
    cleaned = validate_tiers(tiers)
    with write_transaction(session):
        existing = {t.id: t for t in session.exec(select(Tier))}
        before = [{f: getattr(t, f) for f in TIER_FIELDS} for t in sorted(existing.values(), key=lambda t: t.rank)]
        kept_ids = {int(r["id"]) for r in tiers if r.get("id") is not None and not pd.isna(r.get("id")) and int(r["id"]) in existing}
        for tier_id, tier in existing.items():
            if tier_id in kept_ids:
                continue
            members = session.exec(select(func.count()).select_from(Member).where(Member.tier_id == tier_id)).one()
            rewards = session.exec(select(func.count()).select_from(Reward).where(Reward.min_tier_id == tier_id)).one()
            if members or rewards:
                raise InvalidInput(f"{tier.name} cannot be removed: {members:,} members are in it and {rewards} rewards require it.")
            session.delete(tier)
        session.flush()
        # Ranks are unique: move every kept tier out of the way first.
        for offset, tier_id in enumerate(kept_ids):
            existing[tier_id].rank = -1 - offset
            session.add(existing[tier_id])
        session.flush()
        for rank, (raw, values) in enumerate(zip(tiers, cleaned), start=1):
            raw_id = raw.get("id")
            stored = existing.get(int(raw_id)) if raw_id is not None and not pd.isna(raw_id) else None
            tier = stored or Tier(rank=rank, **values)
            for field, value in values.items():
                setattr(tier, field, value)
            tier.rank = rank
            session.add(tier)
        session.flush()
        record_audit(session, actor=actor, action="tiers.save", entity="tier", before=before, after=cleaned)
    return list_tiers(session)


def qualifying_tier_index(spend: np.ndarray, purchases: np.ndarray, min_spend: np.ndarray, min_purchases: np.ndarray) -> np.ndarray:
    """Index (0 = lowest) of the highest tier each member qualifies for, vectorised.

    ``spend`` and ``purchases`` are each member's totals over the window; tiers are
    lowest first. A member who meets no tier's thresholds gets -1.
    """
    meets = (spend[:, None] >= min_spend[None, :]) & (purchases[:, None] >= min_purchases[None, :])
    # The highest qualifying index: last True along the row.
    any_met = meets.any(axis=1)
    last = meets.shape[1] - 1 - np.argmax(meets[:, ::-1], axis=1)
    return np.where(any_met, last, -1)
