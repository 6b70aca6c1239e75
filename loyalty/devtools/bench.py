"""``python -m loyalty bench``: the whole product measured at a given size (issue 8).

The benchmark builds a program of ``--members`` members and about
``--purchases-per-member`` purchases each over two years, then measures every step a
real installation runs, each as a whole and, where it is a command, as its own process:

1. **generate** - members and purchases written as CSV files the way the company's
   systems would export them (one purchases file per calendar month), vectorised with
   numpy and written by Polars; then the program's configuration through the audited
   plan functions (tiers, rewards, segments, a goal with KPI targets, three campaigns
   with holdouts activated at their historical start).
2. **import-members** and **import-purchases** - ``loyalty.ledger.imports.import_csv``, the
   path of ``python -m loyalty import``, points and campaign bonuses included.
3. **evaluate:JOB** - ``python -m loyalty evaluate --job JOB`` for every job, in the
   order of ``evaluate --job all``; **evaluate-all** is their sum.
4. **analyze:COMMAND** - ``python -m loyalty analyze ...`` end to end.
5. **baseline** - in one process on the same data: the straightforward way (pandas
   ``read_sql`` of the whole tables, then pandas) for retention, RFM and KPIs, and the
   engine's way for the same three; the ratio of the two. Also the in-memory time of
   retention + RFM + KPIs + tier review once the data is loaded, and the CLV fit with
   per-member predictions.
6. **page:TITLE** - the first render of every page after the evaluation, with
   ``streamlit.testing.v1.AppTest`` (one process, each page's cold caches).
7. **decide:...** - a what-if scenario replayed at this size, the win-back list and the
   liability forecast's back-test (issue 9).
8. **redemptions** - 1,000 redemption attempts from 8 client processes at once, on a
   small pool of members so that they collide; then the check that no member's balance
   went below zero and that every successful redemption took its points exactly once.

Peak memory (``peak_mb``) is the maximum resident set size of the process that ran the
step (``getrusage`` of the child), so it is what that command needs on its own.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from db.engine import PROJECT_ROOT

__all__ = ["BenchConfig", "generate_files", "run_bench"]

HISTORY_DAYS = 730
DEFAULT_PURCHASES_PER_MEMBER = 10
REDEMPTION_CLIENTS = 8
REDEMPTION_ATTEMPTS = 1_000
REDEMPTION_POOL = 150  # members the clients fight over: collisions are the point
SEED = 8
# The longest step at 1M members took about 5 minutes (docs/performance.md): an hour means stuck.
STEP_TIME_LIMIT_SECONDS = 3600.0


@dataclass
class BenchConfig:
    members: int
    purchases_per_member: float = DEFAULT_PURCHASES_PER_MEMBER
    database_url: str | None = None
    workdir: Path | None = None
    keep_files: bool = False
    steps: tuple[str, ...] = ()  # empty: all
    api_workers: int = 1
    api_connections: int = 32
    api_seconds: float = 30.0
    now: datetime = field(default_factory=lambda: datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0))


# --- the synthetic program ---------------------------------------------------------------


def generate_files(members: int, purchases_per_member: float, out: Path, *, now: datetime, seed: int = SEED) -> dict[str, Any]:
    """Write ``members.csv`` and one ``purchases_YYYY_MM.csv`` per month under ``out``.

    Members join over the two years (a growing program) and buy while alive: each has
    a purchase rate drawn from a gamma distribution and a lifetime from an exponential
    one (a BG/NBD-like population), spends around a personal mean (Gamma-Gamma-like)
    scaled by the category's price level. Rates are scaled so the file holds about
    ``members * purchases_per_member`` purchases. No Python loop runs per row.
    """
    import polars as pl

    from loyalty.demo.simulation import ACQUISITION_CHANNELS, CATEGORIES, CATEGORY_PRICE, CATEGORY_SHARE, PURCHASE_CHANNELS

    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    end = int(now.timestamp())
    start = end - HISTORY_DAYS * 86_400
    # A growing program: join density rising linearly (inverse CDF of a triangle-ish ramp).
    u = rng.random(members)
    # x = (sqrt(0.36 + 1.28 u) - 0.6) / (sqrt(1.64) - 0.6) runs from 0 to 1: no one joins in the last 30 days or later.
    joined = start + ((np.sqrt(0.36 + 1.28 * u) - 0.6) / (np.sqrt(1.64) - 0.6) * (end - 30 * 86_400 - start)).astype(np.int64)
    channel_names = list(ACQUISITION_CHANNELS)
    shares = np.array([p.share for p in ACQUISITION_CHANNELS.values()])
    channel = rng.choice(len(channel_names), size=members, p=shares / shares.sum())
    member_ids = np.char.add("M", np.char.zfill(np.arange(1, members + 1).astype(str), 7))
    consent = rng.random(members) < 0.6
    pl.DataFrame(
        {
            "member_id": member_ids,
            "name": np.char.add("Member ", np.arange(1, members + 1).astype(str)),
            "email": np.char.add(np.char.add("member", np.arange(1, members + 1).astype(str)), "@example.com"),
            "joined_at": pl.from_epoch(pl.Series(joined), time_unit="s").dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "acquisition_channel": np.array(channel_names, dtype=object)[channel],
            "marketing_consent": np.where(consent, "true", "false"),
            "city": np.array(["Lyon", "Paris", "Lille", "Nantes", "Bordeaux", "Marseille"], dtype=object)[rng.integers(0, 6, members)],
        }
    ).write_csv(out / "members.csv")

    lifetime = rng.exponential(540 * 86_400, members)
    alive_until = np.minimum(joined + lifetime, end - 60)
    span = np.maximum(alive_until - joined, 0.0)
    rate = rng.gamma(0.9, 1.0, members)
    first = rng.random(members) < 0.8  # most members buy when they join
    wanted = members * purchases_per_member - first.sum()
    scale = max(wanted, 0) / max(float((rate * span).sum()), 1.0)
    repeat = rng.poisson(rate * span * scale)
    counts = repeat + first
    owner = np.repeat(np.arange(members), counts)
    is_first = np.zeros(len(owner), dtype=bool)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    is_first[starts[first]] = True
    moment = joined[owner] + np.where(is_first, rng.random(len(owner)) * 3600, rng.random(len(owner)) * span[owner])
    moment = np.minimum(moment.astype(np.int64), end - 1)
    order = np.argsort(moment, kind="stable")
    owner, moment = owner[order], moment[order]
    personal_mean = rng.gamma(4.0, 12.0, members)
    category = rng.choice(len(CATEGORIES), size=len(owner), p=CATEGORY_SHARE / CATEGORY_SHARE.sum())
    amount = np.maximum(np.round(rng.gamma(6.0, personal_mean[owner] / 6.0) * CATEGORY_PRICE[category], 2), 1.0)
    purchase_channel = rng.choice(len(PURCHASE_CHANNELS), size=len(owner), p=[0.6, 0.25, 0.15])
    store = rng.integers(1, 121, len(owner))

    # One calendar month at a time: the strings of ten million rows never sit in memory at once.
    first_day = datetime.fromtimestamp(start, UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    bounds = [first_day]
    while bounds[-1].timestamp() <= end:
        bounds.append((bounds[-1] + timedelta(days=32)).replace(day=1))
    cuts = np.searchsorted(moment, [int(b.timestamp()) for b in bounds])
    channels, categories = np.array(PURCHASE_CHANNELS, dtype=object), np.array(CATEGORIES, dtype=object)
    files = []
    for month, lo, hi in zip(bounds, cuts[:-1], cuts[1:]):
        if hi <= lo:
            continue
        rows = slice(lo, hi)
        path = out / f"purchases_{month:%Y_%m}.csv"
        pl.DataFrame(
            {
                "member_id": member_ids[owner[rows]],
                "occurred_at": pl.from_epoch(pl.Series(moment[rows]), time_unit="s").dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "amount": amount[rows],
                "channel": channels[purchase_channel[rows]],
                "store": pl.Series(store[rows]).cast(pl.String),
                "category": categories[category[rows]],
                "purchase_id": pl.Series(np.arange(lo + 1, hi + 1)).cast(pl.String).str.zfill(10),
            }
        ).with_columns(store=pl.lit("Store ") + pl.col("store"), purchase_id=pl.lit("B") + pl.col("purchase_id")).write_csv(path)
        files.append(str(path))
    return {"members_file": str(out / "members.csv"), "purchase_files": files, "purchases": int(len(owner))}


def configure_program(session: Any, *, now: datetime) -> dict[str, int]:
    """Tiers, rewards, segments, a goal with targets and three historical campaigns.

    Through the audited plan functions, as a loyalty manager would set them up; the
    campaigns are activated at their historical start so their members are assigned
    (with holdouts) before the purchases arrive, as in a live program.
    """
    from sqlalchemy import text

    from db.models import stored_id
    from loyalty.access.roles import SYSTEM_CLI
    from loyalty.demo.simulation import REWARDS, SEGMENTS, TIERS
    from loyalty.program.campaigns import activate_campaign, advance_campaigns, save_campaign
    from loyalty.program.goals import save_goal, save_kpi_target
    from loyalty.program.rewards import save_reward
    from loyalty.program.segments import save_segment
    from loyalty.program.tiers import list_tiers, save_tiers

    actor = SYSTEM_CLI
    save_tiers(session=session, tiers=[dict(t) for t in TIERS], actor=actor)
    tiers = list_tiers(session)
    tier_id = dict(zip(tiers["name"], tiers["id"]))
    members = int(session.execute(text("SELECT COUNT(*) FROM member")).scalar_one())
    for plan in REWARDS:
        save_reward(
            session=session,
            actor=actor,
            name=plan.name,
            kind=plan.kind,
            description=plan.description,
            points_cost=plan.points_cost,
            partner=plan.partner,
            active=plan.active,
            stock=None if plan.stock_per_1000 is None else max(10, round(plan.stock_per_1000 * members / 1000)),
            min_tier_id=int(tier_id[plan.min_tier]) if plan.min_tier else None,
        )
    for name, description, rules in SEGMENTS:
        save_segment(session=session, actor=actor, name=name, description=description, rules=rules)
    today = now.date()
    goal = save_goal(
        session=session,
        actor=actor,
        name="Grow loyal revenue",
        objective="retain",
        owner="Head of loyalty",
        starts_on=today.replace(day=1) - timedelta(days=60),
        ends_on=today + timedelta(days=300),
    )
    for metric, value in (("retention_rate", 0.4), ("average_transaction_value", 50.0), ("purchase_frequency", 1.3), ("redemption_rate", 0.1)):
        save_kpi_target(session=session, actor=actor, goal_id=stored_id(goal), metric=metric, target_value=value)
    campaigns: tuple[tuple[str, str, dict[str, Any], int, int, dict[str, Any]], ...] = (
        ("Spring double points", "multiplier", {"multiplier": 2.0}, 600, 14, {}),
        ("Eco month: double points on eco-friendly", "category_bonus", {"categories": ["eco-friendly"], "multiplier": 2.0}, 330, 30, {}),
        ("Referral thank-you bonus", "fixed_bonus", {"points": 100, "min_amount": 20}, 150, 60, {"acquisition_channels": ["referral"]}),
    )
    for name, kind, rule, days_back, days, eligibility in campaigns:
        starts_at = now - timedelta(days=days_back)
        campaign = save_campaign(
            session=session,
            actor=actor,
            name=name,
            kind=kind,
            description=name,
            starts_at=starts_at,
            ends_at=starts_at + timedelta(days=days),
            channels=["email"],
            eligibility=eligibility,
            rule=rule,
            holdout_pct=0.1,
            budget_points=None,
        )
        activate_campaign(session=session, campaign_id=stored_id(campaign), actor=actor, now=starts_at)
    advance_campaigns(session, now=now)
    return {"tiers": len(TIERS), "rewards": len(REWARDS), "campaigns": len(campaigns), "segments": len(SEGMENTS)}


# --- measuring a step ----------------------------------------------------------------------


def _status_kb(pid: int, field_name: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field_name):
                return int(line.split()[1])
    return 0


def _tree_rss_kb(root: int) -> tuple[int, int]:
    """(resident memory of ``root`` and all its descendants, ``root``'s own high-water mark), KiB (Linux /proc)."""
    total, todo, root_peak = 0, [root], 0
    while todo:
        pid = todo.pop()
        try:
            total += _status_kb(pid, "VmRSS:")
            if pid == root:
                root_peak = _status_kb(pid, "VmHWM:")
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as children:
                    todo.extend(int(c) for c in children.read().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError):
            continue
    return total, root_peak


@dataclass
class StepResult:
    seconds: float
    peak_mb: float
    output: dict[str, Any] = field(default_factory=dict)


def run_measured(command: list[str], env: dict[str, str], *, sample_every: float = 0.05, time_limit: float = STEP_TIME_LIMIT_SECONDS) -> StepResult:
    """Run ``command``; wall seconds and the peak memory of its whole process tree.

    A step still running after ``time_limit`` seconds is stopped with its whole process
    group, and a RuntimeError says so.

    The peak is the larger of the child's own high-water mark (``VmHWM``, read while it
    runs) and the sampled sum of the tree's resident sets (readers and clients run in
    child processes of their own). ``ru_maxrss`` of a child is not used: on Linux it
    can carry the parent's size from before ``exec``.
    """
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        # A session of its own: a step over its time limit is stopped with its reader processes.
        process = subprocess.Popen(command, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
        peak_kb = 0
        while True:
            pid, status, _ = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - started > time_limit:
                os.killpg(process.pid, signal.SIGKILL)
                os.waitpid(process.pid, 0)
                raise RuntimeError(
                    f"{' '.join(command[2:])} did not finish within {time_limit:,.0f} s and was stopped "
                    "(raise STEP_TIME_LIMIT_SECONDS for a larger program)."
                )
            tree, own = _tree_rss_kb(process.pid)
            peak_kb = max(peak_kb, tree, own)
            time.sleep(sample_every)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command[2:])} failed (exit {process.returncode}):\n{stderr[-3000:]}{stdout[-2000:]}")
    output: dict[str, Any] = {}
    text = stdout.strip()
    if text.startswith("{"):
        try:
            output = json.loads(text)
        except json.JSONDecodeError:
            output = {}
    return StepResult(round(seconds, 3), round(peak_kb / 1024, 1), output)


