"""Partial returns, the balance a member can spend now, and ledger lines in words.

A purchase of amount ``A`` that earned ``E`` points has, after returns totalling
``R``, given back ``round_half_up(E * R / A)`` points in all (less what had expired);
points already spent are taken back as a debt that later earnings repay.
"""

from __future__ import annotations

import json
import threading
from datetime import date

import pytest
import time_machine
from sqlalchemy import event, func
from sqlmodel import Session, select

from db.engine import get_engine, new_session
from db.models import AuditLog, Campaign, LedgerEntry, Member, Purchase, Reward
from loyalty.access.roles import SYSTEM_SCHEDULER, Actor
from loyalty.cli import main
from loyalty.errors import AlreadyDone, InsufficientPoints, InvalidInput, LoyaltyError
from loyalty.ledger.entries import balance, expire_points, member_balance, member_ledger, return_purchase, reverse_purchase, spendable_balances
from loyalty.ledger.purchases import refund_purchase
from loyalty.ledger.redemptions import cancel_redemption, redeem_reward
from tests.factories import make_member, make_purchase, make_reward, utc

OPERATIONS = Actor("olga", "operations")


def reversed_points(session: Session, purchase_id: int) -> list[int]:
    return list(
        session.exec(select(LedgerEntry.points).where(LedgerEntry.purchase_id == purchase_id, LedgerEntry.kind == "reverse").order_by(LedgerEntry.id))
    )


def spent_purchase(session: Session, amount: float, earned_at, spent_at) -> tuple[Member, Reward, int]:
    """A member whose only purchase earned ``amount`` points, all redeemed at ``spent_at``."""
    member = make_member(session)
    reward = make_reward(session, points_cost=int(amount))
    purchase_id = make_purchase(session, member, amount, occurred_at=earned_at)
    redeem_reward(session=session, member_id=member.id, reward_id=reward.id, actor=OPERATIONS, now=spent_at)
    return member, reward, purchase_id


def returned_cents(session: Session, purchase_id: int) -> int:
    session.expire_all()
    return session.exec(select(Purchase.returned_cents).where(Purchase.id == purchase_id)).one()


# --- partial returns --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "returns", "taken"),
    [
        (10.00, ["2.50", "2.50", "5.00"], [3, 2, 5]),  # 2.5 rounds up; the total stays 10
        (45.00, ["15.00"], [15]),
        (99.99, ["33.33"], [33]),  # 99 x 33.33 / 99.99 = 32.9999...
        (1.00, ["0.50", "0.50"], [1, 0]),  # never more than the purchase earned
        (3.00, ["1.00", "1.00", "1.00"], [1, 1, 1]),
        (20.00, ["0.10"], [0]),  # 0.1 point rounds to nothing: no entry written
    ],
    ids=["halves-round-up", "a-third", "just-below-a-third", "half-of-one-point", "thirds", "too-small-for-a-point"],
)
def test_each_return_takes_back_its_share_of_the_points_rounded_half_up(session, amount, returns, taken):
    member = make_member(session)
    purchase_id = make_purchase(session, member, amount, occurred_at=utc(2025, 3, 2))
    earned = balance(session, member.id)
    results = [
        return_purchase(session=session, purchase_id=purchase_id, amount=part, actor=OPERATIONS, now=utc(2025, 3, 10 + i))
        for i, part in enumerate(returns)
    ]
    assert [r.points_reversed for r in results] == taken
    assert reversed_points(session, purchase_id) == [-t for t in taken if t]
    assert balance(session, member.id) == earned - sum(taken)
    assert returned_cents(session, purchase_id) == sum(round(float(p) * 100) for p in returns)


def test_returns_never_add_up_to_more_than_the_purchase_and_a_refused_one_writes_nothing(session):
    member = make_member(session)
    purchase_id = make_purchase(session, member, 45.00, occurred_at=utc(2025, 3, 2))
    return_purchase(session=session, purchase_id=purchase_id, amount="30.00", actor=OPERATIONS, now=utc(2025, 3, 5))
    entries, audits = (
        session.exec(select(func.count()).select_from(LedgerEntry)).one(),
        session.exec(select(func.count()).select_from(AuditLog)).one(),
    )
    with pytest.raises(InvalidInput, match="at most EUR 15.00 can be returned now, not EUR 20.00"):
        return_purchase(session=session, purchase_id=purchase_id, amount="20.00", actor=OPERATIONS, now=utc(2025, 3, 6))
    assert session.exec(select(func.count()).select_from(LedgerEntry)).one() == entries
    assert session.exec(select(func.count()).select_from(AuditLog)).one() == audits
    assert returned_cents(session, purchase_id) == 3000
    assert balance(session, member.id) == 15


