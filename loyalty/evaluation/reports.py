"""Executive reports: the month (or week) of the program in plain words, numbers and charts.

A report covers one period, ``"YYYY-MM"`` (monthly) or ``"YYYY-Www"`` (ISO week), and
holds:

* **In brief**: a few sentences a reader without the dashboard understands;
* **KPIs against targets**: every KPI target of the period (monthly targets; quarterly
  ones too in a quarter's last month), its value, and on track / at risk / off track
  (:func:`loyalty.program.goals.target_status`);
* **Key numbers**: headline KPIs of the period against the period before;
* **Trends**: revenue, active members and retention over the last 12 months (charts);
* **Campaign results**: uplift of treatment over holdout for campaigns running in the
  period, with 95 % intervals, points cost and revenue per point
  (:func:`loyalty.insights.campaign_results.evaluate_campaigns`, as of the period end);
* **Tier movements** of the period and **alerts** raised about it;
* **Points liability forecast**: outstanding points in money 3, 6, 9 and 12 months after
  the period with the forecast's band, expected redemptions, expiry and breakage
  (:mod:`loyalty.decisions.forecast`: the stored forecast as of the period's last day, which the
  liability-forecast job writes just before the monthly report; computed when absent).

Formats
-------
* ``html``: one self-contained file; plotly.js is embedded once (the first chart with
  ``include_plotlyjs=True``, the others ``False``), never from a CDN, so it opens offline.
* ``pdf``: fpdf2 with the same charts as PNG images, drawn from the same plotly figures by
  matplotlib (:mod:`loyalty.evaluation.static_charts`): pip-installed packages only, no browser.
  Text uses DejaVu Sans when installed, else Helvetica.

Delivery
--------
With ``LOYALTY_SMTP_HOST`` and ``LOYALTY_SMTP_TO`` (comma-separated) set, the
executive-report job e-mails the PDF (``LOYALTY_SMTP_PORT`` default 25,
``LOYALTY_SMTP_FROM``, optional ``LOYALTY_SMTP_USER``/``LOYALTY_SMTP_PASSWORD`` and
``LOYALTY_SMTP_STARTTLS=1``).
"""

from __future__ import annotations

import html
import io
import math
import re
import smtplib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import polars as pl
from PIL import Image
from sqlalchemy import delete, func
from sqlmodel import Session, col, select

from db.engine import write_transaction
from db.models import KpiTarget, Report, Segment, Tier, TierMovement, utcnow
from loyalty.analytics.data import Reader
from loyalty.analytics.metrics import METRICS, Dimension
from loyalty.errors import InvalidInput, NotFound
from loyalty.figures import house_layout
from loyalty.formatting import json_records, json_value, money
from loyalty.integrations.mail import SmtpSettings, smtp_settings
from loyalty.periods import period_bounds

__all__ = [
    "CADENCES",
    "FORMATS",
    "HEADLINE_METRICS",
    "ReportContent",
    "ReportPeriod",
    "SmtpSettings",
    "campaign_figure",
    "figure_images",
    "get_report",
    "last_complete_period",
    "liability_rows",
    "list_reports",
    "parse_period",
    "render_html",
    "render_pdf",
    "render_report",
    "report_content",
    "report_figures",
    "retention_figure",
    "send_report_email",
    "smtp_settings",
    "store_report",
    "tier_movement_figure",
    "trend_figure",
]

FORMATS = ("html", "pdf")
CADENCES = ("monthly", "weekly")
HEADLINE_METRICS = (
    "active_members",
    "new_members",
    "retention_rate",
    "repeat_purchase_rate",
    "average_transaction_value",
    "purchase_frequency",
    "revenue_per_member",
    "nps",
    "redemption_rate",
    "points_liability",
)
TREND_MONTHS = 12
CHART_WIDTH_PX, CHART_HEIGHT_PX, CHART_SCALE = 1000, 420, 2
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
STATUS_COLOURS = {"on track": "#2e7d32", "at risk": "#f9a825", "off track": "#c62828", "no data": "#757575"}
_STATUS_FILL = {"on track": (220, 237, 200), "at risk": (255, 243, 196), "off track": (255, 205, 210), "no data": (238, 238, 238)}
_PERIOD_RE = re.compile(r"^(\d{4})-(\d{2})$")
_WEEK_RE = re.compile(r"^(\d{4})-W(\d{2})$")


# --- periods ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportPeriod:
    """The period a report covers, ``[start, end)`` in UTC days, and the one before it."""

    label: str
    cadence: str
    start: date
    end: date
    name: str
    previous_start: date
    previous_end: date
    previous_name: str


def _month_name(day: date) -> str:
    return day.strftime("%B %Y")


def _week_name(start: date) -> str:
    year, week, _ = start.isocalendar()
    last = start + timedelta(days=6)
    return f"week {week} of {year} ({start:%-d %b} to {last:%-d %b %Y})"


def parse_period(period: str) -> ReportPeriod:
    """``"2026-10"`` (a month) or ``"2026-W44"`` (an ISO week), checked and with its previous period."""
    text = (period or "").strip()
    if match := _PERIOD_RE.match(text):
        year, month = int(match[1]), int(match[2])
        if not 1 <= month <= 12:
            raise InvalidInput(f"{period!r}: the month must be 01 to 12.")
        start, end = period_bounds("month", date(year, month, 1))
        previous_start, previous_end = period_bounds("month", start - timedelta(days=1))
        return ReportPeriod(text, "monthly", start, end, _month_name(start), previous_start, previous_end, _month_name(previous_start))
    if match := _WEEK_RE.match(text):
        try:
            start = date.fromisocalendar(int(match[1]), int(match[2]), 1)
        except ValueError:
            raise InvalidInput(f"{period!r}: {match[1]} has no week {match[2]}.") from None
        previous_start = start - timedelta(days=7)
        return ReportPeriod(text, "weekly", start, start + timedelta(days=7), _week_name(start), previous_start, start, _week_name(previous_start))
    raise InvalidInput(f"A report period is YYYY-MM (a month) or YYYY-Www (an ISO week), not {period!r}.")


