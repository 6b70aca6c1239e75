"""The evaluation jobs on small fixture programs, checked against hand-computed numbers.

Each job: its results, an idempotent re-run for the same as-of date, and the run record.
Failures: an exception half-way, and a process killed inside the write transaction,
both leave no results (one transaction) and a failed run.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats
from sqlalchemy import func
from sqlmodel import select

from db.models import Alert, JobRun, KpiSnapshot, LedgerEntry, Member, TierMovement
from loyalty.access.roles import Actor
from loyalty.errors import InvalidInput, PermissionDenied
from loyalty.evaluation.alerts import acknowledge_alert
from loyalty.evaluation.jobs import JOBS, job_history, mark_interrupted_runs, run_all, run_job
from loyalty.evaluation.kpis import kpi_snapshot_frame, store_kpi_snapshots
from loyalty.insights.campaign_results import campaign_results
from loyalty.ledger.entries import balance, reverse_purchase
from loyalty.program.campaigns import activate_campaign, save_campaign
from loyalty.program.goals import save_goal, save_kpi_target
from tests.factories import make_member, make_purchase, make_tier, utc

MANAGER = Actor("max", "manager")
ANALYST = Actor("ann", "analyst")
OPERATIONS = Actor("olga", "operations")
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _fresh(session):
    """End the session's read transaction: on SQLite (WAL) it still sees the database as it
    was before the job, which committed on its own connection."""
    session.rollback()
    return session


def _snapshot_values(session, period: str, dimension: str = "overall", value: str = "", start: date | None = None) -> dict[str, float | None]:
    """The stored values of one period: the latest stored ``period`` unless ``start`` says which."""
    where = [KpiSnapshot.period == period, KpiSnapshot.dimension == dimension, KpiSnapshot.dimension_value == value]
    if start is None:
        start = _fresh(session).exec(select(func.max(KpiSnapshot.period_start)).where(*where)).one()
    rows = _fresh(session).exec(select(KpiSnapshot.metric, KpiSnapshot.value).where(*where, KpiSnapshot.period_start == start)).all()
    return dict(rows)


def _runs(session, job: str) -> list[JobRun]:
    return _fresh(session).exec(select(JobRun).where(JobRun.job == job).order_by(JobRun.id)).all()


# --- kpi-snapshot -------------------------------------------------------------------------------


@pytest.fixture
def two_buyers(session):
    """a buys in August and September, b in August only."""
    a, b = make_member(session), make_member(session)
    make_purchase(session, a, 10.0, occurred_at=utc(2026, 8, 5))
    make_purchase(session, b, 30.0, occurred_at=utc(2026, 8, 6))
    make_purchase(session, a, 20.0, occurred_at=utc(2026, 9, 5))
    return a, b


def test_kpi_snapshot_stores_the_last_month_quarter_and_month_to_date_and_a_rerun_replaces_them(session, two_buyers):
    first = run_job("kpi-snapshot", as_of=date(2026, 10, 15), actor=MANAGER)
    assert first["status"] == "succeeded", first["error"]
    assert [(p["period"], p["start"], p["end"]) for p in first["periods"]] == [
        ("month", "2026-09-01", "2026-10-01"),
        ("mtd", "2026-10-01", "2026-10-16"),
        ("quarter", "2026-07-01", "2026-10-01"),
    ]

    september = _snapshot_values(session, "month")
    # Of the 2 members active in August, 1 (a) bought again in September, for 20.00.
    assert september["active_members"] == 1
    assert september["retention_rate"] == pytest.approx(0.5)
    assert september["revenue_per_member"] == pytest.approx(20.0)
    assert _snapshot_values(session, "quarter")["active_members"] == 2
    assert _snapshot_values(session, "mtd")["active_members"] == 0
    assert _fresh(session).exec(select(KpiSnapshot.period_end).where(KpiSnapshot.period == "mtd")).first() == date(2026, 10, 16)
    # By acquisition channel and tier too (both members are "store", neither has a tier).
    assert _snapshot_values(session, "month", "channel", "store")["active_members"] == 1
    assert _snapshot_values(session, "month", "tier", "(none)")["retention_rate"] == pytest.approx(0.5)

    count = _fresh(session).exec(select(func.count()).select_from(KpiSnapshot)).one()
    assert first["rows"] == count
    # The first run also filled August, the month before (history, overall only).
    assert first["history_periods"] == 1 and _snapshot_values(session, "month", start=date(2026, 8, 1))["active_members"] == 2
    assert _snapshot_values(session, "month", "channel", "store", start=date(2026, 8, 1)) == {}
    again = run_job("kpi-snapshot", as_of=date(2026, 10, 15), actor=MANAGER)
    assert again["history_periods"] == 0 and again["rows"] < count
    assert _fresh(session).exec(select(func.count()).select_from(KpiSnapshot)).one() == count, "a re-run replaces, never duplicates"

    # Into November: October is complete, so its month-to-date rows give way to the month.
    run_job("kpi-snapshot", as_of=date(2026, 11, 2), actor=MANAGER)
    mtd_starts = set(_fresh(session).exec(select(KpiSnapshot.period_start).where(KpiSnapshot.period == "mtd")).all())
    assert mtd_starts == {date(2026, 11, 1)}
    months = set(session.exec(select(KpiSnapshot.period_start).where(KpiSnapshot.period == "month")).all())
    assert months == {date(2026, 8, 1), date(2026, 9, 1), date(2026, 10, 1)}
    runs = _runs(session, "kpi-snapshot")
    assert [r.status for r in runs] == ["succeeded"] * 3 and all(r.progress == 1.0 for r in runs)


def test_a_job_failing_half_way_leaves_the_previous_results_and_records_the_error(session, two_buyers, monkeypatch):
    run_job("kpi-snapshot", as_of=date(2026, 10, 15), actor=MANAGER)
    before = sorted(_fresh(session).exec(select(KpiSnapshot.id, KpiSnapshot.metric, KpiSnapshot.value, KpiSnapshot.computed_at)).all())

    def disk_full(*_args, **_kwargs):
        raise RuntimeError("disk full (simulated)")

    # The old rows are deleted first, in the same transaction, then the insert fails.
    monkeypatch.setattr("loyalty.evaluation.kpis.insert_frame", disk_full)
    result = run_job("kpi-snapshot", as_of=date(2026, 10, 15), actor=MANAGER)

    assert result["status"] == "failed" and result["rows"] == 0
    assert result["error"] == "RuntimeError: disk full (simulated)"
    _fresh(session)
    after = sorted(session.exec(select(KpiSnapshot.id, KpiSnapshot.metric, KpiSnapshot.value, KpiSnapshot.computed_at)).all())
    assert after == before, "the failed run's deletes were rolled back"
    failed = _runs(session, "kpi-snapshot")[-1]
    assert (failed.status, failed.error, failed.rows) == ("failed", "RuntimeError: disk full (simulated)", 0)
    assert failed.finished_at is not None


_KILLED_JOB = """
import sys, time
import loyalty.evaluation.kpis as evaluation
from datetime import date
from loyalty.evaluation.jobs import run_job

