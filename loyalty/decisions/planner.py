"""Campaign planning before launch: expected impact from past holdouts, and holdout sizing.

Expected impact
---------------
The campaign-evaluation job stores, per campaign with a holdout, the spend uplift per
treated member over the campaign window with its 95 % Welch interval
(:func:`loyalty.insights.campaign_results.campaign_results`). A draft's *comparable history* is every
evaluated campaign of the same kind, whatever its segment (an uplift measured on Gold
members is not adjusted when the draft targets everyone), including a running campaign
evaluated so far. For each comparable campaign ``i``:

* ``y_i`` = spend uplift per member, ``se_i`` = its standard error read back from the
  stored interval, ``se_i = (high - low) / (2 · t(0.975, n₁ + n₀ - 2))`` (the largest
  degrees of freedom Welch's ν can take, so ``se_i`` is never understated);
* ``D_i`` = days from its start to the end of the evaluated window (its end, or the
  evaluation's cutoff while it runs);
* both scaled to the draft's length ``L`` by :func:`length_factor`: per-purchase kinds
  (multipliers, fixed bonuses, tier offers) earn uplift in proportion to the days they
  run, ``L / D_i``; once-per-member kinds (spend threshold, win-back) do not scale; a
  birthday bonus reaches the members whose birthday falls in the window,
  ``min(L, 365) / min(D_i, 365)``.

They are pooled with the DerSimonian-Laird random-effects model (DerSimonian & Laird
1986, *Controlled Clinical Trials* 7; Borenstein et al. 2009, *Introduction to
Meta-Analysis*, ch. 12):

* ``w_i = 1 / se_i²``, ``ȳ = Σ w_i y_i / Σ w_i``, ``Q = Σ w_i (y_i - ȳ)²``;
* between-campaign variance ``τ² = max(0, (Q - (k - 1)) / (Σ w_i - Σ w_i² / Σ w_i))``;
* ``w*_i = 1 / (se_i² + τ²)``, pooled uplift ``μ = Σ w*_i y_i / Σ w*_i``,
  ``se(μ) = sqrt(1 / Σ w*_i)``.

A new campaign's own uplift varies around ``μ`` by ``τ``, so its interval is the
prediction interval ``μ ± z · sqrt(se(μ)² + τ²)`` (Higgins, Thompson & Spiegelhalter
2009, *JRSS A* 172; the normal quantile instead of their ``t(k-2)``, which needs three
campaigns). Expected incremental revenue = ``μ × treated members`` (and the interval
likewise); the points cost is :func:`loyalty.decisions.planner.preview_campaign`'s replay of the
eligible members' recent purchases, in money at ``ProgramSettings.point_value``.
With one comparable campaign ``τ`` cannot be estimated and the interval is that
campaign's alone: too narrow, and said so. With none there is no number, only the reason.

Holdout sizing
--------------
Two groups of a segment of ``N`` members, a share ``k`` held out: the difference of mean
spend per member has ``se = σ · sqrt(1 / (N(1 - k)) + 1 / (N k))``, and a two-sided test
at level ``α`` detects ``δ`` with power ``1 - β`` when ``δ ≥ (z(1 - α/2) + z(1 - β)) · se``.
With ``c = N (δ / ((z(1 - α/2) + z(1 - β)) σ))²`` that is ``1 / (k (1 - k)) ≤ c``, whose
smallest solution is ``k = (1 - sqrt(1 - 4 / c)) / 2``; when ``c < 4`` even an even split
(``k = 0.5``) is not enough. ``σ`` is the standard deviation of the eligible members'
spend per member over the most recent period as long as the campaign (members who
bought nothing count as 0), from one ``GROUP BY member`` query.
:func:`required_sample_size` is the textbook form (Chow, Shao & Wang, *Sample Size
Calculations in Clinical Research*, 2nd ed. 2008, sec. 3.2.1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import func
from sqlmodel import Session, col, select

from db.models import Campaign, Purchase, stored_id, utcnow
from loyalty.errors import InvalidInput, NotFound
from loyalty.insights.campaign_results import CONFIDENCE as EVALUATION_CONFIDENCE
from loyalty.insights.campaign_results import campaign_results, normal_quantile, t_quantile
from loyalty.ledger.campaign_earning import ReplayedCampaignEngine
from loyalty.ledger.earning import base_points, member_multipliers
from loyalty.program.campaigns import CAMPAIGN_KINDS, MAX_REPLAY_DAYS, MIN_PREVIEW_PURCHASES, PREVIEW_LOOKBACK_DAYS, eligible_members, stable_uniform
from loyalty.program.campaigns import ONCE_PER_MEMBER_KINDS as AWARDED_ONCE_KINDS
from loyalty.settings import get_settings

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_IMPACT_CONFIDENCE",
    "DEFAULT_POWER",
    "CampaignImpact",
    "HoldoutSizing",
    "PooledUplift",
    "SegmentSpend",
    "comparable_campaigns",
    "expected_campaign_impact",
    "holdout_size",
    "impact_from_history",
    "length_factor",
    "minimum_detectable_uplift",
    "plan_holdout",
    "pool_uplifts",
    "required_sample_size",
    "segment_spend",
]

DEFAULT_ALPHA = 0.05
DEFAULT_POWER = 0.80
DEFAULT_IMPACT_CONFIDENCE = 0.90
ONCE_PER_MEMBER_KINDS = frozenset({"spend_threshold", "win_back"})
DAYS_PER_YEAR = 365.0


# --- holdout sizing ---------------------------------------------------------------------------


def _z_sum(alpha: float, power: float) -> float:
    if not 0 < alpha < 1:
        raise InvalidInput("The significance level must be between 0 and 1 (5% is usual).")
    if not 0 < power < 1:
        raise InvalidInput("The power must be between 0 and 1 (80% is usual).")
    return float(normal_quantile(1 - alpha / 2) + normal_quantile(power))


def required_sample_size(delta: float, sigma: float, alpha: float = DEFAULT_ALPHA, power: float = DEFAULT_POWER, ratio: float = 1.0) -> float:
    """Members needed in the smaller-ratio group to detect a difference of means ``delta``.

    Chow, Shao & Wang (2008), *Sample Size Calculations in Clinical Research*, 2nd ed.,
    sec. 3.2.1 (two-sample parallel design, test for equality, two-sided):

    ``n₂ = (z(1 - α/2) + z(1 - β))² · σ² · (1 + 1/r) / δ²``, with ``n₁ = r · n₂``.

    For a campaign, ``n₂`` is the holdout and ``r`` = treatment / holdout. Not rounded:
    round up for a head count. ``delta=1, sigma=10`` at 5 % and 80 % with ``r = 1``
    gives 1569.8 per group.
    """
    if delta == 0:
        raise InvalidInput("The uplift to detect must not be 0.")
    if sigma < 0:
        raise InvalidInput("The standard deviation cannot be negative.")
    if ratio <= 0:
        raise InvalidInput("The ratio of the group sizes must be above 0.")
    return _z_sum(alpha, power) ** 2 * sigma**2 * (1 + 1 / ratio) / delta**2


def minimum_detectable_uplift(
    *, members: int, sigma: float, holdout_pct: float, alpha: float = DEFAULT_ALPHA, power: float = DEFAULT_POWER
) -> float | None:
    """The smallest uplift per member a holdout of ``holdout_pct`` detects with this power.

    ``(z(1 - α/2) + z(1 - β)) · σ · sqrt(1 / (N(1 - k)) + 1 / (N k))``; ``None`` when a
    group would be empty (no holdout, or everybody held out).
    """
    if not 0 < holdout_pct < 1 or members <= 0:
        return None
    treated, held = members * (1 - holdout_pct), members * holdout_pct
    return _z_sum(alpha, power) * sigma * math.sqrt(1 / treated + 1 / held)


@dataclass(frozen=True)
class HoldoutSizing:
    """What a holdout can measure on a segment; money per member over the campaign's length.

    ``needed_pct`` is the smallest holdout share (0 to 0.5) that detects ``target_uplift``,
    ``None`` when even an even split is not enough (``members_needed_at_half`` then says
    how many eligible members it would take) or when no target was given.
    """

    members: int
    sigma: float
    baseline: float  # mean spend per member over the period, for relative uplifts
    alpha: float
    power: float
    holdout_pct: float
    mde: float | None  # minimum detectable uplift at holdout_pct, money per member
    mde_relative: float | None  # mde / baseline
    target_uplift: float | None = None
    needed_pct: float | None = None
    enough_at_half: bool | None = None
    members_needed_at_half: int | None = None
    message: str = ""


def holdout_size(
    *,
    members: int,
    sigma: float,
    holdout_pct: float,
    target_uplift: float | None = None,
    baseline: float = 0.0,
    alpha: float = DEFAULT_ALPHA,
    power: float = DEFAULT_POWER,
) -> HoldoutSizing:
    """Size the holdout of a segment of ``members`` with spend spread ``sigma`` (see the module notes).

    Parameters
    ----------
    members, sigma
        Eligible members ``N`` and the standard deviation of spend per member over the
        campaign's length.
    holdout_pct
        The holdout share being considered (0 to 1): its minimum detectable uplift.
    target_uplift
        Optional uplift per member (money) to detect: the smallest share that detects it.
    baseline
        Mean spend per member over the period, to express uplifts relative to it.
    """
    if members < 0 or sigma < 0:
        raise InvalidInput("Members and the spend spread cannot be negative.")
    if target_uplift is not None and target_uplift <= 0:
        raise InvalidInput("The uplift to detect must be above 0.")
    z = _z_sum(alpha, power)
    mde = minimum_detectable_uplift(members=members, sigma=sigma, holdout_pct=holdout_pct, alpha=alpha, power=power)
    common: dict[str, Any] = {
        "members": members,
        "sigma": sigma,
        "baseline": baseline,
        "alpha": alpha,
        "power": power,
        "holdout_pct": holdout_pct,
        "mde": mde,
        "mde_relative": mde / baseline if mde is not None and baseline > 0 else None,
    }
    if target_uplift is None:
        return HoldoutSizing(**common, message="" if mde is not None else "Without a holdout the campaign's uplift cannot be measured.")
    if members < 2:
        return HoldoutSizing(
            **common,
            target_uplift=target_uplift,
            enough_at_half=False,
            members_needed_at_half=math.ceil(4 * (z * sigma / target_uplift) ** 2) if sigma > 0 else 2,
            message="Too few members are eligible to split into two groups.",
        )
    if sigma == 0:
        return HoldoutSizing(
            **common,
            target_uplift=target_uplift,
            needed_pct=1 / members,
            enough_at_half=True,
            members_needed_at_half=2,
            message="Spend does not vary between these members: any holdout detects the uplift.",
        )
    c = members * (target_uplift / (z * sigma)) ** 2
    needed_at_half = math.ceil(4 * (z * sigma / target_uplift) ** 2)  # 1/(k(1-k)) = 4 at k = 0.5
    if c < 4:
        return HoldoutSizing(
            **common,
            target_uplift=target_uplift,
            needed_pct=None,
            enough_at_half=False,
            members_needed_at_half=needed_at_half,
            message=f"Even a 50% holdout cannot detect this uplift on {members:,} members: "
            f"it would take a segment of {needed_at_half:,} members, or a larger uplift.",
        )
    needed = (1 - math.sqrt(1 - 4 / c)) / 2
    return HoldoutSizing(**common, target_uplift=target_uplift, needed_pct=needed, enough_at_half=True, members_needed_at_half=needed_at_half)


@dataclass(frozen=True)
class SegmentSpend:
    """Eligible members and their spend per member over the last ``days`` before ``as_of``."""

    members: int
    mean: float
    sigma: float
    days: float
    since: datetime
    until: datetime


def segment_spend(session: Session, member_ids: np.ndarray, *, days: float, as_of: datetime) -> SegmentSpend:
    """Mean and standard deviation (``ddof=1``) of spend per member over ``[as_of - days, as_of)``.

    One ``GROUP BY member`` over the window's non-refunded purchases, then vectorised
    over ``member_ids``: a member without a purchase counts as 0.
    """
    if days <= 0:
        raise InvalidInput("The campaign must last more than 0 days.")
    since = as_of - timedelta(days=days)
    ids = np.unique(np.asarray(member_ids, dtype=np.int64))
    if len(ids) == 0:
        return SegmentSpend(0, 0.0, 0.0, days, since, as_of)
    rows = session.execute(
        select(Purchase.member_id, func.sum(Purchase.amount))
        .where(Purchase.occurred_at >= since, Purchase.occurred_at < as_of, col(Purchase.refunded_at).is_(None))
        .group_by(col(Purchase.member_id))
    ).all()
    buyers = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    spend = np.fromiter((r[1] for r in rows), dtype=float, count=len(rows))
    spend = spend[np.isin(buyers, ids)]
    n = len(ids)
    total, squares = float(spend.sum()), float((spend**2).sum())
    mean = total / n
    variance = (squares - n * mean**2) / (n - 1) if n > 1 else 0.0
    return SegmentSpend(n, mean, math.sqrt(max(variance, 0.0)), days, since, as_of)


def plan_holdout(
    session: Session,
    *,
    kind: str,
    eligibility: dict[str, Any],
    rule: dict[str, Any],
    days: float,
    holdout_pct: float,
    target_uplift: float | None = None,
    relative: bool = False,
    alpha: float = DEFAULT_ALPHA,
    power: float = DEFAULT_POWER,
    now: datetime | None = None,
) -> tuple[HoldoutSizing, SegmentSpend]:
    """Holdout sizing for a campaign being set up: measure the segment, then :func:`holdout_size`.

    ``target_uplift`` is money per member over the campaign, or with ``relative=True`` a
    share of the members' mean spend over a period as long (0.05 = +5 %). A relative
    target of members who spent nothing has no money value: the sizing then has no
    target and its ``message`` says why.
    """
    if kind not in CAMPAIGN_KINDS:
        raise InvalidInput(f"Unknown campaign type {kind!r}.")
    now = now or utcnow()
    ids = eligible_members(session, eligibility or {}, kind=kind, rule=rule or {}, as_of=now)
    segment = segment_spend(session, ids, days=days, as_of=now)
    target, message = target_uplift, ""
    if target is not None and relative:
        target = target * segment.mean if segment.mean > 0 else None
        if target is None:
            message = "These members spent nothing in a period as long as the campaign: give the uplift in money."
    sizing = holdout_size(
        members=segment.members, sigma=segment.sigma, holdout_pct=holdout_pct, target_uplift=target, baseline=segment.mean, alpha=alpha, power=power
    )
    return (replace(sizing, message=message) if message else sizing), segment


# --- expected impact ---------------------------------------------------------------------------


def length_factor(kind: str, days: float, past_days: np.ndarray | float) -> np.ndarray:
    """How a past campaign's uplift per member scales to a campaign of ``days`` (module notes)."""
    past = np.asarray(past_days, dtype=float)
    if kind in ONCE_PER_MEMBER_KINDS:
        return np.ones_like(past)
    if kind == "birthday":
        return np.minimum(days, DAYS_PER_YEAR) / np.minimum(past, DAYS_PER_YEAR)
    return days / past


