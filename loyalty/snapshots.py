"""KPI snapshots: the catalogue computed for a period and stored, so pages read small tables.

Storing a period again replaces its rows (never duplicates them), in one transaction.
"""

from __future__ import annotations

from datetime import date

import pandas as pd
from sqlalchemy import delete
from sqlmodel import Session

from db.bulk import insert_frame
from db.engine import write_transaction
from db.models import KpiSnapshot, utcnow

__all__ = ["DIMENSIONS", "snapshot_kpis"]

DIMENSIONS = (None, "segment", "tier", "channel")


def snapshot_kpis(session: Session, *, period: str, start: date, end: date, dimensions: tuple[str | None, ...] = DIMENSIONS) -> int:
    """Compute every catalogue KPI for ``[start, end)`` overall and by each dimension; store them.

    Returns the number of snapshot rows written.
    """
    from loyalty.analytics.metrics import compute_kpis

    frames = []
    for by in dimensions:
        frame = compute_kpis(session, start, end, by=by)
        frame["dimension"] = frame["dimension"].fillna("overall") if "dimension" in frame else "overall"
        frames.append(frame)
    values = pd.concat(frames, ignore_index=True)
    values["dimension_value"] = values["dimension_value"].fillna("").astype(str)
    values = values.assign(period=period, period_start=start, period_end=end, computed_at=pd.Timestamp(utcnow()))
    values["value"] = values["value"].astype(float).where(values["value"].notna(), None)
    with write_transaction(session):
        session.execute(delete(KpiSnapshot).where(KpiSnapshot.period == period, KpiSnapshot.period_start == start))
        insert_frame(session, "kpi_snapshot", values[["metric", "period", "period_start", "period_end", "dimension", "dimension_value", "value", "computed_at"]])
    return len(values)
