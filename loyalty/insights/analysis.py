"""What the Analyse pages show: page-ready frames from the analytics engine, filtered.

Every view takes a :class:`Filters` (date range, segment, tier, acquisition channel)
and returns plain DataFrames and numbers; the pages only draw them. Heavy work runs in
SQL or Polars (``loyalty.analytics``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
from sqlalchemy import case, func
from sqlmodel import Session, col, select

from db.functions import month_key
from db.models import Feedback, LedgerEntry, Member, Redemption, Reward
from loyalty.access.privacy import mask_contacts
from loyalty.access.roles import Actor
from loyalty.analytics.cohorts import churn_over_time, cohort_table, period_label, retention_curves
from loyalty.analytics.data import NO_TIER, load_members, load_purchases
from loyalty.periods import add_months, last_complete_month
from loyalty.settings import get_settings

__all__ = [
    "CYCLE_VERDICTS",
    "Filters",
    "clv_high_value",
    "clv_members_table",
    "clv_view",
    "cohort_members",
    "default_filters",
    "feedback_view",
    "purchase_cycle_view",
    "redemptions_view",
    "retention_view",
    "reward_redeemers",
    "rfm_grid",
    "rfm_segment_members",
    "slow_repeaters",
]

FREQUENCY_BINS = 40  # bars of the purchase-frequency chart
AT_RISK_ALIVE = 0.5  # members at risk: probability alive below this...
AT_RISK_VALUE_QUANTILE = 0.8  # ...and historical or predicted CLV in the top fifth
LOST_ALIVE = 0.01  # below this probability alive a member is counted lost, not at risk: too late to act
# Median days between purchases -> what it means for a loyalty program (DOMAIN.md, mistake 1).
CYCLE_VERDICTS = (
    (
        45,
        "Purchases repeat often (a median of {days:.0f} days between them): there is plenty of behaviour for points, tiers and campaigns to work with.",
    ),
    (
        120,
        "Purchases repeat every {days:.0f} days at the median: workable, but rewards must be reachable within a few visits and points should not expire too soon.",
    ),
    (
        365,
        "Purchases repeat only every {days:.0f} days at the median: a points program will see little behaviour; consider service benefits and long expiry instead.",
    ),
    (float("inf"), "Purchases almost never repeat (a median of {days:.0f} days): a loyalty program has too little behaviour to work with here."),
)


@dataclass(frozen=True)
class Filters:
    start: date
    end: date  # exclusive
    segment_id: int | None = None
    tier: str | None = None
    channel: str | None = None

    @property
    def restricts_members(self) -> bool:
        return any(v is not None for v in (self.segment_id, self.tier, self.channel))


def default_filters(now: datetime, months: int = 12) -> Filters:
    """An Analyse page's filters before anyone changes them: the last ``months`` complete
    calendar months (a month still running would read as a fall), every member."""
    last_month, following = last_complete_month(now)
    return Filters(start=add_months(last_month, 1 - months), end=following)


def _member_ids(session: Session, filters: Filters, members: pl.DataFrame | None = None) -> np.ndarray | None:
    """Ids of the members the filters keep (None: everyone); ``members`` as ``load_members`` gives
    them, read only when needed if not given."""
    if not filters.restricts_members:
        return None
    keep = load_members(session) if members is None else members
    if filters.tier is not None:
        keep = keep.filter(pl.col("tier") == filters.tier)
    if filters.channel is not None:
        keep = keep.filter(pl.col("acquisition_channel") == filters.channel)
    ids = keep["member_id"].to_numpy()
    if filters.segment_id is not None:
        from db.models import Segment
        from loyalty.program.segments import segment_member_ids

        segment = session.get(Segment, filters.segment_id)
        ids = np.intersect1d(ids, segment_member_ids(session, segment.rules) if segment else np.empty(0, dtype=np.int64))
    return ids


def _inputs(
    session: Session, filters: Filters, columns: tuple[str, ...] = ("member_id", "occurred_on", "amount")
) -> tuple[pl.DataFrame, pl.DataFrame]:
    members = load_members(session)
    purchases = load_purchases(session, end=filters.end, columns=columns)
    ids = _member_ids(session, filters, members)
    if ids is not None:
        members = members.filter(pl.col("member_id").is_in(ids.tolist()))
        purchases = purchases.filter(pl.col("member_id").is_in(ids.tolist()))
    return purchases, members


# --- retention ---------------------------------------------------------------------------


def retention_view(session: Session, filters: Filters, *, period: str = "month") -> dict[str, pd.DataFrame]:
    """Cohort matrix (cohorts first purchasing in the date range), curves by channel, churn over time."""
    purchases, members = _inputs(session, filters)
    last_day = filters.end - timedelta(days=1)
    long = (
        cohort_table(purchases, period=period, as_of=last_day).to_pandas()
        if purchases.height
        else pd.DataFrame(columns=["cohort", "age", "size", "active", "retention"])
    )
    if not long.empty:
        long["cohort"] = [c if isinstance(c, str) else period_label(int(c), period) for c in long["cohort"]]
        first = f"{filters.start:%Y-%m}" if period == "month" else period_label(filters.start.year * 4 + (filters.start.month - 1) // 3, period)
        long = long[long["cohort"] >= first]
    matrix = long.pivot_table(index="cohort", columns="age", values="retention") if not long.empty else pd.DataFrame()
    sizes = long.groupby("cohort")["size"].first() if not long.empty else pd.Series(dtype="int64")
    curves = (
        retention_curves(purchases, members, by="acquisition_channel", period=period, as_of=last_day).to_pandas()
        if purchases.height
        else pd.DataFrame()
    )
    churn = churn_over_time(purchases, period=period, as_of=last_day).to_pandas() if purchases.height else pd.DataFrame()
    if not churn.empty:
        churn = churn[churn["period"] >= f"{filters.start:%Y-%m}"]
    return {"cohorts": long, "matrix": matrix, "sizes": sizes, "curves": curves, "churn": churn}


def cohort_members(session: Session, filters: Filters, cohort: str, age: int, *, period: str = "month") -> pd.DataFrame:
    """Drill-down: the members of a cohort and whether each bought ``age`` periods after joining it."""
    purchases, members = _inputs(session, filters)
    if not purchases.height:
        return pd.DataFrame(columns=["member", "acquisition_channel", "tier", "active_at_age"])
    from loyalty.analytics.cohorts import period_index

    indexed = purchases.with_columns(period_index("occurred_on", period).alias("p"))
    first = indexed.group_by("member_id").agg(pl.col("p").min().alias("first"))
    labels = first.with_columns(pl.col("first").map_elements(lambda i: period_label(int(i), period), return_dtype=pl.Utf8).alias("cohort"))
    cohort_ids = labels.filter(pl.col("cohort") == cohort)
    active = indexed.join(cohort_ids, on="member_id").filter(pl.col("p") == pl.col("first") + age)["member_id"].unique()
    table = cohort_ids.join(members, on="member_id", how="left").with_columns(pl.col("member_id").is_in(active.to_list()).alias("active_at_age"))
    return (
        table.select(pl.col("external_id").alias("member"), "acquisition_channel", "tier", "active_at_age")
        .sort(["active_at_age", "member"])
        .to_pandas()
    )


# --- CLV -----------------------------------------------------------------------------------


CLV_BINS = 40  # bars of the predicted-CLV histogram
CLV_SCATTER_POINTS = 3_000  # members drawn in the scatter: a sample, the same one every time
CLV_LISTED = 1_000  # members at risk (and lost) listed on the page; the CSV has them all
CLV_COLUMNS = (
    "external_id",
    "tier",
    "acquisition_channel",
    "frequency",
    "historical_clv",
    "predicted_clv",
    "probability_alive",
    "expected_purchases",
)


def clv_members_table(session: Session, filters: Filters, *, horizon_months: int = 12) -> pd.DataFrame:
    """Per-member historical and predicted CLV (model fitted on purchases before the range end)
    with the member's number, tier and acquisition channel, for the members the filters keep."""
    from loyalty.analytics.clv import clv_members

    table = clv_members(session, calibration_end=filters.end - timedelta(days=1), horizon_months=horizon_months)
    loaded = load_members(session)
    members = loaded.select("member_id", "external_id", "tier", "acquisition_channel").to_pandas()
    ids = _member_ids(session, filters, loaded)
    table = table.merge(members, on="member_id", how="left")
    return table[table["member_id"].isin(ids)] if ids is not None else table


