"""The scheduled evaluations: what each job does, how a run is recorded, and how to run one.

Jobs
----
==================  ===============  =========================================================
name                default (UTC)    what one run as of day ``D`` does
==================  ===============  =========================================================
points-expiry       daily 01:00      expires every lot past its date at the end of ``D``; webhooks:
                                     ``points.expiring`` for points expiring within 30 days
tier-evaluation     daily 02:00      moves members between tiers (upgrades at once, downgrades
                                     after the tier's grace period) with a reason per move
kpi-snapshot        daily 03:00      stores the KPI catalogue, overall and by segment, tier and
                                     channel, for the last complete month and quarter at the
                                     end of ``D`` and for the month to date (period ``mtd``)
campaign-evaluation daily 04:00      uplift of treatment over holdout per campaign, with 95 %
                                     confidence intervals, points cost, revenue per point
retention-alert     daily 05:00      alerts when retention falls below target or trend, and
                                     when a KPI target turns off track
liability-forecast  monthly 1st      forecasts points earned, redeemed, expired and outstanding
                    05:30            for the 12 months after ``D`` with a band, and stores it
                                     with the 12 months before (``loyalty.decisions.forecast``)
executive-report    monthly 1st      the report of the last complete month, HTML and PDF,
                    06:00            stored (and e-mailed when SMTP is configured)
==================  ===============  =========================================================

``executive-report-weekly`` (Mondays 06:30, the last complete ISO week) is scheduled
only when the program setting ``weekly_report`` is true.

As-of dates
-----------
A run is *as of* a UTC day ``D`` and sees the program as it stood at the end of that
day (the *cutoff*, ``D + 1`` at 00:00 UTC). The default ``D`` is yesterday: the last
complete day, so a run at 03:00 never sees half a day. ``D`` cannot be in the future.

Runs
----
Every run writes a :class:`~db.models.JobRun` row first, in its own short transaction,
so the record survives whatever happens to the job; then the job computes (reads only,
reporting progress) and writes all its results in **one** transaction: a failure, or a
process killed mid-way, leaves nothing half-written. Each job replaces the results it
wrote for the same as-of date (or period) rather than adding to them, so a re-run never
duplicates. Writes of one job are serialised across processes (SQLite's writer lock;
a PostgreSQL advisory lock per job), so a "run now" from the page and the worker's run
cannot interleave.

The scheduler calls the top-level functions :func:`kpi_snapshot` and friends by their
import path (``"loyalty.evaluation.jobs:kpi_snapshot"``); they act as ``system:scheduler`` on the
database named by ``LOYALTY_DATABASE_URL``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, update
from sqlmodel import Session, col, select

from db.engine import get_engine, new_session, write_transaction
from db.models import JobRun, stored_id, utcnow
from loyalty import periods
from loyalty.access.roles import SYSTEM_SCHEDULER, Actor, require
from loyalty.errors import InvalidInput
from loyalty.evaluation.runs import ProgressFn, hold_job_lock
from loyalty.periods import cutoff_of

__all__ = [
    "JOBS",
    "JOB_ORDER",
    "STALE_RUN_AFTER",
    "JobContext",
    "JobSpec",
    "ProgressFn",
    "campaign_evaluation",
    "cutoff_of",
    "executive_report",
    "executive_report_weekly",
    "job_history",
    "job_runs",
    "kpi_snapshot",
    "liability_forecast",
    "mark_interrupted_runs",
    "points_expiry",
    "retention_alert",
    "run_all",
    "run_job",
    "tier_evaluation",
]

logger = logging.getLogger(__name__)

# A run beats every RUN_HEARTBEAT_S while it runs. It died with its process (killed, machine
# restarted) when its process is gone from this host, or when it has not beaten for RUN_LEASE
# (its process is on another host); STALE_RUN_AFTER after its start is the last resort.
RUN_HEARTBEAT_S = 15.0
RUN_LEASE = timedelta(minutes=2)
STALE_RUN_AFTER = timedelta(hours=6)
# The page polls JobRun.progress; more than a couple of writes a second is noise.
PROGRESS_MIN_INTERVAL_S = 0.5
ERROR_MAX_CHARS = 2000
# pg_advisory_xact_lock(schema hash, job hash): one writer per job and schema.


@dataclass(frozen=True)
class JobContext:
    """What a job body gets: its own session, the as-of day, and a progress reporter."""

    session: Session
    as_of: date
    cutoff: datetime
    actor: Actor
    progress: ProgressFn
    backfill: bool = False  # kpi-snapshot: recompute every past month too


@dataclass(frozen=True)
class JobSpec:
    """One job: its name, what the scheduler calls, its default schedule and its body."""

    name: str
    title: str
    func_ref: str
    cron: str
    description: str
    body: Callable[[JobContext], dict[str, Any]]
    optional: bool = False


# --- as-of dates ---------------------------------------------------------------------------


def _resolve_as_of(as_of: date | None) -> date:
    if as_of is None:
        return periods.default_as_of(utcnow())  # yesterday in UTC: the last complete day
    if isinstance(as_of, datetime):
        as_of = as_of.astimezone(UTC).date()
    if not isinstance(as_of, date):
        raise InvalidInput(f"The as-of date must be a day (YYYY-MM-DD), not {as_of!r}.")
    today = utcnow().date()
    if as_of > today:
        raise InvalidInput(f"The as-of date {as_of} is in the future (today is {today} UTC): jobs evaluate what has happened.")
    return as_of


# --- the job bodies --------------------------------------------------------------------------
# Each reads and computes first (reporting progress), then writes in one transaction.


def _points_expiry_body(ctx: JobContext) -> dict[str, Any]:
    from sqlalchemy import func

    from db.models import LedgerEntry
    from loyalty.ledger.entries import EXPIRE, expire_points
    from loyalty.ledger.outbox import emit_points_expiring

    # A run as of today must not date expiry entries in the future: a balance is the
    # sum of all entries, so a future-dated entry would take points away already now.
    moment = min(ctx.cutoff, utcnow().replace(microsecond=0))
    ctx.progress(0.1, "expiring lots past their date")
    with write_transaction(ctx.session):
        hold_job_lock(ctx.session, "points-expiry")
        # Expiry entries at this moment, before and after: the difference is this run's
        # (bulk rows are stored to the second, hence a range rather than equality).
        expired_at_moment = select(func.coalesce(func.sum(LedgerEntry.points), 0)).where(
            LedgerEntry.kind == EXPIRE,
            LedgerEntry.occurred_at >= moment - timedelta(seconds=1),
            LedgerEntry.occurred_at < moment + timedelta(seconds=1),
        )
        before = int(ctx.session.exec(expired_at_moment).one())
        # Nothing written yet in this transaction (the read above only reads), so the
        # ledger can be read as last committed, outside this connection.
        members = expire_points(session=ctx.session, as_of=moment, actor=ctx.actor, read_last_commit=True)
        points = before - int(ctx.session.exec(expired_at_moment).one())
        # Webhooks: points that expire within 30 days, once per member and expiry day.
        expiring = emit_points_expiring(ctx.session, after=moment)
    # The API's idempotency answers are kept 24 hours; older ones only take room.
    from loyalty.integrations.idempotency import purge_expired

    purged = purge_expired(ctx.session)
    return {
        "rows": members,
        "members": members,
        "points_expired": points,
        "moment": moment.isoformat(),
        "expiring_events": expiring,
        "idempotency_answers_purged": purged,
    }


def _kpi_snapshot_body(ctx: JobContext) -> dict[str, Any]:
    from loyalty.evaluation.kpis import history_periods, kpi_snapshot_frames, snapshot_periods, store_kpi_snapshots, target_status_counts

    periods = snapshot_periods(ctx.as_of)
    history = history_periods(ctx.session, ctx.as_of, every=ctx.backfill)
    ctx.progress(0.0, "reading purchases, members, answers and the points ledger")
    from loyalty.insights.overview import program_snapshot_frame, store_program_snapshot

    program: list = []
    frames = kpi_snapshot_frames(
        ctx.session,
        periods,
        progress=ctx.progress,
        loaded=lambda purchases, entries: program.append(program_snapshot_frame(purchases, entries, as_of=ctx.as_of)),
    )
    past: list = []
    if history:  # past months without a snapshot (or all of them, --backfill): overall only

        def back(fraction: float, message: str) -> None:
            ctx.progress(0.8 + 0.1 * fraction, f"history: {message}")

        past = kpi_snapshot_frames(ctx.session, history, dimensions=(None,), progress=back)
    if not program:  # the Spark engine summed the large tables itself: the Overview's numbers read them here
        from loyalty.analytics.data import load_ledger_entries, load_purchases
        from loyalty.analytics.reader import analytics_reader

        reader = analytics_reader(ctx.session)
        end = max(period_end for _, _, period_end in periods)  # what the default engine reads for both
        purchases = load_purchases(ctx.session, end=end, reader=reader)
        program.append(program_snapshot_frame(purchases, load_ledger_entries(ctx.session, end, reader=reader), as_of=ctx.as_of))
    ctx.progress(0.9, "storing the snapshots")
    with write_transaction(ctx.session):
        hold_job_lock(ctx.session, "kpi-snapshot")
        rows = store_kpi_snapshots(ctx.session, frames, current_month=periods[0][2], history=past)
        rows += store_program_snapshot(ctx.session, program[0])
    return {
        "rows": rows,
        "periods": [{"period": p, "start": s.isoformat(), "end": e.isoformat()} for p, s, e in periods],
        "history_periods": len(history),
        "targets": target_status_counts(ctx.session),
    }


def _tier_evaluation_body(ctx: JobContext) -> dict[str, Any]:
    from loyalty.evaluation.tiers import evaluate_tiers

    return evaluate_tiers(ctx.session, as_of=ctx.as_of, progress=ctx.progress)


def _campaign_evaluation_body(ctx: JobContext) -> dict[str, Any]:
    from loyalty.insights.campaign_results import evaluate_campaigns, store_campaign_results

    ctx.progress(0.1, "comparing treatment and holdout")
    results = evaluate_campaigns(ctx.session, cutoff=ctx.cutoff)
    ctx.progress(0.8, "storing the results")
    with write_transaction(ctx.session):
        hold_job_lock(ctx.session, "campaign-evaluation")
        rows = store_campaign_results(ctx.session, results)
    return {"rows": rows, "campaigns": len(results)}


def _retention_alert_body(ctx: JobContext) -> dict[str, Any]:
    from loyalty.evaluation.alerts import evaluate_alerts, store_alerts

    ctx.progress(0.1, "checking retention and KPI targets")
    evaluation = evaluate_alerts(ctx.session, as_of=ctx.as_of)
    ctx.progress(0.8, "storing the alerts")
    with write_transaction(ctx.session):
        hold_job_lock(ctx.session, "retention-alert")
        rows = store_alerts(ctx.session, evaluation)
    return {
        "rows": rows,
        "alerts": [{"kind": a.kind, "metric": a.metric, "severity": a.severity} for a in evaluation.alerts],
        "alerts_as_of": evaluation.as_of,
        "month": evaluation.month_start.strftime("%Y-%m"),
    }


def _member_messages_body(ctx: JobContext) -> dict[str, Any]:
    from loyalty.engagement.messages import queue_messages, send_queued

    ctx.progress(0.1, "queueing reminders, tier news, challenges and offers")
    # The job's session has written nothing yet: the expiring points are read as last committed.
    queued = queue_messages(ctx.session, now=min(ctx.cutoff, utcnow()), read_last_commit=True)
    ctx.progress(0.6, "sending e-mail")
    sent = send_queued(ctx.session)
    return {
        "rows": queued["queued"] + queued["suppressed"],
        **queued,
        "sent": sent["sent"],
        "failed": sent["failed"],
        "suppressed_at_sending": sent["suppressed"],
    }


def _liability_forecast_body(ctx: JobContext) -> dict[str, Any]:
    from loyalty.decisions.forecast import forecast_liability, store_forecast

    ctx.progress(0.1, "forecasting earning, redemption and expiry")
    forecast = forecast_liability(ctx.session, ctx.as_of)
    ctx.progress(0.8, "storing the forecast")
    with write_transaction(ctx.session):
        hold_job_lock(ctx.session, "liability-forecast")
        rows = store_forecast(ctx.session, forecast=forecast)
    end = forecast.frame[(forecast.frame["kind"] == "forecast") & (forecast.frame["measure"] == "outstanding")].iloc[-1]
    return {
        "rows": rows,
        "model": forecast.model,
        "members": forecast.members,
        "outstanding_now": round(forecast.outstanding_now),
        "outstanding_in_12_months": round(float(end["points"])),
        "breakage": forecast.details["horizon_breakage"],
    }


def _page_views_body(ctx: JobContext) -> dict[str, Any]:
    from loyalty.evaluation.views import compute_page_views, save_page_views

    # The pages' default filters end with the last complete month as of the day after as_of
    # (the day the pages are read), whatever the clock says when a past day is evaluated.
    now = datetime.combine(ctx.as_of + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    rows = compute_page_views(ctx.session, now=now, as_of=ctx.as_of, progress=ctx.progress)
    ctx.progress(0.95, "storing the views")
    with write_transaction(ctx.session):
        hold_job_lock(ctx.session, "page-views")
        return save_page_views(ctx.session, rows)


def _report_body(ctx: JobContext, cadence: str) -> dict[str, Any]:
    from loyalty.evaluation.reports import (
        last_complete_period,
        render_html,
        render_pdf,
        report_content,
        report_figures,
        send_report_email,
        smtp_settings,
        store_report,
    )

    period = last_complete_period(ctx.as_of, cadence)
    ctx.progress(0.05, f"computing the {cadence} report {period}")
    content = report_content(ctx.session, period)
    figures = report_figures(content)
    ctx.progress(0.3, "rendering HTML")
    html = render_html(content, figures)
    ctx.progress(0.4, "rendering PDF (charts drawn by matplotlib)")
    pdf = render_pdf(content, figures)
    ctx.progress(0.9, "storing the report")
    with write_transaction(ctx.session):
        hold_job_lock(ctx.session, f"executive-report-{cadence}")
        store_report(ctx.session, period=period, fmt="html", content=html, title=content.title)
        store_report(ctx.session, period=period, fmt="pdf", content=pdf, title=content.title)
    summary: dict[str, Any] = {"rows": 2, "period": period, "html_bytes": len(html), "pdf_bytes": len(pdf), "emailed_to": []}
    settings = smtp_settings()
    if settings is not None:
        # After the commit: the stored report stands even if the mail server is down
        # (the run is then marked failed with the delivery error).
        summary["emailed_to"] = send_report_email(settings, title=content.title, pdf=pdf, period=period, summary=content.summary)
    return summary


def _executive_report_body(ctx: JobContext) -> dict[str, Any]:
    return _report_body(ctx, "monthly")


def _executive_report_weekly_body(ctx: JobContext) -> dict[str, Any]:
    return _report_body(ctx, "weekly")


JOBS: dict[str, JobSpec] = {
    spec.name: spec
    for spec in (
        JobSpec(
            "points-expiry",
            "Points expiry",
            "loyalty.evaluation.jobs:points_expiry",
            "0 1 * * *",
            "Expires the points of every lot past its expiry date.",
            _points_expiry_body,
        ),
        JobSpec(
            "tier-evaluation",
            "Tier evaluation",
            "loyalty.evaluation.jobs:tier_evaluation",
            "0 2 * * *",
            "Moves members between tiers by spend and purchases over each tier's window; downgrades wait for the tier's grace period.",
            _tier_evaluation_body,
        ),
        JobSpec(
            "kpi-snapshot",
            "KPI snapshot",
            "loyalty.evaluation.jobs:kpi_snapshot",
            "0 3 * * *",
            "Stores every KPI for the last complete month and quarter and the month to date, "
            "overall and by segment, tier and channel; goal status reads them.",
            _kpi_snapshot_body,
        ),
        JobSpec(
            "campaign-evaluation",
            "Campaign evaluation",
            "loyalty.evaluation.jobs:campaign_evaluation",
            "0 4 * * *",
            "Uplift of each campaign's treatment group over its holdout, with confidence intervals, points cost and incremental revenue per point.",
            _campaign_evaluation_body,
        ),
        JobSpec(
            "retention-alert",
            "Retention alert",
            "loyalty.evaluation.jobs:retention_alert",
            "0 5 * * *",
            "Alerts when retention falls below its target or recent trend, and when a KPI target turns off track.",
            _retention_alert_body,
        ),
        JobSpec(
            "liability-forecast",
            "Liability forecast",
            "loyalty.evaluation.jobs:liability_forecast",
            "30 5 1 * *",
            "Forecasts points earned, redeemed, expired and outstanding (liability) for the next 12 months "
            "with a band, and stores it for the Redemptions page and the executive report.",
            _liability_forecast_body,
        ),
        JobSpec(
            "page-views",
            "Page views",
            "loyalty.evaluation.jobs:page_views",
            "45 5 * * *",
            "Computes what the Retention, Lifetime value, Purchase cycle, Redemptions, Segments, Tiers, Rewards and Win-back pages "
            "show for their default filters and stores it, so they open without scanning the purchases and the ledger.",
            _page_views_body,
        ),
        JobSpec(
            "executive-report",
            "Executive report",
            "loyalty.evaluation.jobs:executive_report",
            "0 6 1 * *",
            "Renders the report of the last complete month (HTML and PDF), stores it and e-mails it when SMTP is configured.",
            _executive_report_body,
        ),
        JobSpec(
            "member-messages",
            "Member messages",
            "loyalty.evaluation.jobs:member_messages",
            "0 7 * * *",
            "Queues reminders of points expiring within 30 days, tier news, completed challenges and campaign offers "
            "(with consent, under the monthly cap) and e-mails them when SMTP is configured.",
            _member_messages_body,
        ),
        JobSpec(
            "executive-report-weekly",
            "Weekly executive report",
            "loyalty.evaluation.jobs:executive_report_weekly",
            "30 6 * * mon",
            "The same report for the last complete week (when weekly reports are on).",
            _executive_report_weekly_body,
            optional=True,
        ),
    )
}
# `evaluate --job all`: the order of the default schedule, so expiry lands before the
# KPIs that count points, the KPIs split by tier see the tiers of the day (a second run
# of the evaluation then changes no stored KPI), the alerts read the fresh snapshots and
# the report the fresh forecast.
JOB_ORDER: tuple[str, ...] = (
    "points-expiry",
    "tier-evaluation",
    "kpi-snapshot",
    "campaign-evaluation",
    "retention-alert",
    "liability-forecast",
    "page-views",
    "executive-report",
    "member-messages",
)


# --- recording runs ------------------------------------------------------------------------------


class _ProgressReporter:
    """Passes progress to the caller and, throttled, to the run's JobRun row.

    The row is written on its own connection. A job never reports progress while it
    holds its write transaction (on SQLite that connection would wait for the job's own
    lock); the guard below keeps it so even if one did.
    """

    def __init__(self, engine: Engine, run_id: int, callback: ProgressFn | None) -> None:
        self.engine, self.run_id, self.callback = engine, run_id, callback
        self.session: Session | None = None
        self._last_write = 0.0

    def __call__(self, fraction: float, message: str = "") -> None:
        fraction = min(max(float(fraction), 0.0), 1.0)
        if self.callback is not None:
            self.callback(fraction, message)
        now = time.monotonic()
        if now - self._last_write < PROGRESS_MIN_INTERVAL_S and fraction < 1.0:
            return
        if self.session is not None and self.session.info.get("loyalty_in_write_transaction"):
            return
        self._last_write = now
        try:
            with self.engine.begin() as connection:
                connection.execute(update(JobRun).where(col(JobRun.id) == self.run_id).values(progress=fraction))
        except Exception:  # progress is cosmetic: never fail a job over it
            logger.warning("could not record the progress of run %s", self.run_id, exc_info=True)


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:120]


class _Heartbeat:
    """Renews the run's ``heartbeat_at`` every :data:`RUN_HEARTBEAT_S` on its own connection, until stopped.

    On SQLite a beat waits while the job holds the write lock and may miss; a run there is
    judged by its process (same host), not by its beat.
    """

    def __init__(self, engine: Engine, run_id: int) -> None:
        self.engine, self.run_id = engine, run_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"job-run-{run_id}-heartbeat", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _beat(self) -> None:
        while not self._stop.wait(RUN_HEARTBEAT_S):
            try:
                with self.engine.begin() as connection:
                    connection.execute(update(JobRun).where(col(JobRun.id) == self.run_id).values(heartbeat_at=utcnow()))
            except Exception:  # a missed beat is no failure of the job
                logger.debug("missed a heartbeat of run %s", self.run_id, exc_info=True)


def _start_run(engine: Engine, name: str, as_of: date) -> JobRun:
    with new_session(engine) as session:
        now = utcnow()
        run = JobRun(job=name, as_of=as_of, status="running", started_at=now, owner=_owner(), heartbeat_at=now)
        session.add(run)
        session.commit()
        return run


def _finish_run(engine: Engine, run_id: int, *, status: str, rows: int, error: str) -> datetime:
    finished = utcnow()
    with new_session(engine) as session:
        session.execute(
            update(JobRun)
            .where(col(JobRun.id) == run_id)
            .values(
                status=status,
                finished_at=finished,
                rows=int(rows),
                error=error[:ERROR_MAX_CHARS],
                progress=1.0 if status == "succeeded" else JobRun.progress,
            )
        )
        session.commit()
    return finished


def _error_text(exc: BaseException) -> str:
    message = str(exc).strip()
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _iso(value: date | datetime | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.isoformat()


def _jsonable(value: Any) -> Any:
    """Numpy scalars and dates in a job's summary, as plain JSON values."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (date, datetime)):
        return _iso(value)
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


