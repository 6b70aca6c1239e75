"""The program at a glance: the numbers on the Overview page, computed in SQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd
from sqlalchemy import func
from sqlmodel import Session, select

from db.functions import month_key
from db.models import LedgerEntry, Member, Purchase, Redemption, utcnow
from loyalty.settings import get_settings

__all__ = ["ProgramSummary", "program_summary", "recent_alerts"]

ACTIVE_WINDOW = timedelta(days=90)


@dataclass
class ProgramSummary:
    members: int
    active_members: int
    purchases_30d: int
    revenue_30d: float
    points_outstanding: int
    liability: float
    currency: str
    pending_redemptions: int
    monthly: pd.DataFrame  # month, revenue, purchases, buyers, points_earned, points_redeemed, points_expired


def program_summary(session: Session, *, now: datetime | None = None, months: int = 24) -> ProgramSummary:
    """Head-line numbers and a monthly series, each one aggregate query."""
    now = now or utcnow()
    settings = get_settings(session)
    members = session.exec(select(func.count()).select_from(Member)).one()
    active = session.exec(
        select(func.count(func.distinct(Purchase.member_id))).where(Purchase.occurred_at >= now - ACTIVE_WINDOW)
    ).one()
    count_30, revenue_30 = session.exec(
        select(func.count(), func.coalesce(func.sum(Purchase.amount), 0.0)).where(
            Purchase.occurred_at >= now - timedelta(days=30), Purchase.refunded_at.is_(None)
        )
    ).one()
    outstanding = int(session.exec(select(func.coalesce(func.sum(LedgerEntry.points), 0))).one())
    pending = session.exec(select(func.count()).select_from(Redemption).where(Redemption.status == "requested")).one()
    since = (pd.Timestamp(now) - pd.DateOffset(months=months - 1)).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    month = month_key(Purchase.occurred_at)
    sales = pd.DataFrame(
        session.exec(
            select(month, func.sum(Purchase.amount), func.count(), func.count(func.distinct(Purchase.member_id)))
            .where(Purchase.occurred_at >= since.to_pydatetime(), Purchase.refunded_at.is_(None))
            .group_by(month)
        ).all(),
        columns=["month", "revenue", "purchases", "buyers"],
    )
    lmonth = month_key(LedgerEntry.occurred_at)
    points = pd.DataFrame(
        session.exec(
            select(lmonth, LedgerEntry.kind, func.sum(LedgerEntry.points))
            .where(LedgerEntry.occurred_at >= since.to_pydatetime())
            .group_by(lmonth, LedgerEntry.kind)
        ).all(),
        columns=["month", "kind", "points"],
    )
    wide = points.pivot_table(index="month", columns="kind", values="points", aggfunc="sum", fill_value=0) if not points.empty else pd.DataFrame()
    monthly = sales.set_index("month") if not sales.empty else pd.DataFrame(columns=["revenue", "purchases", "buyers"])
    for kind, column, sign in (("earn", "points_earned", 1), ("bonus", "points_bonus", 1), ("redeem", "points_redeemed", -1), ("expire", "points_expired", -1)):
        monthly[column] = (wide[kind] * sign if kind in wide else pd.Series(dtype="int64")).reindex(monthly.index).fillna(0).astype("int64")
    monthly = monthly.sort_index().reset_index().rename(columns={"index": "month"})
    return ProgramSummary(
        members=int(members), active_members=int(active), purchases_30d=int(count_30), revenue_30d=float(revenue_30),
        points_outstanding=outstanding, liability=outstanding * settings.point_value, currency=settings.currency,
        pending_redemptions=int(pending), monthly=monthly,
    )


def recent_alerts(session: Session, *, limit: int = 5) -> list[dict]:
    """The newest unacknowledged alerts (retention falling, KPIs off track)."""
    from db.models import Alert

    rows = session.exec(select(Alert).where(Alert.acknowledged_by == "").order_by(Alert.as_of.desc(), Alert.id.desc()).limit(limit)).all()
    return [{"as_of": a.as_of, "severity": a.severity, "message": a.message, "metric": a.metric, "kind": a.kind} for a in rows]