@dataclass(frozen=True)
class PooledUplift:
    """DerSimonian-Laird random-effects pooling of ``k`` campaigns' uplifts."""

    k: int
    mean: float  # μ
    se: float  # se(μ)
    tau: float  # between-campaign standard deviation
    q: float  # Cochran's Q
    weights: np.ndarray = field(repr=False)  # w*_i / Σ w*_i

    def prediction_interval(self, confidence: float) -> tuple[float, float]:
        """Where a new campaign's own uplift is expected: ``μ ± z · sqrt(se² + τ²)``."""
        half = float(normal_quantile(0.5 + confidence / 2)) * math.sqrt(self.se**2 + self.tau**2)
        return self.mean - half, self.mean + half


def pool_uplifts(uplift: np.ndarray, se: np.ndarray) -> PooledUplift:
    """Random-effects mean of uplifts ``y_i`` with standard errors ``se_i`` (DerSimonian & Laird 1986)."""
    y, s = np.asarray(uplift, dtype=float), np.asarray(se, dtype=float)
    if len(y) == 0 or len(y) != len(s):
        raise InvalidInput("Pooling needs at least one uplift and one standard error per uplift.")
    if (s <= 0).any() or not np.isfinite(s).all():
        raise InvalidInput("Every standard error must be a positive number.")
    w = 1 / s**2
    fixed = float((w * y).sum() / w.sum())
    q = float((w * (y - fixed) ** 2).sum())
    scale = float(w.sum() - (w**2).sum() / w.sum())
    tau2 = max(0.0, (q - (len(y) - 1)) / scale) if len(y) > 1 else 0.0
    w_star = 1 / (s**2 + tau2)
    return PooledUplift(
        k=len(y),
        mean=float((w_star * y).sum() / w_star.sum()),
        se=math.sqrt(1 / w_star.sum()),
        tau=math.sqrt(tau2),
        q=q,
        weights=w_star / w_star.sum(),
    )


