"""The worker: APScheduler 3.x running the jobs of :mod:`loyalty.evaluation.jobs` on their schedules.

One scheduler, one job store, one leader
----------------------------------------
* The job store is APScheduler's ``SQLAlchemyJobStore`` in the application database
  (table :data:`JOBSTORE_TABLE`, created by APScheduler on first use, on SQLite and
  PostgreSQL alike), UTC, ``coalesce=True``, ``max_instances=1``, one executor thread
  (catch-up runs queue in schedule order instead of fighting over SQLite's writer lock).
* ``misfire_grace_time=None`` (no limit): with coalescing, a worker that was down runs
  each missed job **once** when it comes back, however long it was down. A finite grace
  (say 6 h) would silently drop the catch-up of a daily job missed by more than that,
  and of the monthly report after a long weekend. Jobs evaluate "as of yesterday", so a
  late run is still the right run.
* Start-up: the scheduler starts paused, each default job is added only if
  ``get_job(id)`` is None (never ``replace_existing``, which resets ``next_run_time`` and
  drops the missed run, and would undo a schedule a user changed), then it resumes.
* **Lease.** Only the holder of the lease runs a scheduler. The lease is the
  ``program_setting`` row ``worker_lease``: ``updated_by`` = the holder's id,
  ``updated_at`` = its last renewal, ``value`` = details for people (host, pid, expiry).
  A worker takes it with one conditional ``UPDATE ... WHERE key = 'worker_lease' AND
  (updated_by = me OR updated_at < now - lease_seconds)`` (or the first ``INSERT``); the
  database makes exactly one of two racing workers win. The holder renews it every
  ``heartbeat_seconds``; a worker that cannot renew (another took it after it stalled)
  stops its scheduler at once. A second worker waits as standby, polling, and takes over
  when the holder stops (a clean stop releases the lease at once) or dies (after
  ``lease_seconds``). Clocks of the workers' hosts must agree (NTP).
* **Stopping.** A clean stop lets a running job finish for at most
  :data:`STOP_GRACE_SECONDS` (APScheduler's own ``shutdown(wait=True)`` would wait without
  limit), logs the jobs it gives up on, and the worker process then exits at once with
  status :data:`EXIT_JOBS_LEFT_RUNNING`; their transactions roll back and the next
  leader marks their runs interrupted.
* **Webhooks.** Beside the scheduler, every worker (leader or standby) runs a
  :class:`WebhookSender` thread: :func:`loyalty.integrations.webhooks.deliver_due` every
  :data:`WEBHOOK_POLL_SECONDS`. A stop waits for at most the request in flight (its time-out).

Editing schedules from another process
--------------------------------------
The Jobs page (another process) changes schedules directly in the job store through a
scheduler on the same store that has no thread and never processes jobs
(:func:`pause_job`, :func:`resume_job`, :func:`reschedule_job`), so the worker stays the
one scheduler executing. (A plain paused ``BackgroundScheduler`` will not do: APScheduler
3 processes due jobs once when it is shut down, which would use up a missed run.) Two
things make editing safe while the worker runs:

* both sides use :class:`GuardedJobStore`, whose ``update_job`` only writes if the row
  still holds the state it read (optimistic concurrency on the pickled job): the worker,
  which rewrites a job's next run time after submitting it, can never overwrite a
  change the page made in between (it keeps the page's version), and the page retries
  its edit on a fresh read if the worker wrote in between;
* the worker wakes its scheduler every heartbeat, so it re-reads the store and a new
  next run time (or a pause) takes effect within ``heartbeat_seconds``.

Schedules are crontab expressions in UTC (``minute hour day month day-of-week``, with
0 or 7 = Sunday as in crontab: APScheduler 3's own numbering, 0 = Monday, is translated).
"""

from __future__ import annotations

import itertools
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import ConflictingIdError, JobLookupError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_STOPPED, BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.util import datetime_to_utc_timestamp
from sqlalchemy import Engine, insert, update
from sqlalchemy.exc import IntegrityError

from db.engine import PROJECT_ROOT, get_engine, new_session, write_transaction
from db.models import ProgramSetting, utcnow
from loyalty.access.audit import record_audit
from loyalty.access.roles import Actor, require
from loyalty.errors import InvalidInput, NotFound
from loyalty.evaluation.jobs import JOBS, mark_interrupted_runs
from loyalty.integrations.webhooks import DELIVERY_TIMEOUT_SECONDS, deliver_due

