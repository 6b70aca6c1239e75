"""Alerts: retention of existing members falling, and KPI targets turning off track.

A run as of day ``D`` looks at the last complete month before the end of ``D`` (the
month KPI snapshots hold) and raises, in plain words:

* ``retention_below_target``: retention of existing members (of the members active in
  the month before, the share active again; the KPI ``retention_rate``) misses a monthly
  ``retention_rate`` target, overall or for its segment. Severity ``critical`` when the
  target is off track, ``warning`` when at risk (see :mod:`loyalty.program.goals`).
* ``retention_below_trend``: overall retention is more than
  :data:`RETENTION_DROP_THRESHOLD` (absolute, 0.05 = 5 points) below its average over
  the :data:`TREND_MONTHS` months before (all of which must have a value). ``warning``.
* ``kpi_off_track``: a KPI target other than retention (covered above) *turns* off track:
  off track for this month (or, in a quarter's last month, this quarter) while its
  previous stored value was not, or there was none. ``critical``. A target that stays
  off track is not raised again every month; it stays visible on the Goals page.

There is at most one alert per ``(kind, metric, as_of)``; its ``as_of`` is the **last day
of the month evaluated**, so the daily runs during a month all describe the same month and
each replaces the last one's alerts (an acknowledgement carries over to the replacement).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import delete
from sqlmodel import Session, col, select

from db.engine import write_transaction
from db.models import Alert, KpiTarget, Segment, utcnow
from loyalty.access.audit import record_audit
from loyalty.access.roles import Actor, require
from loyalty.analytics.metrics import METRICS
from loyalty.errors import NotFound
from loyalty.periods import add_months, period_bounds
from loyalty.program.goals import goal_status, target_status
from loyalty.settings import get_settings

__all__ = [
    "ALERT_KINDS",
    "RETENTION_DROP_THRESHOLD",
    "TREND_MONTHS",
    "AlertDraft",
    "AlertEvaluation",
    "acknowledge_alert",
    "evaluate_alerts",
    "evaluated_month",
    "list_alerts",
    "monthly_retention",
    "store_alerts",
]

ALERT_KINDS = ("retention_below_target", "retention_below_trend", "kpi_off_track")
RETENTION_DROP_THRESHOLD = 0.05
TREND_MONTHS = 3
_SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class AlertDraft:
    """An alert before it is stored."""

    kind: str
    severity: str
    metric: str
    message: str
    as_of: date


@dataclass
class AlertEvaluation:
    """The alerts of one evaluation and the day (``as_of``) whose alerts they replace."""

    as_of: date
    month_start: date
    alerts: list[AlertDraft] = field(default_factory=list)
    retention: pd.Series | None = None


def _month_name(day: date) -> str:
    return day.strftime("%B %Y")


def _share(value: float) -> str:
    return f"{value:.1%}"


def evaluated_month(as_of: date) -> tuple[date, date]:
    """``[start, end)`` of the last complete month before the end of ``as_of``."""
    end = period_bounds("month", as_of + timedelta(days=1))[0]
    return add_months(end, -1), end


def monthly_retention(session: Session, first_month: date, end: date) -> pd.Series:
    """Overall retention of existing members per calendar month from ``first_month`` to ``end``.

    The KPI ``retention_rate`` on consecutive months (members active in the month before,
    share active again), from one read of the purchases
    (:func:`loyalty.analytics.cohorts.churn_over_time`). Index: each month's first day;
    NaN where nobody was active the month before.
    """
    from loyalty.analytics.cohorts import churn_over_time
    from loyalty.analytics.data import load_purchases
    from loyalty.analytics.reader import analytics_reader

    purchases = load_purchases(session, start=add_months(first_month, -1), end=end, reader=analytics_reader(session))
    table = churn_over_time(purchases, "month", as_of=end - timedelta(days=1)).to_pandas()
    months = pd.date_range(first_month, add_months(end, -1), freq="MS").date
    found = {date.fromisoformat(f"{label}-01"): rate for label, rate in zip(table["period"], table["retention_rate"])}
    return pd.Series([found.get(m, float("nan")) for m in months], index=list(months), dtype=float, name="retention_rate")


def _retention_targets(session: Session, month_start: date, month_end: date, overall: float) -> list[dict[str, Any]]:
    """Each monthly retention target with this month's value and status."""
    from db.models import Goal

    targets = session.exec(
        select(KpiTarget, Goal)
        .join(Goal, col(Goal.id) == KpiTarget.goal_id)
        .where(
            KpiTarget.metric == "retention_rate", KpiTarget.period == "month", col(KpiTarget.archived_at).is_(None), col(Goal.archived_at).is_(None)
        )
        .order_by(col(KpiTarget.id))
    ).all()
    by_segment: dict[str, float] = {}
    if any(t.segment_id for t, _ in targets):
        from loyalty.analytics.metrics import compute_kpis
        from loyalty.analytics.reader import analytics_reader

        frame = compute_kpis(session, month_start, month_end, by="segment", metrics=["retention_rate"], reader=analytics_reader(session))
        by_segment = dict(zip(frame["dimension_value"], frame["value"]))
    segments = dict(session.exec(select(Segment.id, Segment.name)).all())
    checked = []
    for target, goal in targets:
        segment = segments.get(target.segment_id, "") if target.segment_id else ""
        value = by_segment.get(segment) if segment else overall
        value = None if value is None or pd.isna(value) else float(value)
        checked.append(
            {
                "goal": goal.name,
                "segment": segment,
                "target": target.target_value,
                "value": value,
                "status": target_status(value, target.target_value, target.direction),
            }
        )
    return checked


