"""The points ledger on the real database, against a reference model with explicit lots.

The reference model (``LotModel``) keeps every earned lot with what remains of it.
Debits other than expiry (redemptions, negative adjustments, refunds) consume the
lots soonest-expiring first; what they take beyond every lot is a *debt* that the
next lots earned repay first. Expiry at ``t`` empties every lot with
``expires_at <= t``. A refund takes back what its purchase earned less the part of it
that expired (taking that again would count it twice).

*Never negative*, precisely: a redemption or a negative adjustment that would take the
balance below zero is refused with ``InsufficientPoints`` and writes nothing; a
balance is below zero only while the model carries a debt, and only a refund creates
or deepens a debt, by at most the refunded purchase's points that had already been
spent (consumed by anything but expiry). Then the balance is exactly ``-debt``.
"""

from __future__ import annotations

import calendar
import copy
import os
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, text
from sqlmodel import Session, select

from db.engine import get_engine, new_session
from db.models import AuditLog, LedgerEntry, Member, Purchase, Redemption
from loyalty.access.roles import SYSTEM_SCHEDULER, Actor
from loyalty.errors import AlreadyDone, InsufficientPoints
from loyalty.ledger.entries import adjust_points, balance, expire_points, negative_balances, open_lots, reverse_purchase
from loyalty.ledger.redemptions import redeem_reward
from tests.factories import make_member, make_purchase, make_reward, utc

OPERATIONS = Actor("olga", "operations")
EXPIRY_MONTHS = 12  # the program default
REWARD_COSTS = (50, 150, 400)


def add_months(moment: datetime, months: int) -> datetime:
    """Calendar months, clipped to the month's last day (Jan 31 + 1 month = Feb 28/29)."""
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    return moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))


# --- the reference model ---------------------------------------------------------------


@dataclass
class ModelLot:
    seq: int
    earned_at: datetime
    expires_at: datetime
    points: int
    remaining: int
    expired: int = 0
    purchase: int | None = None


@dataclass
class LotModel:
    lots: list[ModelLot] = field(default_factory=list)
    debt: int = 0

    @property
    def balance(self) -> int:
        return sum(lot.remaining for lot in self.lots) - self.debt

    def earn(self, points: int, at: datetime, purchase: int | None = None) -> None:
        repaid = min(self.debt, points)
        self.debt -= repaid
        self.lots.append(ModelLot(len(self.lots), at, add_months(at, EXPIRY_MONTHS), points, points - repaid, purchase=purchase))

    def take(self, points: int) -> None:
        for lot in sorted(self.lots, key=lambda x: (x.expires_at, x.earned_at, x.seq)):
            used = min(lot.remaining, points)
            lot.remaining -= used
            points -= used
        self.debt += points

    def expire(self, as_of: datetime) -> int:
        expired = 0
        for lot in self.lots:
            if lot.expires_at <= as_of and lot.remaining:
                expired += lot.remaining
                lot.expired += lot.remaining
                lot.remaining = 0
        return expired

    def lot_of(self, purchase: int) -> ModelLot | None:
        return next((lot for lot in self.lots if lot.purchase == purchase), None)

    def remaining_by_expiry(self) -> dict[datetime, int]:
        totals: dict[datetime, int] = defaultdict(int)
        for lot in self.lots:
            totals[lot.expires_at] += lot.remaining
        return dict(totals)


# --- reading the database ----------------------------------------------------------------


def entries_after(session: Session, member_id: int, last_id: int) -> list[LedgerEntry]:
    return list(session.exec(select(LedgerEntry).where(LedgerEntry.member_id == member_id, LedgerEntry.id > last_id).order_by(LedgerEntry.id)))


def sum_of_entries(session: Session, member_id: int) -> int:
    return sum(e.points for e in session.exec(select(LedgerEntry).where(LedgerEntry.member_id == member_id)))


def count(session: Session, model: type, *where: object) -> int:
    return session.exec(select(func.count()).select_from(model).where(*where)).one()


