"""The history's clock (epoch seconds, month boundaries, shop hours) and the array helpers the steps share."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd

from loyalty.demo.parameters import CLOSING, DAY, OPENING


def as_seconds(moment: datetime | pd.Timestamp) -> int:
    """A moment as epoch seconds."""
    return int(pd.Timestamp(moment).timestamp())


def as_timestamps(seconds: np.ndarray) -> pd.Series:
    """Epoch seconds as a column of UTC timestamps."""
    return pd.Series(pd.to_datetime(np.asarray(seconds, dtype=np.int64), unit="s", utc=True))


def as_datetime(seconds: int) -> datetime:
    """Epoch seconds as a UTC datetime."""
    return datetime.fromtimestamp(int(seconds), tz=UTC)


def month_boundaries(now: datetime, months: int) -> np.ndarray:
    """History start, every 1st of the month after it, and ``now`` (epoch seconds)."""
    start = pd.Timestamp(now) - pd.DateOffset(months=months)
    first = start.normalize().replace(day=1) + pd.DateOffset(months=1)
    month_starts = pd.date_range(first, pd.Timestamp(now), freq="MS", inclusive="left")
    return np.array([as_seconds(start), *(as_seconds(t) for t in month_starts), as_seconds(now)], dtype=np.int64)


def shop_times(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """A moment per row in ``(lo, hi)``, squeezed into shop hours, to the second.

    Where shop hours fall outside the window (a member joining at 20:00, the history
    ending at 09:00) the uniform moment is kept, rather than piling rows on the edge.
    """
    raw = np.clip(lo + (rng.random(len(lo)) * (hi - lo)).astype(np.int64), lo + 1, hi - 1)
    day = raw - raw % DAY
    moment = day + OPENING + ((raw - day) * (CLOSING - OPENING)) // DAY
    return np.where((moment > lo) & (moment < hi), moment, raw)


def choose(rng: np.random.Generator, probabilities: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """One choice per row, drawn with the weights ``probabilities[rows[i]]``."""
    cumulative = np.cumsum(probabilities, axis=1)
    cumulative /= cumulative[:, -1:]
    u = rng.random(len(rows))
    return np.minimum((u[:, None] > cumulative[rows]).sum(axis=1), probabilities.shape[1] - 1)


def object_array(values: tuple[str, ...] | list[str]) -> np.ndarray:
    """Texts as a numpy object array, for indexing by code."""
    return np.asarray(values, dtype=object)
