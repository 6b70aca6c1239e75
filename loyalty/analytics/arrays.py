"""Per-member aggregation over millions of purchases with plain numpy.

Member ids become positions in arrays (the ids themselves when they are dense, as
database ids are; otherwise their rank), so a per-member sum is one ``np.bincount``
and a per-member minimum one ``np.minimum.at``: measured here at 10M purchases,
0.07 s and 0.04 s, against about 1 s for a Polars ``group_by``. Distinct
(member, day) or (member, month) pairs come from one sort of integer keys
(Polars' sort, on every core: 0.2 s at 10M on two cores).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

# Below this many rows ranking ids is cheap; above it, ids up to this many times the
# row count are used as positions directly (memory proportional to the data).
SMALL_FRAME_ROWS = 200_000
DENSE_FACTOR = 4
# Money is summed exactly, in ten-thousandths of the currency unit (no currency has more
# than four decimals), so a total does not depend on the order of the rows: the Spark
# engine, which adds in any order, gives the same figures to the last digit.
MONEY_SCALE = 10_000


def money_units(amount: np.ndarray) -> np.ndarray:
    """Amounts as whole ten-thousandths (int64): what :meth:`MemberArrays.money_sum` adds."""
    return np.rint(np.asarray(amount, dtype=np.float64) * MONEY_SCALE).astype(np.int64)


@dataclass(frozen=True)
class MemberArrays:
    """Purchases as columns of numbers, with each row's member as an array position."""

    position: np.ndarray  # int64, per row
    member_ids: np.ndarray  # int64, per position
    day: np.ndarray  # int32 UTC day number (days since 1970-01-01), per row
    amount: np.ndarray  # float64, per row (zeros when the frame has none)

    @property
    def size(self) -> int:
        return len(self.member_ids)

    def sum(self, values: np.ndarray | None = None, rows: np.ndarray | None = None) -> np.ndarray:
        """Per-position sum of ``values`` (a count without them) over the selected rows."""
        rows = _unless_all(rows)
        position = self.position if rows is None else self.position[rows]
        if values is not None and rows is not None:
            values = values[rows]
        return np.bincount(position, weights=values, minlength=self.size)

    def money_sum(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Per-position total of ``amount`` over the selected rows, added exactly (see :data:`MONEY_SCALE`).

        The sum of whole units is exact in float64 below 2**53 units (about 900 billion of
        the currency), and one division gives the float nearest to the exact total.
        """
        return self.sum(money_units(self.amount).astype(np.float64), rows) / MONEY_SCALE

    def count(self, rows: np.ndarray | None = None) -> np.ndarray:
        rows = _unless_all(rows)
        position = self.position if rows is None else self.position[rows]
        return np.bincount(position, minlength=self.size).astype(np.int64)

    def extreme(self, values: np.ndarray, *, largest: bool, rows: np.ndarray | None = None, empty: int = 0) -> np.ndarray:
        """Per-position max (or min) of integer ``values``; ``empty`` where a member has no row."""
        position = self.position if rows is None else self.position[rows]
        chosen = values if rows is None else values[rows]
        # ``ufunc.at`` is fast only when the output has the values' own dtype (0.04 s
        # for 10M int32 days, 0.8 s when they are cast to int64 one by one).
        info = np.iinfo(chosen.dtype)
        sentinel = info.min if largest else info.max
        out = np.full(self.size, sentinel, dtype=chosen.dtype)
        (np.maximum if largest else np.minimum).at(out, position, chosen)
        out[out == sentinel] = empty
        return out.astype(np.int64)

    def distinct(self, minor: np.ndarray, span: int, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Distinct (position, minor) pairs, sorted, for ``0 <= minor < span``."""
        position = self.position if rows is None else self.position[rows]
        values = minor if rows is None else minor[rows]
        keys = position * np.int64(span)
        keys += values
        # Polars sorts on every core: 0.2 s for ten million keys on two cores, against 0.64 s for np.sort.
        keys = pl.Series(keys).sort().to_numpy()
        if len(keys):
            keep = np.empty(len(keys), dtype=bool)
            keep[0] = True
            np.not_equal(keys[1:], keys[:-1], out=keep[1:])
            keys = keys[keep]
        return keys // span, keys % span


def _unless_all(rows: np.ndarray | None) -> np.ndarray | None:
    """``None`` when every row is selected: saves copying ten million positions."""
    return None if rows is None or rows.all() else rows


def member_arrays(purchases: pl.DataFrame) -> MemberArrays:
    """Arrays of a normalised purchases frame (``member_id`` Int64, ``occurred_on`` Date, ``amount``)."""
    ids = purchases["member_id"].to_numpy().astype(np.int64, copy=False)
    day = purchases["occurred_on"].cast(pl.Int32).to_numpy()
    amount = purchases["amount"].fill_null(0.0).to_numpy().astype(np.float64, copy=False) if "amount" in purchases.columns else np.zeros(len(ids))
    if len(ids) > SMALL_FRAME_ROWS and ids.min() >= 0 and ids.max() < DENSE_FACTOR * len(ids):
        return MemberArrays(ids, np.arange(int(ids.max()) + 1, dtype=np.int64), day, amount)
    # Rank the ids: a sort and a binary search (numpy's unique with return_inverse is
    # several times slower at this size).
    ordered = np.sort(ids)
    if len(ordered):
        keep = np.empty(len(ordered), dtype=bool)
        keep[0] = True
        np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
        ordered = ordered[keep]
    return MemberArrays(np.searchsorted(ordered, ids).astype(np.int64), ordered, day, amount)


def month_offsets(day: np.ndarray) -> tuple[np.ndarray, int]:
    """Calendar month of each UTC day number, as an offset from the first month present.

    Returns ``(offsets, first)`` with ``first`` the first month as months since
    1970-01; computed through a lookup table over the days present (fast for millions).
    """
    if len(day) == 0:
        return np.zeros(0, dtype=np.int32), 0
    first_day, last_day = int(day.min()), int(day.max())
    months = np.arange(first_day, last_day + 1).astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
    first = int(months[0])
    table = (months - first).astype(np.int32)
    return table[day - np.int32(first_day)], first


def align(source_ids: np.ndarray, target_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions in sorted ``source_ids`` of each target id, and whether it is there.

    Gathering per-member arrays with these replaces a hash join of two
    million-row frames.
    """
    if len(source_ids) == 0:
        return np.zeros(len(target_ids), dtype=np.int64), np.zeros(len(target_ids), dtype=bool)
    size = len(source_ids)
    if source_ids[0] == 0 and source_ids[-1] == size - 1:
        # Dense positions (member_arrays used the ids themselves): the id is the index.
        found = (target_ids >= 0) & (target_ids < size)
        return np.where(found, target_ids, 0), found
    index = np.minimum(np.searchsorted(source_ids, target_ids), size - 1)
    return index, source_ids[index] == target_ids