def evaluate_alerts(
    session: Session, *, as_of: date, drop_threshold: float = RETENTION_DROP_THRESHOLD, trend_months: int = TREND_MONTHS
) -> AlertEvaluation:
    """The alerts for the month evaluated as of the end of ``as_of`` (nothing is written).

    KPI targets are read through :func:`loyalty.program.goals.goal_status` from the stored KPI
    snapshots (the kpi-snapshot job runs first); retention is computed from purchases.
    """
    month_start, month_end = evaluated_month(as_of)
    alert_day = month_end - timedelta(days=1)
    evaluation = AlertEvaluation(as_of=alert_day, month_start=month_start)
    month = _month_name(month_start)

    retention = monthly_retention(session, add_months(month_start, -trend_months), month_end)
    evaluation.retention = retention
    latest = retention.iloc[-1]
    if not pd.isna(latest):
        missed = [t for t in _retention_targets(session, month_start, month_end, float(latest)) if t["status"] in ("at risk", "off track")]
        if missed:
            parts = [
                f"{'in segment ' + repr(t['segment']) + ' ' if t['segment'] else ''}it was {_share(t['value'])}, below the "
                f"{_share(t['target'])} target of goal {t['goal']!r} ({t['status']})"
                for t in missed
            ]
            evaluation.alerts.append(
                AlertDraft(
                    "retention_below_target",
                    "critical" if any(t["status"] == "off track" for t in missed) else "warning",
                    "retention_rate",
                    f"Retention of existing members in {month}: " + "; ".join(parts) + ".",
                    alert_day,
                )
            )
        before = retention.iloc[:-1]
        if len(before) == trend_months and before.notna().all():
            average = float(before.mean())
            if latest < average - drop_threshold:
                evaluation.alerts.append(
                    AlertDraft(
                        "retention_below_trend",
                        "warning",
                        "retention_rate",
                        f"Retention of existing members fell to {_share(latest)} in {month}, {100 * (average - latest):.1f} points "
                        f"below its average of {_share(average)} over the previous {trend_months} months "
                        f"({_month_name(before.index[0])} to {_month_name(before.index[-1])}).",
                        alert_day,
                    )
                )

    # KPI targets turning off track, from the snapshots of this month (and quarter, in its last month).
    quarter_start, quarter_end = period_bounds("quarter", month_start)
    expected = {"month": month_start}
    if quarter_end == month_end:
        expected["quarter"] = quarter_start
    status = goal_status(session)
    currency = get_settings(session).currency
    turned: dict[str, list[str]] = {}
    for row in status.itertuples(index=False):
        if row.metric == "retention_rate" or expected.get(row.period) != row.period_start or row.status != "off track":
            continue
        previous = row.trend[-2] if len(row.trend) >= 2 else None
        before = target_status(previous, row.target, row.direction) if previous is not None else "no data"
        if before == "off track":
            continue
        metric = METRICS.get(row.metric)
        shown = metric.display(previous, currency) if metric and previous is not None else "no value"
        where = f" for segment {row.segment!r}" if row.segment else ""
        turned.setdefault(row.metric, []).append(
            f"{row.value_text} against a target of {row.target_text}{where} (goal {row.goal!r}, "
            f"{'quarter' if row.period == 'quarter' else 'month'}); before: {shown}, {before}"
        )
    for metric_name, parts in turned.items():
        label = METRICS[metric_name].label if metric_name in METRICS else metric_name
        evaluation.alerts.append(
            AlertDraft("kpi_off_track", "critical", metric_name, f"{label} turned off track in {month}: " + "; ".join(parts) + ".", alert_day)
        )
    return evaluation