__all__ = [
    "HEARTBEAT_SECONDS",
    "JOBSTORE_TABLE",
    "LEASE_KEY",
    "LEASE_SECONDS",
    "MISFIRE_GRACE_TIME",
    "PARENT_CHECK_SECONDS",
    "PARENT_PID_VARIABLE",
    "STOP_GRACE_SECONDS",
    "GuardedJobStore",
    "ScheduleConflict",
    "WEBHOOK_POLL_SECONDS",
    "WebhookSender",
    "Worker",
    "build_scheduler",
    "ensure_schedules",
    "exit_if_jobs_left_running",
    "list_schedules",
    "parse_cron",
    "pause_job",
    "preview_schedule",
    "release_lease",
    "reschedule_job",
    "resume_job",
    "run_worker",
    "scheduled_job_ids",
    "start_worker_process",
    "take_lease",
    "watch_parent",
    "worker_status",
]

logger = logging.getLogger(__name__)

# The app that started a worker names itself here; the worker stops when that process is gone.
PARENT_PID_VARIABLE = "LOYALTY_WORKER_PARENT_PID"
PARENT_CHECK_SECONDS = 2.0

JOBSTORE_TABLE = "apscheduler_jobs"
LEASE_KEY = "worker_lease"
LEASE_SECONDS = 60.0
HEARTBEAT_SECONDS = 5.0
# A clean stop lets a running job finish for this long, then stops without it (the next
# leader marks its run interrupted); the scheduler's own thread gets SCHEDULER_THREAD_STOP_SECONDS.
STOP_GRACE_SECONDS = 30.0
SCHEDULER_THREAD_STOP_SECONDS = 5.0
EXIT_JOBS_LEFT_RUNNING = 3
# None: no limit (see the module notes); coalescing makes it one catch-up run per job.
MISFIRE_GRACE_TIME: int | None = None
MIN_SCHEDULE_INTERVAL = timedelta(minutes=5)
EDIT_RETRIES = 3
# Webhooks: due deliveries are posted this often, by every worker (leader and standby alike:
# claims keep two workers off the same delivery), so an event goes out within seconds.
WEBHOOK_POLL_SECONDS = 2.0
_CRON_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_RELEASED = datetime(1970, 1, 1, tzinfo=UTC)
WEEKLY_REPORT_SETTING = "weekly_report"


class ScheduleConflict(RuntimeError):
    """The job changed in the store between reading and writing it."""


# --- the job store ---------------------------------------------------------------------------------


class GuardedJobStore(SQLAlchemyJobStore):
    """``SQLAlchemyJobStore`` on the app's engine with compare-and-set updates.

    ``update_job`` writes only if the row still holds the state this store last read
    for that job. On a conflict the worker's store (``on_conflict="keep_theirs"``) keeps
    the other writer's version; the editor's (``"raise"``) raises :class:`ScheduleConflict`
    so the edit is retried on a fresh read. The engine belongs to the app: shutting the
    store down does not dispose of it.
    """

    def __init__(self, engine: Engine, *, on_conflict: str = "keep_theirs") -> None:
        super().__init__(engine=engine, tablename=JOBSTORE_TABLE)
        self.on_conflict = on_conflict
        self._read: dict[str, bytes] = {}
        self._read_lock = threading.Lock()

    def _reconstitute_job(self, job_state: bytes) -> Any:
        job = super()._reconstitute_job(job_state)
        with self._read_lock:
            self._read[job.id] = job_state
        return job

    def update_job(self, job: Any) -> None:
        with self._read_lock:
            seen = self._read.pop(job.id, None)
        if seen is None:
            return super().update_job(job)
        state = pickle.dumps(job.__getstate__(), self.pickle_protocol)
        statement = (
            self.jobs_t.update()
            .values(next_run_time=datetime_to_utc_timestamp(job.next_run_time), job_state=state)
            .where(self.jobs_t.c.id == job.id, self.jobs_t.c.job_state == seen)
        )
        with self.engine.begin() as connection:
            if connection.execute(statement).rowcount == 1:
                with self._read_lock:
                    self._read[job.id] = state
                return
        if self.lookup_job(job.id) is None:
            raise JobLookupError(job.id)
        if self.on_conflict == "raise":
            raise ScheduleConflict(job.id)
        logger.info("job %s was changed by another process meanwhile; keeping that version", job.id)

    def shutdown(self) -> None:
        """Leave the shared engine alone (the base class disposes of it)."""