# --- running -------------------------------------------------------------------------------------


def run_job(
    name: str,
    *,
    as_of: date | None = None,
    actor: Actor = SYSTEM_SCHEDULER,
    progress: ProgressFn | None = None,
    engine: Engine | None = None,
    backfill: bool = False,
) -> dict[str, Any]:
    """Run job ``name`` once as of ``as_of`` (default yesterday, UTC) and record the run.

    Parameters
    ----------
    name
        A key of :data:`JOBS` (``kpi-snapshot``, ``tier-evaluation``...).
    as_of
        The UTC day whose end the job evaluates; not in the future.
    actor
        Who runs it; needs ``evaluations.run`` (admin, manager; the scheduler and CLI are admin).
    progress
        Called with ``(fraction 0-1, message)`` as the job goes; the run's JobRun row
        gets the fraction too.
    backfill
        ``kpi-snapshot`` only: recompute the overall snapshot of every past month and
        quarter, not only those without one.

    Returns
    -------
    dict
        ``{"job", "as_of", "status", "rows", "run_id", "started_at", "finished_at",
        "error", ...}`` plus what the job reports (``upgrades``, ``periods``...), all
        JSON-ready. A failed job returns ``status="failed"`` and its ``error`` (nothing
        it computed was stored); an unknown job, a future date or a missing permission
        raise before anything is recorded.
    """
    spec = JOBS.get(name)
    if spec is None:
        raise InvalidInput(f"Unknown job {name!r}; choose one of {', '.join(JOBS)} (or all).")
    require(actor, "evaluations.run")
    if backfill and name != "kpi-snapshot":
        raise InvalidInput(f"--backfill applies to the kpi-snapshot job only, not {name}.")
    as_of = _resolve_as_of(as_of)
    engine = engine or get_engine()
    run = _start_run(engine, name, as_of)
    assert run.id is not None
    reporter = _ProgressReporter(engine, run.id, progress)
    result: dict[str, Any] = {}
    status, error = "failed", ""
    try:
        with _Heartbeat(engine, run.id), new_session(engine) as session:
            reporter.session = session
            result = spec.body(JobContext(session=session, as_of=as_of, cutoff=cutoff_of(as_of), actor=actor, progress=reporter, backfill=backfill))
        status = "succeeded"
    except Exception as exc:
        logger.exception("job %s as of %s failed", name, as_of)
        error = _error_text(exc)
    except BaseException as exc:  # Ctrl-C, SystemExit: record it, then let it stop the process
        _finish_run(engine, run.id, status="failed", rows=0, error=f"interrupted ({_error_text(exc)})")
        raise
    rows = int(result.get("rows", 0)) if status == "succeeded" else 0
    finished = _finish_run(engine, run.id, status=status, rows=rows, error=error)
    if status == "succeeded" and progress is not None:
        progress(1.0, "done")
    extras = {k: v for k, v in result.items() if k != "rows"}
    return _jsonable(
        {
            "job": name,
            "as_of": as_of,
            "status": status,
            "rows": rows,
            "run_id": run.id,
            "started_at": run.started_at,
            "finished_at": finished,
            "error": error,
            **extras,
        }
    )