def clv_high_value(table: pd.DataFrame, which: str) -> pd.DataFrame:
    """Of the top fifth by historical CLV: ``which="at_risk"`` those with a probability alive from
    :data:`LOST_ALIVE` to below :data:`AT_RISK_ALIVE`, ``"lost"`` those below it; highest value first."""
    if table.empty:
        return table
    valuable = table[table["historical_clv"] >= table["historical_clv"].quantile(AT_RISK_VALUE_QUANTILE)]
    alive = valuable["probability_alive"]
    chosen = valuable[(alive < AT_RISK_ALIVE) & (alive >= LOST_ALIVE)] if which == "at_risk" else valuable[alive < LOST_ALIVE]
    return chosen.sort_values("historical_clv", ascending=False)[[c for c in CLV_COLUMNS if c in table.columns]]


def clv_view(session: Session, filters: Filters, *, horizon_months: int = 12) -> dict[str, Any]:
    """What the Lifetime value page shows, small whatever the program's size: the means, the
    predicted-CLV histogram counted, a sample for the scatter, the means by tier and channel,
    and the first :data:`CLV_LISTED` members at risk and lost (with their counts). The whole
    per-member table is :func:`clv_members_table`."""
    from loyalty.analytics.metrics import METRICS

    table = clv_members_table(session, filters, horizon_months=horizon_months)
    at_risk, lost = clv_high_value(table, "at_risk"), clv_high_value(table, "lost")
    counts, edges = np.histogram(table["predicted_clv"], bins=CLV_BINS) if len(table) else (np.zeros(0, dtype=np.int64), np.zeros(1))
    sample = table.sample(CLV_SCATTER_POINTS, random_state=0) if len(table) > CLV_SCATTER_POINTS else table
    view: dict[str, Any] = {
        "members": len(table),
        "predicted_bins": pd.DataFrame({"predicted_clv_from": edges[:-1], "predicted_clv_to": edges[1:], "members": counts}),
        "sample": sample[["external_id", "historical_clv", "predicted_clv", "probability_alive"]].reset_index(drop=True),
        "at_risk": at_risk.head(CLV_LISTED).reset_index(drop=True),
        "at_risk_count": len(at_risk),
        "lost": lost.head(CLV_LISTED).reset_index(drop=True),
        "lost_count": len(lost),
    }
    if table.empty:
        return {
            **view,
            "historical_clv": math.nan,
            "predicted_clv": math.nan,
            "definitions": {},
            "by_tier": pd.DataFrame(),
            "by_channel": pd.DataFrame(),
        }
    by = {
        name: table.groupby(col)
        .agg(members=("member_id", "size"), historical_clv=("historical_clv", "mean"), predicted_clv=("predicted_clv", "mean"))
        .reset_index()
        .rename(columns={col: "group"})
        for name, col in (("by_tier", "tier"), ("by_channel", "acquisition_channel"))
    }
    by["by_tier"] = _in_tier_order(session, by["by_tier"])
    return {
        **view,
        # The catalogue's historical_clv and predicted_clv over these members (the cross-surface test checks it).
        "historical_clv": float(table["historical_clv"].mean()),
        "predicted_clv": float(table["predicted_clv"].mean()),
        "definitions": {m: METRICS[m].definition for m in ("historical_clv", "predicted_clv")},
        **by,
    }


