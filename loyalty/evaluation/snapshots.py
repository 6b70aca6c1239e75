"""KPI snapshots: the catalogue computed for a period and stored, so pages read small tables.

Storing a period again replaces its rows (never duplicates them), in one transaction.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from sqlmodel import Session

if TYPE_CHECKING:
    from loyalty.analytics.metrics import Dimension

__all__ = ["DIMENSIONS", "snapshot_kpis"]

DIMENSIONS: tuple[Dimension | None, ...] = (None, "segment", "tier", "channel")


def snapshot_kpis(session: Session, *, period: str, start: date, end: date, dimensions: tuple[Dimension | None, ...] = DIMENSIONS) -> int:
    """Compute every catalogue KPI for ``[start, end)`` overall and by each dimension; store them.

    Returns the number of snapshot rows written. The kpi-snapshot job uses the same two
    steps (``loyalty.evaluation.kpis``).
    """
    from loyalty.evaluation.kpis import kpi_snapshot_frame, store_kpi_snapshots

    return store_kpi_snapshots(session, [kpi_snapshot_frame(session, period=period, start=start, end=end, dimensions=dimensions)])