@pytest.mark.parametrize("amount", ["0", "-5", "abc", "1.005"], ids=["zero", "negative", "not-a-number", "three-decimals"])
def test_a_return_amount_that_is_not_money_is_refused(session, amount):
    member = make_member(session)
    purchase_id = make_purchase(session, member, 45.00, occurred_at=utc(2025, 3, 2))
    with pytest.raises(InvalidInput):
        return_purchase(session=session, purchase_id=purchase_id, amount=amount, actor=OPERATIONS, now=utc(2025, 3, 5))
    assert returned_cents(session, purchase_id) == 0


def test_a_fully_returned_purchase_refuses_another_return_or_refund(session):
    member = make_member(session)
    purchase_id = make_purchase(session, member, 45.00, occurred_at=utc(2025, 3, 2))
    return_purchase(session=session, purchase_id=purchase_id, amount="20.00", actor=OPERATIONS, now=utc(2025, 3, 5))
    last = return_purchase(session=session, purchase_id=purchase_id, amount="25.00", actor=OPERATIONS, now=utc(2025, 3, 6))
    assert (last.points_reversed, last.fully_returned) == (25, True)
    assert session.exec(select(Purchase.refunded_at).where(Purchase.id == purchase_id)).one() == utc(2025, 3, 6)
    for amount in ("1.00", None):
        with pytest.raises(AlreadyDone, match="already refunded in full \\(EUR 45.00\\)"):
            return_purchase(session=session, purchase_id=purchase_id, amount=amount, actor=OPERATIONS, now=utc(2025, 3, 7))
    assert balance(session, member.id) == 0


def test_a_full_refund_after_a_partial_return_takes_back_the_rest(session):
    member = make_member(session)
    purchase_id = make_purchase(session, member, 45.00, occurred_at=utc(2025, 3, 2))
    return_purchase(session=session, purchase_id=purchase_id, amount="10.00", actor=OPERATIONS, now=utc(2025, 3, 5))
    assert reverse_purchase(session=session, purchase_id=purchase_id, actor=OPERATIONS, now=utc(2025, 3, 6)) == 35
    assert returned_cents(session, purchase_id) == 4500
    assert balance(session, member.id) == 0


def test_spent_points_are_taken_back_as_a_debt_that_later_earnings_repay(session):
    member, reward, purchase_id = spent_purchase(session, 100.00, utc(2025, 1, 10), utc(2025, 1, 20))

    done = return_purchase(session=session, purchase_id=purchase_id, amount="50.00", actor=OPERATIONS, now=utc(2025, 2, 1))
    assert done.points_reversed == 50
    assert balance(session, member.id) == -50
    assert member_balance(session, member.id, as_of=utc(2025, 2, 1)).points == -50
    with pytest.raises(InsufficientPoints):
        redeem_reward(session=session, member_id=member.id, reward_id=reward.id, actor=OPERATIONS, now=utc(2025, 2, 2))
    make_purchase(session, member, 80.00, occurred_at=utc(2025, 3, 1))
    assert member_balance(session, member.id, as_of=utc(2025, 3, 2)).points == 30


def test_points_that_expired_are_not_taken_back_again_whatever_the_order_of_returns(session):
    """Earned 100, 60 spent, 40 expired: all returns together take back 60, as one full refund would."""
    halves, whole = make_member(session), make_member(session)
    reward = make_reward(session, points_cost=60)
    purchases = {}
    for member in (halves, whole):
        purchases[member.id] = make_purchase(session, member, 100.00, occurred_at=utc(2024, 1, 10))
        redeem_reward(session=session, member_id=member.id, reward_id=reward.id, actor=OPERATIONS, now=utc(2024, 6, 1))
    expire_points(session=session, as_of=utc(2025, 2, 1), actor=SYSTEM_SCHEDULER)

    first = return_purchase(session=session, purchase_id=purchases[halves.id], amount="50.00", actor=OPERATIONS, now=utc(2025, 3, 1))
    second = return_purchase(session=session, purchase_id=purchases[halves.id], amount="50.00", actor=OPERATIONS, now=utc(2025, 3, 2))
    assert (first.points_reversed, second.points_reversed) == (50, 10)
    assert first.points_already_expired == second.points_already_expired == 40
    assert reverse_purchase(session=session, purchase_id=purchases[whole.id], actor=OPERATIONS, now=utc(2025, 3, 2)) == 60
    assert balance(session, halves.id) == balance(session, whole.id) == -60


