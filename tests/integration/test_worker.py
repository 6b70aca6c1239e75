"""The worker: its lease (one leader, a standby taking over), schedules kept across
restarts with exactly one catch-up run per missed job, and schedule edits from another
process while it runs.

Workers run in threads with short leases (the scheduled job functions are replaced by
recorders, so no real evaluation runs); one test kills a worker process for real.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import select

import loyalty.evaluation.jobs as jobs_module
from db.engine import get_engine
from db.models import AuditLog
from loyalty.access.roles import Actor
from loyalty.errors import InvalidInput, PermissionDenied
from loyalty.evaluation.jobs import JOBS
from loyalty.evaluation.worker import (
    GuardedJobStore,
    Worker,
    build_scheduler,
    list_schedules,
    parse_cron,
    pause_job,
    preview_schedule,
    reschedule_job,
    resume_job,
    start_worker_process,
    take_lease,
    worker_status,
)

MANAGER = Actor("max", "manager")
PROJECT_ROOT = Path(__file__).resolve().parents[2]
LEASE, HEARTBEAT = 1.0, 0.1
DEFAULT_JOBS = [
    "points-expiry",
    "tier-evaluation",
    "kpi-snapshot",
    "campaign-evaluation",
    "retention-alert",
    "liability-forecast",
    "page-views",
    "executive-report",
    "member-messages",
]


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.fixture
def recorded_runs(monkeypatch) -> Counter:
    """Replace what the scheduler calls (``loyalty.evaluation.jobs:<name>``) with recorders."""
    calls: Counter = Counter()
    for name, spec in JOBS.items():
        attribute = spec.func_ref.split(":")[1]
        monkeypatch.setattr(jobs_module, attribute, lambda as_of=None, name=name: calls.update([name]))
    return calls


@pytest.fixture
def start_worker(db_url) -> Iterator[Callable[[str], tuple[Worker, threading.Event]]]:
    """Start workers in threads; each is stopped (and joined) at the end of the test."""
    started: list[tuple[threading.Event, threading.Thread]] = []

    def start(owner: str) -> tuple[Worker, threading.Event]:
        worker = Worker(engine=get_engine(db_url), owner=owner, lease_seconds=LEASE, heartbeat_seconds=HEARTBEAT)
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop,), name=f"worker-{owner}", daemon=True)
        thread.start()
        started.append((stop, thread))
        return worker, stop

    yield start
    for stop, _thread in started:
        stop.set()
    for _, thread in started:
        thread.join(timeout=30)


def _set_all_next_runs(engine, moment: datetime) -> None:
    """What a worker down since ``moment`` leaves behind: every job overdue since then."""
    editor = build_scheduler(engine, editor=True)
    editor.start(paused=True)
    try:
        for job in editor.get_jobs():
            editor.modify_job(job.id, next_run_time=moment)
    finally:
        editor.shutdown(wait=False)


# --- schedules ---------------------------------------------------------------------------------------


@pytest.mark.calendar
def test_the_default_schedules_are_daily_and_monthly_in_utc(db_url):
    schedules = {s["id"]: s for s in list_schedules(get_engine(db_url))}
    assert list(schedules) == DEFAULT_JOBS, "the weekly report is off by default"
    assert {i: s["cron"] for i, s in schedules.items()} == {
        "points-expiry": "0 1 * * *",
        "tier-evaluation": "0 2 * * *",
        "kpi-snapshot": "0 3 * * *",
        "campaign-evaluation": "0 4 * * *",
        "retention-alert": "0 5 * * *",
        "liability-forecast": "30 5 1 * *",
        "page-views": "45 5 * * *",
        "executive-report": "0 6 1 * *",
        "member-messages": "0 7 * * *",
    }
    assert schedules["kpi-snapshot"]["schedule"] == "every day at 03:00 UTC"
    assert schedules["executive-report"]["schedule"] == "on day 1 of every month at 06:00 UTC"
    assert schedules["liability-forecast"]["schedule"] == "on day 1 of every month at 05:30 UTC"
    now = datetime.now(UTC)
    assert all(now < s["next_run_time"] <= now + timedelta(days=31) and not s["paused"] for s in schedules.values())


def test_an_install_still_on_the_former_defaults_gets_the_tier_evaluation_before_the_kpi_snapshot(db_url):
    engine = get_engine(db_url)
    list_schedules(engine)
    reschedule_job("kpi-snapshot", "0 2 * * *", actor=MANAGER, engine=engine)  # as an earlier release shipped them
    reschedule_job("tier-evaluation", "0 3 * * *", actor=MANAGER, engine=engine)
    crons = {s["id"]: s["cron"] for s in list_schedules(engine)}
    assert (crons["tier-evaluation"], crons["kpi-snapshot"]) == ("0 2 * * *", "0 3 * * *")
    # A schedule the admin chose stays, and so does the other job's.
    reschedule_job("kpi-snapshot", "30 2 * * *", actor=MANAGER, engine=engine)
    reschedule_job("tier-evaluation", "0 3 * * *", actor=MANAGER, engine=engine)
    crons = {s["id"]: s["cron"] for s in list_schedules(engine)}
    assert (crons["tier-evaluation"], crons["kpi-snapshot"]) == ("0 3 * * *", "30 2 * * *")


@pytest.mark.parametrize(
    "cron,description,first",
    [
        ("0 6 * * 1", "every Monday at 06:00 UTC", datetime(2026, 11, 30, 6, tzinfo=UTC)),
        ("30 2 * * 0", "every Sunday at 02:30 UTC", datetime(2026, 11, 29, 2, 30, tzinfo=UTC)),
        ("0 7 * * 1-5", "every weekday at 07:00 UTC", datetime(2026, 11, 24, 7, tzinfo=UTC)),
        ("15 4 1 * *", "on day 1 of every month at 04:15 UTC", datetime(2026, 12, 1, 4, 15, tzinfo=UTC)),
    ],
    ids=["crontab-1-is-monday", "crontab-0-is-sunday", "weekdays", "monthly"],
)
def test_a_cron_preview_reads_like_crontab_and_lists_the_next_three_runs(cron, description, first):
    preview = preview_schedule(cron, now=datetime(2026, 11, 23, 9, 0, tzinfo=UTC))  # a Monday
    assert preview["description"] == description
    assert preview["next_runs"][0] == first and len(preview["next_runs"]) == 3
    assert preview["next_runs"] == sorted(preview["next_runs"])
    assert preview["next_runs_text"][0] == first.strftime("%a %-d %b %Y %H:%M UTC")


@pytest.mark.parametrize(
    "cron,message",
    [("0 2 * *", "5 fields"), ("61 2 * * *", "not a valid schedule"), ("* * * * *", "more often than every 5 minutes"), ("0 2 * * 9", "Day of week")],
    ids=["four-fields", "minute-61", "every-minute", "day-9"],
)
def test_an_invalid_schedule_is_refused_in_plain_words(cron, message):
    with pytest.raises(InvalidInput, match=message):
        preview_schedule(cron)


def test_pausing_resuming_and_rescheduling_are_audited_and_need_the_permission(db_url, session):
    engine = get_engine(db_url)
    paused = pause_job("tier-evaluation", actor=MANAGER, engine=engine)
    assert paused["paused"] and paused["next_run_time"] is None
    changed = reschedule_job("tier-evaluation", "45 3 * * *", actor=MANAGER, engine=engine)
    assert (changed["cron"], changed["paused"]) == ("45 3 * * *", True), "a paused job stays paused"
    resumed = resume_job("tier-evaluation", actor=MANAGER, engine=engine)
    assert not resumed["paused"] and (resumed["next_run_time"].hour, resumed["next_run_time"].minute) == (3, 45)
    actions = session.exec(select(AuditLog.action).where(AuditLog.entity == "schedule").order_by(AuditLog.id)).all()
    assert actions == ["schedule.pause", "schedule.change", "schedule.resume"]
    with pytest.raises(PermissionDenied):
        pause_job("tier-evaluation", actor=Actor("ann", "analyst"), engine=engine)


# --- the lease ----------------------------------------------------------------------------------------


def test_two_workers_at_once_one_leads_and_the_standby_takes_over_when_it_stops(db_url, start_worker, recorded_runs):
    first, stop_first = start_worker("first")
    assert first.became_leader.wait(10)
    second, _ = start_worker("second")
    time.sleep(LEASE * 1.5)  # several renewals: the standby must not get in
    assert first.is_leader and not second.is_leader
    assert worker_status(get_engine(db_url))["owner"] == "first"

    stop_first.set()  # a clean stop hands the lease over at once
    assert second.became_leader.wait(10)
    assert _wait_for(lambda: not first.is_leader)
    status = worker_status(get_engine(db_url))
    assert status["running"] and status["owner"] == "second"


def test_the_lease_is_taken_with_one_conditional_update(db_url):
    engine = get_engine(db_url)
    now = datetime.now(UTC)
    assert take_lease(engine, "a", lease_seconds=30, now=now)
    assert not take_lease(engine, "b", lease_seconds=30, now=now + timedelta(seconds=29))
    assert take_lease(engine, "a", lease_seconds=30, now=now + timedelta(seconds=29)), "the holder renews"
    assert take_lease(engine, "b", lease_seconds=30, now=now + timedelta(seconds=60)), "expired: the standby takes it"
    assert not take_lease(engine, "a", lease_seconds=30, now=now + timedelta(seconds=61))


_DOOMED_WORKER = """
from loyalty.evaluation.worker import run_worker
run_worker(lease_seconds=2.0, heartbeat_seconds=0.2, owner="doomed")
"""


def test_a_killed_worker_is_replaced_once_its_lease_expires(db_url, start_worker, recorded_runs):
    engine = get_engine(db_url)
    process = subprocess.Popen([sys.executable, "-c", _DOOMED_WORKER], cwd=PROJECT_ROOT, env={**os.environ, "LOYALTY_DATABASE_URL": db_url})
    try:
        assert _wait_for(lambda: worker_status(engine)["owner"] == "doomed", timeout=60)
        standby = Worker(engine=engine, owner="standby", lease_seconds=2.0, heartbeat_seconds=0.2)
        stop = threading.Event()
        thread = threading.Thread(target=standby.run, args=(stop,), daemon=True)
        thread.start()
        time.sleep(1.0)
        assert not standby.is_leader
        process.kill()  # no clean stop: the lease stays until it expires
        process.wait(timeout=30)
        killed_at = time.monotonic()
        assert standby.became_leader.wait(10)
        assert time.monotonic() - killed_at <= 2.0 + 1.0
        assert worker_status(engine)["owner"] == "standby"
    finally:
        if process.poll() is None:
            process.kill()
        stop.set()
        thread.join(timeout=30)


def test_the_app_starts_a_worker_only_when_none_runs_and_a_clean_stop_releases_the_lease(db_url, tmp_path):
    engine = get_engine(db_url)
    process = start_worker_process(env={"LOYALTY_DATABASE_URL": db_url}, log_path=tmp_path / "worker.log")
    assert process is not None
    try:
        assert _wait_for(lambda: worker_status(engine)["running"], timeout=60), (tmp_path / "worker.log").read_text()
        assert worker_status(engine)["pid"] == process.pid
        assert start_worker_process(env={"LOYALTY_DATABASE_URL": db_url}) is None, "one is running already"
    finally:
        process.terminate()  # SIGTERM: the worker stops cleanly
        process.wait(timeout=30)
    assert process.returncode == 0
    assert not worker_status(engine)["running"], "released at once, no waiting for the lease to expire"
    assert "holds the lease" in (tmp_path / "worker.log").read_text()


# --- restarts and missed runs ------------------------------------------------------------------------


@pytest.mark.calendar
def test_a_restart_after_missed_runs_runs_each_job_once_and_keeps_a_changed_schedule(db_url, start_worker, recorded_runs):
    engine = get_engine(db_url)
    reschedule_job("kpi-snapshot", "30 4 * * *", actor=MANAGER, engine=engine)  # a user's change
    # The worker was down for three days: three daily runs of each job were missed.
    _set_all_next_runs(engine, datetime.now(UTC) - timedelta(days=3))

    worker, stop = start_worker("restarted")
    assert worker.became_leader.wait(10)
    assert _wait_for(lambda: sum(recorded_runs.values()) >= len(DEFAULT_JOBS))
    time.sleep(10 * HEARTBEAT)  # more wake-ups: nothing more may run
    assert recorded_runs == Counter(DEFAULT_JOBS), "exactly one coalesced catch-up run per job"

    schedules = {s["id"]: s for s in list_schedules(engine)}
    assert schedules["kpi-snapshot"]["cron"] == "30 4 * * *"
    now = datetime.now(UTC)
    assert all(s["next_run_time"] > now for s in schedules.values())

    # A second restart finds nothing missed, and still the user's schedule.
    stop.set()
    assert _wait_for(lambda: not worker.is_leader)
    again, _ = start_worker("restarted-again")
    assert again.became_leader.wait(10)
    time.sleep(5 * HEARTBEAT)
    assert recorded_runs == Counter(DEFAULT_JOBS)
    assert {s["id"]: s["cron"] for s in list_schedules(engine)}["kpi-snapshot"] == "30 4 * * *"


def test_schedule_edits_from_another_process_reach_the_running_worker(db_url, start_worker, recorded_runs):
    engine = get_engine(db_url)
    worker, _ = start_worker("leader")
    assert worker.became_leader.wait(10)
    time.sleep(3 * HEARTBEAT)  # the worker is now asleep until tomorrow's first run

    # The app process, through a store editor (no thread, never runs jobs): two jobs are
    # made due in a moment, then one of them is paused from the Jobs page.
    editor = build_scheduler(engine, editor=True)
    editor.start(paused=True)
    now = datetime.now(UTC)
    editor.modify_job("retention-alert", next_run_time=now + timedelta(seconds=0.3))
    editor.modify_job("tier-evaluation", next_run_time=now + timedelta(seconds=1.0))
    editor.shutdown(wait=False)
    pause_job("tier-evaluation", actor=MANAGER, engine=engine)

    assert _wait_for(lambda: recorded_runs["retention-alert"] == 1, timeout=5), "the worker re-reads the store each heartbeat"
    time.sleep(1.5)
    assert recorded_runs["tier-evaluation"] == 0, "paused from the page: not run"
    assert worker.scheduler.get_job("tier-evaluation").next_run_time is None
    assert worker.scheduler.get_job("retention-alert").next_run_time > datetime.now(UTC) + timedelta(hours=1)


def test_the_worker_never_overwrites_a_schedule_changed_while_it_read_the_job(db_url):
    engine = get_engine(db_url)
    list_schedules(engine)  # the jobs exist
    worker_view = build_scheduler(engine, editor=True)  # stands in for the worker's scheduler
    worker_view.start(paused=True)
    store = worker_view._lookup_jobstore("default")
    assert isinstance(store, GuardedJobStore)
    store.on_conflict = "keep_theirs"
    try:
        job = store.lookup_job("kpi-snapshot")  # the worker reads the due job...
        reschedule_job("kpi-snapshot", "10 5 * * *", actor=MANAGER, engine=engine)  # ...the page changes it...
        job._modify(next_run_time=datetime.now(UTC) + timedelta(days=1))
        store.update_job(job)  # ...and the worker writes its next run time: the page's change stays.
        kept = store.lookup_job("kpi-snapshot")
        assert str(kept.trigger) == str(parse_cron("10 5 * * *"))
        # The other way round: the page's store refuses to write over the worker's update
        # (the page's edit functions then retry on a fresh read).
        store.on_conflict = "raise"
        stale = store.lookup_job("kpi-snapshot")
        reschedule_job("kpi-snapshot", "20 5 * * *", actor=MANAGER, engine=engine)
        stale._modify(next_run_time=datetime.now(UTC) + timedelta(days=2))
        from loyalty.evaluation.worker import ScheduleConflict

        with pytest.raises(ScheduleConflict):
            store.update_job(stale)
    finally:
        worker_view.shutdown(wait=False)


_APP_THAT_DIES = """
import sys, time
from loyalty.evaluation.worker import start_worker_process
process = start_worker_process(log_path=sys.argv[1])
print(process.pid, flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_the_worker_the_app_started_stops_when_the_app_is_gone(db_url, tmp_path, how):
    """Ctrl-C, SIGTERM or a crash of the app: its worker notices and stops, leaving nothing behind."""
    import signal

    engine = get_engine(db_url)
    log = tmp_path / "worker.log"
    app = subprocess.Popen(
        [sys.executable, "-c", _APP_THAT_DIES, str(log)], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, env={**os.environ, "LOYALTY_DATABASE_URL": db_url}
    )
    worker_pid = int(app.stdout.readline())
    try:
        assert _wait_for(lambda: worker_status(engine)["running"], timeout=60), log.read_text()
        app.send_signal(getattr(signal, how))
        app.wait(timeout=30)
        assert _wait_for(lambda: not _alive(worker_pid), timeout=30), "the worker outlived the app"
        assert "has stopped; stopping too" in log.read_text()
        assert not worker_status(engine)["running"], "a clean stop hands the lease over at once"
    finally:
        if app.poll() is None:
            app.kill()
        if _alive(worker_pid):
            os.kill(worker_pid, 9)


def _alive(pid: int) -> bool:
    """Running (not a zombie): the worker is the dead app's child, reaped by init, never by the test."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# --- a stop never waits without limit -------------------------------------------------------------------

_STUCK_WORKER = """
import logging, time
import loyalty.evaluation.jobs as jobs
from loyalty.evaluation.worker import JOBS, exit_if_jobs_left_running, run_worker

def stuck(as_of=None):
    print("job started", flush=True)
    time.sleep(600)  # a job that would hold a stop for ten minutes

for spec in JOBS.values():
    setattr(jobs, spec.func_ref.split(":")[1], stuck)
logging.basicConfig(level=logging.INFO)
exit_if_jobs_left_running(run_worker(lease_seconds=2.0, heartbeat_seconds=0.2, owner="stuck", stop_grace_seconds=1.0))
"""


def test_a_stop_gives_a_running_job_a_grace_time_then_the_worker_exits_without_it(db_url, tmp_path):
    import signal

    engine = get_engine(db_url)
    assert len(list_schedules(engine)) == len(DEFAULT_JOBS)  # the schedules exist...
    _set_all_next_runs(engine, datetime.now(UTC) - timedelta(days=1))  # ...and every job is due at once
    log = tmp_path / "worker.log"
    with log.open("wb") as output:
        worker = subprocess.Popen(
            [sys.executable, "-c", _STUCK_WORKER],
            cwd=PROJECT_ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "LOYALTY_DATABASE_URL": db_url, "PYTHONPATH": str(PROJECT_ROOT)},
        )
    try:
        assert _wait_for(lambda: "job started" in log.read_text(), timeout=60), log.read_text()
        worker.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        worker.wait(timeout=30)
        seconds = time.monotonic() - stopped_at
    finally:
        if worker.poll() is None:
            worker.kill()
    text = log.read_text()
    assert worker.returncode == 3, text
    assert seconds < 1.0 + 5.0, f"stopped after {seconds:.1f} s: the grace is 1 s"
    assert "still running 1 s after the stop" in text and "points-expiry" in text, text
    assert not worker_status(engine)["running"], "the lease is handed over even so"