class _WorkerScheduler(BackgroundScheduler):
    """The worker's scheduler: never processes jobs once it is stopping.

    APScheduler 3 wakes its loop on ``shutdown()`` and processes due jobs once more with
    the executor already shut down: the submission fails, yet the job's next run time is
    advanced, so a due run would be lost. Checking the state under the job-store lock
    (which ``shutdown`` takes before stopping the executor) closes that.
    """

    def _process_jobs(self) -> float | None:
        with self._jobstores_lock:
            if self.state == STATE_STOPPED:
                return None
            return super()._process_jobs()

    def shutdown(self, wait: bool = True) -> None:
        """Stop; with ``wait``, let running jobs finish for at most :data:`STOP_GRACE_SECONDS`."""
        self.stop(grace_seconds=STOP_GRACE_SECONDS if wait else 0.0)

    def stop(self, *, grace_seconds: float) -> list[str]:
        """Stop the scheduler and wait at most ``grace_seconds`` for running jobs; the ids still running.

        APScheduler's own ``shutdown(wait=True)`` waits for a running job without limit, and
        its background thread is joined without limit even with ``wait=False``.
        """
        BlockingScheduler.shutdown(self, wait=False)  # stops the executors, wakes the loop; joins nothing
        self._thread.join(timeout=SCHEDULER_THREAD_STOP_SECONDS)
        if self._thread.is_alive():
            logger.error("the scheduler's thread did not stop within %.0f s; leaving it (a daemon thread)", SCHEDULER_THREAD_STOP_SECONDS)
        deadline = time.monotonic() + grace_seconds
        while (running := self.running_job_ids()) and time.monotonic() < deadline:
            time.sleep(0.05)
        if running:
            logger.error(
                "job(s) %s still running %.0f s after the stop: stopping without waiting for them; the "
                "next worker to lead marks their runs interrupted",
                ", ".join(running),
                grace_seconds,
            )
        return running

    def running_job_ids(self) -> list[str]:
        """The ids of the jobs this scheduler's executors are running now."""
        return sorted(
            {job_id for executor in self._executors.values() for job_id, count in list(getattr(executor, "_instances", {}).items()) if count}
        )


class _StoreEditor(BaseScheduler):
    """A scheduler without a thread that only reads and edits the job store.

    Used by the app process (the Jobs page): it never processes or runs a job, so the
    worker stays the only scheduler executing jobs from the store.
    """

    def wakeup(self) -> None:
        """Nothing to wake: this scheduler never runs jobs."""

    def _process_jobs(self) -> float | None:
        return None

    def shutdown(self, wait: bool = True) -> None:
        super().shutdown(wait)


_JOB_DEFAULTS = {"coalesce": True, "max_instances": 1, "misfire_grace_time": MISFIRE_GRACE_TIME}


def build_scheduler(engine: Engine | None = None, *, editor: bool = False) -> BaseScheduler:
    """A scheduler on the application database's job store, UTC, with the job defaults above.

    ``editor=True`` gives the thread-less store editor the app uses (start it with
    ``start(paused=True)``); otherwise the worker's background scheduler.
    """
    store = GuardedJobStore(engine or get_engine(), on_conflict="raise" if editor else "keep_theirs")
    if editor:
        return _StoreEditor(jobstores={"default": store}, job_defaults=_JOB_DEFAULTS, timezone=UTC)
    return _WorkerScheduler(
        jobstores={"default": store},
        # One thread: catch-up runs queue in schedule order (expiry before KPIs...).
        executors={"default": ThreadPoolExecutor(max_workers=1)},
        job_defaults=_JOB_DEFAULTS,
        timezone=UTC,
        daemon=True,
    )


def _weekly_reports_on(engine: Engine) -> bool:
    with new_session(engine) as session:
        row = session.get(ProgramSetting, WEEKLY_REPORT_SETTING)
        return bool(row and row.value)


def scheduled_job_ids(engine: Engine | None = None) -> list[str]:
    """The jobs the worker schedules: every job, the weekly report only when switched on."""
    weekly = _weekly_reports_on(engine or get_engine())
    return [name for name, spec in JOBS.items() if not spec.optional or weekly]


# Defaults of an earlier release that ran the KPI snapshot before the tier evaluation (a
# second run of the day then changed stored KPIs). A program that still has both exactly as
# shipped gets today's order; one that changed either keeps what its admin chose.
_FORMER_DEFAULTS = {"kpi-snapshot": "0 2 * * *", "tier-evaluation": "0 3 * * *"}


def _move_former_defaults(scheduler: BaseScheduler) -> list[str]:
    jobs = {name: scheduler.get_job(name) for name in _FORMER_DEFAULTS}
    as_shipped = all(
        job is not None and isinstance(job.trigger, CronTrigger) and _cron_text(job.trigger) == _cron_text(parse_cron(cron))
        for job, cron in zip(jobs.values(), _FORMER_DEFAULTS.values())
    )
    if not as_shipped:
        return []
    for name in _FORMER_DEFAULTS:
        scheduler.reschedule_job(name, trigger=parse_cron(JOBS[name].cron))
        logger.info("schedule of %s moved to today's default %s (it ran before the tier evaluation)", name, JOBS[name].cron)
    return list(_FORMER_DEFAULTS)