@pytest.mark.parametrize("url_fixture", ["sqlite_url", "postgres_url"], ids=["sqlite", "postgresql"])
def test_returns_of_one_purchase_at_the_same_moment_never_exceed_it(request, url_fixture):
    """Four clerks return EUR 20.00 of a EUR 45.00 purchase at once: exactly two succeed."""
    url = request.getfixturevalue(url_fixture)
    engine = get_engine(url)
    with new_session(engine) as session:
        member = make_member(session)
        purchase_id = make_purchase(session, member, 45.00, occurred_at=utc(2025, 3, 2))
    start, outcomes = threading.Barrier(4), []

    def clerk() -> None:
        with new_session(engine) as session:
            session.connection().exec_driver_sql("SELECT 1")  # connected before the start
            start.wait(timeout=30)
            try:
                done = return_purchase(session=session, purchase_id=purchase_id, amount="20.00", actor=OPERATIONS, now=utc(2025, 3, 5))
                outcomes.append(done.points_reversed)
            except LoyaltyError as refused:
                outcomes.append(type(refused).__name__)

    clerks = [threading.Thread(target=clerk) for _ in range(4)]
    for thread in clerks:
        thread.start()
    for thread in clerks:
        thread.join(timeout=120)
    assert sorted(map(str, outcomes)) == ["20", "20", "InvalidInput", "InvalidInput"]
    with new_session(engine) as session:
        assert returned_cents(session, purchase_id) == 4000
        assert reversed_points(session, purchase_id) == [-20, -20]
        assert balance(session, member.id) == 5


# --- the balance a member can spend now ---------------------------------------------------------


def test_the_balance_leaves_out_lots_past_their_date_before_the_expiry_job_runs(session):
    member = make_member(session)
    make_purchase(session, member, 100.00, occurred_at=utc(2024, 1, 10, 9))
    make_purchase(session, member, 50.00, occurred_at=utc(2024, 9, 1, 9))
    now = utc(2025, 2, 1)

    assert balance(session, member.id) == 150  # the entries: the job has not run
    shown = member_balance(session, member.id, as_of=now)
    assert (shown.points, shown.past_expiry, shown.next_expiry_on, shown.next_expiry_points) == (50, 100, date(2025, 9, 1), 50)
    assert spendable_balances(session, [member.id], as_of=now) == {member.id: 50}
    # Exactly what a redemption sees after expiring the stale lot first.
    expire_points(session=session, as_of=now, actor=SYSTEM_SCHEDULER)
    assert balance(session, member.id) == member_balance(session, member.id, as_of=now).points == 50
    assert spendable_balances(session, [member.id], as_of=now) == {member.id: 50}


def test_the_next_expiry_adds_up_every_lot_expiring_that_day_and_skips_spent_lots(session):
    member = make_member(session)
    reward = make_reward(session, points_cost=30)
    make_purchase(session, member, 30.00, occurred_at=utc(2025, 1, 5, 9))
    make_purchase(session, member, 20.00, occurred_at=utc(2025, 4, 2, 8))
    make_purchase(session, member, 15.00, occurred_at=utc(2025, 4, 2, 17))
    make_purchase(session, member, 70.00, occurred_at=utc(2025, 6, 1))
    redeem_reward(session=session, member_id=member.id, reward_id=reward.id, actor=OPERATIONS, now=utc(2025, 2, 1))

    shown = member_balance(session, member.id, as_of=utc(2025, 5, 1))
    # January's lot was spent; the two April lots expire on the same day.
    assert (shown.points, shown.next_expiry_on, shown.next_expiry_points) == (105, date(2026, 4, 2), 35)
    assert spendable_balances(session, [member.id, 10**9], as_of=utc(2025, 5, 1)) == {member.id: 105, 10**9: 0}


