"""Row selection in ``st.dataframe`` tables that act on what was chosen, by id.

A dataframe's selection is a list of row positions in the table as the browser showed
it. Once the rows change (handled here, or by a colleague), the same positions point at
other rows. Keying the table by the ids it shows gives a fresh, empty selection whenever
the rows change, so a position is only ever read against the rows it was made on, and is
turned into ids at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pandas as pd

__all__ = ["readable", "selected_ids", "selection_key"]

# Column names that read differently from their words.
_HEADERS = {"external_id": "member", "clv": "CLV", "nps": "NPS", "p_alive": "P(alive)"}


def readable(frame: pd.DataFrame | Sequence[dict]) -> pd.DataFrame:
    """``frame`` (or rows as dicts) with headers people read: ``historical_clv`` shows as
    "historical CLV", ``external_id`` as "member" (the data is not changed)."""
    if not isinstance(frame, pd.DataFrame):
        frame = pd.DataFrame(list(frame))

    def words(name: object) -> str:
        text = str(name)
        if text in _HEADERS:
            return _HEADERS[text]
        return " ".join(_HEADERS.get(part, part) for part in text.split("_"))

    return frame.rename(columns=words)


def selection_key(prefix: str, ids: Sequence[int] | pd.Series) -> str:
    """The widget key of a selectable table showing rows ``ids`` (in that order)."""
    digest = hashlib.blake2b(",".join(str(int(i)) for i in ids).encode(), digest_size=8).hexdigest()
    return f"{prefix}_{digest}"


def selected_ids(positions: Sequence[int], ids: pd.Series) -> list[int]:
    """The ids at the selected ``positions`` of the table that shows ``ids``."""
    return [int(ids.iloc[p]) for p in positions if 0 <= p < len(ids)]