def ensure_schedules(scheduler: BaseScheduler, engine: Engine | None = None) -> list[str]:
    """Add each missing job with its default schedule; never touch an existing one.

    Returns the ids added. The optional weekly report is removed when switched off. The one
    exception: the KPI snapshot and tier evaluation still at an earlier release's defaults
    move to today's (see ``_FORMER_DEFAULTS``).
    """
    wanted = scheduled_job_ids(engine)
    _move_former_defaults(scheduler)
    added = []
    for name in wanted:
        if scheduler.get_job(name) is not None:
            continue
        spec = JOBS[name]
        try:
            scheduler.add_job(spec.func_ref, trigger=parse_cron(spec.cron), id=name, name=spec.title, replace_existing=False)
            added.append(name)
        except ConflictingIdError:  # another process added it a moment ago
            pass
    for name, spec in JOBS.items():
        if spec.optional and name not in wanted and scheduler.get_job(name) is not None:
            scheduler.remove_job(name)
    return added


# --- cron expressions -------------------------------------------------------------------------------


def _translate_day_of_week(field: str) -> str:
    """Crontab's day-of-week (0/7 = Sunday) as APScheduler 3 names (whose 0 is Monday)."""
    if field in ("*", "?"):
        return "*"
    days: list[str] = []
    for part in field.lower().split(","):
        body, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if body == "*":
            first, last = 0, 6
        elif "-" in body:
            low, high = body.split("-", 1)
            if not (low.isdigit() and high.isdigit()):
                if step_text:
                    raise InvalidInput(f"Use numbers for a stepped day-of-week range ({part!r}).")
                days.append(body)
                continue
            first, last = int(low), int(high)
        elif body.isdigit():
            first = last = int(body)
            if step_text:
                last = 6
        else:
            if step_text:
                raise InvalidInput(f"Use numbers for a stepped day of week ({part!r}).")
            days.append(body)
            continue
        if not (0 <= first <= 7 and 0 <= last <= 7) or first > last or step < 1:
            raise InvalidInput(f"Day of week {part!r} is not valid: use 0-7 (0 and 7 are Sunday) or mon..sun.")
        days.extend(_CRON_DAYS[d % 7] for d in range(first, last + 1, step))
    return ",".join(dict.fromkeys(days))


def parse_cron(expression: str) -> CronTrigger:
    """A UTC cron trigger from a crontab expression, or :class:`InvalidInput` saying what is wrong."""
    fields = (expression or "").split()
    if len(fields) != 5:
        raise InvalidInput(
            f"A schedule has 5 fields, minute hour day month day-of-week (e.g. '0 2 * * *' for 02:00 every day); got {len(fields)} in {expression!r}."
        )
    minute, hour, day, month, day_of_week = fields
    try:
        return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=_translate_day_of_week(day_of_week), timezone=UTC)
    except InvalidInput:
        raise
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"{expression!r} is not a valid schedule: {exc}.") from None


def _cron_text(trigger: CronTrigger) -> str:
    fields = {f.name: str(f) for f in trigger.fields}
    return " ".join(fields[name] for name in ("minute", "hour", "day", "month", "day_of_week"))


def _describe(trigger: CronTrigger) -> str:
    """Plain words for the common shapes; the cron text otherwise."""
    f = {field.name: str(field) for field in trigger.fields}
    simple = f["minute"].isdigit() and f["hour"].isdigit() and f["second"] == "0" and f["year"] == "*" and f["week"] == "*"
    at = f"at {int(f['hour']):02d}:{int(f['minute']):02d} UTC" if simple else ""
    if simple and f["month"] == "*":
        if f["day"] == "*" and f["day_of_week"] == "*":
            return f"every day {at}"
        if f["day"].isdigit() and f["day_of_week"] == "*":
            return f"on day {f['day']} of every month {at}"
        if f["day"] == "*":
            names = {"mon": "Monday", "tue": "Tuesday", "wed": "Wednesday", "thu": "Thursday", "fri": "Friday", "sat": "Saturday", "sun": "Sunday"}
            days = [names.get(d, d) for d in f["day_of_week"].split(",")]
            if f["day_of_week"] in ("mon-fri", "mon,tue,wed,thu,fri"):
                return f"every weekday {at}"
            return f"every {', '.join(days[:-1]) + ' and ' + days[-1] if len(days) > 1 else days[0]} {at}"
    if f["minute"].isdigit() and f["hour"] == "*" and f["day"] == "*" and f["month"] == "*" and f["day_of_week"] == "*":
        return f"every hour at minute {int(f['minute'])}"
    return f"at the times matching '{_cron_text(trigger)}' (UTC)"