def test_a_member_in_debt_has_no_next_expiry_and_a_negative_balance(session):
    member, _, purchase_id = spent_purchase(session, 100.00, utc(2025, 1, 10), utc(2025, 1, 20))
    reverse_purchase(session=session, purchase_id=purchase_id, actor=OPERATIONS, now=utc(2025, 2, 1))
    shown = member_balance(session, member.id, as_of=utc(2025, 2, 2))
    assert (shown.points, shown.next_expiry_on, shown.next_expiry_points) == (-100, None, 0)
    assert spendable_balances(session, [member.id], as_of=utc(2025, 2, 2)) == {member.id: -100}


# --- ledger lines in words ------------------------------------------------------------------------


def test_ledger_lines_name_the_purchase_reward_and_campaign_read_with_one_query(session):
    member = make_member(session)
    coffee = make_reward(session, name="Free coffee", points_cost=20)
    purchase_id = make_purchase(session, member, 45.00, occurred_at=utc(2026, 3, 2, 10), external_id="P123")
    campaign = Campaign(name="Double points weekend", kind="multiplier", starts_at=utc(2026, 3, 1), ends_at=utc(2026, 3, 3))
    session.add(campaign)
    session.commit()
    session.add(
        LedgerEntry(
            member_id=member.id,
            kind="bonus",
            points=45,
            occurred_at=utc(2026, 3, 2, 10),
            purchase_id=purchase_id,
            campaign_id=campaign.id,
            reason="campaign bonus",
        )
    )
    session.commit()
    first = redeem_reward(session=session, member_id=member.id, reward_id=coffee.id, actor=OPERATIONS, now=utc(2026, 3, 3))
    redeem_reward(session=session, member_id=member.id, reward_id=coffee.id, actor=OPERATIONS, now=utc(2026, 3, 4))
    cancel_redemption(session=session, redemption_id=first.redemption_id, actor=OPERATIONS, reason="changed mind")
    return_purchase(session=session, purchase_id=purchase_id, amount="15.00", reason="one item", actor=OPERATIONS, now=utc(2026, 3, 5))

    statements: list[str] = []
    bind = session.get_bind()

    def listener(_conn, _cursor, statement, *_rest) -> None:
        statements.append(statement)

    event.listen(bind, "before_cursor_execute", listener)
    try:
        ledger = member_ledger(session, member.id)
    finally:
        event.remove(bind, "before_cursor_execute", listener)
    assert sum("ledger_entry" in s for s in statements) == 1  # one joined read, not one query per line
    by_kind = ledger.set_index("kind")["description"].groupby(level=0).agg(list).to_dict()
    assert by_kind["earn"] == ["Purchase #P123 (EUR 45.00, 2026-03-02)"]
    assert by_kind["bonus"] == ["Campaign: Double points weekend · Purchase #P123 (EUR 45.00, 2026-03-02)"]
    assert by_kind["redeem"] == ["Redeemed: Free coffee", "Redeemed: Free coffee"]
    assert sorted(by_kind["reverse"]) == ["Redemption cancelled: Free coffee", "Returned: Purchase #P123 (EUR 45.00, 2026-03-02)"]
    returned = ledger[ledger["description"].str.startswith("Returned")].iloc[0]
    assert (returned["points"], returned["reason"]) == (-30, "EUR 15.00 returned: one item")
    assert not {"purchase_id", "redemption_id", "campaign_id"} & set(ledger.columns)
    assert ledger["balance"].iloc[-1] == balance(session, member.id)


# --- the command line --------------------------------------------------------------------------


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, object]:
    code = main(list(argv))
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, f"expected one line of JSON on stdout, got {out}"
    return code, json.loads(out[0])


def test_the_refund_command_returns_part_of_a_purchase_then_the_rest_then_refuses(session, capsys):
    member = make_member(session)
    make_purchase(session, member, 45.00, occurred_at=utc(2026, 3, 2), external_id="P777")
    with time_machine.travel(utc(2026, 3, 10), tick=False):
        assert run_cli(capsys, "refund", "--purchase", "P777", "--amount", "12.50", "--reason", "one item", "--json") == (
            0,
            {
                "ok": True,
                "purchase": "P777",
                "points_reversed": 13,
                "amount_returned": 12.5,
                "returned_total": 12.5,
                "purchase_amount": 45.0,
                "fully_returned": False,
                "points_already_expired": 0,
            },
        )
        assert run_cli(capsys, "refund", "--purchase", "P777", "--amount", "40", "--json") == (
            2,
            {
                "ok": False,
                "error": "Purchase P777 was EUR 45.00 and EUR 12.50 of it was returned before: at most EUR 32.50 can be returned now, not EUR 40.00.",
            },
        )
        code, payload = run_cli(capsys, "refund", "--purchase", "P777", "--json")
        assert (code, payload["points_reversed"], payload["returned_total"], payload["fully_returned"]) == (0, 32, 45.0, True)
        assert run_cli(capsys, "refund", "--purchase", "P777", "--amount", "1", "--json") == (
            3,
            {"ok": False, "error": "Purchase P777 was already refunded in full (EUR 45.00); its points were taken back then."},
        )
    session.rollback()  # end this session's read snapshot: the command wrote from another one
    assert balance(session, member.id) == 0