def store_alerts(session: Session, evaluation: AlertEvaluation) -> int:
    """Replace the alerts of ``evaluation.as_of`` (every kind of :data:`ALERT_KINDS`); one transaction.

    An acknowledgement of a replaced alert with the same kind and metric is kept.
    """
    with write_transaction(session):
        acknowledged = {
            (a.kind, a.metric): a.acknowledged_by
            for a in session.exec(select(Alert).where(Alert.as_of == evaluation.as_of, col(Alert.kind).in_(ALERT_KINDS)))
            if a.acknowledged_by
        }
        session.execute(delete(Alert).where(col(Alert.as_of) == evaluation.as_of, col(Alert.kind).in_(ALERT_KINDS)))
        now = utcnow()
        for draft in evaluation.alerts:
            session.add(
                Alert(
                    kind=draft.kind,
                    severity=draft.severity,
                    metric=draft.metric,
                    message=draft.message[:4000],
                    as_of=draft.as_of,
                    created_at=now,
                    acknowledged_by=acknowledged.get((draft.kind, draft.metric), ""),
                )
            )
        session.flush()
    return len(evaluation.alerts)


def list_alerts(
    session: Session, *, since: date | None = None, until: date | None = None, include_acknowledged: bool = True, limit: int = 100
) -> pd.DataFrame:
    """Alerts newest first (critical before warning on the same day), for the Overview page and reports.

    ``since``/``until`` bound ``as_of`` (``until`` exclusive).
    """
    query = select(Alert).order_by(col(Alert.as_of).desc(), col(Alert.id).desc()).limit(limit)
    if since is not None:
        query = query.where(Alert.as_of >= since)
    if until is not None:
        query = query.where(Alert.as_of < until)
    if not include_acknowledged:
        query = query.where(Alert.acknowledged_by == "")
    columns = ["id", "kind", "severity", "metric", "message", "as_of", "created_at", "acknowledged_by"]
    frame = pd.DataFrame([{c: getattr(a, c) for c in columns} for a in session.exec(query)], columns=columns)
    if frame.empty:
        return frame
    frame["_order"] = frame["severity"].map(_SEVERITY_ORDER).fillna(9)
    return frame.sort_values(["as_of", "_order", "id"], ascending=[False, True, False], ignore_index=True).drop(columns="_order")


def acknowledge_alert(*, session: Session, alert_id: int, actor: Actor) -> Alert:
    """Mark an alert as seen by ``actor`` (managers and admins), audited."""
    require(actor, "evaluations.run")
    with write_transaction(session):
        alert = session.get(Alert, alert_id)
        if alert is None:
            raise NotFound(f"No alert with id {alert_id}.")
        alert.acknowledged_by = actor.username
        session.add(alert)
        record_audit(
            session,
            actor=actor,
            action="alert.acknowledge",
            entity="alert",
            entity_id=alert_id,
            after={"kind": alert.kind, "metric": alert.metric, "as_of": alert.as_of.isoformat()},
        )
    return alert