def _next_runs(trigger: CronTrigger, count: int, now: datetime) -> list[datetime]:
    runs: list[datetime] = []
    previous = None
    moment = now
    for _ in range(count):
        nxt = trigger.get_next_fire_time(previous, moment)
        if nxt is None:
            break
        runs.append(nxt)
        previous, moment = nxt, nxt + timedelta(microseconds=1)
    return runs


def preview_schedule(expression: str, *, count: int = 3, now: datetime | None = None) -> dict[str, Any]:
    """Validate a cron expression and show what it means.

    Returns
    -------
    dict
        ``{"cron": normalised expression, "description": plain words, "next_runs":
        [datetime x count], "next_runs_text": ["Mon 1 Dec 2026 06:00 UTC", ...]}``.
        Raises :class:`InvalidInput` for an invalid expression or one firing more often
        than every 5 minutes.
    """
    trigger = parse_cron(expression)
    now = now or utcnow()
    runs = _next_runs(trigger, max(count, 5), now)
    if not runs:
        raise InvalidInput(f"{expression!r} never runs.")
    gaps = [b - a for a, b in itertools.pairwise(runs)]
    if gaps and min(gaps) < MIN_SCHEDULE_INTERVAL:
        raise InvalidInput(
            f"{expression!r} runs more often than every {MIN_SCHEDULE_INTERVAL.seconds // 60} minutes; evaluations need a calmer schedule."
        )
    runs = runs[:count]
    return {
        "cron": _cron_text(trigger),
        "description": _describe(trigger),
        "next_runs": runs,
        "next_runs_text": [r.strftime("%a %-d %b %Y %H:%M UTC") for r in runs],
    }


# --- schedules for the Jobs page --------------------------------------------------------------------


@contextmanager
def _editor(engine: Engine | None = None) -> Iterator[BaseScheduler]:
    """The thread-less store editor, started paused: reads and edits the store, never runs a job."""
    engine = engine or get_engine()
    scheduler = build_scheduler(engine, editor=True)
    scheduler.start(paused=True)
    try:
        ensure_schedules(scheduler, engine)
        yield scheduler
    finally:
        scheduler.shutdown(wait=False)


def _schedule_row(job: Any) -> dict[str, Any]:
    spec = JOBS.get(job.id)
    return {
        "id": job.id,
        "title": spec.title if spec else job.name,
        "description": spec.description if spec else "",
        "cron": _cron_text(job.trigger) if isinstance(job.trigger, CronTrigger) else str(job.trigger),
        "schedule": _describe(job.trigger) if isinstance(job.trigger, CronTrigger) else str(job.trigger),
        "default_cron": spec.cron if spec else "",
        "next_run_time": job.next_run_time,
        "paused": job.next_run_time is None,
    }


def list_schedules(engine: Engine | None = None) -> list[dict[str, Any]]:
    """Every scheduled job: ``id, title, description, cron, schedule (words), default_cron,
    next_run_time (UTC, None when paused), paused``, in the order of :data:`loyalty.evaluation.jobs.JOBS`.

    Adds any missing job with its default schedule first (so the page shows them before
    the worker first ran).
    """
    with _editor(engine) as scheduler:
        jobs = {job.id: job for job in scheduler.get_jobs()}
    order = list(JOBS)
    return [_schedule_row(jobs[i]) for i in sorted(jobs, key=lambda i: order.index(i) if i in order else len(order))]


def _edit(
    job_id: str, change: Callable[[BaseScheduler], Any], *, engine: Engine | None, actor: Actor, action: str, after: dict[str, Any]
) -> dict[str, Any]:
    require(actor, "evaluations.run")
    engine = engine or get_engine()
    if job_id not in JOBS:
        raise NotFound(f"No job {job_id!r}; the jobs are {', '.join(JOBS)}.")
    with _editor(engine) as scheduler:
        before_job = scheduler.get_job(job_id)
        if before_job is None:
            raise NotFound(f"{job_id} is not scheduled (the weekly report is scheduled only when switched on).")
        before = _schedule_row(before_job)
        for attempt in range(EDIT_RETRIES):
            try:
                change(scheduler)
                break
            except ScheduleConflict:
                # The worker rewrote the job (it just ran): apply the change to the fresh state.
                if attempt == EDIT_RETRIES - 1:
                    raise InvalidInput(f"{job_id} kept changing while saving; try again.") from None
        row = _schedule_row(scheduler.get_job(job_id))
    with new_session(engine) as session, write_transaction(session):
        record_audit(
            session,
            actor=actor,
            action=action,
            entity="schedule",
            entity_id=job_id,
            before={"cron": before["cron"], "paused": before["paused"]},
            after=after,
        )
    return row