def run_all(
    *, as_of: date | None = None, actor: Actor = SYSTEM_SCHEDULER, progress: ProgressFn | None = None, engine: Engine | None = None
) -> list[dict[str, Any]]:
    """Run every job of :data:`JOB_ORDER` once, in order; one failure does not stop the rest.

    ``progress`` sees the overall fraction across the jobs and ``"job: message"``.
    """
    require(actor, "evaluations.run")
    as_of = _resolve_as_of(as_of)
    summaries = []
    for i, name in enumerate(JOB_ORDER):

        def scaled(fraction: float, message: str, i: int = i, name: str = name) -> None:
            if progress is not None:
                progress((i + fraction) / len(JOB_ORDER), f"{name}: {message}")

        summaries.append(run_job(name, as_of=as_of, actor=actor, progress=scaled, engine=engine))
    return summaries


def mark_interrupted_runs(engine: Engine | None = None, *, older_than: timedelta = STALE_RUN_AFTER, lease: timedelta = RUN_LEASE) -> int:
    """Mark runs left ``running`` by a process that died as failed; returns how many.

    A run is dead when its process (``owner`` = host:pid) is gone from this host, when its
    process is on another host and it has not beaten for ``lease``, or when it started
    more than ``older_than`` ago. Nothing a dead run computed was stored (one transaction).
    """
    engine = engine or get_engine()
    now, host = utcnow(), socket.gethostname()
    with new_session(engine) as session:
        running = session.exec(select(JobRun).where(col(JobRun.status) == "running")).all()
        dead: dict[int, str] = {}
        for run in running:
            owner_host, _, pid = run.owner.rpartition(":")
            beat = run.heartbeat_at or run.started_at
            if owner_host == host and pid.isdigit() and not _process_alive(int(pid)):
                dead[stored_id(run)] = f"interrupted: its process ({run.owner}) stopped before it finished"
            elif owner_host and owner_host != host and _aware(beat) < now - lease:
                dead[stored_id(run)] = f"interrupted: no sign of life from {run.owner} for over {lease} (its process stopped)"
            elif _aware(run.started_at) < now - older_than:
                dead[stored_id(run)] = f"interrupted: no result {older_than} after it started (its process stopped)"
        for run_id, why in dead.items():
            session.execute(
                update(JobRun).where(col(JobRun.id) == run_id, col(JobRun.status) == "running").values(status="failed", finished_at=now, error=why)
            )
        session.commit()
    return len(dead)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def job_history(session: Session, limit: int = 50, *, job: str | None = None) -> list[dict[str, Any]]:
    """The latest runs, newest first: ``jobs history --json``.

    Each run is ``{"job", "as_of", "status", "started_at", "finished_at", "rows",
    "error"}`` with ISO dates (``None`` while running).
    """
    query = select(JobRun).order_by(col(JobRun.started_at).desc(), col(JobRun.id).desc()).limit(limit)
    if job:
        query = query.where(JobRun.job == job)
    return [
        {
            "job": r.job,
            "as_of": _iso(r.as_of),
            "status": r.status,
            "started_at": _iso(r.started_at),
            "finished_at": _iso(r.finished_at),
            "rows": r.rows,
            "error": r.error,
        }
        for r in session.exec(query)
    ]