def _catalogue(session: Session, filters: Filters, ids: np.ndarray | None, **names: str) -> dict[str, Any]:
    """KPIs of the catalogue over the filters' range and the members ``ids`` (None: everyone; the
    view's :func:`_member_ids`), under the view's own names (``repeat_share="repeat_purchase_rate"``):
    a page's figure is the catalogue's figure."""
    from loyalty.analytics.metrics import compute_kpis

    frame = compute_kpis(session, filters.start, filters.end, metrics=list(names.values()), only=None if ids is None else ids.tolist())
    values: dict[str, Any] = {m: (None if pd.isna(v) else float(v)) for m, v in zip(frame["metric"], frame["value"])}
    if values.get("active_members") is not None:
        values["active_members"] = int(values["active_members"])
    return {key: values[metric] for key, metric in names.items()}


def _in_tier_order(session: Session, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (one row per tier in column ``group``) in the tiers' rank order, lowest first;
    members without a tier last."""
    from db.models import Tier

    rank = {name: r for name, r in session.exec(select(Tier.name, Tier.rank)).all()}
    return frame.sort_values("group", key=lambda names: names.map(lambda n: rank.get(n, len(rank) + 1)), kind="stable", ignore_index=True)


# --- redemptions and liability -------------------------------------------------------------


# The figures of the Redemptions page, from the KPI catalogue (one definition each).
REDEMPTION_FIGURES = ("redemption_rate", "breakage_estimate", "points_outstanding", "points_liability")


def redemptions_view(session: Session, filters: Filters) -> dict[str, Any]:
    """Points earned, redeemed, returned and expired per month, rewards redeemed, and the
    catalogue's redemption rate, breakage estimate, points outstanding and liability.

    The figures are :data:`loyalty.analytics.metrics.METRICS` over the range (the monthly
    rate too: the catalogue's expression per month), so they equal ``analyze kpis``, the
    KPI snapshot and the report for the same period and members.
    """
    from loyalty.analytics.data import EARN_KINDS
    from loyalty.analytics.metrics import METRICS

    month = month_key(LedgerEntry.occurred_at)
    is_return = case((col(LedgerEntry.redemption_id).is_not(None), 1), else_=0)
    query = (
        select(month, LedgerEntry.kind, is_return, func.sum(LedgerEntry.points))
        .where(LedgerEntry.occurred_at >= _moment(filters.start), LedgerEntry.occurred_at < _moment(filters.end))
        .group_by(month, LedgerEntry.kind, is_return)
    )
    ids = _member_ids(session, filters, load_members(session)) if filters.restricts_members else None
    if ids is not None:
        query = query.where(col(LedgerEntry.member_id).in_(ids.tolist()))
    rows = pl.DataFrame(
        [tuple(r) for r in session.exec(query).all()],
        schema={"month": pl.String, "kind": pl.String, "is_return": pl.Int64, "points": pl.Int64},
        orient="row",
    )
    kind, points, returned = pl.col("kind"), pl.col("points"), pl.col("is_return") == 1
    monthly = (
        rows.group_by("month")
        .agg(
            earned=points.filter(kind.is_in(list(EARN_KINDS))).sum(),
            redeemed=-points.filter(kind == "redeem").sum(),
            returned=points.filter((kind == "reverse") & returned).sum(),
            expired=-points.filter(kind == "expire").sum(),
            reversed=-points.filter((kind == "reverse") & ~returned).sum(),
        )
        .sort("month")
    )
    rate = monthly.group_by("month").agg(METRICS["redemption_rate"].aggregate().alias("redemption_rate"))
    frame = monthly.join(rate, on="month").sort("month").to_pandas()
    frame["redemption_rate"] = frame["redemption_rate"].astype(float)
    rewards_query = (
        select(Reward.name, func.count(), func.sum(Redemption.points))
        .join(Reward, col(Reward.id) == Redemption.reward_id)
        .where(Redemption.requested_at >= _moment(filters.start), Redemption.requested_at < _moment(filters.end), Redemption.status != "cancelled")
        .group_by(Reward.name)
        .order_by(func.count().desc())
    )
    if ids is not None:
        rewards_query = rewards_query.where(col(Redemption.member_id).in_(ids.tolist()))
    by_reward = pd.DataFrame(session.exec(rewards_query).all(), columns=["reward", "redemptions", "points"])
    values = _catalogue(session, filters, ids, **{m: m for m in REDEMPTION_FIGURES})
    return {
        "monthly": frame,
        "by_reward": by_reward,
        "currency": get_settings(session).currency,
        "earned": int(frame["earned"].sum()) if not frame.empty else 0,
        "redeemed": int(frame["redeemed"].sum()) if not frame.empty else 0,
        "returned": int(frame["returned"].sum()) if not frame.empty else 0,
        "expired": int(frame["expired"].sum()) if not frame.empty else 0,
        "redemption_rate": values["redemption_rate"],
        "breakage": values["breakage_estimate"],
        "outstanding": int(values["points_outstanding"] or 0),
        "liability": values["points_liability"] or 0.0,
        "definitions": {m: METRICS[m].definition for m in REDEMPTION_FIGURES},
    }


def reward_redeemers(session: Session, filters: Filters, reward: str) -> pd.DataFrame:
    """Drill-down: who redeemed a reward in the range."""
    rows = session.exec(
        select(Member.external_id, Redemption.requested_at, Redemption.points, Redemption.status)
        .join(Member, col(Member.id) == Redemption.member_id)
        .join(Reward, col(Reward.id) == Redemption.reward_id)
        .where(Reward.name == reward, Redemption.requested_at >= _moment(filters.start), Redemption.requested_at < _moment(filters.end))
        .order_by(col(Redemption.requested_at).desc())
    ).all()
    return pd.DataFrame(rows, columns=["member", "requested_at", "points", "status"])


def _moment(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


# --- purchase cycle --------------------------------------------------------------------------


def purchase_cycle_view(session: Session, filters: Filters) -> dict[str, Any]:
    """Days between a member's purchase days, purchases per active member, and the verdict."""
    purchases, members = _inputs(session, filters)
    chosen = members["member_id"].to_numpy() if filters.restricts_members else None
    window = purchases.filter(pl.col("occurred_on") >= filters.start)
    days = window.select("member_id", "occurred_on").unique().sort(["member_id", "occurred_on"])
    gaps = days.with_columns((pl.col("occurred_on").diff().over("member_id")).dt.total_days().alias("gap")).drop_nulls("gap")
    per_member = window.group_by("member_id").agg(pl.len().alias("purchases"), pl.col("occurred_on").n_unique().alias("purchase_days"))
    years = max((filters.end - filters.start).days / 365.25, 1 / 365.25)
    gap_values = gaps["gap"].to_numpy()
    median = float(np.median(gap_values)) if len(gap_values) else None
    verdict = (
        next(text for limit, text in CYCLE_VERDICTS if median is None or median <= limit).format(days=median or 0)
        if median is not None
        else "Not enough repeat purchases in this range to measure the purchase cycle."
    )
    # Counted here, not drawn raw: at a million members there are millions of gaps.
    shown = gap_values[gap_values <= np.quantile(gap_values, 0.99)] if len(gap_values) else gap_values
    gap_counts = np.bincount(shown.astype(np.int64)) if len(shown) else np.zeros(0, dtype=np.int64)
    per_year = per_member["purchases"].to_numpy() / years
    counts, edges = np.histogram(per_year, bins=FREQUENCY_BINS) if len(per_year) else (np.zeros(0, dtype=np.int64), np.zeros(1))
    return {
        "gaps": pd.DataFrame({"days_between_purchases": np.arange(len(gap_counts)), "gaps": gap_counts}).query("gaps > 0").reset_index(drop=True),
        "frequency": pd.DataFrame({"purchases_per_year_from": edges[:-1].round(2), "purchases_per_year_to": edges[1:].round(2), "members": counts}),
        "median_gap": median,
        **_catalogue(session, filters, chosen, repeat_share="repeat_purchase_rate", active_members="active_members"),
        "verdict": verdict,
    }


# --- feedback ----------------------------------------------------------------------------------


def _nps(scores: pd.Series) -> float:
    return float(((scores >= 9).mean() - (scores <= 6).mean()) * 100) if len(scores) else float("nan")


def feedback_view(session: Session, filters: Filters, *, actor: Actor, comments: int = 30) -> dict[str, Any]:
    """NPS per month and by tier and channel, with the latest comments.

    Comments are what members wrote: roles without ``members.view_pii`` (analysts) see the
    e-mail addresses and phone numbers in them masked; roles without ``analysis.view``
    (executives) see no comment at all.
    """
    from db.models import Tier

    # The answerers' tier and channel come with their answers: reading every member cost
    # seconds at a million members for a few thousand answers.
    rows = session.exec(
        select(  # type: ignore[call-overload]  # typed for at most 4 columns
            Feedback.member_id, Feedback.submitted_at, Feedback.score, Feedback.comment, Member.external_id, Tier.name, Member.acquisition_channel
        )
        .join(Member, Member.id == Feedback.member_id)
        .join(Tier, col(Tier.id) == Member.tier_id, isouter=True)
        .where(Feedback.submitted_at >= _moment(filters.start), Feedback.submitted_at < _moment(filters.end))
    ).all()
    answers = pd.DataFrame(rows, columns=["member_id", "submitted_at", "score", "comment", "member", "tier", "acquisition_channel"])
    answers["tier"] = answers["tier"].fillna(NO_TIER)
    answers["acquisition_channel"] = answers["acquisition_channel"].fillna("")
    if not actor.can("analysis.view"):
        answers["comment"] = ""
    elif not actor.can("members.view_pii"):
        answers["comment"] = mask_contacts(answers["comment"].astype("str"))
    ids = _member_ids(session, filters)
    if ids is not None:
        answers = answers[answers["member_id"].isin(ids)].reset_index(drop=True)
    if answers.empty:
        return {
            "answers": answers,
            "monthly": pd.DataFrame(),
            "by_tier": pd.DataFrame(),
            "by_channel": pd.DataFrame(),
            "comments": answers,
            "nps": None,
        }
    answers["month"] = pd.to_datetime(answers["submitted_at"], utc=True).dt.strftime("%Y-%m")
    answers["group"] = pd.cut(answers["score"], [-1, 6, 8, 10], labels=["detractor", "passive", "promoter"])
    monthly = answers.groupby("month").agg(nps=("score", _nps), answers=("score", "size")).reset_index()
    by = {
        f"by_{name}": answers.groupby(col).agg(nps=("score", _nps), answers=("score", "size")).reset_index().rename(columns={col: "group"})
        for name, col in (("tier", "tier"), ("channel", "acquisition_channel"))
    }
    by["by_tier"] = _in_tier_order(session, by["by_tier"])
    latest = answers[answers["comment"].str.len() > 0].sort_values("submitted_at", ascending=False).head(comments)
    return {
        "answers": answers,
        "monthly": monthly,
        **by,
        "comments": latest[["submitted_at", "member", "score", "group", "comment"]],
        **_catalogue(session, filters, ids, nps="nps"),
    }


def rfm_grid(session: Session, *, as_of: date | None = None) -> dict[str, pd.DataFrame]:
    """The RFM grid: members and revenue per (recency score, frequency score) cell, and per
    segment. The members of a segment: :func:`rfm_segment_members`."""
    from loyalty.analytics.rfm import rfm_members

    table = rfm_members(session, as_of=as_of)
    if table.empty:
        return {"cells": pd.DataFrame(columns=["r_score", "f_score", "segment", "members", "revenue"]), "segments": pd.DataFrame()}
    cells = table.groupby(["r_score", "f_score", "segment"]).agg(members=("member_id", "size"), revenue=("monetary", "sum")).reset_index()
    segments = table.groupby("segment").agg(members=("member_id", "size"), revenue=("monetary", "sum")).reset_index()
    segments["revenue_share"] = segments["revenue"] / segments["revenue"].sum() if segments["revenue"].sum() else 0.0
    return {"cells": cells, "segments": segments.sort_values("revenue", ascending=False, ignore_index=True)}


def rfm_segment_members(session: Session, segment: str, *, as_of: date | None = None, limit: int = 500) -> pd.DataFrame:
    """Drill-down from the RFM grid: the members of an RFM segment with their scores (the first
    ``limit`` by member number)."""
    from loyalty.analytics.rfm import rfm_members

    table = rfm_members(session, as_of=as_of)
    table = table[table["segment"] == segment] if not table.empty else table
    ids = load_members(session).select("member_id", "external_id").to_pandas()
    table = table.merge(ids, on="member_id", how="left").sort_values("external_id")
    table = table[["external_id", *[c for c in table.columns if c not in ("external_id", "member_id")]]]
    return table.head(limit).reset_index(drop=True)


def slow_repeaters(session: Session, filters: Filters, *, min_gap_days: int) -> pd.DataFrame:
    """Drill-down from the purchase-cycle chart: members whose typical gap is at least ``min_gap_days``."""
    purchases, members = _inputs(session, filters)
    days = purchases.filter(pl.col("occurred_on") >= filters.start).select("member_id", "occurred_on").unique().sort(["member_id", "occurred_on"])
    gaps = days.with_columns(pl.col("occurred_on").diff().over("member_id").dt.total_days().alias("gap")).drop_nulls("gap")
    per_member = gaps.group_by("member_id").agg(pl.col("gap").median().alias("median_gap_days"), (pl.len() + 1).alias("purchase_days"))
    table = per_member.filter(pl.col("median_gap_days") >= min_gap_days).join(members, on="member_id", how="left")
    return (
        table.select(pl.col("external_id").alias("member"), "median_gap_days", "purchase_days", "tier", "acquisition_channel")
        .sort("median_gap_days", descending=True)
        .to_pandas()
    )