def pause_job(job_id: str, *, actor: Actor, engine: Engine | None = None) -> dict[str, Any]:
    """Stop a job's scheduled runs until resumed (a run in progress finishes). Audited."""
    return _edit(job_id, lambda s: s.pause_job(job_id), engine=engine, actor=actor, action="schedule.pause", after={"paused": True})


def resume_job(job_id: str, *, actor: Actor, engine: Engine | None = None) -> dict[str, Any]:
    """Resume a paused job from its next scheduled time (missed times are not run). Audited."""
    return _edit(job_id, lambda s: s.resume_job(job_id), engine=engine, actor=actor, action="schedule.resume", after={"paused": False})


def reschedule_job(job_id: str, cron: str, *, actor: Actor, engine: Engine | None = None) -> dict[str, Any]:
    """Give a job a new crontab schedule (UTC), validated as :func:`preview_schedule` does. Audited.

    A paused job stays paused (its new schedule applies when resumed).
    """
    preview = preview_schedule(cron)
    trigger = parse_cron(cron)

    def change(scheduler: BaseScheduler) -> None:
        paused = scheduler.get_job(job_id).next_run_time is None
        if paused:
            scheduler.modify_job(job_id, trigger=trigger)
        else:
            scheduler.reschedule_job(job_id, trigger=trigger)

    return _edit(job_id, change, engine=engine, actor=actor, action="schedule.change", after={"cron": preview["cron"]})


# --- the lease ------------------------------------------------------------------------------------


def _lease_value(owner: str, now: datetime, lease_seconds: float) -> dict[str, Any]:
    return {
        "owner": owner,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "renewed_at": now.isoformat(),
        "expires_at": (now + timedelta(seconds=lease_seconds)).isoformat(),
        "lease_seconds": lease_seconds,
    }


def take_lease(engine: Engine, owner: str, *, lease_seconds: float = LEASE_SECONDS, now: datetime | None = None) -> bool:
    """Take or renew the worker lease for ``owner``; True if ``owner`` holds it now.

    One conditional UPDATE: it succeeds when ``owner`` already holds the lease or the
    holder's last renewal is older than ``lease_seconds``. The first worker ever inserts
    the row; of two inserting at once, the primary key lets one win.
    """
    now = now or utcnow()
    value = _lease_value(owner, now, lease_seconds)
    table = ProgramSetting.__table__  # type: ignore[attr-defined]  # set by SQLModel at class creation, not in its stubs
    with engine.connect() as connection:
        connection = connection.execution_options(sqlite_begin="IMMEDIATE")
        with connection.begin():
            taken = connection.execute(
                update(table)
                .where(table.c.key == LEASE_KEY, (table.c.updated_by == owner) | (table.c.updated_at < now - timedelta(seconds=lease_seconds)))
                .values(value=value, updated_at=now, updated_by=owner)
            ).rowcount
            if taken == 1:
                return True
            exists = connection.execute(table.select().where(table.c.key == LEASE_KEY)).first() is not None
        if exists:
            return False
        try:
            with connection.begin():
                connection.execute(insert(table).values(key=LEASE_KEY, value=value, updated_at=now, updated_by=owner))
            return True
        except IntegrityError:
            return False


def release_lease(engine: Engine, owner: str) -> bool:
    """Give the lease up (if ``owner`` holds it) so a standby takes over at its next poll."""
    table = ProgramSetting.__table__  # type: ignore[attr-defined]  # set by SQLModel at class creation, not in its stubs
    with engine.begin() as connection:
        released = connection.execute(
            update(table)
            .where(table.c.key == LEASE_KEY, table.c.updated_by == owner)
            .values(updated_at=_RELEASED, value={"owner": None, "released_by": owner, "released_at": utcnow().isoformat()})
        ).rowcount
    return released == 1


def worker_status(engine: Engine | None = None, *, now: datetime | None = None) -> dict[str, Any]:
    """Who holds the lease: ``{"running": bool, "owner", "host", "pid", "renewed_at", "expires_at"}``.

    ``running`` is False when nobody holds an unexpired lease: no worker is running the
    schedules (the app may then start one).
    """
    engine = engine or get_engine()
    now = now or utcnow()
    with new_session(engine) as session:
        row = session.get(ProgramSetting, LEASE_KEY)
        value = dict(row.value or {}) if row else {}
    expires = datetime.fromisoformat(value["expires_at"]) if value.get("expires_at") and value.get("owner") else None
    return {
        "running": bool(expires and expires > now),
        "owner": value.get("owner"),
        "host": value.get("host"),
        "pid": value.get("pid"),
        "renewed_at": value.get("renewed_at"),
        "expires_at": value.get("expires_at"),
    }


# --- the worker ------------------------------------------------------------------------------------