def last_complete_period(as_of: date, cadence: str = "monthly") -> str:
    """The label of the last month (or ISO week) complete at the end of ``as_of``."""
    following = as_of + timedelta(days=1)
    if cadence == "monthly":
        return (period_bounds("month", following)[0] - timedelta(days=1)).strftime("%Y-%m")
    if cadence == "weekly":
        year, week, _ = (period_bounds("week", following)[0] - timedelta(days=1)).isocalendar()
        return f"{year}-W{week:02d}"
    raise InvalidInput(f"Cadence must be one of {', '.join(CADENCES)}.")


# --- the content ------------------------------------------------------------------------------------------


@dataclass
class ReportContent:
    """Everything a report shows, independent of its format."""

    period: ReportPeriod
    title: str
    currency: str
    generated_at: datetime
    summary: list[str]
    key_numbers: pd.DataFrame  # metric, kpi, value, previous, value_text, previous_text, change_text
    targets: pd.DataFrame  # goal, kpi, metric, segment, period, target_text, value_text, status
    trend: pd.DataFrame  # month, revenue, purchases, active_members, retention_rate
    campaigns: pd.DataFrame  # evaluate_campaigns rows
    tier_moves: pd.DataFrame  # from_tier, to_tier, direction, members
    tiers: pd.DataFrame  # tier, members
    alerts: pd.DataFrame  # severity, kind, metric, message, as_of
    retention_target: float | None = None
    notes: list[str] = field(default_factory=list)
    liability: dict[str, Any] | None = None  # loyalty.decisions.forecast.forecast_summary, None without a forecast


def _reader(session: Session) -> Reader:
    from loyalty.analytics.reader import analytics_reader

    return analytics_reader(session)


def _value(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) or pd.isna(value) else float(value)


def _display(metric: str, value: float | None, currency: str) -> str:
    return METRICS[metric].display(value, currency) if metric in METRICS else ("n/a" if value is None else f"{value:,.2f}")


def _change_text(metric: str, value: float | None, previous: float | None) -> str:
    if value is None or previous is None:
        return "n/a"
    unit = METRICS[metric].unit if metric in METRICS else ""
    if unit == "share":
        return f"{100 * (value - previous):+.1f} pts"
    if unit == "score":
        return f"{value - previous:+.0f}"
    if previous == 0:
        return "new" if value else "0"
    return f"{(value - previous) / abs(previous):+.1%}"


def _kpis(session: Session, start: date, end: date, by: Dimension | None = None) -> dict[str, dict[str, float | None]]:
    """``{dimension_value: {metric: value}}`` of the default KPIs for ``[start, end)``."""
    from loyalty.analytics.metrics import compute_kpis

    frame = compute_kpis(session, start, end, by=by, reader=_reader(session))
    values: dict[str, dict[str, float | None]] = {}
    for row in frame.itertuples(index=False):
        values.setdefault(str(row.dimension_value or ""), {})[row.metric] = _value(row.value)
    return values


def _overall_kpis(session: Session, periods: list[tuple[date, date]]) -> list[dict[str, float | None]]:
    """``{metric: value}`` of the default KPIs overall, for each period, from one read of the tables."""
    from loyalty.analytics.metrics import kpis_for_periods

    frames = kpis_for_periods(session, periods, dimensions=(None,), reader=_reader(session))
    return [{row.metric: _value(row.value) for row in frame.itertuples(index=False)} for frame in frames]


def _targets(session: Session, period: ReportPeriod, overall: dict[str, float | None]) -> pd.DataFrame:
    from db.models import Goal
    from loyalty.program.goals import target_status
    from loyalty.settings import get_settings

    columns = ["goal", "kpi", "metric", "segment", "period", "target", "value", "target_text", "value_text", "status"]
    if period.cadence != "monthly":
        return pd.DataFrame(columns=columns)
    # Every target the Goals page counts (not archived, neither its goal): monthly ones for
    # the report's month, quarterly ones for the last quarter complete at its end, as the
    # KPI snapshot stores them; so the report and the Goals page count the same targets.
    from loyalty.evaluation.kpis import snapshot_periods

    periods = {name: (start, end) for name, start, end in snapshot_periods(period.end - timedelta(days=1)) if name in ("month", "quarter")}
    targets = session.exec(
        select(KpiTarget, Goal)
        .join(Goal, col(Goal.id) == KpiTarget.goal_id)
        .where(col(KpiTarget.period).in_(list(periods)), col(KpiTarget.archived_at).is_(None), col(Goal.archived_at).is_(None))
        .order_by(col(Goal.name), col(KpiTarget.id))
    ).all()
    segments = dict(session.exec(select(Segment.id, Segment.name)).all())
    currency = get_settings(session).currency
    cache: dict[tuple[str, str | None], dict[str, dict[str, float | None]]] = {("month", None): {"": overall}}
    rows = []
    for target, goal in targets:
        by: Dimension | None = "segment" if target.segment_id else None
        key = (target.period, by)
        if key not in cache:
            cache[key] = _kpis(session, *periods[target.period], by=by)
        segment = segments.get(target.segment_id, "") if target.segment_id else ""
        value = cache[key].get(segment, {}).get(target.metric)
        label = METRICS[target.metric].label if target.metric in METRICS else target.metric
        rows.append(
            {
                "goal": goal.name,
                "kpi": label,
                "metric": target.metric,
                "segment": segment,
                "period": target.period,
                "target": target.target_value,
                "value": value,
                "target_text": _display(target.metric, target.target_value, currency),
                "value_text": _display(target.metric, value, currency),
                "status": target_status(value, target.target_value, target.direction),
            }
        )
    return pd.DataFrame(rows, columns=columns)