@dataclass(frozen=True)
class CampaignImpact:
    """A draft's expected incremental revenue and cost; ``reason`` instead of numbers without history."""

    kind: str
    days: float
    eligible: int
    treatment: int
    holdout: int
    points_cost: int | None
    cost: float | None  # points_cost in money
    currency: str
    confidence: float
    comparable: pd.DataFrame = field(repr=False)
    uplift_per_member: float | None = None
    uplift_low: float | None = None
    uplift_high: float | None = None
    incremental_revenue: float | None = None
    incremental_revenue_low: float | None = None
    incremental_revenue_high: float | None = None
    net: float | None = None  # incremental revenue - cost
    net_low: float | None = None
    net_high: float | None = None
    revenue_per_point: float | None = None
    between_campaign_sd: float | None = None
    # The draft's holdout: the uplift it can detect, and the share needed for the expected uplift.
    holdout_sizing: HoldoutSizing | None = None
    reason: str | None = None  # why there is no estimate
    notes: tuple[str, ...] = ()


_COMPARABLE_COLUMNS = [
    "campaign_id",
    "campaign",
    "status",
    "window_start",
    "window_end",
    "days",
    "treatment_members",
    "holdout_members",
    "spend_uplift",
    "se",
    "factor",
    "scaled_uplift",
    "scaled_se",
    "weight",
    "points_cost",
    "points_per_member",
]