def test_the_refund_command_without_amount_keeps_its_old_answer_keys(session, capsys):
    member = make_member(session)
    make_purchase(session, member, 20.00, occurred_at=utc(2026, 3, 2), external_id="P778")
    with time_machine.travel(utc(2026, 3, 10), tick=False):
        code, payload = run_cli(capsys, "refund", "--purchase", "P778", "--json")
    assert code == 0 and {"ok": True, "purchase": "P778", "points_reversed": 20}.items() <= payload.items()


def test_the_balance_command_shows_what_can_be_spent_now_and_the_next_expiry(session, capsys):
    member = make_member(session)
    make_purchase(session, member, 1000.00, occurred_at=utc(2025, 1, 10))
    make_purchase(session, member, 60.00, occurred_at=utc(2025, 8, 20))
    with time_machine.travel(utc(2026, 2, 1), tick=False):
        assert run_cli(capsys, "balance", "--member", member.external_id, "--json") == (
            0,
            {"member": member.external_id, "balance": 60, "past_expiry_points": 1000, "next_expiry_on": "2026-08-20", "next_expiry_points": 60},
        )
        assert main(["balance", "--member", member.external_id]) == 0
    assert capsys.readouterr().out.strip() == f"{member.external_id}: 60 points to spend; 60 expire on 2026-08-20"


def test_the_ledger_command_names_each_line(session, capsys):
    member = make_member(session)
    make_purchase(session, member, 45.00, occurred_at=utc(2026, 3, 2), external_id="P900")
    code, lines = run_cli(capsys, "ledger", "--member", member.external_id, "--json")
    assert code == 0
    assert [(line["kind"], line["points"], line["description"]) for line in lines] == [("earn", 45, "Purchase #P900 (EUR 45.00, 2026-03-02)")]
    assert lines[0]["occurred_at"] == "2026-03-02T00:00:00+00:00"


def test_refund_purchase_finds_the_purchase_by_its_company_id(session):
    member = make_member(session)
    make_purchase(session, member, 30.00, occurred_at=utc(2026, 3, 2), external_id="P901")
    with time_machine.travel(utc(2026, 3, 10), tick=False):
        done = refund_purchase(session=session, purchase="P901", amount="10.00", actor=OPERATIONS)
    assert (done.purchase, done.points_reversed, done.fully_returned) == ("P901", 10, False)
    assert balance(session, member.id) == 20


# --- the migration -----------------------------------------------------------------------------


def test_the_migration_counts_purchases_refunded_before_it_as_returned_in_full(tmp_path):
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

    from db.engine import PROJECT_ROOT, dispose_engines

    engine = get_engine(f"sqlite:///{tmp_path / 'old.db'}")
    config = Config()
    config.set_main_option("script_location", str(PROJECT_ROOT / "db" / "migrations"))
    try:
        with engine.connect() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0002")
            connection.execute(
                text(
                    "INSERT INTO member (id, external_id, name, email, phone, joined_at, acquisition_channel, "
                    "city, marketing_consent, created_at) VALUES (1, 'M1', '', '', '', '2025-01-01', 'store', '', 0, "
                    "'2025-01-01')"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO purchase (id, external_id, member_id, occurred_at, amount, channel, store, category, "
                    "refunded_at, imported_at) VALUES (1, 'P1', 1, '2025-02-01', 45.1, '', '', '', '2025-02-03', "
                    "'2025-02-01'), (2, 'P2', 1, '2025-02-01', 20.0, '', '', '', NULL, '2025-02-01')"
                )
            )
            connection.commit()
            command.upgrade(config, "0004")
            connection.commit()
            assert connection.execute(text("SELECT external_id, returned_cents FROM purchase ORDER BY id")).all() == [("P1", 4510), ("P2", 0)]
    finally:
        dispose_engines()
