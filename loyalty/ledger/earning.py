"""The earn engine: how many points each purchase earns.

Base points are ``floor(amount x points_per_currency_unit x tier multiplier)``, on the
amount actually paid (after any discount). Campaign rules (``loyalty.program.campaigns``) add
entries of their own on top through :data:`EarnRule`; each entry records the campaign
that produced it, so a refund reverses all of them.

Everything is vectorised over a frame of purchases: the import of a million rows and
the recording of one purchase run the same code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import pandas as pd
from sqlalchemy import bindparam, text
from sqlmodel import Session

from loyalty.bounds import MAX_POINTS_PER_ENTRY
from loyalty.errors import InvalidInput
from loyalty.ledger.entries import BONUS, EARN, expiry_dates
from loyalty.settings import ProgramSettings

__all__ = ["EarnRule", "LEDGER_COLUMNS", "base_points", "earn_entries", "member_multipliers"]

# Guards floor() against binary fractions: 19.99 x 100 must give 1999, not 1998.
_EPSILON = 1e-9

LEDGER_COLUMNS = ["member_id", "kind", "points", "occurred_at", "expires_at", "purchase_id", "campaign_id", "reason", "actor"]


class EarnRule(Protocol):
    """A campaign's contribution: extra entries for the purchases it applies to.

    Receives the purchases frame (``id, member_id, occurred_at, amount, category,
    channel``) with the base points in ``base_points``; returns a frame with
    ``purchase_id, member_id, occurred_at, kind, points, campaign_id``.
    """

    def __call__(self, purchases: pd.DataFrame) -> pd.DataFrame: ...


def member_multipliers(session: Session, member_ids: Sequence[int] | None = None) -> pd.Series:
    """Earn multiplier of every member that has a tier (or only of ``member_ids``), indexed by member id."""
    # Members earning at 1x need no entry: earn_entries fills them with 1.0.
    sql = "SELECT m.id, t.multiplier FROM member m JOIN tier t ON t.id = m.tier_id WHERE t.multiplier <> 1"
    if member_ids is None:
        rows = session.execute(text(sql)).all()
    else:  # a few members (a purchase arriving through the API): no need to read a million
        statement = text(sql + " AND m.id IN :ids").bindparams(bindparam("ids", expanding=True))
        rows = session.execute(statement, {"ids": [int(i) for i in member_ids]}).all() if len(member_ids) else []
    if not rows:
        return pd.Series(dtype="float64")
    ids, mult = zip(*rows)
    return pd.Series(np.asarray(mult, dtype="float64"), index=np.asarray(ids, dtype="int64"))


def base_points(amount: pd.Series, multiplier: pd.Series, rate: float) -> pd.Series:
    """``floor(amount x rate x multiplier)`` as integers, checked: never a NaN, never past :data:`MAX_POINTS_PER_ENTRY`.

    The bounds of every way in (:mod:`loyalty.bounds`) keep real purchases far below the
    limit; reaching it means a bound was skipped, and nothing is written.
    """
    points = np.floor(amount.to_numpy(dtype="float64") * rate * multiplier.to_numpy(dtype="float64") + _EPSILON)
    if len(points) and not (np.isfinite(points).all() and np.abs(points).max() <= MAX_POINTS_PER_ENTRY):
        raise InvalidInput(f"A purchase would earn more than {MAX_POINTS_PER_ENTRY:,} points (or no number of points): nothing was written.")
    return points.astype("int64")


def earn_entries(
    purchases: pd.DataFrame, *, settings: ProgramSettings, multipliers: pd.Series, rules: tuple[EarnRule, ...] = (), actor: str = "system"
) -> pd.DataFrame:
    """Ledger rows (``LEDGER_COLUMNS``) for a frame of new purchases.

    ``purchases`` has ``id, member_id, occurred_at (UTC), amount`` and may carry
    ``category, channel``. Purchases earning 0 points produce no row.
    """
    if purchases.empty:
        return pd.DataFrame(columns=LEDGER_COLUMNS)
    mult = purchases["member_id"].map(multipliers).fillna(1.0)
    work = purchases.assign(base_points=base_points(purchases["amount"], mult, settings.points_per_currency_unit))
    base = pd.DataFrame(
        {
            "purchase_id": work["id"].to_numpy(),
            "member_id": work["member_id"].to_numpy(),
            "occurred_at": work["occurred_at"].array,  # .to_numpy() would build one Timestamp per row
            "kind": EARN,
            "points": work["base_points"].to_numpy(),
            "campaign_id": pd.array([pd.NA] * len(work), dtype="Int64"),
        }
    )
    extra = [part for part in (rule(work) for rule in rules) if not part.empty]
    entries = pd.concat([base, *extra], ignore_index=True) if extra else base
    points = entries["points"].to_numpy()
    if not (points > 0).all():
        entries = entries[points > 0].reset_index(drop=True)
    if len(entries) and entries["points"].max() > MAX_POINTS_PER_ENTRY:  # a bonus on top of a large purchase
        raise InvalidInput(f"A purchase would earn more than {MAX_POINTS_PER_ENTRY:,} points with its bonuses: nothing was written.")
    occurred = pd.to_datetime(entries["occurred_at"], utc=True)
    # One frame built at once: adding four columns one by one cost more than the rest for an API batch.
    return pd.DataFrame(
        {
            "member_id": entries["member_id"].to_numpy(),
            "kind": entries["kind"].to_numpy(),
            "points": entries["points"].to_numpy(),
            "occurred_at": occurred,
            "expires_at": expiry_dates(occurred, settings.expiry_months),
            "purchase_id": entries["purchase_id"].to_numpy(),
            "campaign_id": entries["campaign_id"].array,
            "reason": np.where(entries["kind"].to_numpy() == BONUS, "campaign bonus", "purchase"),
            "actor": actor,
        },
        columns=LEDGER_COLUMNS,
    )