original = evaluation.insert_frame

def insert_then_hang(*args, **kwargs):
    written = original(*args, **kwargs)
    print("written", flush=True)
    time.sleep(120)
    return written

evaluation.insert_frame = insert_then_hang
run_job("kpi-snapshot", as_of=date(2026, 10, 15))
"""


def test_a_job_killed_inside_its_transaction_leaves_no_results(session, db_url, two_buyers):
    process = subprocess.Popen(
        [sys.executable, "-c", _KILLED_JOB], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "LOYALTY_DATABASE_URL": db_url}
    )
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout=90)
    try:
        assert line == ["written\n"], "the job reached its write transaction"
    finally:
        process.kill()
        process.wait(timeout=30)

    _fresh(session)
    assert _fresh(session).exec(select(func.count()).select_from(KpiSnapshot)).one() == 0
    (run,) = _runs(session, "kpi-snapshot")
    assert run.status == "running", "the killed process could not record its end"
    assert mark_interrupted_runs() == 1, "its process is gone: failed at once, not after hours"
    (run,) = _runs(session, "kpi-snapshot")
    assert run.status == "failed" and run.error == f"interrupted: its process ({run.owner}) stopped before it finished"


def test_a_run_of_another_host_is_failed_once_its_heartbeat_is_older_than_the_lease(session, now):
    import os
    import socket

    from db.models import JobRun

    beat = now  # the tests' clock
    runs = {
        "quiet": JobRun(
            job="kpi-snapshot",
            status="running",
            started_at=beat - timedelta(minutes=10),
            owner="elsewhere:41",
            heartbeat_at=beat - timedelta(minutes=3),
        ),
        "beating": JobRun(
            job="kpi-snapshot",
            status="running",
            started_at=beat - timedelta(minutes=10),
            owner="elsewhere:42",
            heartbeat_at=beat - timedelta(seconds=20),
        ),
        "mine": JobRun(
            job="kpi-snapshot",
            status="running",
            started_at=beat - timedelta(hours=1),
            owner=f"{socket.gethostname()}:{os.getpid()}",
            heartbeat_at=beat - timedelta(minutes=30),
        ),
    }
    for run in runs.values():
        session.add(run)
    session.commit()
    assert mark_interrupted_runs() == 1
    _fresh(session).expire_all()
    statuses = {name: session.get(JobRun, run.id).status for name, run in runs.items()}
    assert statuses == {"quiet": "failed", "beating": "running", "mine": "running"}
    assert "no sign of life from elsewhere:41" in session.get(JobRun, runs["quiet"].id).error


def test_a_running_job_beats(session, two_buyers, monkeypatch):
    from loyalty.evaluation import jobs

    monkeypatch.setattr(jobs, "RUN_HEARTBEAT_S", 0.05)
    beats = []
    original = jobs.JOBS["kpi-snapshot"].body

    def slow(context):
        import time

        time.sleep(0.4)
        beats.append(_fresh(session).exec(select(JobRun.heartbeat_at).where(JobRun.status == "running")).first())
        return original(context)

    monkeypatch.setitem(jobs.JOBS, "kpi-snapshot", replace(jobs.JOBS["kpi-snapshot"], body=slow))
    started = run_job("kpi-snapshot", as_of=date(2026, 10, 15), actor=MANAGER)
    assert started["status"] == "succeeded"
    (run,) = _runs(session, "kpi-snapshot")
    assert beats and beats[0] is not None and beats[0] > run.started_at


# --- tier-evaluation ------------------------------------------------------------------------------


@pytest.fixture
def tier_program(session):
    silver = make_tier(session, name="Silver", rank=1, min_spend=100, min_purchases=2, window_months=12, grace_months=3)
    gold = make_tier(session, name="Gold", rank=2, min_spend=500, min_purchases=5, window_months=12, grace_months=3)
    ann = make_member(session)  # 6 x 100 this year: Gold
    for month in range(3, 9):
        make_purchase(session, ann, 100.0, occurred_at=utc(2026, month, 10))
    bob = make_member(session)  # 2 x 80: Silver
    bob_purchases = [make_purchase(session, bob, 80.0, occurred_at=utc(2026, m, 12)) for m in (7, 8)]
    cleo = make_member(session)  # 1 x 50: no tier
    make_purchase(session, cleo, 50.0, occurred_at=utc(2026, 9, 1))
    # Gold since 1 August, now only Silver's worth: inside Gold's 3-month grace until 1 November.
    dina = make_member(session, tier_id=gold.id, tier_since=utc(2026, 8, 1))
    for month in (7, 8):
        make_purchase(session, dina, 70.0, occurred_at=utc(2026, month, 15))
    # Gold since June 2025, one purchase 19 months ago (outside the 12-month window).
    eli = make_member(session, tier_id=gold.id, tier_since=utc(2025, 6, 1))
    make_purchase(session, eli, 900.0, occurred_at=utc(2025, 3, 1))
    return {"silver": silver, "gold": gold, "ann": ann, "bob": bob, "cleo": cleo, "dina": dina, "eli": eli, "bob_purchases": bob_purchases}


def _tiers_now(session, program) -> dict[str, tuple[int | None, object]]:
    _fresh(session)
    return {name: (m.tier_id, m.tier_since) for name in ("ann", "bob", "cleo", "dina", "eli") for m in [session.get(Member, program[name].id)]}


def _movements(session) -> dict[int, str]:
    return {m.member_id: m.reason for m in _fresh(session).exec(select(TierMovement).order_by(TierMovement.id))}


def test_tier_evaluation_upgrades_at_once_downgrades_after_the_grace_period_with_readable_reasons(session, tier_program):
    p = tier_program
    result = run_job("tier-evaluation", as_of=date(2026, 10, 14), actor=MANAGER)
    assert result["status"] == "succeeded", result["error"]
    assert (result["rows"], result["upgrades"], result["downgrades"], result["kept_in_grace"]) == (3, 2, 1, 1)

    cutoff = utc(2026, 10, 15)
    tiers = _tiers_now(session, p)
    assert tiers["ann"] == (p["gold"].id, cutoff)
    assert tiers["bob"] == (p["silver"].id, cutoff)
    assert tiers["cleo"] == (None, None)
    assert tiers["dina"] == (p["gold"].id, utc(2026, 8, 1)), "inside the grace period until 1 November"
    assert tiers["eli"] == (None, cutoff)
    assert _movements(session) == {
        p["ann"].id: "spent 600.00 and bought 6 times in the last 12 months: qualifies for Gold",
        p["bob"].id: "spent 160.00 and bought 2 times in the last 12 months: qualifies for Silver",
        p["eli"].id: "spent 0.00 and bought 0 times in the last 12 months: below Gold (needs 500.00 and 5 purchases) "
        "and its 3-month grace period is over: no longer qualifies for any tier",
    }
    movement = _fresh(session).exec(select(TierMovement).where(TierMovement.member_id == p["ann"].id)).one()
    assert (movement.from_tier_id, movement.to_tier_id, movement.as_of, movement.moved_at) == (None, p["gold"].id, date(2026, 10, 14), cutoff)

    # After 1 November Dina's grace is over: down to Silver, which her 140.00 in 2 purchases still earns.
    later = run_job("tier-evaluation", as_of=date(2026, 11, 5), actor=MANAGER)
    assert (later["upgrades"], later["downgrades"]) == (0, 1)
    assert _movements(session)[p["dina"].id] == (
        "spent 140.00 and bought 2 times in the last 12 months: below Gold (needs 500.00 and 5 purchases) "
        "and its 3-month grace period is over: moves to Silver"
    )
    assert _tiers_now(session, p)["dina"] == (p["silver"].id, utc(2026, 11, 6))

    # Re-evaluating October now leaves Dina alone: a later evaluation settled her.
    assert run_job("tier-evaluation", as_of=date(2026, 10, 14), actor=MANAGER)["skipped_later"] == 1


def test_rerunning_tier_evaluation_for_the_same_day_replaces_its_movements(session, tier_program):
    p = tier_program
    run_job("tier-evaluation", as_of=date(2026, 10, 14), actor=MANAGER)
    first_moves, first_tiers = _movements(session), _tiers_now(session, p)

    again = run_job("tier-evaluation", as_of=date(2026, 10, 14), actor=MANAGER)
    assert (again["rows"], again["replaced"]) == (3, 3)
    assert _movements(session) == first_moves, "the same movements, not twice as many"
    assert _tiers_now(session, p) == first_tiers

    # A refund arrives late: Bob no longer reaches Silver. The re-run takes his move back.
    reverse_purchase(session=session, purchase_id=p["bob_purchases"][0], actor=OPERATIONS, now=utc(2026, 10, 20))
    third = run_job("tier-evaluation", as_of=date(2026, 10, 14), actor=MANAGER)
    assert third["upgrades"] == 1
    assert p["bob"].id not in _movements(session)
    assert _tiers_now(session, p)["bob"] == (None, None)
    assert _fresh(session).exec(select(func.count()).select_from(TierMovement)).one() == 2


def test_a_tier_evaluation_on_a_day_nobody_moves_succeeds_and_writes_nothing(session, tier_program):
    run_job("tier-evaluation", as_of=date(2026, 10, 14), actor=MANAGER)
    moves = _movements(session)
    quiet = run_job("tier-evaluation", as_of=date(2026, 10, 15), actor=MANAGER)  # the next day: the same qualification
    assert quiet["status"] == "succeeded", quiet
    assert (quiet["rows"], quiet["upgrades"], quiet["downgrades"]) == (0, 0, 0)
    assert _movements(session) == moves


def test_a_tier_evaluation_failing_half_way_moves_nobody(session, tier_program, monkeypatch):
    def broken(*_args, **_kwargs):
        raise RuntimeError("lost connection (simulated)")

    # Members' tiers are updated first, then the movements are inserted: that fails.
    monkeypatch.setattr("loyalty.evaluation.tiers.insert_frame", broken)
    before = _tiers_now(session, tier_program)
    result = run_job("tier-evaluation", as_of=date(2026, 10, 14), actor=MANAGER)
    assert result["status"] == "failed" and "lost connection" in result["error"]
    assert _tiers_now(session, tier_program) == before
    assert _movements(session) == {}
    assert _runs(session, "tier-evaluation")[-1].status == "failed"


# --- points-expiry ---------------------------------------------------------------------------------


def test_points_expiry_expires_each_lot_past_its_date_once(session):
    early, late = make_member(session), make_member(session)
    make_purchase(session, early, 100.0, occurred_at=utc(2025, 1, 10))  # expires 2026-01-10 (12 months)
    make_purchase(session, late, 100.0, occurred_at=utc(2025, 6, 1))

    result = run_job("points-expiry", as_of=date(2026, 1, 10), actor=MANAGER)
    assert (result["status"], result["rows"], result["points_expired"]) == ("succeeded", 1, 100)
    assert (balance(_fresh(session), early.id), balance(session, late.id)) == (0, 100)

    again = run_job("points-expiry", as_of=date(2026, 1, 10), actor=MANAGER)
    assert (again["rows"], again["points_expired"]) == (0, 0)
    assert (balance(_fresh(session), early.id), balance(session, late.id)) == (0, 100)


# --- campaign-evaluation -----------------------------------------------------------------------------


def test_campaign_evaluation_measures_uplift_over_the_holdout_with_confidence_intervals(session):
    for _ in range(4):
        make_member(session, acquisition_channel="web")
    shoppers = [make_member(session, acquisition_channel="shop") for _ in range(6)]
    campaign = save_campaign(
        session=session,
        actor=MANAGER,
        name="Double points September",
        kind="multiplier",
        starts_at=utc(2026, 9, 1),
        ends_at=utc(2026, 10, 1),
        rule={"multiplier": 2.0},
        eligibility={"acquisition_channels": ["shop"]},
        holdout_pct=0.2,
    )
    activate_campaign(session=session, campaign_id=campaign.id, actor=MANAGER, now=utc(2026, 8, 31))
    from db.models import CampaignAssignment

    groups = dict(_fresh(session).exec(select(CampaignAssignment.member_id, CampaignAssignment.group)).all())
    treated = sorted(m.id for m in shoppers if groups[m.id] == "treatment")
    held = sorted(m.id for m in shoppers if groups[m.id] == "holdout")
    assert (len(treated), len(held)) == (4, 2), "the stable hash puts 2 of these 6 in the 20 % holdout"
    by_id = {m.id: m for m in shoppers}

    # In the window: treatment spends 60 (2 purchases), 40, 20, 0; holdout 20, 0.
    for member_id, amounts in zip(treated, ([30.0, 30.0], [40.0], [20.0], [])):
        for day, amount in enumerate(amounts, start=3):
            make_purchase(session, by_id[member_id], amount, occurred_at=utc(2026, 9, day))
    make_purchase(session, by_id[held[0]], 20.0, occurred_at=utc(2026, 9, 9))
    make_purchase(session, by_id[held[1]], 500.0, occurred_at=utc(2026, 8, 20))  # before the window: not counted

    result = run_job("campaign-evaluation", as_of=date(2026, 10, 5), actor=MANAGER)
    assert (result["status"], result["campaigns"]) == ("succeeded", 1), result["error"]
    (row,) = campaign_results(_fresh(session)).to_dict("records")

    # Spend: means 30 vs 10; s1² = 2000/3, s0² = 200; Welch: se² = s1²/4 + s0²/2.
    v1, v0 = (2000 / 3) / 4, 200 / 2
    dof = (v1 + v0) ** 2 / (v1**2 / 3 + v0**2 / 1)
    half = stats.t.ppf(0.975, dof) * math.sqrt(v1 + v0)
    assert (row["treatment_members"], row["holdout_members"]) == (4, 2)
    assert (row["spend_treatment"], row["spend_holdout"], row["spend_uplift"]) == pytest.approx((30.0, 10.0, 20.0))
    assert (row["spend_uplift_ci_low"], row["spend_uplift_ci_high"]) == pytest.approx((20 - half, 20 + half))
    # Purchases per member: 1.0 vs 0.5.
    assert row["purchases_uplift"] == pytest.approx(0.5)
    # Retention (>= 1 purchase in the window): 3/4 vs 1/2, normal approximation.
    half_r = stats.norm.ppf(0.975) * math.sqrt(0.75 * 0.25 / 4 + 0.5 * 0.5 / 2)
    assert (row["retention_uplift"], row["retention_uplift_ci_low"], row["retention_uplift_ci_high"]) == pytest.approx(
        (0.25, 0.25 - half_r, 0.25 + half_r)
    )
    # Double points: the bonus equals the base points of the treatment's 120.00 of purchases.
    assert row["points_cost"] == 120
    assert row["incremental_revenue"] == pytest.approx(20.0 * 4)
    assert row["revenue_per_point"] == pytest.approx(80 / 120)
    assert (row["window_start"], row["window_end"]) == (date(2026, 9, 1), date(2026, 10, 1))
    # In money: 120 points at EUR 0.01 cost EUR 1.20; ROI = (80 x 30 % margin - 1.20) / 1.20 = 19.
    assert row["cost"] == pytest.approx(1.2) and row["roi"] == pytest.approx((80 * 0.3 - 1.2) / 1.2)
    assert (row["roi_ci_low"], row["roi_ci_high"]) == pytest.approx(((4 * (20 - half) * 0.3 - 1.2) / 1.2, (4 * (20 + half) * 0.3 - 1.2) / 1.2))
    assert (row["incremental_members"], row["incremental_members_ci_low"]) == pytest.approx((1.0, 4 * (0.25 - half_r)))
    # Six members cannot tell: the interval holds 0. Four treated members are already too noisy
    # ((20 / 2.80)² = 51 < s1²/n1 = 167): no holdout size would do, so none is named.
    assert row["incremental_revenue_ci_low"] < 0 and row["underpowered"] == 1.0 and pd.isna(row["holdout_needed"])

    stored = _fresh(session).exec(select(func.count()).select_from(KpiSnapshot).where(KpiSnapshot.dimension == "campaign")).one()
    run_job("campaign-evaluation", as_of=date(2026, 10, 6), actor=MANAGER)
    assert _fresh(session).exec(select(func.count()).select_from(KpiSnapshot).where(KpiSnapshot.dimension == "campaign")).one() == stored
    assert stored == result["rows"]


# --- retention-alert ---------------------------------------------------------------------------------


@pytest.fixture
def falling_retention(session):
    """4 members buy every month June-September; in October only 2 come back."""
    members = [make_member(session) for _ in range(4)]
    for month in (6, 7, 8, 9):
        for m in members:
            make_purchase(session, m, 10.0, occurred_at=utc(2026, month, 10))
    for m in members[:2]:
        make_purchase(session, m, 10.0, occurred_at=utc(2026, 10, 10))
    goal = save_goal(
        session=session, actor=MANAGER, name="Keep them", objective="retain", owner="Rita", starts_on=date(2026, 1, 1), ends_on=date(2026, 12, 31)
    )
    save_kpi_target(session=session, actor=MANAGER, goal_id=goal.id, metric="retention_rate", target_value=0.6)
    save_kpi_target(session=session, actor=MANAGER, goal_id=goal.id, metric="active_members", target_value=4)
    for start, end in ((date(2026, 9, 1), date(2026, 10, 1)), (date(2026, 10, 1), date(2026, 11, 1))):
        store_kpi_snapshots(session, [kpi_snapshot_frame(session, period="month", start=start, end=end, dimensions=(None,))])
    return members


def test_retention_alerts_for_target_trend_and_a_kpi_turning_off_track_and_a_rerun_replaces_them(session, falling_retention):
    result = run_job("retention-alert", as_of=date(2026, 11, 3), actor=MANAGER)
    assert (result["status"], result["rows"], result["alerts_as_of"], result["month"]) == ("succeeded", 3, "2026-10-31", "2026-10")
    alerts = {(a.kind, a.metric): a for a in _fresh(session).exec(select(Alert))}
    assert set(alerts) == {
        ("retention_below_target", "retention_rate"),
        ("retention_below_trend", "retention_rate"),
        ("kpi_off_track", "active_members"),
    }
    assert alerts[("retention_below_target", "retention_rate")].message == (
        "Retention of existing members in October 2026: it was 50.0%, below the 60.0% target of goal 'Keep them' (off track)."
    )
    assert alerts[("retention_below_target", "retention_rate")].severity == "critical"
    assert alerts[("retention_below_trend", "retention_rate")].message == (
        "Retention of existing members fell to 50.0% in October 2026, 50.0 points below its average of 100.0% over the "
        "previous 3 months (July 2026 to September 2026)."
    )
    assert alerts[("kpi_off_track", "active_members")].message == (
        "Active members turned off track in October 2026: 2 against a target of 4 (goal 'Keep them', month); before: 4, on track."
    )
    assert {a.as_of for a in alerts.values()} == {date(2026, 10, 31)}

    acknowledge_alert(session=session, alert_id=alerts[("retention_below_trend", "retention_rate")].id, actor=MANAGER)
    # The next day's run is about the same month: it replaces these three, keeping the acknowledgement.
    run_job("retention-alert", as_of=date(2026, 11, 4), actor=MANAGER)
    _fresh(session)
    again = {(a.kind, a.metric): a for a in _fresh(session).exec(select(Alert))}
    assert set(again) == set(alerts)
    assert again[("retention_below_trend", "retention_rate")].acknowledged_by == "max"
    assert again[("retention_below_target", "retention_rate")].acknowledged_by == ""


def test_no_alert_when_retention_holds(session):
    members = [make_member(session) for _ in range(3)]
    for month in (6, 7, 8, 9, 10):
        for m in members:
            make_purchase(session, m, 10.0, occurred_at=utc(2026, month, 10))
    result = run_job("retention-alert", as_of=date(2026, 11, 3), actor=MANAGER)
    assert (result["status"], result["rows"]) == ("succeeded", 0)


# --- running and recording ---------------------------------------------------------------------------


def test_job_history_lists_each_run_newest_first_with_exactly_the_documented_keys(session):
    run_job("points-expiry", as_of=date(2026, 1, 10), actor=MANAGER)
    run_job("campaign-evaluation", as_of=date(2026, 1, 11), actor=MANAGER)
    history = job_history(_fresh(session), limit=10)
    assert [h["job"] for h in history] == ["campaign-evaluation", "points-expiry"]
    assert set(history[0]) == {"job", "as_of", "status", "started_at", "finished_at", "rows", "error"}
    assert (history[1]["as_of"], history[1]["status"], history[1]["rows"], history[1]["error"]) == ("2026-01-10", "succeeded", 0, "")
    assert history[1]["finished_at"] >= history[1]["started_at"]


def test_kpi_snapshot_stores_the_overview_numbers_the_page_then_reads(session, two_buyers):
    from loyalty.insights.overview import program_summary

    a, _ = two_buyers
    session.add(LedgerEntry(member_id=a.id, kind="redeem", points=-5, occurred_at=utc(2026, 9, 20)))
    session.commit()
    run_job("kpi-snapshot", as_of=date(2026, 9, 30), actor=MANAGER)
    stored = program_summary(_fresh(session))
    live = program_summary(_fresh(session), now=utc(2026, 10, 1), live=True)
    assert stored.as_of == date(2026, 9, 30) and live.as_of is None
    # Purchases 10 + 30 + 20 earn 60 points; 5 redeemed in September.
    assert (stored.points_outstanding, stored.active_members, stored.purchases_30d, stored.revenue_30d) == (55, 2, 1, 20.0)
    assert (live.points_outstanding, live.active_members, live.purchases_30d, live.revenue_30d) == (55, 2, 1, 20.0)
    pd.testing.assert_frame_equal(stored.monthly, live.monthly, check_dtype=False)
    september = stored.monthly.set_index("month").loc["2026-09"]
    assert (september["revenue"], september["buyers"], september["points_earned"], september["points_redeemed"]) == (20.0, 1, 20, 5)


def test_progress_reaches_the_caller_and_the_run_record(session, two_buyers):
    seen: list[tuple[float, str]] = []
    run_job("kpi-snapshot", as_of=date(2026, 10, 15), actor=MANAGER, progress=lambda f, m: seen.append((f, m)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) >= 4
    assert any("month" in m for _, m in seen)
    assert _runs(session, "kpi-snapshot")[-1].progress == 1.0


def test_run_all_runs_every_job_in_schedule_order_and_goes_on_after_a_failure(session, monkeypatch):
    def failing_report(_ctx):
        raise RuntimeError("no Chromium (simulated)")

    monkeypatch.setitem(JOBS, "executive-report", replace(JOBS["executive-report"], body=failing_report))
    summaries = run_all(as_of=date(2026, 1, 10), actor=MANAGER)
    assert [s["job"] for s in summaries] == [
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
    assert [s["status"] for s in summaries] == ["succeeded"] * 7 + ["failed", "succeeded"]
    assert summaries[-2]["error"] == "RuntimeError: no Chromium (simulated)", "the jobs after a failed one still run"


@pytest.mark.parametrize(
    "call,error",
    [
        (lambda: run_job("kpi-snapshot", as_of=date.today() + timedelta(days=3), actor=MANAGER), InvalidInput),
        (lambda: run_job("make-coffee", actor=MANAGER), InvalidInput),
        (lambda: run_job("kpi-snapshot", as_of=date(2026, 1, 1), actor=ANALYST), PermissionDenied),
    ],
    ids=["future-as-of", "unknown-job", "analyst-may-not-run"],
)
def test_refused_runs_raise_before_anything_is_recorded(session, call, error):
    with pytest.raises(error):
        call()
    assert _fresh(session).exec(select(func.count()).select_from(JobRun)).one() == 0


def test_on_postgresql_a_run_waiting_for_another_runs_lock_gives_up_after_the_lock_timeout(db_url, monkeypatch):
    """PostgreSQL waits for a lock without limit by default; the engine sets ``lock_timeout``."""
    import time

    from sqlalchemy.exc import OperationalError

    import db.engine as engine_module
    from db.engine import dispose_engines, get_engine, new_session, write_transaction
    from loyalty.evaluation.runs import hold_job_lock

    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite's own busy timeout limits its lock waits")
    dispose_engines()  # new connections take the shorter limit below
    monkeypatch.setattr(engine_module, "POSTGRES_LOCK_TIMEOUT_MS", 1000)
    engine = get_engine(db_url)
    with new_session(engine) as holder, new_session(engine) as waiter, write_transaction(holder):
        hold_job_lock(holder, "points-expiry")
        started = time.monotonic()
        with pytest.raises(OperationalError, match="lock timeout"), write_transaction(waiter):
            hold_job_lock(waiter, "points-expiry")
        assert time.monotonic() - started < 5
    dispose_engines()


# --- the whole evaluation -------------------------------------------------------------------------


def test_a_second_run_of_the_whole_evaluation_for_the_same_day_changes_no_stored_kpi(session, db_url, now):
    """The KPI snapshot runs after the tier evaluation, so its split by tier sees the tiers of
    the day; before, the second run moved the by-tier numbers of members upgraded by the first."""
    from db.engine import get_engine
    from loyalty.demo.simulation import create_demo

    create_demo(session, members=300, months=12, seed=3, actor=MANAGER, now=now)
    as_of = now.date() - timedelta(days=1)

    def stored() -> dict[tuple, float | None]:
        rows = _fresh(session).exec(
            select(
                KpiSnapshot.metric,
                KpiSnapshot.period,
                KpiSnapshot.period_start,
                KpiSnapshot.dimension,
                KpiSnapshot.dimension_value,
                KpiSnapshot.value,
            )
        )
        return {tuple(row[:5]): row[5] for row in rows}

    first_run = run_all(as_of=as_of, actor=MANAGER, engine=get_engine(db_url))
    assert {r["job"]: r["status"] for r in first_run}["kpi-snapshot"] == "succeeded"
    first = stored()
    assert any(key[3] == "tier" for key in first)
    run_all(as_of=as_of, actor=MANAGER, engine=get_engine(db_url))
    second = stored()

    def same(a, b) -> bool:  # sums in another order may differ in the last bit
        return a == b or (a is not None and b is not None and math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-9))

    changed = {key: (first.get(key), second.get(key)) for key in first.keys() | second.keys() if not same(first.get(key), second.get(key))}
    assert not changed, changed