def footprint(session: Session, member_id: int) -> tuple[int, int, int, int]:
    """Everything a refused operation must leave untouched."""
    return (
        count(session, LedgerEntry),
        count(session, Redemption, Redemption.member_id == member_id),
        count(session, AuditLog),
        count(session, Purchase, Purchase.member_id == member_id, Purchase.refunded_at.is_not(None)),
    )


def remaining_by_expiry(session: Session, member_id: int) -> dict[datetime, int]:
    totals: dict[datetime, int] = defaultdict(int)
    for lot in open_lots(session, member_id):
        totals[lot.expires_at] += lot.remaining
    return dict(totals)


# --- the property ------------------------------------------------------------------------

purchase = st.tuples(st.just("purchase"), st.integers(0, 60_000))  # amount in cents
redeem = st.tuples(st.just("redeem"), st.integers(0, len(REWARD_COSTS) - 1))
refund = st.tuples(st.just("refund"), st.integers(0, 1_000))  # which earlier purchase, modulo their number
operation = st.one_of(
    # purchases, redemptions and refunds twice as likely: spending then refunding makes debts
    purchase,
    purchase,
    redeem,
    redeem,
    refund,
    refund,
    st.tuples(st.just("adjust"), st.integers(-400, -1) | st.integers(1, 400)),
    st.tuples(st.just("expire"), st.just(0)),
)
step = st.tuples(st.integers(0, 90), st.integers(0, 86_399), operation)  # days, seconds, operation