def _trend(session: Session, end: date) -> pd.DataFrame:
    """Monthly revenue, purchases, active members and retention for the 12 months up to ``end``."""
    from loyalty.analytics.cohorts import churn_over_time
    from loyalty.analytics.data import load_purchases

    last_month = period_bounds("month", end - timedelta(days=1))[0]
    first_month = (pd.Timestamp(last_month) - pd.DateOffset(months=TREND_MONTHS - 1)).date()
    # One month more than shown: retention of the first month needs the month before.
    since = (pd.Timestamp(first_month) - pd.DateOffset(months=1)).date()
    purchases = load_purchases(session, start=since, end=end, reader=_reader(session))
    months = pd.date_range(first_month, last_month, freq="MS").date
    frame = pd.DataFrame({"month": list(months)})
    if purchases.height:
        monthly = (
            purchases.with_columns(month=pl.col("occurred_on").dt.truncate("1mo"))
            .group_by("month")
            .agg(revenue=pl.col("amount").sum(), purchases=pl.len(), active_members=pl.col("member_id").n_unique())
            .to_pandas()
        )
        monthly["month"] = pd.to_datetime(monthly["month"]).dt.date
        frame = frame.merge(monthly, on="month", how="left")
        retention = churn_over_time(purchases, "month", as_of=end - timedelta(days=1)).to_pandas()
        found = {date.fromisoformat(f"{p}-01"): r for p, r in zip(retention["period"], retention["retention_rate"])}
        frame["retention_rate"] = [found.get(m) for m in frame["month"]]
    else:
        frame = frame.assign(revenue=None, purchases=None, active_members=None, retention_rate=None)
    frame[["revenue", "purchases", "active_members"]] = frame[["revenue", "purchases", "active_members"]].fillna(0)
    frame["retention_rate"] = frame["retention_rate"].astype(float)
    return frame


def _tier_moves(session: Session, start: date, end: date) -> tuple[pd.DataFrame, pd.DataFrame]:
    tiers = session.exec(select(Tier).order_by(col(Tier.rank))).all()
    names = {t.id: t.name for t in tiers}
    ranks = {t.id: t.rank for t in tiers}
    begin = datetime(start.year, start.month, start.day, tzinfo=UTC)
    finish = datetime(end.year, end.month, end.day, tzinfo=UTC)
    rows = session.execute(
        select(TierMovement.from_tier_id, TierMovement.to_tier_id, func.count())
        .where(TierMovement.moved_at >= begin, TierMovement.moved_at < finish)
        .group_by(col(TierMovement.from_tier_id), col(TierMovement.to_tier_id))
    ).all()
    moves = pd.DataFrame(
        [
            {
                "from_tier": names.get(a, "(none)") if a else "(none)",
                "to_tier": names.get(b, "(none)") if b else "(none)",
                "direction": "up" if ranks.get(b, 0) > ranks.get(a, 0) else "down",
                "members": int(n),
            }
            for a, b, n in rows
        ],
        columns=["from_tier", "to_tier", "direction", "members"],
    )
    moves = moves.sort_values(["direction", "members"], ascending=[False, False], ignore_index=True)
    from loyalty.program.tiers import list_tiers

    sizes = list_tiers(session)[["name", "members"]].rename(columns={"name": "tier"})
    return moves, sizes


