"""The program at a glance: the numbers on the Overview page, computed once and stored by the nightly KPI snapshot."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import pandas as pd
import polars as pl
from sqlalchemy import delete, func
from sqlmodel import Session, col, select

from db.bulk import insert_frame
from db.models import KpiSnapshot, Member, Redemption, utcnow
from loyalty.periods import cutoff_of, default_as_of
from loyalty.settings import get_settings

__all__ = ["PROGRAM_PERIOD", "ProgramSummary", "program_snapshot_frame", "program_summary", "recent_alerts", "store_program_snapshot"]

ACTIVE_WINDOW = timedelta(days=90)
# The nightly KPI snapshot also stores the Overview's numbers in ``kpi_snapshot`` under
# this period, so the page reads a few dozen rows instead of aggregating the purchase
# and ledger tables (tens of seconds at ten million rows on SQLite).
PROGRAM_PERIOD = "program"
MONTHLY_COLUMNS = ("revenue", "purchases", "buyers", "points_earned", "points_bonus", "points_redeemed", "points_expired")
HEADLINE_COLUMNS = ("active_members", "purchases_30d", "revenue_30d", "points_outstanding")


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
    monthly: pd.DataFrame  # month, revenue, purchases, buyers, points_earned, points_redeemed, points_expired, complete
    as_of: date | None = None  # the nightly snapshot's day; None when computed live


def program_summary(session: Session, *, now: datetime | None = None, months: int = 24, live: bool = False) -> ProgramSummary:
    """Head-line numbers and a monthly series, as of the last complete day.

    One computation, :func:`program_snapshot_frame`: the nightly KPI snapshot stores its rows
    and this reads them back; before the first snapshot, or with ``live`` or ``now``, it runs
    on the purchases and ledger as of the day before ``now``. Members and pending redemptions
    are always counted live.
    """
    if not live and now is None:
        stored = _summary_of(session, _stored_rows(session))
        if stored is not None:
            return stored
    from loyalty.analytics.data import load_ledger_entries, load_purchases
    from loyalty.analytics.reader import analytics_reader

    as_of = default_as_of(now or utcnow())
    reader = analytics_reader(session)
    end = as_of + timedelta(days=1)
    purchases = load_purchases(session, end=end, reader=reader)
    frame = program_snapshot_frame(purchases, load_ledger_entries(session, end, reader=reader), as_of=as_of, months=months)
    summary = _summary_of(session, frame)
    assert summary is not None  # the frame has every head-line row
    summary.as_of = None  # computed now, not read from a snapshot
    return summary


def program_snapshot_frame(purchases: pl.DataFrame, entries: pl.DataFrame, *, as_of: date, months: int = 24) -> pd.DataFrame:
    """The Overview's numbers as of the end of ``as_of``, as ``kpi_snapshot`` rows.

    ``purchases``: ``member_id, occurred_on, amount`` (refunds excluded); ``entries``:
    the ledger before the end of ``as_of`` (``kind, points, occurred_seconds``), as the
    KPI snapshot reads them. Monthly rows (``dimension = "month"``) for the last
    ``months`` calendar months and head-line rows (``dimension = "headline"``).
    """
    end = as_of + timedelta(days=1)
    first = (pd.Timestamp(end - timedelta(days=1)).replace(day=1) - pd.DateOffset(months=months - 1)).date()
    bought = purchases.filter(pl.col("occurred_on") < end)
    sales = (
        bought.filter(pl.col("occurred_on") >= first)
        .group_by(month=pl.col("occurred_on").dt.truncate("1mo"))
        .agg(revenue=pl.col("amount").sum(), purchases=pl.len(), buyers=pl.col("member_id").n_unique())
    )
    moved = (
        entries.with_columns(month=pl.from_epoch("occurred_seconds", time_unit="s").dt.date().dt.truncate("1mo"), kind=pl.col("kind").cast(pl.String))
        .filter(pl.col("month") >= first)
        .group_by("month")
        .agg(
            points_earned=pl.col("points").filter(pl.col("kind") == "earn").sum(),
            points_bonus=pl.col("points").filter(pl.col("kind") == "bonus").sum(),
            points_redeemed=-pl.col("points").filter(pl.col("kind") == "redeem").sum(),
            points_expired=-pl.col("points").filter(pl.col("kind") == "expire").sum(),
        )
    )
    monthly = sales.join(moved, on="month", how="full", coalesce=True).fill_null(0).sort("month").to_pandas()
    rows = [
        {
            "metric": column,
            "period_start": pd.Timestamp(m).date(),
            "period_end": (pd.Timestamp(m) + pd.DateOffset(months=1)).date(),
            "dimension": "month",
            "value": float(v),
        }
        for column in MONTHLY_COLUMNS
        for m, v in zip(monthly["month"], monthly[column])
    ]
    recent = bought.filter(pl.col("occurred_on") >= end - timedelta(days=30))
    headline = {
        "active_members": bought.filter(pl.col("occurred_on") >= end - ACTIVE_WINDOW)["member_id"].n_unique(),
        "purchases_30d": recent.height,
        "revenue_30d": float(recent["amount"].sum()),
        # The catalogue's points outstanding at the end of as_of: every entry before the cutoff
        # (the expiry run stamped at the cutoff itself counts on the next day).
        "points_outstanding": int(entries.filter(pl.col("occurred_seconds") < int(cutoff_of(as_of).timestamp()))["points"].sum()),
    }
    rows += [{"metric": k, "period_start": as_of, "period_end": end, "dimension": "headline", "value": float(v)} for k, v in headline.items()]
    frame = pd.DataFrame(rows)
    return frame.assign(period=PROGRAM_PERIOD, dimension_value="", computed_at=pd.Timestamp(utcnow()))[
        ["metric", "period", "period_start", "period_end", "dimension", "dimension_value", "value", "computed_at"]
    ]


def store_program_snapshot(session: Session, frame: pd.DataFrame) -> int:
    """Replace the stored Overview numbers (inside the caller's transaction)."""
    session.execute(delete(KpiSnapshot).where(col(KpiSnapshot.period) == PROGRAM_PERIOD))
    return insert_frame(session, "kpi_snapshot", frame)


def _stored_rows(session: Session) -> pd.DataFrame:
    return pd.DataFrame(
        session.exec(
            select(col(KpiSnapshot.metric), col(KpiSnapshot.dimension), col(KpiSnapshot.period_start), col(KpiSnapshot.value)).where(
                col(KpiSnapshot.period) == PROGRAM_PERIOD
            )
        ).all(),
        columns=["metric", "dimension", "period_start", "value"],
    )


def _summary_of(session: Session, frame: pd.DataFrame) -> ProgramSummary | None:
    """The summary the snapshot rows ``frame`` hold (None without every head-line number)."""
    if frame.empty:
        return None
    headline = frame[frame["dimension"] == "headline"]
    values = dict(zip(headline["metric"], headline["value"]))
    if set(HEADLINE_COLUMNS) - set(values):
        return None
    monthly = (
        frame[frame["dimension"] == "month"]
        .pivot_table(index="period_start", columns="metric", values="value", aggfunc="sum")
        .reindex(columns=list(MONTHLY_COLUMNS))
        .fillna(0.0)
    )
    as_of = headline["period_start"].iloc[0]
    starts = pd.to_datetime(monthly.index)
    # A month is complete once its last day is within the snapshot's day; the running one is "so far".
    complete = [(start + pd.DateOffset(months=1)).date() <= as_of + timedelta(days=1) for start in starts]
    monthly.index = starts.strftime("%Y-%m")
    monthly = monthly.rename_axis("month").reset_index()
    monthly.columns.name = None
    for column in MONTHLY_COLUMNS[1:]:
        monthly[column] = monthly[column].astype("int64")
    monthly["complete"] = complete
    settings = get_settings(session)
    outstanding = int(values["points_outstanding"])
    return ProgramSummary(
        members=int(session.exec(select(func.count()).select_from(Member)).one()),
        active_members=int(values["active_members"]),
        purchases_30d=int(values["purchases_30d"]),
        revenue_30d=float(values["revenue_30d"]),
        points_outstanding=outstanding,
        liability=outstanding * settings.point_value,
        currency=settings.currency,
        pending_redemptions=int(session.exec(select(func.count()).select_from(Redemption).where(Redemption.status == "requested")).one()),
        monthly=monthly,
        as_of=as_of,
    )


def recent_alerts(session: Session, *, limit: int = 5) -> list[dict]:
    """The newest unacknowledged alerts (retention falling, KPIs off track)."""
    from db.models import Alert

    rows = session.exec(select(Alert).where(Alert.acknowledged_by == "").order_by(col(Alert.as_of).desc(), col(Alert.id).desc()).limit(limit)).all()
    return [{"as_of": a.as_of, "severity": a.severity, "message": a.message, "metric": a.metric, "kind": a.kind} for a in rows]