@settings(
    # LEDGER_EXAMPLES=1000 for a deeper run than the suite's.
    max_examples=int(os.environ.get("LEDGER_EXAMPLES", "50")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(step, min_size=12, max_size=40))
def test_any_sequence_of_operations_keeps_the_ledger_equal_to_the_reference_model(session, steps):
    member = make_member(session)
    rewards = [make_reward(session, points_cost=cost) for cost in REWARD_COSTS]
    model, purchases, refunded = LotModel(), [], set()
    last_id = session.exec(select(func.coalesce(func.max(LedgerEntry.id), 0))).one()
    now = utc(2023, 1, 1)

    for days, seconds, (kind, value) in steps:
        now += timedelta(days=days, seconds=seconds)
        before, debt_before = footprint(session, member.id), model.debt
        expected: list[tuple[str, int]] = []
        audited = 1

        if kind == "purchase":
            points = value // 100  # rate 1, no tier: floor(amount)
            purchase_id = make_purchase(session, member, value / 100, occurred_at=now)
            purchases.append(purchase_id)
            if points:
                model.earn(points, now, purchase=purchase_id)
                expected = [("earn", points)]
            audited = 0

        elif kind == "redeem":
            reward = rewards[value]
            trial = copy.deepcopy(model)
            expired = trial.expire(now)
            if trial.balance < reward.points_cost:
                with pytest.raises(InsufficientPoints):
                    redeem_reward(session=session, member_id=member.id, reward_id=reward.id, actor=OPERATIONS, now=now)
                assert footprint(session, member.id) == before, "a refused redemption wrote something"
                continue
            result = redeem_reward(session=session, member_id=member.id, reward_id=reward.id, actor=OPERATIONS, now=now)
            trial.take(reward.points_cost)
            model = trial
            expected = [("expire", -expired)] * bool(expired) + [("redeem", -reward.points_cost)]
            assert result.balance == model.balance >= 0

        elif kind == "adjust" and value > 0:
            adjust_points(session=session, member_id=member.id, points=value, reason="goodwill", actor=OPERATIONS, now=now)
            model.earn(value, now)
            expected = [("adjust", value)]

        elif kind == "adjust":
            trial = copy.deepcopy(model)
            expired = trial.expire(now)
            if trial.balance + value < 0:
                with pytest.raises(InsufficientPoints):
                    adjust_points(session=session, member_id=member.id, points=value, reason="correction", actor=OPERATIONS, now=now)
                assert footprint(session, member.id) == before, "a refused adjustment wrote something"
                continue
            adjust_points(session=session, member_id=member.id, points=value, reason="correction", actor=OPERATIONS, now=now)
            trial.take(-value)
            model = trial
            expected = [("expire", -expired)] * bool(expired) + [("adjust", value)]
            assert model.balance >= 0

        elif kind == "refund":
            if not purchases:
                continue
            purchase_id = purchases[value % len(purchases)]
            if purchase_id in refunded:
                with pytest.raises(AlreadyDone):
                    reverse_purchase(session=session, purchase_id=purchase_id, actor=OPERATIONS, now=now)
                assert footprint(session, member.id) == before, "a second refund wrote something"
                continue
            reversed_points = reverse_purchase(session=session, purchase_id=purchase_id, actor=OPERATIONS, now=now)
            refunded.add(purchase_id)
            expired = model.expire(now)
            lot = model.lot_of(purchase_id)
            taken = 0 if lot is None else lot.points - lot.expired
            spent = 0 if lot is None else lot.points - lot.expired - lot.remaining
            model.take(taken)
            assert reversed_points == taken
            expected = [("expire", -expired)] * bool(expired) + [("reverse", -taken)] * bool(taken)
            assert model.debt - debt_before <= spent, "a refund made a debt of points that were never spent"

        else:  # the expiry job, over every member
            expired = model.expire(now)
            expire_points(session=session, as_of=now, actor=SYSTEM_SCHEDULER)
            expected = [("expire", -expired)] * bool(expired)
            audited = 0
            written = count(session, LedgerEntry)
            assert expire_points(session=session, as_of=now, actor=SYSTEM_SCHEDULER) == 0
            assert count(session, LedgerEntry) == written, "a second expiry run at the same moment wrote entries"

        new_entries = entries_after(session, member.id, last_id)
        assert [(e.kind, e.points) for e in new_entries] == expected, f"{kind} {value} at {now}"
        last_id = max([last_id, *(e.id for e in new_entries)])
        assert count(session, AuditLog) == before[2] + audited

        current = balance(session, member.id)
        assert current == sum_of_entries(session, member.id) == model.balance
        assert remaining_by_expiry(session, member.id) == model.remaining_by_expiry()
        if kind != "refund":
            assert model.debt <= debt_before, f"{kind} deepened a debt"
        assert (current < 0) == (model.debt > 0)
        if current < 0:
            assert current == -model.debt


# --- the same rules, hand-computed -----------------------------------------------------------


def kinds_and_points(session: Session, member: Member) -> list[tuple[str, int]]:
    rows = session.exec(select(LedgerEntry).where(LedgerEntry.member_id == member.id).order_by(LedgerEntry.id))
    return [(e.kind, e.points) for e in rows]


def test_points_expire_twelve_months_after_they_were_earned_oldest_lot_first(session):
    member = make_member(session)
    make_purchase(session, member, 100.00, occurred_at=utc(2024, 1, 31, 9))
    make_purchase(session, member, 50.00, occurred_at=utc(2024, 3, 15, 9))
    adjust_points(session=session, member_id=member.id, points=-30, reason="correction", actor=OPERATIONS, now=utc(2024, 6, 1))

    assert expire_points(session=session, as_of=utc(2025, 1, 31, 8, 59, 59), actor=SYSTEM_SCHEDULER) == 0
    assert expire_points(session=session, as_of=utc(2025, 1, 31, 9), actor=SYSTEM_SCHEDULER) == 1
    assert balance(session, member.id) == 50
    assert expire_points(session=session, as_of=utc(2025, 3, 15, 9), actor=SYSTEM_SCHEDULER) == 1
    assert kinds_and_points(session, member) == [("earn", 100), ("earn", 50), ("adjust", -30), ("expire", -70), ("expire", -50)]
    assert balance(session, member.id) == 0


def test_running_expiry_twice_at_the_same_moment_expires_nothing_more(session):
    first, second = make_member(session), make_member(session)
    make_purchase(session, first, 80.00, occurred_at=utc(2024, 2, 1))
    make_purchase(session, second, 30.00, occurred_at=utc(2024, 2, 1))
    assert expire_points(session=session, as_of=utc(2025, 2, 1), actor=SYSTEM_SCHEDULER) == 2
    assert expire_points(session=session, as_of=utc(2025, 2, 1), actor=SYSTEM_SCHEDULER) == 0
    assert kinds_and_points(session, first) == [("earn", 80), ("expire", -80)]
    assert kinds_and_points(session, second) == [("earn", 30), ("expire", -30)]


def test_a_refund_takes_back_the_points_once_and_a_second_refund_is_refused(session):
    member = make_member(session)
    purchase_id = make_purchase(session, member, 120.50, occurred_at=utc(2024, 5, 1))
    assert reverse_purchase(session=session, purchase_id=purchase_id, actor=OPERATIONS, now=utc(2024, 5, 3)) == 120
    audit_rows = count(session, AuditLog)
    with pytest.raises(AlreadyDone, match="already refunded"):
        reverse_purchase(session=session, purchase_id=purchase_id, actor=OPERATIONS, now=utc(2024, 5, 4))
    assert kinds_and_points(session, member) == [("earn", 120), ("reverse", -120)]
    assert count(session, AuditLog) == audit_rows
    assert balance(session, member.id) == 0


def test_a_refund_of_points_already_redeemed_leaves_a_debt_that_later_earnings_repay(session):
    member = make_member(session)
    reward = make_reward(session, points_cost=100)
    purchase_id = make_purchase(session, member, 100.00, occurred_at=utc(2024, 1, 10))
    redeem_reward(session=session, member_id=member.id, reward_id=reward.id, actor=OPERATIONS, now=utc(2024, 2, 1))
    assert reverse_purchase(session=session, purchase_id=purchase_id, actor=OPERATIONS, now=utc(2024, 3, 1)) == 100
    assert balance(session, member.id) == -100
    assert negative_balances(session).to_dict("records") == [{"member": member.external_id, "balance": -100}]
    with pytest.raises(InsufficientPoints):
        redeem_reward(session=session, member_id=member.id, reward_id=reward.id, actor=OPERATIONS, now=utc(2024, 3, 2))

    make_purchase(session, member, 250.00, occurred_at=utc(2024, 4, 1))
    assert balance(session, member.id) == 150
    assert [(lot.points, lot.remaining) for lot in open_lots(session, member.id)] == [(100, 0), (250, 150)]
    # The 150 left of the April lot expire with it, not a point more.
    assert expire_points(session=session, as_of=utc(2025, 4, 1), actor=SYSTEM_SCHEDULER) == 1
    assert balance(session, member.id) == 0


def test_a_refund_after_its_points_expired_does_not_take_them_a_second_time(session):
    member = make_member(session)
    january = make_purchase(session, member, 100.00, occurred_at=utc(2024, 1, 10))
    make_purchase(session, member, 80.00, occurred_at=utc(2024, 6, 1))
    expire_points(session=session, as_of=utc(2025, 2, 1), actor=SYSTEM_SCHEDULER)
    assert balance(session, member.id) == 80

    assert reverse_purchase(session=session, purchase_id=january, actor=OPERATIONS, now=utc(2025, 3, 1)) == 0
    assert balance(session, member.id) == 80
    assert kinds_and_points(session, member) == [("earn", 100), ("earn", 80), ("expire", -100)]
    assert session.exec(select(Purchase.refunded_at).where(Purchase.id == january)).one() == utc(2025, 3, 1)


def test_a_refund_of_a_partly_redeemed_partly_expired_purchase_takes_back_only_the_redeemed_part(session):
    member = make_member(session)
    reward = make_reward(session, points_cost=60)
    january = make_purchase(session, member, 100.00, occurred_at=utc(2024, 1, 10))
    make_purchase(session, member, 100.00, occurred_at=utc(2024, 6, 1))
    redeem_reward(session=session, member_id=member.id, reward_id=reward.id, actor=OPERATIONS, now=utc(2024, 12, 1))
    expire_points(session=session, as_of=utc(2025, 2, 1), actor=SYSTEM_SCHEDULER)  # 40 left of January's 100

    assert reverse_purchase(session=session, purchase_id=january, actor=OPERATIONS, now=utc(2025, 3, 1)) == 60
    # As if January's purchase never happened: the reward came out of June's 100.
    assert balance(session, member.id) == 40
    expire_points(session=session, as_of=utc(2025, 6, 1), actor=SYSTEM_SCHEDULER)
    assert kinds_and_points(session, member) == [("earn", 100), ("earn", 100), ("redeem", -60), ("expire", -40), ("reverse", -60), ("expire", -40)]
    assert balance(session, member.id) == 0


def test_a_refund_leaves_the_same_balance_whether_or_not_the_expiry_job_ran_before_it(session):
    job_ran, job_late = make_member(session), make_member(session)
    refunded = {}
    for member in (job_ran, job_late):
        refunded[member.id] = make_purchase(session, member, 100.00, occurred_at=utc(2024, 1, 10))
        make_purchase(session, member, 80.00, occurred_at=utc(2024, 6, 1))
    expire_points(session=session, as_of=utc(2025, 2, 1), member_ids=[job_ran.id], actor=SYSTEM_SCHEDULER)

    for member in (job_ran, job_late):
        reverse_purchase(session=session, purchase_id=refunded[member.id], actor=OPERATIONS, now=utc(2025, 3, 1))
    assert balance(session, job_ran.id) == balance(session, job_late.id) == 80


def test_removing_more_points_than_the_balance_is_refused_and_writes_nothing(session):
    member = make_member(session)
    make_purchase(session, member, 75.00, occurred_at=utc(2024, 3, 1))
    before = footprint(session, member.id)
    with pytest.raises(InsufficientPoints, match="has 75 points; cannot remove 76"):
        adjust_points(session=session, member_id=member.id, points=-76, reason="correction", actor=OPERATIONS, now=utc(2024, 4, 1))
    assert footprint(session, member.id) == before
    adjust_points(session=session, member_id=member.id, points=-75, reason="correction", actor=OPERATIONS, now=utc(2024, 4, 1))
    assert balance(session, member.id) == 0


def test_stale_lots_are_expired_before_a_negative_adjustment_is_checked(session):
    member = make_member(session)
    make_purchase(session, member, 60.00, occurred_at=utc(2024, 1, 1))
    make_purchase(session, member, 40.00, occurred_at=utc(2024, 9, 1))
    with pytest.raises(InsufficientPoints, match="has 40 points"):
        adjust_points(session=session, member_id=member.id, points=-50, reason="correction", actor=OPERATIONS, now=utc(2025, 1, 2))
    assert kinds_and_points(session, member) == [("earn", 60), ("earn", 40)]  # the expiry rolled back too
    adjust_points(session=session, member_id=member.id, points=-40, reason="correction", actor=OPERATIONS, now=utc(2025, 1, 2))
    assert kinds_and_points(session, member) == [("earn", 60), ("earn", 40), ("expire", -60), ("adjust", -40)]


def test_imported_points_keep_their_utc_times_whatever_the_database_session_time_zone(postgres_url, monkeypatch):
    # COPY reads a timestamp without an offset in the session's TimeZone; libpq takes it from PGTZ.
    monkeypatch.setenv("PGTZ", "America/New_York")
    with new_session(get_engine(f"{postgres_url}&application_name=loyalty_tz_test")) as session:
        assert session.execute(text("SHOW TimeZone")).scalar_one() == "America/New_York"
        member = make_member(session)
        purchase_id = make_purchase(session, member, 100.00, occurred_at=utc(2024, 1, 15, 12))
        stored = session.execute(
            text("SELECT occurred_at AT TIME ZONE 'UTC', expires_at AT TIME ZONE 'UTC' FROM ledger_entry WHERE purchase_id = :p"), {"p": purchase_id}
        ).one()
        assert tuple(stored) == (datetime(2024, 1, 15, 12), datetime(2025, 1, 15, 12))
        assert session.exec(select(Purchase.occurred_at).where(Purchase.id == purchase_id)).one() == utc(2024, 1, 15, 12)
        assert expire_points(session=session, as_of=utc(2025, 1, 15, 12), actor=SYSTEM_SCHEDULER) == 1
        assert balance(session, member.id) == 0