def _window_days(starts_at: datetime, ends_at: datetime, window_end: Any) -> float:
    """Days from the start to the end of the evaluated window (the campaign's end, or the evaluation's cutoff)."""

    def utc(moment: Any) -> pd.Timestamp:
        stamp = pd.Timestamp(moment)
        return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")

    return (min(utc(ends_at), utc(window_end)) - utc(starts_at)).total_seconds() / 86400


def comparable_campaigns(session: Session, kind: str, *, exclude_campaign_id: int | None = None) -> pd.DataFrame:
    """The evaluated campaigns of ``kind`` with a measurable uplift (both groups of 2+ members).

    Columns ``campaign_id, campaign, status, window_start, window_end, days,
    treatment_members, holdout_members, spend_uplift, se, points_cost,
    points_per_member``; ``se`` from the stored 95 % Welch interval (module notes).
    """
    results = campaign_results(session)
    results = results[(results["kind"] == kind) & (results["campaign_id"] != exclude_campaign_id)]
    results = results.dropna(subset=["spend_uplift", "spend_uplift_ci_low", "spend_uplift_ci_high"])
    results = results[(results["treatment_members"] >= 2) & (results["holdout_members"] >= 2)]
    frame = results[
        ["campaign_id", "campaign", "status", "window_start", "window_end", "treatment_members", "holdout_members", "spend_uplift", "points_cost"]
    ].copy()
    for column in ("treatment_members", "holdout_members", "spend_uplift", "points_cost"):
        frame[column] = pd.to_numeric(frame[column]).astype(float)
    # The stored window is in whole days (its end rounded up); the campaign's own times are exact.
    times = {
        cid: (start, end)
        for cid, start, end in session.execute(
            select(Campaign.id, Campaign.starts_at, Campaign.ends_at).where(col(Campaign.id).in_([int(c) for c in frame["campaign_id"]]))
        ).all()
    }
    frame["days"] = [_window_days(*times[int(cid)], window_end) for cid, window_end in zip(frame["campaign_id"], frame["window_end"])]
    dof = frame["treatment_members"] + frame["holdout_members"] - 2
    t = t_quantile(0.5 + EVALUATION_CONFIDENCE / 2, dof.to_numpy()) if len(frame) else np.array([])
    frame["se"] = (results["spend_uplift_ci_high"].astype(float) - results["spend_uplift_ci_low"].astype(float)).to_numpy() / (2 * t)
    frame["points_per_member"] = frame["points_cost"].fillna(0) / frame["treatment_members"]
    frame = frame[frame["days"] > 0]
    return frame.sort_values("window_start", ascending=False, ignore_index=True)