def _interval_words(low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return "too few members to tell"
    if low > 0:
        return "clearly above zero"
    if high < 0:
        return "clearly below zero"
    return "not distinguishable from zero"


def _summary(content: ReportContent) -> list[str]:
    """The plain-language paragraph, one sentence per topic."""
    p, cur = content.period, content.currency
    numbers = content.key_numbers.set_index("metric") if not content.key_numbers.empty else pd.DataFrame()
    sentences = []

    def number(metric: str) -> tuple[float | None, str, str]:
        if metric not in numbers.index:
            return None, "n/a", "n/a"
        row = numbers.loc[metric]
        return row["value"], row["value_text"], row["change_text"]

    active, active_text, active_change = number("active_members")
    _, revenue_text, _ = number("revenue_per_member")
    if active is not None:
        sentences.append(
            f"In {p.name}, {active_text} members bought at least once ({active_change} against {p.previous_name}); "
            f"each spent {revenue_text} on average."
        )
    retention, retention_text, retention_change = number("retention_rate")
    if retention is not None:
        goal = f" (target {content.retention_target:.1%})" if content.retention_target is not None else ""
        sentences.append(f"Retention of existing members was {retention_text}{goal}, {retention_change} against {p.previous_name}.")
    if not content.targets.empty:
        counts = content.targets["status"].value_counts()
        off = content.targets[content.targets["status"] == "off track"]
        line = f"{int(counts.get('on track', 0))} of {len(content.targets)} KPI targets are on track"
        if not off.empty:
            line += "; off track: " + ", ".join(
                f"{r.kpi}{' for ' + r.segment if r.segment else ''} ({r.value_text} against {r.target_text})" for r in off.itertuples()
            )
        sentences.append(line + ".")
    for c in content.campaigns.itertuples():
        revenue_words = money(_value(c.incremental_revenue), cur)
        roi = _value(c.roi)
        sentences.append(
            f"Campaign {c.campaign!r}: members who got it spent {money(abs(_value(c.spend_uplift) or 0), cur)} "
            f"{'less' if (_value(c.spend_uplift) or 0) < 0 else 'more'} per head than the "
            f"holdout ({_interval_words(_value(c.spend_uplift_ci_low), _value(c.spend_uplift_ci_high))}), an estimated "
            f"{revenue_words} of extra revenue for {int(c.points_cost):,} bonus points ({money(_value(c.cost), cur)})"
            + (f", a return of {roi:+.0%} on that cost" if roi is not None else "")
            + ("; the holdout is too small to tell a gain from a loss." if _value(c.underpowered) else ".")
        )
    if not content.tier_moves.empty:
        up = int(content.tier_moves.loc[content.tier_moves["direction"] == "up", "members"].sum())
        down = int(content.tier_moves.loc[content.tier_moves["direction"] == "down", "members"].sum())
        sentences.append(f"{up:,} members moved up a tier and {down:,} moved down.")
    else:
        sentences.append("No member changed tier.")
    liability = content.liability
    if liability is not None and liability["horizon_end"] is not None:
        end = liability["horizon_end"]
        breakage = liability["breakage"]
        sentences.append(
            f"Points outstanding are forecast at {money(end['money'], cur, decimals=0)} on {end['last_day']:%-d %B %Y} "
            f"({money(end['money_low'], cur, decimals=0)} to {money(end['money_high'], cur, decimals=0)}, {liability['band_words']} band)"
            + (f", with {breakage:.1%} of the points leaving the program expected to expire unused." if breakage is not None else ".")
        )
    if content.alerts.empty:
        sentences.append("No alerts were raised.")
    else:
        critical = int((content.alerts["severity"] == "critical").sum())
        sentences.append(f"{len(content.alerts)} alert(s) were raised, {critical} critical: see Alerts.")
    return sentences


def report_content(session: Session, period: str) -> ReportContent:
    """Compute everything the report of ``period`` shows (reads only)."""
    from loyalty.evaluation.alerts import list_alerts
    from loyalty.insights.campaign_results import evaluate_campaigns
    from loyalty.settings import get_settings

    p = parse_period(period)
    today = utcnow().date()
    if p.start > today:
        raise InvalidInput(f"{p.name} has not started yet: there is nothing to report.")
    notes = [f"{p.name} is not over yet: the numbers run to {today:%-d %B %Y}."] if p.end > today else []  # its last day not over yet
    current, previous = _overall_kpis(session, [(p.start, p.end), (p.previous_start, p.previous_end)])
    currency = get_settings(session).currency
    key_numbers = pd.DataFrame(
        [
            {
                "metric": m,
                "kpi": METRICS[m].label,
                "value": current.get(m),
                "previous": previous.get(m),
                "value_text": _display(m, current.get(m), currency),
                "previous_text": _display(m, previous.get(m), currency),
                "change_text": _change_text(m, current.get(m), previous.get(m)),
            }
            for m in HEADLINE_METRICS
        ]
    )
    targets = _targets(session, p, current)
    retention_targets = targets[(targets["metric"] == "retention_rate") & (targets["segment"] == "")]
    cutoff = datetime(p.end.year, p.end.month, p.end.day, tzinfo=UTC)
    campaigns = evaluate_campaigns(session, cutoff=min(cutoff, utcnow()))
    begin = datetime(p.start.year, p.start.month, p.start.day, tzinfo=UTC)
    campaigns = campaigns[[pd.Timestamp(e) > pd.Timestamp(begin) for e in campaigns["window_end"]]].reset_index(drop=True)
    moves, tiers = _tier_moves(session, p.start, p.end)
    alerts = list_alerts(session, since=p.start, until=p.end, limit=50)
    liability = _liability(session, p)
    content = ReportContent(
        period=p,
        title=f"Executive report: {p.name}" + (" (to date)" if notes else ""),
        liability=liability,
        currency=currency,
        generated_at=utcnow(),
        summary=[],
        key_numbers=key_numbers,
        targets=targets,
        trend=_trend(session, p.end),
        campaigns=campaigns,
        tier_moves=moves,
        tiers=tiers,
        alerts=alerts,
        retention_target=float(retention_targets["target"].iloc[0]) if len(retention_targets) else None,
        notes=notes,
    )
    content.summary = _summary(content)
    return content


def _liability(session: Session, period: ReportPeriod) -> dict[str, Any] | None:
    """The liability forecast as of the period's last day (or yesterday while it runs), None if none can be made."""
    from loyalty.decisions.forecast import DEFAULT_BAND, liability_outlook

    as_of = min(period.end, utcnow().date()) - timedelta(days=1)
    try:
        outlook = liability_outlook(session, as_of)
    except InvalidInput:
        return None
    outlook["band_words"] = f"{DEFAULT_BAND:.0%}"
    return outlook


def liability_rows(content: ReportContent) -> pd.DataFrame:
    """The forecast table of the report: months 3, 6, 9 and 12 after the as-of day."""
    if content.liability is None:
        return pd.DataFrame()
    frame = content.liability["frame"]
    future = frame[frame["kind"] == "forecast"].reset_index(drop=True)
    cur = content.currency
    rows = []
    for end in (3, 6, 9, 12):
        if len(future) < end:
            break
        window, last = future.iloc[end - 3 : end], future.iloc[end - 1]
        redeemed, expired = window["redeemed"].sum(), window["expired"].sum()
        rows.append(
            {
                "month": f"{last['last_day']:%-d %b %Y}",
                "outstanding": money(last["outstanding_money"], cur, decimals=0),
                "band": f"{last['outstanding_money_low']:,.0f} to {last['outstanding_money_high']:,.0f}",
                "redeemed": f"{redeemed:,.0f}",
                "expired": f"{expired:,.0f}",
                "breakage": f"{expired / (expired + redeemed):.1%}" if expired + redeemed > 0 else "n/a",
            }
        )
    return pd.DataFrame(rows)


# --- charts (pure: frames in, figures out) --------------------------------------------------------------


def trend_figure(trend: pd.DataFrame, currency: str = "") -> go.Figure:
    """Monthly revenue (bars) and active members (line, right axis)."""
    months = [pd.Timestamp(m).strftime("%b %Y") for m in trend["month"]]
    fig = go.Figure()
    fig.add_bar(x=months, y=trend["revenue"], name=f"Revenue ({currency})" if currency else "Revenue", marker_color="#90caf9")
    fig.add_scatter(
        x=months, y=trend["active_members"], name="Active members", yaxis="y2", mode="lines+markers", line={"color": "#1565c0", "width": 3}
    )
    fig.update_layout(
        yaxis={"title": "Revenue", "rangemode": "tozero"},
        yaxis2={
            "title": "Active members",
            "overlaying": "y",
            "side": "right",
            "rangemode": "tozero",
            "tickmode": "auto",
            "showgrid": False,
            "tickformat": ",d",
        },
    )
    return house_layout(fig, "Revenue and active members by month", medium="print")


def retention_figure(trend: pd.DataFrame, target: float | None = None) -> go.Figure:
    """Retention of existing members by month, with the target when there is one."""
    months = [pd.Timestamp(m).strftime("%b %Y") for m in trend["month"]]
    fig = go.Figure()
    fig.add_scatter(x=months, y=trend["retention_rate"], name="Retention", mode="lines+markers", line={"color": "#2e7d32", "width": 3})
    if target is not None:
        fig.add_scatter(x=months, y=[target] * len(months), name="Target", mode="lines", line={"color": "#c62828", "dash": "dash"})
    fig.update_layout(yaxis={"title": "Share of last month's buyers who bought again", "tickformat": ".0%", "rangemode": "tozero"})
    return house_layout(fig, "Retention of existing members", medium="print")


def campaign_figure(campaigns: pd.DataFrame) -> go.Figure | None:
    """Spend uplift per member of each campaign with its 95 % interval (None without campaigns)."""
    if campaigns.empty:
        return None
    uplift = campaigns["spend_uplift"].astype(float)
    high = campaigns["spend_uplift_ci_high"].astype(float)
    low = campaigns["spend_uplift_ci_low"].astype(float)
    fig = go.Figure(
        go.Bar(
            x=campaigns["campaign"],
            y=uplift,
            marker_color="#6a1b9a",
            name="Spend uplift per member",
            error_y={"type": "data", "symmetric": False, "array": (high - uplift).fillna(0), "arrayminus": (uplift - low).fillna(0)},
        )
    )
    fig.update_layout(yaxis={"title": "Treatment minus holdout, per member", "zeroline": True, "zerolinewidth": 2, "zerolinecolor": "#9e9e9e"})
    return house_layout(fig, "Campaign uplift in spend per member (95 % interval)", medium="print")


def tier_movement_figure(moves: pd.DataFrame) -> go.Figure | None:
    """Members moved, by movement (None when nobody moved)."""
    if moves.empty:
        return None
    labels = moves["from_tier"] + " → " + moves["to_tier"]
    colours = ["#2e7d32" if d == "up" else "#c62828" for d in moves["direction"]]
    fig = go.Figure(go.Bar(x=moves["members"], y=labels, orientation="h", marker_color=colours))
    # One bar per kind of move: the chart grows with them instead of stretching one bar.
    fig.update_layout(xaxis={"title": "Members"}, yaxis={"autorange": "reversed"}, height=min(CHART_HEIGHT_PX, 170 + 45 * len(moves)))
    return house_layout(fig, "Tier movements", medium="print")


def report_figures(content: ReportContent) -> dict[str, go.Figure]:
    """The report's charts by place: ``trend``, ``retention``, and ``campaigns`` / ``tiers`` when there are any."""
    figures = {
        "trend": trend_figure(content.trend, content.currency),
        "retention": retention_figure(content.trend, content.retention_target),
        "campaigns": campaign_figure(content.campaigns),
        "tiers": tier_movement_figure(content.tier_moves),
    }
    return {name: figure for name, figure in figures.items() if figure is not None}


def figure_images(
    figures: Sequence[go.Figure], *, width: int = CHART_WIDTH_PX, height: int = CHART_HEIGHT_PX, scale: float = CHART_SCALE
) -> list[bytes]:
    """PNG images of ``figures`` drawn by matplotlib (:mod:`loyalty.evaluation.static_charts`): no browser needed.

    ``width`` x ``height`` pixels (a figure's own layout height wins, as the tier chart grows with its bars),
    times ``scale`` for print.
    """
    from loyalty.evaluation.static_charts import figure_png

    return [figure_png(f, width=width, height=f.layout.height or height, scale=scale) for f in figures]


# --- HTML -----------------------------------------------------------------------------------------------

_CSS = """
body{font-family:-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;margin:2rem auto;max-width:1050px;color:#212121;line-height:1.45}
h1{margin-bottom:.2rem}h2{margin-top:2rem;border-bottom:2px solid #e0e0e0;padding-bottom:.2rem}
.meta{color:#616161}table{border-collapse:collapse;width:100%;margin:.5rem 0}
th,td{border-bottom:1px solid #e0e0e0;padding:.35rem .5rem;text-align:left}th{background:#f5f5f5}
td.num{text-align:right;font-variant-numeric:tabular-nums}.status{font-weight:600;padding:.1rem .4rem;border-radius:.3rem;color:#fff}
.chart{height:430px;margin:1rem 0}.alert-critical{color:#c62828}.alert-warning{color:#ef6c00}.note{color:#616161;font-style:italic}
"""


def _cell_text(value: Any) -> str:
    """A table cell: empty for missing values, thousands separators for counts."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return f"{int(value):,}"
    return str(value)


def _table_html(frame: pd.DataFrame, columns: Mapping[str, str], numeric: Sequence[str] = ()) -> str:
    if frame.empty:
        return "<p class='note'>None in this period.</p>"
    head = "".join(f"<th>{html.escape(label)}</th>" for label in columns.values())
    body = []
    for row in frame.to_dict("records"):
        cells = []
        for key in columns:
            text = _cell_text(row.get(key))
            if key == "status":
                cells.append(f"<td><span class='status' style='background:{STATUS_COLOURS.get(text, '#757575')}'>{html.escape(text)}</span></td>")
            else:
                cells.append(f"<td class='{'num' if key in numeric else ''}'>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _campaign_rows(content: ReportContent) -> pd.DataFrame:
    cur = content.currency
    rows = []
    for c in content.campaigns.itertuples():
        low, high = _value(c.spend_uplift_ci_low), _value(c.spend_uplift_ci_high)
        r_low, r_high = _value(c.retention_uplift_ci_low), _value(c.retention_uplift_ci_high)
        rows.append(
            {
                "campaign": c.campaign,
                "groups": f"{int(c.treatment_members):,} / {int(c.holdout_members):,}",
                "spend": f"{_value(c.spend_uplift) or 0:+,.2f}" + (f" ({low:+,.2f} to {high:+,.2f})" if low is not None else ""),
                "retention": f"{100 * (_value(c.retention_uplift) or 0):+.1f} pts"
                + (f" ({100 * r_low:+.1f} to {100 * r_high:+.1f})" if r_low is not None and r_high is not None else ""),
                "cost": f"{money(_value(c.cost), cur)} ({int(c.points_cost):,} points)",
                "revenue": money(_value(c.incremental_revenue), cur),
                "roi": "n/a" if _value(c.roi) is None else f"{_value(c.roi):+.0%}" + (" (underpowered)" if _value(c.underpowered) else ""),
            }
        )
    return pd.DataFrame(rows)


_CAMPAIGN_COLUMNS = {
    "campaign": "Campaign",
    "groups": "Treatment / holdout",
    "spend": "Spend uplift per member (95 % CI)",
    "retention": "Retention uplift (95 % CI)",
    "cost": "Cost",
    "revenue": "Incremental revenue",
    "roi": "ROI",
}
_TARGET_COLUMNS = {"goal": "Goal", "kpi": "KPI", "segment": "Segment", "target_text": "Target", "value_text": "Value", "status": "Status"}
_NUMBER_COLUMNS = {"kpi": "KPI", "value_text": "This period", "previous_text": "Previous period", "change_text": "Change"}
_MOVE_COLUMNS = {"from_tier": "From", "to_tier": "To", "direction": "Direction", "members": "Members"}
_SIZE_COLUMNS = {"tier": "Tier", "members": "Members now"}
_LIABILITY_COLUMNS = {
    "month": "On",
    "outstanding": "Outstanding (money)",
    "band": "Band",
    "redeemed": "Redeemed in the 3 months (points)",
    "expired": "Expired in the 3 months (points)",
    "breakage": "Breakage",
}


def _liability_note(content: ReportContent) -> str:
    liability = content.liability
    if liability is None:
        return "No forecast: the ledger has no points yet."
    breakage = liability["breakage"]
    source = "liability-forecast job" if liability.get("stored") else "computed for this report"
    return (
        f"Forecast as of {liability['as_of']:%-d %b %Y} from members' earning and redemption behaviour "
        f"({source}); the band holds {liability['band_words']} of the bootstrap paths. Expected over "
        f"12 months: {liability['expected_redeemed']:,.0f} points redeemed, {liability['expected_expired']:,.0f} "
        f"expired" + (f", breakage {breakage:.1%}." if breakage is not None else ".")
    )


def render_html(content: ReportContent, figures: Mapping[str, go.Figure] | None = None) -> bytes:
    """The report as one self-contained HTML page (plotly.js embedded once, in the first chart)."""
    figures = report_figures(content) if figures is None else figures
    charts = {
        name: "<div class='chart'>"
        + fig.to_html(full_html=False, include_plotlyjs=(i == 0), default_height="420px", config={"displaylogo": False})
        + "</div>"
        for i, (name, fig) in enumerate(figures.items())
    }
    p = content.period
    alerts = (
        "".join(
            f"<li class='alert-{html.escape(a.severity)}'><b>{html.escape(a.severity)}</b> ({a.as_of:%-d %b %Y}): {html.escape(a.message)}</li>"
            for a in content.alerts.itertuples()
        )
        or "<li>None.</li>"
    )
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(content.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(content.title)}</h1>",
        (
            f"<p class='meta'>{html.escape(p.name)} · {p.start:%-d %b %Y} to {p.end - timedelta(days=1):%-d %b %Y} · generated "
            f"{content.generated_at:%-d %b %Y %H:%M} UTC by Loyalty Console</p>"
        ),
        *[f"<p class='note'>{html.escape(n)}</p>" for n in content.notes],
        "<h2>In brief</h2><ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in content.summary) + "</ul>",
        "<h2>KPIs against targets</h2>",
        _table_html(content.targets, _TARGET_COLUMNS, ("target_text", "value_text")),
        f"<h2>Key numbers</h2><p class='meta'>Against {html.escape(p.previous_name)}.</p>",
        _table_html(content.key_numbers, _NUMBER_COLUMNS, ("value_text", "previous_text", "change_text")),
        "<h2>Trends</h2>",
        charts.get("trend", ""),
        charts.get("retention", ""),
        (
            "<h2>Campaign results</h2><p class='meta'>Members who got the campaign against its no-reward holdout, over the "
            "campaign window to the end of the period.</p>"
        ),
        _table_html(_campaign_rows(content), _CAMPAIGN_COLUMNS),
        charts.get("campaigns", ""),
        "<h2>Tier movements</h2>",
        _table_html(content.tier_moves, _MOVE_COLUMNS, ("members",)),
        _table_html(content.tiers, _SIZE_COLUMNS, ("members",)),
        charts.get("tiers", ""),
        f"<h2>Points liability forecast</h2><p class='meta'>{html.escape(_liability_note(content))}</p>",
        _table_html(liability_rows(content), _LIABILITY_COLUMNS, ("outstanding", "band", "redeemed", "expired", "breakage")),
        f"<h2>Alerts</h2><ul>{alerts}</ul>",
        "</body></html>",
    ]
    return "\n".join(parts).encode("utf-8")


# --- PDF ------------------------------------------------------------------------------------------------


def _pdf_class() -> type:
    from fpdf import FPDF

    class ReportPDF(FPDF):
        footer_text = ""

        def footer(self) -> None:
            self.set_y(-12)
            self.set_font(self.font_family, size=8)
            self.set_text_color(117, 117, 117)
            self.cell(0, 6, f"{self.footer_text}    page {self.page_no()}/{{nb}}", align="C")

    return ReportPDF


def _latin1(text: str) -> str:
    replacements = {"→": "->", "–": "-", "—": "-", "·": "-", "≥": ">=", "…": "...", "’": "'"}
    for a, b in replacements.items():
        text = text.replace(a, b)
    return text.encode("latin-1", "replace").decode("latin-1")


def render_pdf(content: ReportContent, figures: Mapping[str, go.Figure] | None = None) -> bytes:
    """The report as an A4 PDF with the charts as images (drawn by matplotlib, no browser)."""
    figures = report_figures(content) if figures is None else figures
    images = dict(zip(figures, figure_images(list(figures.values()))))
    pdf = _pdf_class()(orientation="P", unit="mm", format="A4")
    regular, bold = FONT_DIR / "DejaVuSans.ttf", FONT_DIR / "DejaVuSans-Bold.ttf"
    unicode_font = regular.exists() and bold.exists()
    if unicode_font:
        pdf.add_font("DejaVu", "", str(regular))
        pdf.add_font("DejaVu", "B", str(bold))
        family = "DejaVu"
    else:
        family = "Helvetica"
    text = (lambda s: s) if unicode_font else _latin1
    pdf.set_title(text(content.title))
    pdf.set_author("Loyalty Console")
    pdf.footer_text = text(content.title)
    pdf.set_auto_page_break(auto=True, margin=16)
    pdf.set_margins(15, 15, 15)
    pdf.add_page()
    width = pdf.w - pdf.l_margin - pdf.r_margin
    p = content.period

    def heading(title: str, keep_with: float = 20) -> None:
        # A heading never ends a page: it moves on with what follows (a chart, say).
        if pdf.get_y() + 14 + keep_with > pdf.h - pdf.b_margin:
            pdf.add_page()
        pdf.ln(3)
        pdf.set_font(family, "B", 13)
        pdf.set_text_color(33, 33, 33)
        pdf.cell(0, 8, text(title), new_x="LMARGIN", new_y="NEXT")
        pdf.set_draw_color(224, 224, 224)
        pdf.line(pdf.l_margin, pdf.get_y(), pdf.l_margin + width, pdf.get_y())
        pdf.ln(2)
        pdf.set_font(family, "", 9.5)

    def paragraph(words: str, *, size: float = 9.5, colour: tuple[int, int, int] = (33, 33, 33)) -> None:
        pdf.set_font(family, "", size)
        pdf.set_text_color(*colour)
        pdf.multi_cell(width, 5, text(words), align="L", new_x="LMARGIN", new_y="NEXT")

    def table(frame: pd.DataFrame, columns: Mapping[str, str], widths: Sequence[float]) -> None:
        if frame.empty:
            paragraph("None in this period.", colour=(117, 117, 117))
            return
        pdf.set_font(family, "", 8.5)
        pdf.set_text_color(33, 33, 33)
        with pdf.table(
            col_widths=tuple(widths), text_align="LEFT", line_height=5, first_row_as_headings=True, headings_style=_headings_style(family)
        ) as grid:
            header = grid.row()
            for label in columns.values():
                header.cell(text(label))
            for record in frame.to_dict("records"):
                row = grid.row()
                for key in columns:
                    cell = _cell_text(record.get(key))
                    if key == "status":
                        row.cell(text(cell), style=_status_style(cell))
                    else:
                        row.cell(text(cell))
        pdf.ln(3)

    pdf.set_font(family, "B", 18)
    pdf.multi_cell(width, 9, text(content.title), new_x="LMARGIN", new_y="NEXT")
    paragraph(
        f"{p.name}: {p.start:%-d %b %Y} to {p.end - timedelta(days=1):%-d %b %Y}. Generated "
        f"{content.generated_at:%-d %b %Y %H:%M} UTC by Loyalty Console.",
        size=9,
        colour=(97, 97, 97),
    )
    for note in content.notes:
        paragraph(note, size=9, colour=(97, 97, 97))
    heading("In brief")
    for sentence in content.summary:
        paragraph("•  " + sentence if unicode_font else "-  " + sentence)
        pdf.ln(1)
    heading("KPIs against targets")
    table(content.targets, _TARGET_COLUMNS, (40, 38, 25, 22, 22, 22))
    heading("Key numbers")
    paragraph(f"Against {p.previous_name}.", size=8.5, colour=(97, 97, 97))
    table(content.key_numbers, _NUMBER_COLUMNS, (70, 35, 40, 35))

    def image_height(name: str) -> float:
        if name not in images:
            return 0.0
        with Image.open(io.BytesIO(images[name])) as png:
            return width * png.height / png.width

    def chart(name: str) -> None:
        if name in images:
            if pdf.get_y() + image_height(name) > pdf.h - pdf.b_margin:
                pdf.add_page()
            # The chart's title as the image's alternative text: screen readers, and tests, read it back.
            title = figures[name].layout.title.text or name
            pdf.image(io.BytesIO(images[name]), w=width, h=image_height(name), title=title, alt_text=title)
            pdf.ln(2)

    heading("Trends", keep_with=image_height("trend"))
    chart("trend")
    chart("retention")
    heading("Campaign results")
    paragraph(
        "Members who got the campaign against its no-reward holdout, over the campaign window to the end of the period.",
        size=8.5,
        colour=(97, 97, 97),
    )
    table(_campaign_rows(content), _CAMPAIGN_COLUMNS, (28, 22, 34, 30, 18, 24, 24))
    chart("campaigns")
    heading("Tier movements")
    table(content.tier_moves, _MOVE_COLUMNS, (50, 50, 40, 40))
    table(content.tiers, _SIZE_COLUMNS, (90, 90))
    chart("tiers")
    heading("Points liability forecast")
    paragraph(_liability_note(content), size=8.5, colour=(97, 97, 97))
    table(liability_rows(content), _LIABILITY_COLUMNS, (28, 32, 36, 30, 30, 24))
    heading("Alerts")
    if content.alerts.empty:
        paragraph("None.")
    for alert in content.alerts.itertuples():
        colour = (198, 40, 40) if alert.severity == "critical" else (239, 108, 0)
        paragraph(f"{alert.severity.upper()} ({alert.as_of:%-d %b %Y}): {alert.message}", colour=colour)
        pdf.ln(1)
    return bytes(pdf.output())


def _headings_style(family: str) -> Any:
    from fpdf.fonts import FontFace

    return FontFace(family=family, emphasis="BOLD", fill_color=(245, 245, 245))


def _status_style(status: str) -> Any:
    from fpdf.fonts import FontFace

    return FontFace(fill_color=_STATUS_FILL.get(status, (255, 255, 255)), emphasis="BOLD")


# --- rendering, storing, listing -------------------------------------------------------------------------


def report_data(content: ReportContent) -> dict[str, Any]:
    """The report's figures as JSON-ready data (``report --format json``): the period, the
    summary sentences, the key numbers (catalogue keys), the KPI targets with their status,
    the campaigns in money and the tier moves; the same values the HTML and PDF show."""

    p = content.period
    return {
        "title": content.title,
        "period": {"label": p.label, "from": p.start.isoformat(), "to": p.end.isoformat(), "complete": not content.notes},
        "currency": content.currency,
        "generated_at": content.generated_at.isoformat(),
        "summary": content.summary,
        "key_numbers": {
            row["metric"]: {"value": json_value(row["value"]), "previous": json_value(row["previous"])}
            for row in content.key_numbers.to_dict("records")
        },
        "targets": json_records(content.targets, ["goal", "metric", "segment", "period", "target", "value", "status"]),
        "campaigns": json_records(
            content.campaigns,
            [
                "campaign",
                "treatment_members",
                "holdout_members",
                "incremental_revenue",
                "incremental_revenue_ci_low",
                "incremental_revenue_ci_high",
                "cost",
                "roi",
                "underpowered",
            ],
        ),
        "tier_moves": json_records(content.tier_moves, ["from_tier", "to_tier", "direction", "members"]),
    }


def render_report(session: Session, period: str, fmt: str) -> bytes:
    """``report --period YYYY-MM --format html|pdf|json``: the report of ``period`` as bytes."""
    if fmt not in (*FORMATS, "json"):
        raise InvalidInput(f"Format must be one of {', '.join(FORMATS)} or json, not {fmt!r}.")
    content = report_content(session, period)
    if fmt == "json":
        import json

        return json.dumps(report_data(content), indent=2).encode()
    return render_html(content) if fmt == "html" else render_pdf(content)


def store_report(session: Session, *, period: str, fmt: str, content: bytes, title: str | None = None) -> Report:
    """Store a rendered report, replacing the one of the same period, cadence and format."""
    parsed = parse_period(period)
    if fmt not in FORMATS:
        raise InvalidInput(f"Format must be one of {', '.join(FORMATS)}, not {fmt!r}.")
    with write_transaction(session):
        session.execute(delete(Report).where(col(Report.period) == parsed.label, col(Report.cadence) == parsed.cadence, col(Report.format) == fmt))
        report = Report(
            period=parsed.label,
            cadence=parsed.cadence,
            format=fmt,
            title=title or f"Executive report: {parsed.name}",
            content=content,
            created_at=utcnow(),
        )
        session.add(report)
        session.flush()
    return report


def list_reports(session: Session) -> pd.DataFrame:
    """Stored reports, newest period first: ``id, period, cadence, format, title, created_at, size_bytes``."""
    rows = session.execute(
        select(Report.id, Report.period, Report.cadence, Report.format, Report.title, Report.created_at, func.length(Report.content)).order_by(  # type: ignore[call-overload]  # typed for at most 4 columns
            col(Report.period).desc(), Report.cadence, Report.format
        )
    ).all()
    return pd.DataFrame(rows, columns=["id", "period", "cadence", "format", "title", "created_at", "size_bytes"])


def get_report(session: Session, report_id: int) -> Report:
    report = session.get(Report, report_id)
    if report is None:
        raise NotFound(f"No report with id {report_id}.")
    return report


# --- e-mail -----------------------------------------------------------------------------------------------


def send_report_email(
    settings: SmtpSettings, *, title: str, pdf: bytes, period: str, summary: Sequence[str] = (), timeout: float = 30.0
) -> list[str]:
    """E-mail the PDF report to the distribution list; returns the recipients."""
    message = EmailMessage()
    message["Subject"] = title
    message["From"] = settings.sender
    message["To"] = ", ".join(settings.recipients)
    body = "\n".join(
        [
            title,
            "",
            *[f"- {s}" for s in summary],
            "",
            "The full report is attached as a PDF; the interactive version is on the Reports page of Loyalty Console.",
        ]
    )
    message.set_content(body)
    message.add_attachment(pdf, maintype="application", subtype="pdf", filename=f"loyalty-report-{period}.pdf")
    with smtplib.SMTP(settings.host, settings.port, timeout=timeout) as smtp:
        if settings.starttls:
            smtp.starttls()
        if settings.user:
            smtp.login(settings.user, settings.password)
        smtp.send_message(message)
    return list(settings.recipients)