def _loyalty(*args: str) -> list[str]:
    return [sys.executable, "-m", "loyalty", *args]


def _internal(step: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "loyalty.devtools.bench", step, *args]


# --- steps that run in their own process ----------------------------------------------------


def _step_configure(now: datetime) -> dict[str, Any]:
    from db.engine import new_session

    with new_session() as session:
        return configure_program(session, now=now)


def _step_import_purchases(files: list[str]) -> dict[str, Any]:
    from db.engine import new_session
    from loyalty.access.roles import SYSTEM_CLI
    from loyalty.ledger.imports import import_csv

    rows, seconds = 0, 0.0
    for path in files:
        with new_session() as session:
            result = import_csv(session, "purchases", Path(path), actor=SYSTEM_CLI)
        if result.rejected:
            raise RuntimeError(f"{path}: {result.rejected} rows rejected")
        rows += result.imported
        seconds += result.seconds
    return {"rows": rows, "import_seconds": round(seconds, 3), "rows_per_second": round(rows / seconds) if seconds else None}


def _pandas_baseline(url: str, start: date, end: date) -> dict[str, Any]:
    """The straightforward way: ``pandas.read_sql`` of whole tables, then pandas.

    Retention (monthly cohort matrix), RFM (quintile scores per member) and the main
    KPIs of one month, each as someone would write them first.
    """
    import pandas as pd
    from sqlalchemy import create_engine

    timings: dict[str, float] = {}
    engine = create_engine(url)
    t0 = time.perf_counter()
    purchases = pd.read_sql("SELECT member_id, occurred_at, amount, refunded_at FROM purchase", engine)
    purchases["occurred_at"] = pd.to_datetime(purchases["occurred_at"], utc=True, format="mixed")
    purchases = purchases[purchases["refunded_at"].isna()]
    read = time.perf_counter() - t0
    timings["read"] = read

    t0 = time.perf_counter()
    month = purchases["occurred_at"].dt.tz_localize(None).dt.to_period("M")
    first = month.groupby(purchases["member_id"]).transform("min")
    age = (month - first).apply(lambda offset: offset.n)
    active = pd.DataFrame({"cohort": first, "age": age, "member_id": purchases["member_id"]}).drop_duplicates()
    matrix = active.pivot_table(index="cohort", columns="age", values="member_id", aggfunc="count")
    _ = matrix.div(matrix[0], axis=0)
    timings["retention"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    as_of = pd.Timestamp(end, tz="UTC")
    per_member = purchases.groupby("member_id").agg(last=("occurred_at", "max"), frequency=("amount", "size"), monetary=("amount", "sum"))
    per_member["recency"] = (as_of - per_member["last"]).dt.days
    for column, ascending in (("recency", False), ("frequency", True), ("monetary", True)):
        per_member[column[0] + "_score"] = pd.qcut(per_member[column].rank(method="first", ascending=ascending), 5, labels=False) + 1
    _ = per_member.groupby(["r_score", "f_score", "m_score"]).size()
    timings["rfm"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    lo, hi = pd.Timestamp(start, tz="UTC"), pd.Timestamp(end, tz="UTC")
    window = purchases[(purchases["occurred_at"] >= lo) & (purchases["occurred_at"] < hi)]
    previous = purchases[(purchases["occurred_at"] >= lo - (hi - lo)) & (purchases["occurred_at"] < lo)]
    buyers = window["member_id"].unique()
    _ = {
        "revenue": window["amount"].sum(),
        "average_transaction_value": window["amount"].mean(),
        "purchase_frequency": len(window) / max(len(buyers), 1),
        "active_members": len(buyers),
        "retention_rate": previous["member_id"].drop_duplicates().isin(buyers).mean(),
    }
    timings["kpis"] = time.perf_counter() - t0
    return {name: round(value, 3) for name, value in timings.items()}


def _step_baseline(start: date, end: date) -> dict[str, Any]:
    """Engine and pandas baseline for retention, RFM and KPIs, in this one process."""
    import gc

    from db.engine import get_engine, new_session
    from loyalty.analytics.clv import clv_analysis
    from loyalty.analytics.cohorts import retention_analysis
    from loyalty.analytics.metrics import kpi_summary
    from loyalty.analytics.rfm import rfm_analysis
    from loyalty.devtools.analytics_bench import time_analyze

    url = get_engine().url.render_as_string(hide_password=False)
    engine_seconds: dict[str, float] = {}
    with new_session() as session:
        for name, work in (
            ("retention", lambda: retention_analysis(session, "month")),
            ("rfm", lambda: rfm_analysis(session)),
            ("kpis", lambda: kpi_summary(session, start, end)),
        ):
            t0 = time.perf_counter()
            work()
            engine_seconds[name] = round(time.perf_counter() - t0, 3)
        t0 = time.perf_counter()
        clv_analysis(session, end - timedelta(days=1), "week")
        clv_seconds = round(time.perf_counter() - t0, 3)
    memory = time_analyze(start, end)
    gc.collect()
    baseline = _pandas_baseline(url, start, end)
    ratio = {name: round((baseline["read"] + baseline[name]) / engine_seconds[name], 1) for name in engine_seconds}
    return {
        "engine_seconds": engine_seconds,
        "baseline_seconds": baseline,
        "ratio": ratio,
        "clv_seconds": clv_seconds,
        "in_memory": memory["steps"],
        "in_memory_seconds": memory["in_memory_seconds"],
    }


def _step_decide() -> dict[str, Any]:
    """Issue 9's heavy calls at this size: a what-if scenario (both rule sets replayed),
    the win-back list and the liability forecast back-test."""
    from db.engine import new_session
    from loyalty.decisions.forecast import backtest_forecast
    from loyalty.decisions.whatif import bench_whatif
    from loyalty.decisions.winback import winback_candidates

    seconds: dict[str, float] = {}
    with new_session() as session:
        timings = bench_whatif(session, changes={"points_per_currency_unit": 1.5, "expiry_months": 6})
        seconds["whatif"] = round(timings["total_s"], 3)
        t0 = time.perf_counter()
        winback_candidates(session)
        seconds["winback"] = round(time.perf_counter() - t0, 3)
        t0 = time.perf_counter()
        backtest = backtest_forecast(session)
        seconds["forecast-backtest"] = round(time.perf_counter() - t0, 3)
    return {"seconds": seconds, "whatif": timings, "backtest": _plain(backtest)}


def _plain(value: Any) -> Any:
    """JSON-friendly: frames become records, numbers stay numbers."""
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        return value.to_dict(orient="records")
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _step_pages() -> dict[str, Any]:
    """First render of every page, as an admin, after the evaluation.

    One AppTest of ``app.py`` per page: the app's first run (which draws the Overview)
    and then the switch to the page, timed; each page's loaders start with cold caches.
    """
    from sqlmodel import select
    from streamlit.testing.v1 import AppTest

    from db.engine import new_session
    from db.models import User
    from loyalty.access.roles import PAGES, SYSTEM_CLI, Actor
    from loyalty.access.sessions import start_session
    from loyalty.access.users import create_user

    os.environ["LOYALTY_DEMO"] = os.environ["LOYALTY_WORKER"] = "0"
    username = "bench-admin"
    with new_session() as session:
        if session.exec(select(User).where(User.username == username)).first() is None:
            create_user(session=session, username=username, role="admin", actor=SYSTEM_CLI)
    app_path = str(PROJECT_ROOT / "app.py")
    with new_session() as session:
        session_id = start_session(session=session, actor=Actor(username, "admin")).id
    seconds: dict[str, float] = {}
    for spec in PAGES:
        app = AppTest.from_file(app_path, default_timeout=600)
        app.session_state["auth_session_id"] = session_id
        t0 = time.perf_counter()
        app.run()
        first = time.perf_counter() - t0
        if spec.path != "pages/overview.py":
            t0 = time.perf_counter()
            app.switch_page(spec.path).run()
            first = time.perf_counter() - t0
        if app.exception:
            raise RuntimeError(f"{spec.title}: {app.exception[0].message}")
        if not app.title:
            raise RuntimeError(f"{spec.title}: the page drew no title; it did not render")
        seconds[spec.title] = round(first, 3)
    return {"pages": seconds}


def _redemption_client(args: tuple[str, list[int], list[int], int, int]) -> dict[str, int]:
    """One client: ``attempts`` redemptions of random rewards by random pool members."""
    url, pool, rewards, attempts, seed = args
    from db.engine import get_engine, new_session
    from db.models import Redemption
    from loyalty.access.roles import Actor
    from loyalty.errors import LoyaltyError
    from loyalty.ledger.redemptions import redeem_reward

    rng = np.random.default_rng(seed)
    actor = Actor(f"bench-client-{seed}", "operations")
    outcome = {"ok": 0, "refused": 0, "points": 0}
    engine = get_engine(url)
    for _ in range(attempts):
        member, reward = int(rng.choice(pool)), int(rng.choice(rewards))
        with new_session(engine) as session:
            try:
                result = redeem_reward(session=session, member_id=member, reward_id=reward, actor=actor)
            except LoyaltyError:
                outcome["refused"] += 1
                continue
            outcome["ok"] += 1
            redemption = session.get(Redemption, result.redemption_id)
            assert redemption is not None  # redeem_reward committed it
            outcome["points"] += redemption.points
    return outcome


def _step_api(connections: int, seconds: float, workers: int) -> dict[str, Any]:
    """Tills posting purchases to ``python -m loyalty api`` (``workers`` processes), one key and
    keep-alive connection each, one request in ten retried (loyalty.devtools.api_load); then
    the check that every purchase answered 201 is stored once and earned exactly once."""
    import subprocess
    import sys

    from sqlalchemy import func
    from sqlmodel import col, select

    from db.engine import new_session
    from db.models import LedgerEntry, Member, Purchase
    from loyalty.access.roles import SYSTEM_CLI
    from loyalty.devtools.api_load import run_load
    from loyalty.devtools.servers import free_port, stop, wait_until_up
    from loyalty.integrations.apikeys import create_key

    run = f"{time.time():.0f}"
    with new_session() as session:
        keys = [create_key(session, name=f"load-{run}-{i}", scopes=["purchases:write"], actor=SYSTEM_CLI)["key"] for i in range(connections)]
        members = list(session.exec(select(Member.external_id).where(col(Member.erased_at).is_(None)).limit(20_000)))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "loyalty", "api", "--port", str(port), "--workers", str(workers)], stderr=subprocess.DEVNULL)
    try:
        wait_until_up(server, f"{url}/openapi.json", timeout_s=60, what="the API server")
        result = run_load(url, keys=keys, members=members, seconds=seconds, prefix=f"LOAD-{run}-")
    finally:
        stop(server)
    with new_session() as session:
        stored = dict(
            session.exec(
                select(Purchase.external_id, func.count(col(LedgerEntry.id)))
                .join(LedgerEntry, col(LedgerEntry.purchase_id) == Purchase.id, isouter=True)
                .where(col(Purchase.external_id).like(f"LOAD-{run}-%"), col(LedgerEntry.kind) == "earn")
                .group_by(col(Purchase.external_id))
            ).all()
        )
        points = dict(
            session.exec(
                select(Purchase.external_id, func.sum(LedgerEntry.points))
                .join(LedgerEntry, col(LedgerEntry.purchase_id) == Purchase.id)
                .where(col(Purchase.external_id).like(f"LOAD-{run}-%"))
                .group_by(col(Purchase.external_id))
            ).all()
        )
    summary = result.summary()
    summary["workers"] = workers
    summary["check"] = {
        "answered_201": len(result.earned),
        "stored": len(stored),
        "earned_once": sum(1 for p in result.earned if stored.get(p) == 1),
        "points_as_answered": sum(1 for p, pts in result.earned.items() if points.get(p) == pts),
        "stored_without_answer": len(set(stored) - set(result.earned)),
    }
    return summary