def impact_from_history(comparable: pd.DataFrame, *, kind: str, days: float) -> tuple[PooledUplift, pd.DataFrame]:
    """Pool comparable campaigns' uplifts per member, scaled to a campaign of ``kind`` lasting ``days``.

    ``comparable`` needs ``days, spend_uplift, se`` (as :func:`comparable_campaigns`).
    Returns the pooled uplift and ``comparable`` with ``factor, scaled_uplift, scaled_se,
    weight`` (each campaign's share of the random-effects weights).
    """
    if comparable.empty:
        raise InvalidInput("No comparable campaigns to pool.")
    if days <= 0:
        raise InvalidInput("The campaign must last more than 0 days.")
    factor = length_factor(kind, days, comparable["days"].to_numpy(dtype=float))
    scaled = comparable.assign(
        factor=factor,
        scaled_uplift=comparable["spend_uplift"].to_numpy(dtype=float) * factor,
        scaled_se=comparable["se"].to_numpy(dtype=float) * factor,
    )
    pooled = pool_uplifts(scaled["scaled_uplift"].to_numpy(), scaled["scaled_se"].to_numpy())
    return pooled, scaled.assign(weight=pooled.weights)


def _no_history_reason(session: Session, kind: str, exclude_campaign_id: int | None, now: datetime) -> str:
    label = CAMPAIGN_KINDS.get(kind, kind)
    waiting = session.exec(
        select(func.count())
        .select_from(Campaign)
        .where(
            Campaign.kind == kind,
            Campaign.status != "draft",
            Campaign.holdout_pct > 0,
            Campaign.starts_at < now,
            Campaign.id != (exclude_campaign_id or -1),
        )
    ).one()
    if waiting:
        return (
            f"No comparable history yet: {waiting} {label.lower()} campaign(s) with a holdout have run but are not evaluated. "
            "Run the campaign-evaluation job (Jobs page, or `python -m loyalty evaluate --job campaign-evaluation`)."
        )
    return (
        f"No comparable history: no {label.lower()} campaign has been measured against a holdout yet, so there is no "
        "uplift to estimate from. Run this one with a holdout and it becomes the history."
    )