def job_runs(session: Session, limit: int = 200, *, job: str | None = None) -> list[dict[str, Any]]:
    """The latest runs for the Jobs page: :func:`job_history` plus id, progress and duration in seconds."""
    query = select(JobRun).order_by(col(JobRun.started_at).desc(), col(JobRun.id).desc()).limit(limit)
    if job:
        query = query.where(JobRun.job == job)
    runs = []
    for r in session.exec(query):
        end = r.finished_at
        runs.append(
            {
                "id": r.id,
                "job": r.job,
                "as_of": r.as_of,
                "status": r.status,
                "started_at": r.started_at,
                "finished_at": end,
                "rows": r.rows,
                "error": r.error,
                "progress": r.progress,
                "duration_s": (end - r.started_at).total_seconds() if end else None,
            }
        )
    return runs


# --- what the scheduler calls ----------------------------------------------------------------------


def points_expiry(as_of: date | None = None) -> dict[str, Any]:
    return run_job("points-expiry", as_of=as_of)


def kpi_snapshot(as_of: date | None = None) -> dict[str, Any]:
    return run_job("kpi-snapshot", as_of=as_of)


def tier_evaluation(as_of: date | None = None) -> dict[str, Any]:
    return run_job("tier-evaluation", as_of=as_of)


def campaign_evaluation(as_of: date | None = None) -> dict[str, Any]:
    return run_job("campaign-evaluation", as_of=as_of)


def retention_alert(as_of: date | None = None) -> dict[str, Any]:
    return run_job("retention-alert", as_of=as_of)


def member_messages(as_of: date | None = None) -> dict[str, Any]:
    return run_job("member-messages", as_of=as_of)


def page_views(as_of: date | None = None) -> dict[str, Any]:
    return run_job("page-views", as_of=as_of)


def liability_forecast(as_of: date | None = None) -> dict[str, Any]:
    return run_job("liability-forecast", as_of=as_of)


def executive_report(as_of: date | None = None) -> dict[str, Any]:
    return run_job("executive-report", as_of=as_of)


def executive_report_weekly(as_of: date | None = None) -> dict[str, Any]:
    return run_job("executive-report-weekly", as_of=as_of)