def _step_redemptions(clients: int, attempts: int) -> dict[str, Any]:
    """``attempts`` redemptions from ``clients`` processes at once on a contested pool.

    The pool is the members with the most points: each can afford only a few rewards,
    so clients race for the same balances. Afterwards: no balance below zero, and the
    points of the successful redemptions equal the ``redeem`` ledger rows they wrote.
    """
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from sqlalchemy import text

    from db.engine import get_engine

    engine = get_engine()
    url = engine.url.render_as_string(hide_password=False)
    with engine.connect() as conn:
        pool = [
            r[0]
            for r in conn.execute(
                text("SELECT member_id FROM ledger_entry GROUP BY member_id HAVING SUM(points) BETWEEN 1500 AND 6000 ORDER BY member_id LIMIT :n"),
                {"n": REDEMPTION_POOL},
            )
        ]
        rewards = [r[0] for r in conn.execute(text("SELECT id FROM reward WHERE active AND min_tier_id IS NULL AND points_cost <= 1200 ORDER BY id"))]
        before = conn.execute(text("SELECT COALESCE(MAX(id), 0) FROM redemption")).scalar_one()
    per_client = [attempts // clients + (1 if i < attempts % clients else 0) for i in range(clients)]
    engine.dispose()
    t0 = time.perf_counter()
    with ProcessPoolExecutor(clients, mp_context=get_context("spawn")) as executor:
        outcomes = list(executor.map(_redemption_client, [(url, pool, rewards, n, i + 1) for i, n in enumerate(per_client)]))
    seconds = time.perf_counter() - t0
    with engine.connect() as conn:
        negative = conn.execute(
            text("SELECT COUNT(*) FROM (SELECT member_id FROM ledger_entry GROUP BY member_id HAVING SUM(points) < 0) AS n")
        ).scalar_one()
        redeemed = conn.execute(
            text(
                "SELECT COUNT(*), COALESCE(SUM(r.points), 0), COALESCE(-SUM(l.points), 0) FROM redemption r "
                "JOIN ledger_entry l ON l.redemption_id = r.id AND l.kind = 'redeem' WHERE r.id > :before"
            ),
            {"before": before},
        ).one()
    ok = sum(o["ok"] for o in outcomes)
    return {
        "attempts": attempts,
        "clients": clients,
        "pool_members": len(pool),
        "succeeded": ok,
        "refused": sum(o["refused"] for o in outcomes),
        "seconds": round(seconds, 3),
        "attempts_per_second": round(attempts / seconds, 1),
        "members_below_zero": int(negative),
        "redemptions_written": int(redeemed[0]),
        "points_redeemed": int(redeemed[1]),
        "ledger_points_taken": int(redeemed[2]),
        "points_claimed_by_clients": sum(o["points"] for o in outcomes),
        "overspend": bool(negative or redeemed[0] != ok or redeemed[1] != redeemed[2]),
    }


# --- the orchestrator ------------------------------------------------------------------------


def _empty_database(url: str) -> None:
    from sqlalchemy import inspect

    from db.engine import get_engine

    engine = get_engine(url)
    names = set(inspect(engine).get_table_names())
    if "member" in names:
        with engine.connect() as conn:
            if conn.exec_driver_sql("SELECT COUNT(*) FROM member").scalar_one():
                raise SystemExit(f"bench: {engine.url.render_as_string()} already holds members; give an empty database.")
    engine.dispose()


def _month_bounds(now: datetime) -> tuple[date, date]:
    """The last complete calendar month: [start, end)."""
    end = now.date().replace(day=1)
    return (end - timedelta(days=1)).replace(day=1), end


def run_bench(config: BenchConfig, *, echo: Any = print) -> dict[str, Any]:
    """Run every step; return ``{"members", "purchases", "steps": {name: {seconds, peak_mb}}, ...}``."""
    from loyalty.access.roles import PAGES
    from loyalty.evaluation.jobs import JOB_ORDER

    workdir = config.workdir or Path(tempfile.mkdtemp(prefix="loyalty-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    url = config.database_url or f"sqlite:///{(workdir / 'bench.db').resolve()}"
    if config.database_url:
        _empty_database(url)
    env = {**os.environ, "LOYALTY_DATABASE_URL": url, "LOYALTY_WORKER": "0", "LOYALTY_DEMO": "0"}
    wanted = set(config.steps)
    steps: dict[str, dict[str, float]] = {}
    details: dict[str, Any] = {"database": url.split("@")[-1] if "@" in url else url, "machine": _machine()}

    def record(name: str, result: StepResult) -> StepResult:
        steps[name] = {"seconds": result.seconds, "peak_mb": result.peak_mb}
        echo(f"{name:<42} {result.seconds:>9.2f} s {result.peak_mb:>9.0f} MB")
        return result

    def on(group: str) -> bool:
        return not wanted or group in wanted

    t0 = time.perf_counter()
    files = generate_files(config.members, config.purchases_per_member, workdir / "csv", now=config.now)
    generated_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    record("generate:csv", StepResult(round(time.perf_counter() - t0, 3), round(generated_mb, 1)))
    record("init", run_measured(_loyalty("init"), env))
    result = record("import-members", run_measured(_loyalty("import", "members", files["members_file"], "--json"), env))
    details["import_members"] = result.output
    record("generate:configure", run_measured(_internal("configure", "--now", config.now.isoformat()), env))
    result = record("import-purchases", run_measured(_internal("import-purchases", *files["purchase_files"]), env))
    details["import_purchases"] = result.output

    if on("evaluate"):
        total = StepResult(0.0, 0.0)
        for job in JOB_ORDER:
            result = record(f"evaluate:{job}", run_measured(_loyalty("evaluate", "--job", job, "--json"), env))
            total = StepResult(total.seconds + result.seconds, max(total.peak_mb, result.peak_mb))
        record("evaluate-all", StepResult(round(total.seconds, 3), total.peak_mb))
    start, end = _month_bounds(config.now)
    if on("analyze"):
        commands = {
            "retention": ["analyze", "retention", "--json"],
            "rfm": ["analyze", "rfm", "--json"],
            "kpis": ["analyze", "kpis", "--from", start.isoformat(), "--to", end.isoformat(), "--json"],
            "clv": ["analyze", "clv", "--calibration-end", (end - timedelta(days=1)).isoformat(), "--json"],
        }
        for name, args in commands.items():
            record(f"analyze:{name}", run_measured(_loyalty(*args), env))
        result = record("baseline", run_measured(_internal("baseline", start.isoformat(), end.isoformat()), env))
        details["baseline"] = result.output
    if on("decide"):
        result = run_measured(_internal("decide"), env)
        details["decide"] = result.output
        for name, seconds in result.output.get("seconds", {}).items():
            record(f"decide:{name}", StepResult(seconds, result.peak_mb))
    if on("pages"):
        result = run_measured(_internal("pages"), env)
        details["pages_process"] = {"seconds": result.seconds, "peak_mb": result.peak_mb}
        for title, seconds in result.output.get("pages", {}).items():
            record(f"page:{title}", StepResult(seconds, result.peak_mb))
    if on("browser") and ("browser" in wanted or Path("/usr/bin/chromium").exists()):
        result = run_measured(_internal("browser"), env)
        details["browser"] = result.output
        for title, seconds in result.output.get("first", {}).items():
            record(f"browser:{title}", StepResult(seconds, result.peak_mb))
    if on("redemptions"):
        result = record("redemptions", run_measured(_internal("redemptions", str(REDEMPTION_CLIENTS), str(REDEMPTION_ATTEMPTS)), env))
        details["redemptions"] = result.output
    if on("api"):
        api_args = ("api", str(config.api_connections), str(config.api_seconds), str(config.api_workers))
        result = record(f"api:{config.api_workers}-workers", run_measured(_internal(*api_args), env))
        details["api"] = result.output
    if not config.keep_files:
        for path in [files["members_file"], *files["purchase_files"]]:
            Path(path).unlink(missing_ok=True)
    purchases = details.get("import_purchases", {}).get("rows", files["purchases"])
    return {"members": config.members, "purchases": purchases, "steps": steps, "details": details, "pages": [p.title for p in PAGES]}


def _machine() -> dict[str, Any]:
    import platform

    memory_kb = 0
    try:
        with open("/proc/meminfo") as meminfo:
            memory_kb = int(meminfo.readline().split()[1])
    except OSError:
        pass
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(memory_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "system": platform.platform(),
        # Machines of one kind differ in speed ("Intel Xeon Processor" says little): the time of a
        # fixed pure-Python loop lets two runs' figures be compared (best of three).
        "python_loop_seconds": _python_loop_seconds(),
    }


def _python_loop_seconds() -> float:
    best = math.inf
    for _ in range(3):
        started = time.perf_counter()
        sum(i * i for i in range(2_000_000))
        best = min(best, time.perf_counter() - started)
    return round(best, 3)


SCALING_STEPS = (
    "import-purchases",
    "evaluate-all",
    "evaluate:kpi-snapshot",
    "evaluate:tier-evaluation",
    "analyze:retention",
    "analyze:clv",
    "baseline",
    "page:Overview",
    "decide:whatif",
)


def scaling_table(results: list[dict[str, Any]], steps: tuple[str, ...] = SCALING_STEPS) -> str:
    """A Markdown table of seconds per step (rows) and program size (columns), with the
    growth exponent between the two largest sizes (1 = linear)."""
    import math

    results = sorted(results, key=lambda r: r["members"])
    head = "| step | " + " | ".join(f"{r['members']:,} members" for r in results) + " | growth exponent, last step |"
    lines = [head, "|---" * (len(results) + 2) + "|"]
    for step in steps:
        seconds = [r["steps"].get(step, {}).get("seconds") for r in results]
        exponent = ""
        if len(results) >= 2 and seconds[-1] and seconds[-2]:
            exponent = f"{math.log(seconds[-1] / seconds[-2]) / math.log(results[-1]['members'] / results[-2]['members']):.2f}"
        lines.append(f"| {step} | " + " | ".join("" if v is None else f"{v:,.2f} s" for v in seconds) + f" | {exponent} |")
    return "\n".join(lines)


def scaling_figure(results: list[dict[str, Any]], steps: tuple[str, ...] = SCALING_STEPS) -> Any:
    """Seconds against members, both axes logarithmic, with a linear-growth guide."""
    import plotly.graph_objects as go

    results = sorted(results, key=lambda r: r["members"])
    members = [r["members"] for r in results]
    fig = go.Figure()
    for step in steps:
        seconds = [r["steps"].get(step, {}).get("seconds") for r in results]
        fig.add_trace(go.Scatter(x=members, y=seconds, mode="lines+markers", name=step))
    reference = [r["steps"].get("evaluate-all", {}).get("seconds") for r in results]
    if reference and reference[0]:
        fig.add_trace(
            go.Scatter(
                x=members,
                y=[reference[0] * m / members[0] for m in members],
                mode="lines",
                line={"dash": "dot", "color": "#888"},
                name="linear growth (from evaluate-all at the smallest size)",
            )
        )
    fig.update_layout(
        title="How each step's time grows with the program (log-log)",
        xaxis_title="members",
        yaxis_title="seconds",
        xaxis_type="log",
        yaxis_type="log",
        template="plotly_white",
        width=1000,
        height=600,
        legend={"font": {"size": 11}},
    )
    return fig


def main(argv: list[str] | None = None) -> int:
    """Internal steps, each run in its own process by :func:`run_bench`; ``report`` for the docs."""
    parser = argparse.ArgumentParser(prog="python -m loyalty.devtools.bench")
    sub = parser.add_subparsers(dest="step", required=True)
    sub.add_parser("configure").add_argument("--now", type=datetime.fromisoformat, required=True)
    sub.add_parser("import-purchases").add_argument("files", nargs="+")
    p = sub.add_parser("baseline")
    p.add_argument("start", type=date.fromisoformat)
    p.add_argument("end", type=date.fromisoformat)
    sub.add_parser("pages")
    sub.add_parser("browser", help="every page clicked from the sidebar in Chromium, timed (needs /usr/bin/chromium)")
    sub.add_parser("decide")
    p = sub.add_parser("report", help="a scaling table (Markdown) and a log-log chart from bench --json outputs")
    p.add_argument("results", nargs="+")
    p.add_argument("--png")
    p = sub.add_parser("redemptions")
    p.add_argument("clients", type=int)
    p.add_argument("attempts", type=int)
    p = sub.add_parser("api")
    p.add_argument("connections", type=int)
    p.add_argument("seconds", type=float)
    p.add_argument("workers", type=int)
    args = parser.parse_args(argv)
    if args.step == "report":
        results = [json.loads(Path(path).read_text()) for path in args.results]
        print(scaling_table(results))
        if args.png:
            from loyalty.evaluation.static_charts import figure_png

            Path(args.png).write_bytes(figure_png(scaling_figure(results)))
        return 0
    if args.step == "configure":
        output = _step_configure(args.now)
    elif args.step == "import-purchases":
        output = _step_import_purchases(args.files)
    elif args.step == "baseline":
        output = _step_baseline(args.start, args.end)
    elif args.step == "pages":
        output = _step_pages()
    elif args.step == "browser":
        from loyalty.devtools.browser_pages import time_pages

        output = time_pages(screenshots=Path(os.environ["LOYALTY_SCREENSHOTS"]) if os.environ.get("LOYALTY_SCREENSHOTS") else None)
    elif args.step == "decide":
        output = _step_decide()
    elif args.step == "api":
        output = _step_api(args.connections, args.seconds, args.workers)
    else:
        output = _step_redemptions(args.clients, args.attempts)
    print(json.dumps(output, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