def expected_campaign_impact(
    session: Session,
    *,
    campaign_id: int,
    confidence: float = DEFAULT_IMPACT_CONFIDENCE,
    now: datetime | None = None,
    preview: dict[str, Any] | None = None,
) -> CampaignImpact:
    """Before launch: a draft campaign's expected incremental revenue and points cost (module notes).

    Treated members and the points cost come from :func:`loyalty.decisions.planner.preview_campaign`
    (pass ``preview`` when the caller already has it: the replay is the slow part, 2.3 s
    at 100,000 members); the uplift per member from the evaluated campaigns of the same
    kind. Without such a campaign, or when the preview had too little history to estimate
    the cost, ``reason`` says so and the revenue fields stay ``None``.
    """
    if not 0 < confidence < 1:
        raise InvalidInput("The confidence level must be between 0 and 1 (90% is usual).")
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFound(f"No campaign with id {campaign_id}.")
    now = now or utcnow()
    preview = preview or preview_campaign(session, campaign_id, now=now)
    settings = get_settings(session)
    days = (campaign.ends_at - campaign.starts_at).total_seconds() / 86400
    # The members the preview counts (as of the start for a future draft), their spend over a period as long.
    ids = eligible_members(
        session,
        campaign.eligibility or {},
        kind=campaign.kind,
        rule=campaign.rule or {},
        as_of=max(now, campaign.starts_at) if campaign.status == "draft" else now,
    )
    segment = segment_spend(session, ids, days=days, as_of=now)
    points = None if preview["estimated_points"] is None else int(preview["estimated_points"])
    cost = None if points is None else points * settings.point_value
    base: dict[str, Any] = {
        "kind": campaign.kind,
        "days": days,
        "eligible": preview["eligible"],
        "treatment": preview["treatment"],
        "holdout": preview["holdout"],
        "points_cost": points,
        "cost": cost,
        "currency": settings.currency,
        "confidence": confidence,
    }
    comparable = comparable_campaigns(session, campaign.kind, exclude_campaign_id=campaign_id)
    if comparable.empty or cost is None:
        # Without a points cost there is no net to show: the reason, never a 0.
        sizing = holdout_size(members=segment.members, sigma=segment.sigma, holdout_pct=campaign.holdout_pct, baseline=segment.mean)
        return CampaignImpact(
            **base,
            comparable=comparable.iloc[0:0].reindex(columns=_COMPARABLE_COLUMNS),
            holdout_sizing=sizing,
            reason=" ".join(
                filter(
                    None,
                    [preview.get("not_enough_history"), _no_history_reason(session, campaign.kind, campaign_id, now) if comparable.empty else None],
                )
            ),
        )
    pooled, comparable = impact_from_history(comparable, kind=campaign.kind, days=days)
    sizing = holdout_size(
        members=segment.members,
        sigma=segment.sigma,
        holdout_pct=campaign.holdout_pct,
        baseline=segment.mean,
        target_uplift=pooled.mean if pooled.mean > 0 else None,
    )
    low, high = pooled.prediction_interval(confidence)
    n = preview["treatment"]
    revenue, revenue_low, revenue_high = pooled.mean * n, low * n, high * n
    notes = []
    if pooled.k == 1:
        notes.append(
            "Only one comparable campaign: the interval is its own and leaves out how much campaigns differ from one another, so it is too narrow."
        )
    elif pooled.k < 4:
        notes.append(f"Only {pooled.k} comparable campaigns: the spread between campaigns is a rough estimate.")
    if campaign.holdout_pct == 0:
        notes.append("This draft has no holdout: its own uplift will not be measured.")
    if campaign.budget_points:
        notes.append("The points budget caps the cost; the uplift of past campaigns is not adjusted for it.")
    assert points is not None  # the cost is known, so is the points cost it came from
    return CampaignImpact(
        **base,
        comparable=comparable[_COMPARABLE_COLUMNS],
        uplift_per_member=pooled.mean,
        uplift_low=low,
        uplift_high=high,
        incremental_revenue=revenue,
        incremental_revenue_low=revenue_low,
        incremental_revenue_high=revenue_high,
        net=revenue - cost,
        net_low=revenue_low - cost,
        net_high=revenue_high - cost,
        revenue_per_point=revenue / points if points > 0 else None,
        between_campaign_sd=pooled.tau,
        holdout_sizing=sizing,
        notes=tuple(notes),
    )


