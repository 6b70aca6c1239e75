"""Redemptions at the same moment: balance and stock never go below zero, on SQLite and PostgreSQL.

Twenty processes (multiprocessing "spawn": fresh interpreters, no inherited
connections) each point an engine at the URL they are given and open a connection,
then wait at a barrier so that all of them run the command line's ``redeem`` handler
together. Each reports its exit code and its JSON line, or its traceback; a race with
a silent or dead racer fails after at most ``RACE_TIMEOUT_S``, and the racers are
killed at the end of the module if they do not stop.

The PostgreSQL-only tests at the end replay, step by step, interleavings that a race
can produce only by chance: another connection holds a table lock to stop one
transaction at a chosen statement while the other runs.
"""

from __future__ import annotations

import contextlib
import io
import json
import multiprocessing
import os
import queue
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.queues import Queue as ProcessQueue
from multiprocessing.synchronize import Barrier as ProcessBarrier

import pytest
from sqlalchemy import Engine, create_engine, func, text
from sqlmodel import Session, select

from db.engine import dispose_engines, get_engine, new_session
from db.models import AuditLog, LedgerEntry, Member, Redemption, Reward
from loyalty.access.roles import SYSTEM_SCHEDULER, Actor
from loyalty.ledger.entries import balance, expire_points
from loyalty.ledger.redemptions import cancel_redemption, redeem_reward
from tests.factories import make_member, make_purchase, make_reward, utc

WORKERS = 20
RACE_TIMEOUT_S = 180
BACKENDS = pytest.mark.parametrize("url_fixture", ["sqlite_url", "postgres_url"], ids=["sqlite", "postgresql"])
OPERATIONS = Actor("olga", "operations")


# --- the racing processes -----------------------------------------------------------------------


def _racer(index: int, jobs: ProcessQueue, barrier: ProcessBarrier, results: ProcessQueue) -> None:
    """One racing process: takes a race from ``jobs``, does everything slow, then waits at the barrier."""
    import loyalty.ledger.members
    import loyalty.ledger.redemptions  # noqa: F401  (cmd_redeem imports them lazily: not after the start)
    from loyalty.cli import build_parser

    while (job := jobs.get()) is not None:
        url, member, reward_id = job
        try:
            os.environ["LOYALTY_DATABASE_URL"] = url
            with get_engine(url).connect() as connection:  # the pool keeps this connection for the race
                connection.exec_driver_sql("SELECT 1")
            args = build_parser().parse_args(["redeem", "--member", member, "--reward", str(reward_id), "--json"])
            out = io.StringIO()
            barrier.wait(timeout=RACE_TIMEOUT_S / 2)
            with contextlib.redirect_stdout(out):
                code = args.handler(args)
            results.put((index, code, out.getvalue(), ""))
        except BaseException:  # noqa: BLE001  (reported to the parent, which fails the test)
            results.put((index, None, "", traceback.format_exc()))
        finally:
            dispose_engines()  # the test's database goes away after the test
    # The parent has read every answer, so nothing is left to flush: skip the slow teardown
    # of twenty interpreters on a shared machine.
    os._exit(0)


@dataclass(frozen=True)
class Outcome:
    member: str
    reward: int
    code: int
    payload: dict


