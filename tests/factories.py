"""Factories for test data: one place that knows how to make a valid row."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlmodel import Session

from db.engine import write_transaction
from db.models import Member, Reward, Tier
from loyalty.access.roles import SYSTEM_CLI
from loyalty.ledger.purchases import add_purchases

_counter = itertools.count(1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def make_member(session: Session, **overrides: Any) -> Member:
    n = next(_counter)
    values: dict[str, Any] = {
        "external_id": f"T{n:06d}",
        "name": f"Test Member {n}",
        "email": f"member{n}@example.com",
        "joined_at": utc(2024, 1, 1),
        "acquisition_channel": "store",
    }
    values.update(overrides)
    member = Member(**values)
    session.add(member)
    session.commit()
    return member


def make_reward(session: Session, **overrides: Any) -> Reward:
    n = next(_counter)
    values: dict[str, Any] = {"name": f"Reward {n}", "kind": "product", "points_cost": 100, "stock": None}
    values.update(overrides)
    reward = Reward(**values)
    session.add(reward)
    session.commit()
    return reward


def make_tier(session: Session, **overrides: Any) -> Tier:
    n = next(_counter)
    values: dict[str, Any] = {"name": f"Tier {n}", "rank": n, "multiplier": 1.0}
    values.update(overrides)
    tier = Tier(**values)
    session.add(tier)
    session.commit()
    return tier


def make_purchase(session: Session, member: Member, amount: float, occurred_at: datetime | None = None, **overrides: Any) -> int:
    """Record a purchase through the real earn path; returns the purchase id."""
    n = next(_counter)
    row = {
        "external_id": f"TP{n:07d}",
        "member_id": member.id,
        "occurred_at": pd.Timestamp(occurred_at or utc(2024, 6, 1)).tz_convert("UTC"),
        "amount": float(amount),
        "channel": "store",
        "store": "S1",
        "category": "grocery",
    }
    row.update(overrides)
    with write_transaction(session):
        add_purchases(session, pd.DataFrame([row]), actor=SYSTEM_CLI)
    from sqlmodel import select

    from db.models import Purchase

    return int(session.exec(select(Purchase.id).where(Purchase.external_id == row["external_id"])).one())