# --- preview of a draft ---------------------------------------------------------------------


def _replay_cohort(session: Session, campaign: Campaign, eligible: np.ndarray, since: datetime) -> np.ndarray:
    """The members whose past the preview replays.

    The eligible members (treatment and holdout alike: more history, and the holdout is
    a stable random share of them), except for a win-back: its members were chosen because they
    stopped buying, so their own recent past cannot say whether they come back. The
    members who met the campaign's rules at the start of the replayed window (inactive
    as long, same tiers, channels, segment, minimum spend) stand in for them; a fixed
    list of members is left out of those rules for the same reason.
    """
    if campaign.kind != "win_back":
        return np.sort(eligible)
    rules = {k: v for k, v in (campaign.eligibility or {}).items() if k != "member_ids"}
    return eligible_members(session, rules, kind=campaign.kind, rule=campaign.rule or {}, as_of=since)


def preview_campaign(session: Session, campaign_id: int, *, now: datetime | None = None) -> dict[str, Any]:
    """Before activation: who is eligible, and the points cost the campaign's own rules give on recent history.

    The campaign (its earn rule or bonus, eligibility, purchase channels and budget) is
    replayed through the campaign engine as if it had run over a recent window:

    * per-purchase kinds (multipliers, category and fixed bonuses, tier offers): the
      eligible members' purchases of the last ``PREVIEW_LOOKBACK_DAYS`` days, the
      bonus scaled to the campaign's length;
    * once-per-member kinds (spend threshold, birthday, win-back): a window as long as
      the campaign (at most ``MAX_REPLAY_DAYS``), not scaled; a win-back replays the
      members who were inactive as long at the window's start (:func:`_replay_cohort`).

    Cost = bonus points per replayed member x treatment members (the holdout gets
    nothing), capped by the budget. Fewer than ``MIN_PREVIEW_PURCHASES`` purchases in
    the window give ``estimated_points = None`` and ``not_enough_history`` saying so.
    """
    now = now or utcnow()
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFound(f"No campaign with id {campaign_id}.")
    ids = eligible_members(
        session,
        campaign.eligibility or {},
        kind=campaign.kind,
        rule=campaign.rule or {},
        as_of=max(now, campaign.starts_at) if campaign.status == "draft" else now,
    )
    holdout = stable_uniform(stored_id(campaign), ids) < campaign.holdout_pct
    treatment = np.sort(ids[~holdout])
    campaign_days = (campaign.ends_at - campaign.starts_at).total_seconds() / 86400
    once = campaign.kind in AWARDED_ONCE_KINDS
    window_days = min(campaign_days, MAX_REPLAY_DAYS) if once else PREVIEW_LOOKBACK_DAYS
    since = now - timedelta(days=window_days)
    cohort = _replay_cohort(session, campaign, ids, since)
    recent = pd.DataFrame(
        session.exec(
            select(Purchase.id, Purchase.member_id, Purchase.occurred_at, Purchase.amount, Purchase.category, Purchase.channel).where(  # type: ignore[call-overload]  # typed for at most 4 columns
                Purchase.occurred_at >= since, Purchase.occurred_at < now, col(Purchase.refunded_at).is_(None)
            )
        ).all(),
        columns=["id", "member_id", "occurred_at", "amount", "category", "channel"],
    )
    recent = recent[recent["member_id"].isin(cohort)]
    preview: dict[str, Any] = {
        "eligible": len(ids),
        "treatment": len(treatment),
        "holdout": int(holdout.sum()),
        "estimated_points": 0,
        "lookback_days": round(window_days, 1),
        "replayed_members": len(cohort),
        "purchases_in_window": len(recent),
        "purchases_needed": MIN_PREVIEW_PURCHASES,
        "not_enough_history": None,
    }
    if len(treatment) == 0:
        return preview  # nobody to pay: a cost of 0 is the estimate
    if len(recent) < MIN_PREVIEW_PURCHASES:
        preview["estimated_points"] = None
        preview["not_enough_history"] = (
            f"Not enough history to estimate: {len(recent):,} purchases in the window, need "
            f"{MIN_PREVIEW_PURCHASES:,} (the last {window_days:,.0f} days of the "
            f"{len(cohort):,} member{'s' if len(cohort) != 1 else ''} the campaign's rules pick)."
        )
        return preview
    mult = recent["member_id"].map(member_multipliers(session)).fillna(1.0)
    recent = recent.assign(base_points=base_points(recent["amount"], mult, get_settings(session).points_per_currency_unit))
    # The same campaign, as if it had run over the replayed window, every replayed member treated.
    replayed = SimpleNamespace(
        **{f: getattr(campaign, f) for f in ("id", "kind", "rule", "eligibility", "updated_at")}, budget_points=None, starts_at=since, ends_at=now
    )
    engine = ReplayedCampaignEngine(session, replayed, cohort)
    per_member = float(engine(recent)["points"].sum()) / len(cohort)
    cost = round(per_member * len(treatment) * (1 if once else campaign_days / window_days))
    preview["estimated_points"] = min(cost, campaign.budget_points) if campaign.budget_points else cost
    return preview