class Racers:
    """``WORKERS`` processes (spawned once per module: starting 20 interpreters takes a while)."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.barrier, self.results = context.Barrier(WORKERS), context.Queue()
        self.jobs = [context.Queue() for _ in range(WORKERS)]
        self.children = [context.Process(target=_racer, args=(i, self.jobs[i], self.barrier, self.results), daemon=True) for i in range(WORKERS)]
        for child in self.children:
            child.start()

    def race(self, url: str, members: list[str], rewards: list[int]) -> list[Outcome]:
        """All racers redeem at once; racer ``i`` for ``members[i % len]``, ``rewards[i % len]``."""
        dead = [i for i, child in enumerate(self.children) if not child.is_alive()]
        assert not dead, f"racers {dead} died before the race: exit codes {[c.exitcode for c in self.children]}"
        self.barrier.reset()
        for i, jobs in enumerate(self.jobs):
            jobs.put((url, members[i % len(members)], rewards[i % len(rewards)]))
        answers: dict[int, tuple[int | None, str, str]] = {}
        deadline = time.monotonic() + RACE_TIMEOUT_S
        while len(answers) < WORKERS and time.monotonic() < deadline:
            try:
                index, code, out, error = self.results.get(timeout=1)
                answers[index] = (code, out, error)
                if error:
                    self.barrier.abort()  # the others stop waiting for a racer that will not come
            except queue.Empty:
                if any(not child.is_alive() for child in self.children):
                    self.barrier.abort()
                    if self.results.empty():
                        break
        errors = [f"racer {i}:\n{error}" for i, (_, _, error) in sorted(answers.items()) if error]
        assert not errors, "\n".join(errors)
        silent = sorted(set(range(WORKERS)) - set(answers))
        assert not silent, f"racers {silent} gave no answer in {RACE_TIMEOUT_S} s: exit codes {[c.exitcode for c in self.children]}"
        return [Outcome(members[i % len(members)], rewards[i % len(rewards)], answers[i][0], json.loads(answers[i][1])) for i in range(WORKERS)]

    def close(self) -> None:
        for jobs in self.jobs:
            jobs.put(None)
        deadline = time.monotonic() + 30
        for child in self.children:
            child.join(timeout=max(0.1, deadline - time.monotonic()))
            if child.is_alive():
                child.kill()
                child.join(timeout=10)


@pytest.fixture(scope="module")
def racers() -> Iterator[Racers]:
    pool = Racers()
    try:
        yield pool
    finally:
        pool.close()


# --- checking the database after the race -------------------------------------------------------


def running_balances(session: Session, member_id: int) -> list[int]:
    points = session.exec(select(LedgerEntry.points).where(LedgerEntry.member_id == member_id).order_by(LedgerEntry.id))
    total, running = 0, []
    for p in points:
        total += p
        running.append(total)
    return running


def assert_ledger_consistent(session: Session, member: Member, *, balance_now: int, redemptions: int) -> None:
    assert balance(session, member.id) == balance_now
    assert sum(session.exec(select(LedgerEntry.points).where(LedgerEntry.member_id == member.id))) == balance_now
    assert min(running_balances(session, member.id)) >= 0, "the balance went below zero at some point"
    assert session.exec(select(func.count()).select_from(Redemption).where(Redemption.member_id == member.id)).one() == redemptions
    assert (
        session.exec(select(func.count()).select_from(LedgerEntry).where(LedgerEntry.member_id == member.id, LedgerEntry.kind == "redeem")).one()
        == redemptions
    )


def yesterday() -> datetime:
    # The command line redeems "now": a lot earned yesterday has not expired.
    return datetime.now(UTC) - timedelta(days=1)


# --- the races ----------------------------------------------------------------------------------


@BACKENDS
def test_twenty_processes_redeeming_for_one_member_with_points_for_seven_get_exactly_seven(request, racers, url_fixture):
    url = request.getfixturevalue(url_fixture)
    with new_session(get_engine(url)) as session:
        member = make_member(session)
        make_purchase(session, member, 700.0, occurred_at=yesterday())
        reward = make_reward(session, name="Cinema ticket", points_cost=100, stock=None)

    outcomes = racers.race(url, [member.external_id], [reward.id])

    won = [o for o in outcomes if o.code == 0]
    refused = [o for o in outcomes if o.code != 0]
    assert len(won) == 7
    assert {o.code for o in refused} == {3}
    assert all(o.payload == {"ok": False, "error": f"Member {member.external_id} has 0 points; Cinema ticket costs 100."} for o in refused)
    # Each winner saw the balance its predecessors left: one each of 600, 500, ..., 0.
    assert sorted(o.payload["balance"] for o in won) == [0, 100, 200, 300, 400, 500, 600]
    with new_session(get_engine(url)) as session:
        ids = set(session.exec(select(Redemption.id).where(Redemption.member_id == member.id)))
        assert {o.payload["redemption_id"] for o in won} == ids
        assert_ledger_consistent(session, member, balance_now=0, redemptions=7)
        assert session.exec(select(func.count()).select_from(AuditLog).where(AuditLog.action == "redemption.request")).one() == 7


@BACKENDS
def test_twenty_processes_redeeming_a_reward_with_five_in_stock_get_exactly_five(request, racers, url_fixture):
    url = request.getfixturevalue(url_fixture)
    with new_session(get_engine(url)) as session:
        member = make_member(session)
        make_purchase(session, member, 5000.0, occurred_at=yesterday())
        reward = make_reward(session, name="Signed poster", points_cost=100, stock=5)

    outcomes = racers.race(url, [member.external_id], [reward.id])

    won = [o for o in outcomes if o.code == 0]
    assert len(won) == 5
    assert sorted(o.payload["balance"] for o in won) == [4500, 4600, 4700, 4800, 4900]
    assert all(o.code == 3 and o.payload == {"ok": False, "error": "Signed poster is out of stock."} for o in outcomes if o.code != 0)
    with new_session(get_engine(url)) as session:
        assert session.exec(select(Reward.stock).where(Reward.id == reward.id)).one() == 0
        assert_ledger_consistent(session, member, balance_now=4500, redemptions=5)


@BACKENDS
def test_twenty_processes_redeeming_twenty_different_rewards_for_one_member_get_exactly_seven(request, racers, url_fixture):
    # Different rewards: only the member's own lock keeps the redemptions from overspending.
    url = request.getfixturevalue(url_fixture)
    with new_session(get_engine(url)) as session:
        member = make_member(session)
        make_purchase(session, member, 700.0, occurred_at=yesterday())
        rewards = [make_reward(session, points_cost=100, stock=1) for _ in range(WORKERS)]

    outcomes = racers.race(url, [member.external_id], [r.id for r in rewards])

    won = [o for o in outcomes if o.code == 0]
    assert sorted(o.payload["balance"] for o in won) == [0, 100, 200, 300, 400, 500, 600]
    assert all(o.code == 3 and "has 0 points" in o.payload["error"] for o in outcomes if o.code != 0)
    with new_session(get_engine(url)) as session:
        stock = dict(session.exec(select(Reward.id, Reward.stock)).all())
        assert stock == {r.id: 0 if any(o.reward == r.id for o in won) else 1 for r in rewards}
        assert_ledger_consistent(session, member, balance_now=0, redemptions=7)


@BACKENDS
def test_twenty_members_racing_for_five_units_of_stock_leave_five_winners_and_no_stock(request, racers, url_fixture):
    url = request.getfixturevalue(url_fixture)
    with new_session(get_engine(url)) as session:
        members = [make_member(session) for _ in range(WORKERS)]
        for member in members:
            make_purchase(session, member, 100.0, occurred_at=yesterday())
        reward = make_reward(session, name="Festival pass", points_cost=100, stock=5)

    outcomes = racers.race(url, [m.external_id for m in members], [reward.id])

    winners = {o.member for o in outcomes if o.code == 0}
    assert len(winners) == 5
    assert all(o.payload == {"ok": True, "redemption_id": o.payload["redemption_id"], "balance": 0} for o in outcomes if o.code == 0)
    assert all(o.code == 3 and o.payload["error"] == "Festival pass is out of stock." for o in outcomes if o.code != 0)
    with new_session(get_engine(url)) as session:
        assert session.exec(select(Reward.stock).where(Reward.id == reward.id)).one() == 0
        for member in members:
            won = member.external_id in winners
            assert_ledger_consistent(session, member, balance_now=0 if won else 100, redemptions=int(won))


# --- PostgreSQL interleavings, step by step -------------------------------------------------------


class Interleaving:
    """Named connections to one PostgreSQL schema, and a way to see which of them wait on a lock."""

    def __init__(self, url: str) -> None:
        self.url, self.tag = url, uuid.uuid4().hex[:10]
        self.monitor: Engine = create_engine(url, isolation_level="AUTOCOMMIT")
        self.threads: list[tuple[threading.Thread, list[BaseException]]] = []

    def session(self, name: str) -> Session:
        return new_session(get_engine(f"{self.url}&application_name=lc_{self.tag}_{name}"))

    def start(self, name: str, use_case: Callable[[Session], object]) -> None:
        failures: list[BaseException] = []

        def run() -> None:
            try:
                with self.session(name) as session:
                    use_case(session)
            except BaseException as error:  # noqa: BLE001  (re-raised by finish())
                failures.append(error)

        thread = threading.Thread(target=run, name=name, daemon=True)
        thread.start()
        self.threads.append((thread, failures))

    def wait_until_blocked(self, *names: str, timeout: float = 30) -> None:
        wanted = {f"lc_{self.tag}_{n}" for n in names}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.monitor.connect() as connection:
                waiting = set(connection.execute(text("SELECT application_name FROM pg_stat_activity WHERE wait_event_type = 'Lock'")).scalars())
            if wanted <= waiting:
                return
            time.sleep(0.05)
        raise AssertionError(f"{sorted(wanted - waiting)} never waited on a lock")

    def finish(self, timeout: float = 30) -> None:
        for thread, failures in self.threads:
            thread.join(timeout)
            assert not thread.is_alive(), f"{thread.name} still running after {timeout} s"
            if failures:
                raise failures[0]

    def close(self) -> None:
        # Whatever happened, leave no backend behind to block the schema's DROP.
        with self.monitor.connect() as connection:
            connection.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE :tag"), {"tag": f"lc_{self.tag}_%"}
            )
        self.monitor.dispose()


@pytest.fixture
def interleaving(postgres_url: str) -> Iterator[Interleaving]:
    steps = Interleaving(postgres_url)
    try:
        yield steps
    finally:
        steps.close()


def test_the_expiry_job_running_during_a_redemption_expires_each_lot_once(interleaving):
    now = utc(2025, 2, 1)
    with interleaving.session("setup") as session:
        member = make_member(session)
        make_purchase(session, member, 100.0, occurred_at=utc(2024, 1, 10))  # expired by now
        make_purchase(session, member, 100.0, occurred_at=utc(2024, 12, 1))
        reward = make_reward(session, points_cost=100)

    with interleaving.session("holder") as holder:
        # Stops the redemption after its own expiry and balance check, before it commits.
        holder.execute(text("LOCK TABLE redemption IN EXCLUSIVE MODE"))
        interleaving.start("redeemer", lambda s: redeem_reward(session=s, member_id=member.id, reward_id=reward.id, actor=OPERATIONS, now=now))
        interleaving.wait_until_blocked("redeemer")
        interleaving.start("expiry", lambda s: expire_points(session=s, as_of=now, actor=SYSTEM_SCHEDULER))
        interleaving.wait_until_blocked("expiry")
        holder.commit()
    interleaving.finish()

    with interleaving.session("check") as session:
        entries = session.exec(select(LedgerEntry.kind, LedgerEntry.points).where(LedgerEntry.member_id == member.id).order_by(LedgerEntry.id)).all()
        assert [tuple(e) for e in entries] == [("earn", 100), ("earn", 100), ("expire", -100), ("redeem", -100)]
        assert balance(session, member.id) == 0


def test_cancelling_a_redemption_while_its_member_redeems_the_same_reward_does_not_deadlock(interleaving):
    with interleaving.session("setup") as session:
        member = make_member(session)
        make_purchase(session, member, 500.0, occurred_at=yesterday())
        reward = make_reward(session, points_cost=100, stock=5)
        first = redeem_reward(session=session, member_id=member.id, reward_id=reward.id, actor=OPERATIONS).redemption_id

    with interleaving.session("holder") as holder:
        # Stops the cancellation when it writes the returned points, holding what it locked so far.
        holder.execute(text("LOCK TABLE ledger_entry IN SHARE MODE"))
        interleaving.start("cancel", lambda s: cancel_redemption(session=s, redemption_id=first, actor=OPERATIONS, reason="member asked"))
        interleaving.wait_until_blocked("cancel")
        interleaving.start("redeemer", lambda s: redeem_reward(session=s, member_id=member.id, reward_id=reward.id, actor=OPERATIONS))
        interleaving.wait_until_blocked("redeemer")
        holder.commit()
    interleaving.finish()

    with interleaving.session("check") as session:
        assert session.exec(select(Redemption.status).order_by(Redemption.id)).all() == ["cancelled", "requested"]
        assert session.exec(select(Reward.stock).where(Reward.id == reward.id)).one() == 4
        assert balance(session, member.id) == 400
