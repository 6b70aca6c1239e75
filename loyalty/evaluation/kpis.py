"""KPI snapshots: the catalogue computed for a period and stored, so pages read small tables.

KPI snapshots
-------------
A run as of day ``D`` (cutoff ``D + 1``, 00:00 UTC) stores the catalogue, overall and by
segment, tier and channel, for

* the last **complete month** before the cutoff (``period="month"``): what KPI targets
  and goal status read; recomputed every day, so late data corrects it;
* the last **complete quarter** (``period="quarter"``), for quarterly targets;
* the **month to date** (``period="mtd"``, ``period_end`` = the cutoff) for a live view;
  only the current month's is kept (a finished month has its ``month`` row).

Each period replaces its own rows. The values are computed before the write transaction
opens, so the writer lock is held only to swap rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, timedelta

import pandas as pd
from sqlalchemy import delete
from sqlmodel import Session, col

from db.bulk import insert_frame
from db.engine import write_transaction
from db.models import (
    KpiSnapshot,
    utcnow,
)
from loyalty.analytics.metrics import period_bounds
from loyalty.analytics.reader import analytics_reader
from loyalty.evaluation.snapshots import DIMENSIONS
from loyalty.program.tiers import qualifying_tier_index

__all__ = [
    "CAMPAIGN_METRICS",
    "CONFIDENCE",
    "campaign_results",
    "evaluate_campaigns",
    "evaluate_tiers",
    "kpi_snapshot_frame",
    "kpi_snapshot_frames",
    "snapshot_kpis",
    "snapshot_periods",
    "store_kpi_snapshots",
    "target_status_counts",
]

DIMENSIONS = (None, "segment", "tier", "channel")

_SNAPSHOT_COLUMNS = ["metric", "period", "period_start", "period_end", "dimension", "dimension_value", "value", "computed_at"]


def _add_months(day: date, months: int) -> date:
    return (pd.Timestamp(day) + pd.DateOffset(months=months)).date()


def _cutoff(as_of: date) -> datetime:
    from loyalty.evaluation.jobs import cutoff_of

    return cutoff_of(as_of)


# --- KPI snapshots ----------------------------------------------------------------------------


def snapshot_periods(as_of: date) -> list[tuple[str, date, date]]:
    """``(period, start, end)`` the KPI snapshot of day ``as_of`` stores: month, [mtd], quarter.

    >>> snapshot_periods(date(2026, 11, 15))
    [('month', datetime.date(2026, 10, 1), datetime.date(2026, 11, 1)), ('mtd', datetime.date(2026, 11, 1), datetime.date(2026, 11, 16)), ('quarter', datetime.date(2026, 7, 1), datetime.date(2026, 10, 1))]
    """
    cutoff_day = as_of + timedelta(days=1)
    month_end = period_bounds("month", cutoff_day)[0]
    periods = [("month", add_months(month_end, -1), month_end)]
    if cutoff_day != month_end:
        periods.append(("mtd", month_end, cutoff_day))
    quarter_end = period_bounds("quarter", cutoff_day)[0]
    periods.append(("quarter", add_months(quarter_end, -3), quarter_end))
    return periods


def kpi_snapshot_frames(
    session: Session, periods: Sequence[tuple[str, date, date]], *, dimensions: Sequence[Dimension | None] = DIMENSIONS,
    progress: ProgressFn | None = None,
    loaded: Callable[..., None] | None = None,
) -> list[pd.DataFrame]:
    """Every default KPI of each ``(period, start, end)`` overall and by each dimension, as snapshot rows.

    The tables are read once for all the periods (:func:`loyalty.analytics.metrics.kpis_for_periods`);
    the same values as :func:`loyalty.analytics.metrics.compute_kpis` period by period.
    """
    from loyalty.analytics.metrics import kpis_for_periods

    def computing(done: int, total: int) -> None:
        if progress:
            period, start, end = periods[done]
            progress(0.2 + 0.6 * done / total, f"computing the KPIs of {period} {start}..{end}")

    computed = kpis_for_periods(session, [(start, end) for _, start, end in periods], dimensions=dimensions,
                                reader=analytics_reader(session), progress=computing, loaded=loaded)
    frames = []
    for (period, start, end), values in zip(periods, computed):
        values["dimension"] = values["dimension"].fillna("overall")
        values["dimension_value"] = values["dimension_value"].fillna("").astype(str)
        values = values.assign(period=period, period_start=start, period_end=end, computed_at=pd.Timestamp(utcnow()))
        values["value"] = values["value"].astype(float).where(values["value"].notna(), None)
        frames.append(values[_SNAPSHOT_COLUMNS])
    return frames


def kpi_snapshot_frame(
    session: Session, *, period: str, start: date, end: date, dimensions: Sequence[Dimension | None] = DIMENSIONS
) -> pd.DataFrame:
    """Every default KPI of ``[start, end)`` overall and by each dimension, as snapshot rows."""
    return kpi_snapshot_frames(session, [(period, start, end)], dimensions=dimensions)[0]


def store_kpi_snapshots(session: Session, frames: Sequence[pd.DataFrame], *, current_month: date | None = None) -> int:
    """Replace the snapshot rows of each frame's (period, start); one transaction.

    ``current_month`` (the first day of the month being lived): month-to-date rows of
    earlier months are removed, their complete month supersedes them.
    """
    with write_transaction(session):
        for frame in frames:
            if frame.empty:
                continue
            period, start = frame["period"].iloc[0], frame["period_start"].iloc[0]
            session.execute(delete(KpiSnapshot).where(KpiSnapshot.period == period, KpiSnapshot.period_start == start))
        if current_month is not None:
            session.execute(delete(KpiSnapshot).where(col(KpiSnapshot.period) == "mtd", col(KpiSnapshot.period_start) < current_month))
        rows = pd.concat([f for f in frames if not f.empty], ignore_index=True) if frames else pd.DataFrame()
        return insert_frame(session, "kpi_snapshot", rows) if not rows.empty else 0


def target_status_counts(session: Session) -> dict[str, int]:
    """How many KPI targets are on track, at risk, off track or without data (from snapshots)."""
    from loyalty.program.goals import goal_status

    status = goal_status(session)
    return {str(k): int(v) for k, v in status["status"].value_counts().items()} if not status.empty else {}


def snapshot_kpis(session: Session, *, period: str, start: date, end: date, dimensions: tuple[str | None, ...] = DIMENSIONS) -> int:
    """Compute every catalogue KPI for ``[start, end)`` overall and by each dimension; store them.

    Returns the number of snapshot rows written. The kpi-snapshot job uses the same two
    steps.
    """
    changes = changes.assign(tier_id=pd.array(changes["tier_id"], dtype="Int64"),
                             tier_since=pd.to_datetime(changes["tier_since"], utc=True))
    sqlite = session.get_bind().dialect.name == "sqlite"
    session.execute(text("DROP TABLE IF EXISTS tier_change"))
    session.execute(text(
        "CREATE TEMPORARY TABLE tier_change (member_id BIGINT PRIMARY KEY, tier_id BIGINT, tier_since "
        + ("DATETIME" if sqlite else "TIMESTAMP WITH TIME ZONE") + ")"))
    insert_frame(session, "tier_change", changes[["member_id", "tier_id", "tier_since"]])
    session.execute(text("UPDATE member SET tier_id = c.tier_id, tier_since = c.tier_since FROM tier_change AS c "
                         "WHERE member.id = c.member_id"))
    session.execute(text("DROP TABLE tier_change"))


def evaluate_tiers(session: Session, *, as_of: date, progress: ProgressFn | None = None) -> dict[str, Any]:
    """Move members between tiers as of the end of ``as_of``; one transaction (see the module notes).

    Returns
    -------
    dict
        ``rows`` (= members moved), ``upgrades``, ``downgrades``, ``kept_in_grace``
        (below their tier's thresholds but inside its grace period), ``members``
        (evaluated), ``replaced`` (movements of an earlier run for the same day undone),
        ``skipped_later`` (members settled by a later evaluation).
    """
    from loyalty.evaluation.jobs import hold_job_lock

    report = progress or (lambda _f, _m: None)
    cutoff = _cutoff(as_of)
    tiers = session.exec(select(Tier).order_by(Tier.rank)).all()
    if not tiers:
        return {"rows": 0, "upgrades": 0, "downgrades": 0, "kept_in_grace": 0, "members": 0, "replaced": 0,
                "skipped_later": 0, "note": "no tiers are configured"}
    tier_ids = np.array([t.id for t in tiers], dtype=np.int64)
    names = np.array([t.name for t in tiers], dtype=object)
    min_spend = np.array([t.min_spend for t in tiers], dtype=float)
    min_purchases = np.array([t.min_purchases for t in tiers], dtype=np.int64)
    window = np.array([t.window_months for t in tiers], dtype=np.int64)
    grace = np.array([t.grace_months for t in tiers], dtype=np.int64)
    # Reads outside the write transaction: purchases up to the cutoff are settled history.
    totals: dict[int, pd.DataFrame] = {}
    for i, months in enumerate(sorted(set(window.tolist()))):
        report(0.1 + 0.4 * i / len(set(window.tolist())), f"spend and purchases over {months} months")
        totals[months] = _window_totals(session, cutoff, months)
    report(0.5, "moving members")

    with write_transaction(session):
        hold_job_lock(session, "tier-evaluation")
        members = pd.DataFrame(
            session.execute(select(Member.id, Member.tier_id, Member.tier_since, Member.joined_at).where(Member.erased_at.is_(None))).all(),
            columns=["member_id", "tier_id", "tier_since", "joined_at"],
        ).set_index("member_id")
        later = {int(m) for m in session.execute(
            select(TierMovement.member_id).group_by(TierMovement.member_id).having(func.max(TierMovement.as_of) > as_of)
        ).scalars()}
        members = members[~members.index.isin(list(later))]
        current_tier = members["tier_id"].astype("Int64")
        current_since = _utc_series(members["tier_since"], members.index)

        # Undo this day's earlier movements, in memory: the state before them.
        todays = pd.DataFrame(
            session.execute(
                select(TierMovement.id, TierMovement.member_id, TierMovement.from_tier_id).where(TierMovement.as_of == as_of).order_by(TierMovement.id)
            ).all(),
            columns=["id", "member_id", "from_tier_id"],
        )
        todays = todays[todays["member_id"].isin(members.index)]
        base_tier, base_since = current_tier.copy(), current_since.copy()
        if not todays.empty:
            first = todays.drop_duplicates("member_id", keep="first").set_index("member_id")
            first_ids = select(TierMovement.member_id, func.min(TierMovement.id).label("first_id")).where(
                TierMovement.as_of == as_of).group_by(TierMovement.member_id).subquery()
            previous = dict(session.execute(
                select(TierMovement.member_id, func.max(TierMovement.moved_at))
                .join(first_ids, first_ids.c.member_id == TierMovement.member_id)
                .where(TierMovement.id < first_ids.c.first_id).group_by(TierMovement.member_id)
            ).all())
            undone = first.index
            base_tier.loc[undone] = first["from_tier_id"].astype("Int64")
            restored = pd.Series([previous.get(m) for m in undone], index=undone, dtype=object)
            joined = members.loc[undone, "joined_at"]
            restored = restored.where(restored.notna(), joined.where(base_tier.loc[undone].notna().to_numpy(), None))
            base_since.loc[undone] = _utc_series(restored, undone)

        index_of = pd.Series(np.arange(len(tiers)), index=tier_ids)
        base_idx = base_tier.map(index_of).fillna(-1).astype(np.int64).to_numpy()
        member_ids = members.index.to_numpy()
        spend_by_window = {m: totals[m]["spend"].reindex(member_ids).fillna(0.0).to_numpy() for m in totals}
        count_by_window = {m: totals[m]["purchases"].reindex(member_ids).fillna(0).astype(np.int64).to_numpy() for m in totals}
        qualified = np.full(len(members), -1, dtype=np.int64)
        for months in totals:
            group = np.flatnonzero(window == months)
            local = qualifying_tier_index(spend_by_window[months], count_by_window[months], min_spend[group], min_purchases[group])
            qualified = np.maximum(qualified, np.where(local >= 0, group[np.maximum(local, 0)], -1))

        up = qualified > base_idx
        below = qualified < base_idx
        grace_end = pd.Series(pd.NaT, index=members.index, dtype="datetime64[us, UTC]")
        for months in np.unique(grace[base_idx[below]]) if below.any() else []:
            rows = below & (grace[np.maximum(base_idx, 0)] == months)
            grace_end[rows] = base_since[rows] + pd.DateOffset(months=int(months))
        grace_over = (base_since.isna() | (grace_end <= pd.Timestamp(cutoff))).to_numpy()
        down = below & grace_over
        kept = below & ~grace_over
        moved = up | down
        final_idx = np.where(moved, qualified, base_idx)
        final_tier = pd.Series(np.where(final_idx >= 0, tier_ids[np.maximum(final_idx, 0)], 0), index=members.index).astype("Int64")
        final_tier[final_idx < 0] = pd.NA
        final_since = base_since.copy()
        final_since[moved] = pd.Timestamp(cutoff)

        # The movements, with the numbers behind each.
        who = member_ids[moved]
        old, new = base_idx[moved], final_idx[moved]
        upward = new > old
        # Upgrades quote the window of the tier reached, downgrades the one of the tier left.
        quoted = np.where(upward, window[np.maximum(new, 0)], window[np.maximum(old, 0)])
        positions = np.flatnonzero(moved)
        spent, bought = np.zeros(len(positions)), np.zeros(len(positions), dtype=np.int64)
        for months in totals:
            quoting = quoted == months
            spent[quoting] = spend_by_window[months][positions[quoting]]
            bought[quoting] = count_by_window[months][positions[quoting]]
        lead = ("spent " + pd.Series(spent).map("{:,.2f}".format) + " and bought " + _times(bought)
                + " in the last " + _window_words(quoted))
        reached = pd.Series(np.where(new >= 0, names[np.maximum(new, 0)], ""))
        left = pd.Series(names[np.maximum(old, 0)])
        needs = (" (needs " + pd.Series(min_spend[np.maximum(old, 0)]).map("{:,.2f}".format) + " and "
                 + pd.Series(min_purchases[np.maximum(old, 0)]).astype(str) + " purchases)")
        grace_words = pd.Series(np.where(grace[np.maximum(old, 0)] > 0,
                                         " and its " + pd.Series(grace[np.maximum(old, 0)]).astype(str).to_numpy() + "-month grace period is over",
                                         ""))
        destination = pd.Series(np.where(new >= 0, "moves to " + reached.to_numpy(), "no longer qualifies for any tier"))
        reasons = pd.Series(np.where(upward, (lead + ": qualifies for " + reached).to_numpy(),
                                     (lead + ": below " + left + needs + grace_words + ": " + destination).to_numpy()))
        movements = pd.DataFrame({
            "member_id": who,
            "from_tier_id": pd.array([tier_ids[i] if i >= 0 else None for i in old], dtype="Int64"),
            "to_tier_id": pd.array([tier_ids[i] if i >= 0 else None for i in new], dtype="Int64"),
            "moved_at": pd.Timestamp(cutoff),
            "reason": reasons.str.slice(0, 500).to_numpy(),
            "as_of": np.full(len(who), as_of, dtype=object),
        })

        # Write: drop this day's earlier movements, set the members that change, add the moves.
        if not todays.empty:
            for chunk in np.array_split(todays["id"].to_numpy(), max(1, math.ceil(len(todays) / 10_000))):
                session.execute(delete(TierMovement).where(TierMovement.id.in_(chunk.tolist())))
        same_tier = (final_tier == current_tier).fillna(False) | (final_tier.isna() & current_tier.isna())
        same_since = (final_since == current_since).fillna(False) | (final_since.isna() & current_since.isna())
        changed = members.index[~(same_tier & same_since).to_numpy()]
        if len(changed):
            _set_member_tiers(session, pd.DataFrame({"member_id": changed.to_numpy(), "tier_id": final_tier.loc[changed].to_numpy(),
                                                     "tier_since": final_since.loc[changed].to_numpy()}))
        insert_frame(session, "tier_movement", movements)
    return {"rows": int(moved.sum()), "upgrades": int(upward.sum()), "downgrades": int((~upward).sum()),
            "kept_in_grace": int(kept.sum()), "members": len(members), "replaced": len(todays),
            "skipped_later": len(later)}


# --- campaign evaluation ------------------------------------------------------------------------------


def welch_interval(treatment: np.ndarray, control: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float | None, float | None]:
    """Difference of means ``treatment - control`` with its Welch t-interval.

    ``d ± t(1 - α/2, ν) · se`` with ``se² = s₁²/n₁ + s₀²/n₀`` and
    ``ν = se⁴ / ((s₁²/n₁)²/(n₁-1) + (s₀²/n₀)²/(n₀-1))``. The interval is ``None`` when a
    group has fewer than two members (no variance to estimate).
    """
    treatment, control = np.asarray(treatment, dtype=float), np.asarray(control, dtype=float)
    if len(treatment) == 0 or len(control) == 0:
        return math.nan, None, None
    diff = float(treatment.mean() - control.mean())
    if len(treatment) < 2 or len(control) < 2:
        return diff, None, None
    v1 = treatment.var(ddof=1) / len(treatment)
    v0 = control.var(ddof=1) / len(control)
    se2 = v1 + v0
    if se2 == 0:
        return diff, diff, diff
    dof = se2**2 / (v1**2 / (len(treatment) - 1) + v0**2 / (len(control) - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, dof) * math.sqrt(se2))
    return diff, diff - half, diff + half


def proportion_difference_interval(
    successes_treatment: int, size_treatment: int, successes_control: int, size_control: int, confidence: float = CONFIDENCE
) -> tuple[float, float | None, float | None]:
    """Difference of proportions ``p₁ - p₀`` with the normal-approximation (Wald) interval.

    ``d ± z(1 - α/2) · sqrt(p₁(1-p₁)/n₁ + p₀(1-p₀)/n₀)``.
    """
    if size_treatment == 0 or size_control == 0:
        return math.nan, None, None
    p1, p0 = successes_treatment / size_treatment, successes_control / size_control
    diff = p1 - p0
    half = float(stats.norm.ppf(0.5 + confidence / 2) * math.sqrt(p1 * (1 - p1) / size_treatment + p0 * (1 - p0) / size_control))
    return diff, diff - half, diff + half


def _campaign_members(session: Session, campaign: Campaign, end: datetime) -> pd.DataFrame:
    """Per assigned member: group, spend and purchases inside the campaign window.

    Two reads (the assignments, the window's purchases) joined in Polars: the SQL join
    of every assignment with its purchases took 6 s per program-wide campaign at 1M
    members on SQLite.
    """
    import polars as pl

    from loyalty.analytics.data import fetch_frame

    reader = analytics_reader(session)
    assigned = fetch_frame(session, 'SELECT member_id, "group" FROM campaign_assignment WHERE campaign_id = :campaign_id',
                           {"member_id": pl.Int64, "group": pl.String}, params={"campaign_id": int(campaign.id)}, reader=reader)
    bought = fetch_frame(
        session,
        "SELECT member_id, amount FROM purchase WHERE occurred_at >= :starts_at AND occurred_at < :ends_at AND refunded_at IS NULL",
        {"member_id": pl.Int64, "amount": pl.Float64}, params={"starts_at": campaign.starts_at, "ends_at": end}, reader=reader,
    ).group_by("member_id").agg(spend=pl.col("amount").sum(), purchases=pl.len())
    joined = assigned.join(bought, on="member_id", how="left").with_columns(
        pl.col("spend").fill_null(0.0), pl.col("purchases").fill_null(0).cast(pl.Int64))
    return joined.select("member_id", "group", "spend", "purchases").to_pandas()


def evaluate_campaigns(session: Session, *, cutoff: datetime, campaign_ids: Sequence[int] | None = None) -> pd.DataFrame:
    """Treatment vs holdout for every started campaign with a holdout, as of ``cutoff``.

    Returns
    -------
    pandas.DataFrame
        One row per campaign: ``campaign_id, campaign, kind, status, window_start,
        window_end`` and :data:`CAMPAIGN_METRICS` (``None`` where undefined, e.g. an
        interval with a one-member group or revenue per point without points). A
        campaign whose treatment or holdout group is empty is left out: there is nothing
        to compare.
    """
    query = select(Campaign).where(Campaign.status != "draft", Campaign.holdout_pct > 0, Campaign.starts_at < cutoff).order_by(Campaign.starts_at)
    if campaign_ids is not None:
        query = query.where(Campaign.id.in_(list(campaign_ids)))
    results = []
    for campaign in session.exec(query):
        end = min(campaign.ends_at, cutoff)
        members = _campaign_members(session, campaign, end)
        treated, held = members[members["group"] == "treatment"], members[members["group"] == "holdout"]
        if treated.empty or held.empty:
            continue
        spend = welch_interval(treated["spend"].to_numpy(), held["spend"].to_numpy())
        purchases = welch_interval(treated["purchases"].to_numpy(), held["purchases"].to_numpy())
        retained_t, retained_h = int((treated["purchases"] > 0).sum()), int((held["purchases"] > 0).sum())
        retention = proportion_difference_interval(retained_t, len(treated), retained_h, len(held))
        cost = int(session.execute(
            select(func.coalesce(func.sum(LedgerEntry.points), 0)).where(
                LedgerEntry.campaign_id == campaign.id, LedgerEntry.kind.in_(["bonus", "reverse"]), LedgerEntry.occurred_at < cutoff)
        ).scalar_one())
        n_t = len(treated)
        incremental, incremental_low, incremental_high = (None if v is None else v * n_t for v in spend)
        results.append({
            "campaign_id": campaign.id, "campaign": campaign.name, "kind": campaign.kind, "status": campaign.status,
            "window_start": campaign.starts_at, "window_end": end,
            "treatment_members": n_t, "holdout_members": len(held),
            "spend_treatment": float(treated["spend"].mean()), "spend_holdout": float(held["spend"].mean()),
            "spend_uplift": spend[0], "spend_uplift_ci_low": spend[1], "spend_uplift_ci_high": spend[2],
            "purchases_treatment": float(treated["purchases"].mean()), "purchases_holdout": float(held["purchases"].mean()),
            "purchases_uplift": purchases[0], "purchases_uplift_ci_low": purchases[1], "purchases_uplift_ci_high": purchases[2],
            "retention_treatment": retained_t / n_t, "retention_holdout": retained_h / len(held),
            "retention_uplift": retention[0], "retention_uplift_ci_low": retention[1], "retention_uplift_ci_high": retention[2],
            "points_cost": cost, "incremental_revenue": incremental,
            "incremental_revenue_ci_low": incremental_low, "incremental_revenue_ci_high": incremental_high,
            "revenue_per_point": incremental / cost if cost > 0 and incremental is not None else None,
        })
    return pd.DataFrame(results, columns=["campaign_id", "campaign", "kind", "status", "window_start", "window_end", *CAMPAIGN_METRICS])


def _day_after_or_at(moment: datetime) -> date:
    """The exclusive end day of a window ending at ``moment`` (UTC)."""
    moment = moment.astimezone(UTC)
    at_midnight = moment == datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
    return moment.date() if at_midnight else moment.date() + timedelta(days=1)


def store_campaign_results(session: Session, results: pd.DataFrame) -> int:
    """Replace the stored results of the campaigns in ``results``; returns rows written."""
    if results.empty:
        return 0
    now = pd.Timestamp(utcnow())
    long = results.melt(id_vars=["campaign_id", "window_start", "window_end"], value_vars=list(CAMPAIGN_METRICS),
                        var_name="metric", value_name="value")
    frame = pd.DataFrame({
        "metric": "campaign_" + long["metric"],
        "period": CAMPAIGN_PERIOD,
        "period_start": [pd.Timestamp(s).tz_convert("UTC").date() for s in long["window_start"]],
        "period_end": [_day_after_or_at(pd.Timestamp(e).to_pydatetime()) for e in long["window_end"]],
        "dimension": CAMPAIGN_DIMENSION,
        "dimension_value": long["campaign_id"].astype(int).astype(str),
        "value": [None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v) for v in long["value"]],
        "computed_at": now,
    })
    ids = sorted(set(frame["dimension_value"]))
    with write_transaction(session):
        session.execute(delete(KpiSnapshot).where(
            KpiSnapshot.period == CAMPAIGN_PERIOD, KpiSnapshot.dimension == CAMPAIGN_DIMENSION, KpiSnapshot.dimension_value.in_(ids)))
        return insert_frame(session, "kpi_snapshot", frame)


def campaign_results(session: Session) -> pd.DataFrame:
    """The stored campaign evaluations, one row per campaign, latest window first.

    Columns: ``campaign_id, campaign, kind, status, window_start, window_end (days,
    end exclusive), computed_at`` and :data:`CAMPAIGN_METRICS`.
    """
    rows = session.execute(
        select(KpiSnapshot.dimension_value, KpiSnapshot.metric, KpiSnapshot.value, KpiSnapshot.period_start,
               KpiSnapshot.period_end, KpiSnapshot.computed_at)
        .where(KpiSnapshot.period == CAMPAIGN_PERIOD, KpiSnapshot.dimension == CAMPAIGN_DIMENSION)
    ).all()
    columns = ["campaign_id", "campaign", "kind", "status", "window_start", "window_end", "computed_at", *CAMPAIGN_METRICS]
    if not rows:
        return pd.DataFrame(columns=columns)
    long = pd.DataFrame(rows, columns=["campaign_id", "metric", "value", "window_start", "window_end", "computed_at"])
    long["campaign_id"] = long["campaign_id"].astype(int)
    long["metric"] = long["metric"].str.removeprefix("campaign_")
    wide = long.pivot_table(index="campaign_id", columns="metric", values="value", aggfunc="first", dropna=False)
    meta = long.groupby("campaign_id").agg(window_start=("window_start", "first"), window_end=("window_end", "first"),
                                          computed_at=("computed_at", "max"))
    campaigns = pd.DataFrame(
        session.execute(select(Campaign.id, Campaign.name, Campaign.kind, Campaign.status)).all(),
        columns=["campaign_id", "campaign", "kind", "status"],
    ).set_index("campaign_id")
    table = meta.join(wide).join(campaigns, how="inner").reset_index()
    for metric in CAMPAIGN_METRICS:
        if metric not in table:
            table[metric] = None
    return table[columns].sort_values("window_start", ascending=False, ignore_index=True)