class WebhookSender:
    """A thread posting due webhook deliveries every ``every_seconds`` until :meth:`stop`."""

    def __init__(self, engine: Engine, *, every_seconds: float = WEBHOOK_POLL_SECONDS, timeout: float = DELIVERY_TIMEOUT_SECONDS) -> None:
        self.engine, self.every_seconds, self.timeout = engine, every_seconds, timeout
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="webhooks", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                deliver_due(self.engine, timeout=self.timeout, should_stop=self._stop.is_set)
            except Exception:  # a database hiccup must not end the deliveries: try again next time
                logger.exception("webhook delivery failed")
            self._stop.wait(self.every_seconds)

    def stop(self) -> bool:
        """Stop, waiting for at most the request in flight and its outcome; whether the thread ended."""
        self._stop.set()
        if self._thread is None:
            return True
        self._thread.join(self.timeout + SCHEDULER_THREAD_STOP_SECONDS)
        return not self._thread.is_alive()


@dataclass
class _Leadership:
    scheduler: BackgroundScheduler


class Worker:
    """A worker process's loop: standby until it holds the lease, then the scheduler.

    ``run(stop_event)`` blocks until the event is set. Between polls (every
    ``heartbeat_seconds``) the leader renews its lease and wakes its scheduler (to see
    schedule edits from other processes); a standby tries to take the lease.
    """

    def __init__(
        self,
        *,
        engine: Engine | None = None,
        owner: str | None = None,
        lease_seconds: float = LEASE_SECONDS,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        stop_grace_seconds: float = STOP_GRACE_SECONDS,
        webhook_seconds: float | None = WEBHOOK_POLL_SECONDS,
    ) -> None:
        if heartbeat_seconds * 2 > lease_seconds:
            raise InvalidInput("The heartbeat must be at most half the lease, or a healthy leader would lose it.")
        self.engine = engine or get_engine()
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease_seconds, self.heartbeat_seconds = lease_seconds, heartbeat_seconds
        self.stop_grace_seconds = stop_grace_seconds
        # None: no webhook deliveries from this worker.
        self.webhooks = WebhookSender(self.engine, every_seconds=webhook_seconds) if webhook_seconds else None
        self._leadership: _Leadership | None = None
        self.became_leader = threading.Event()

    @property
    def is_leader(self) -> bool:
        return self._leadership is not None

    @property
    def scheduler(self) -> BackgroundScheduler | None:
        return self._leadership.scheduler if self._leadership else None

    def _lead(self) -> None:
        marked = mark_interrupted_runs(self.engine)
        if marked:
            logger.warning("marked %d run(s) left 'running' by a stopped process as failed", marked)
        scheduler = build_scheduler(self.engine)
        # Paused first: jobs missing from the store are added before anything runs, and
        # existing ones keep their (possibly user-changed) schedule and missed run.
        scheduler.start(paused=True)
        try:
            added = ensure_schedules(scheduler, self.engine)
            scheduler.resume()
        except BaseException:
            scheduler.shutdown(wait=False)
            raise
        self._leadership = _Leadership(scheduler)
        self.became_leader.set()
        logger.info("worker %s holds the lease and runs the schedules (added: %s)", self.owner, ", ".join(added) or "none")

    def _step_down(self, *, release: bool, wait: bool) -> list[str]:
        """Stop leading; the ids of jobs still running when the wait (at most ``stop_grace_seconds``) ended."""
        leadership, self._leadership = self._leadership, None
        self.became_leader.clear()
        running: list[str] = []
        if leadership is not None:
            try:
                running = leadership.scheduler.stop(grace_seconds=self.stop_grace_seconds if wait else 0.0)
            except Exception:
                logger.exception("stopping the scheduler failed")
        if release:
            release_lease(self.engine, self.owner)
        return running

    def step(self) -> None:
        """One poll: renew (and wake the scheduler) as leader, or try to become leader."""
        try:
            holds = take_lease(self.engine, self.owner, lease_seconds=self.lease_seconds)
        except Exception:
            # The database is unreachable: a leader cannot prove it still leads.
            logger.exception("could not reach the lease")
            holds = False
        if self.is_leader and not holds:
            logger.warning("worker %s lost the lease; stopping its scheduler", self.owner)
            self._step_down(release=False, wait=False)
        elif holds and not self.is_leader:
            self._lead()
        elif self._leadership is not None:  # leading already
            self._leadership.scheduler.wakeup()
            try:  # runs whose process died (on any host) are marked failed within a lease, not hours
                if marked := mark_interrupted_runs(self.engine):
                    logger.warning("marked %d run(s) left 'running' by a stopped process as failed", marked)
            except Exception:
                logger.exception("could not check for interrupted runs")

    def run(self, stop_event: threading.Event) -> list[str]:
        """Run until ``stop_event`` is set; the ids of jobs still running when the stop gave up waiting."""
        logger.info("worker %s starting (lease %ss, heartbeat %ss)", self.owner, self.lease_seconds, self.heartbeat_seconds)
        if self.webhooks:
            self.webhooks.start()
        try:
            while not stop_event.is_set():
                try:
                    self.step()
                except Exception:  # a database hiccup must not end the worker: try again next beat
                    logger.exception("worker %s: heartbeat failed", self.owner)
                stop_event.wait(self.heartbeat_seconds)
        finally:
            # A clean stop lets a running job finish (within the grace time), then hands the lease over at once.
            running = self._step_down(release=True, wait=True)
            if self.webhooks and not self.webhooks.stop():
                logger.warning("worker %s: a webhook delivery was still under way at the stop (it is retried)", self.owner)
            logger.info("worker %s stopped", self.owner)
        return running


