"""The kinds of ledger entries and when a lot expires: what every part of the ledger shares.

Kept apart from :mod:`loyalty.ledger.entries` so the rules paid in a purchase's transaction
(:mod:`loyalty.ledger.challenges`, :mod:`loyalty.ledger.referrals`), which entries' refunds call,
do not import entries back.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd

__all__ = ["ADJUST", "BONUS", "EARN", "EXPIRE", "KINDS", "REDEEM", "REVERSE", "expiry_date", "expiry_dates"]

EARN, BONUS, REDEEM, EXPIRE, ADJUST, REVERSE = "earn", "bonus", "redeem", "expire", "adjust", "reverse"
KINDS = (EARN, BONUS, REDEEM, EXPIRE, ADJUST, REVERSE)


def expiry_date(earned_at: datetime, months: int) -> datetime | None:
    """The moment a lot earned at ``earned_at`` expires (``None`` if points never expire)."""
    if months <= 0:
        return None
    earned = pd.Timestamp(earned_at)
    # Month arithmetic in UTC, as expiry_dates does: Jan 31 23:00 at UTC-2 is Feb 1 UTC.
    if earned.tzinfo is not None:
        earned = earned.tz_convert("UTC")
    return (earned + pd.DateOffset(months=months)).to_pydatetime()


def expiry_dates(earned_at: pd.Series, months: int) -> pd.Series:
    """Vectorised :func:`expiry_date` for a column of UTC timestamps."""
    if months <= 0:
        return pd.Series(pd.NaT, index=earned_at.index, dtype=earned_at.dtype)
    return earned_at + pd.DateOffset(months=months)