def run_worker(
    *,
    stop_event: threading.Event | None = None,
    engine: Engine | None = None,
    lease_seconds: float = LEASE_SECONDS,
    heartbeat_seconds: float = HEARTBEAT_SECONDS,
    owner: str | None = None,
    stop_grace_seconds: float = STOP_GRACE_SECONDS,
) -> list[str]:
    """``python -m loyalty worker``: run until ``stop_event`` is set (or SIGTERM/SIGINT).

    The worker and the jobs it runs use ``LOYALTY_DATABASE_URL``. Start as many as you
    like: one leads, the others wait as standby. Returns the ids of jobs still running
    ``stop_grace_seconds`` after the stop (the process should then end without them:
    :func:`main` does).
    """
    if stop_event is None:
        stop_event = threading.Event()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: stop_event.set())
    parent = os.environ.get(PARENT_PID_VARIABLE, "")
    if parent.isdigit():
        watch_parent(int(parent), stop_event)
    return Worker(
        engine=engine, owner=owner, lease_seconds=lease_seconds, heartbeat_seconds=heartbeat_seconds, stop_grace_seconds=stop_grace_seconds
    ).run(stop_event)


def watch_parent(parent_pid: int, stop_event: threading.Event, *, every_seconds: float = PARENT_CHECK_SECONDS) -> threading.Thread:
    """Set ``stop_event`` once the process ``parent_pid`` is gone (stopped, killed or crashed).

    The app's worker runs in a session of its own (Ctrl-C in the app's terminal does not
    reach it), so it watches its parent instead: when the parent ends, the child is handed
    to another process and ``os.getppid()`` changes.
    """

    def watch() -> None:
        while not stop_event.wait(every_seconds):
            if os.getppid() != parent_pid:
                logger.info("worker: the app (pid %s) has stopped; stopping too", parent_pid)
                stop_event.set()

    thread = threading.Thread(target=watch, name="parent-watch", daemon=True)
    thread.start()
    return thread


def start_worker_process(*, env: dict[str, str] | None = None, log_path: str | os.PathLike[str] | None = None) -> subprocess.Popen | None:
    """Start ``python -m loyalty.evaluation.worker`` in the background unless a worker holds the lease.

    For the one-machine default: the app calls this at start-up so a new user gets the
    scheduled evaluations without starting anything. Starting one too many is harmless
    (it waits as standby). Returns the process, or None when a worker already runs.
    ``log_path``: where its output goes (default: discarded). The worker stops by itself
    within :data:`PARENT_CHECK_SECONDS` of this process ending, however it ends.
    """
    environment = {**os.environ, **(env or {}), PARENT_PID_VARIABLE: str(os.getpid())}
    engine = get_engine(environment.get("LOYALTY_DATABASE_URL") or None)
    if worker_status(engine)["running"]:
        return None
    output = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 (the child keeps it)
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "loyalty.evaluation.worker"],
            env=environment,
            cwd=str(PROJECT_ROOT),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # not stopped with the app's process group (Ctrl-C in the terminal)
        )
    finally:
        if not isinstance(output, int):  # the log file, not DEVNULL
            output.close()


def exit_if_jobs_left_running(running: list[str]) -> None:
    """End the process at once when the stop left jobs running (exit status :data:`EXIT_JOBS_LEFT_RUNNING`).

    A normal interpreter exit joins the executor's threads, so it would wait for those jobs
    without limit. Their open transactions roll back with the connection.
    """
    if running:
        logger.error("exiting with job(s) %s unfinished", ", ".join(running))
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_JOBS_LEFT_RUNNING)


def main() -> None:
    """``python -m loyalty.evaluation.worker``: the worker with log lines on stderr."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    exit_if_jobs_left_running(run_worker())


if __name__ == "__main__":
    main()
