"""Redemptions: points and stock taken together or not at all, eligibility, cancellation, roles, CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func
from sqlmodel import Session, select

from db.engine import get_engine, new_session
from db.models import AuditLog, LedgerEntry, Member, Redemption, Reward
from loyalty.access.roles import Actor
from loyalty.cli import main
from loyalty.errors import AlreadyDone, InsufficientPoints, OutOfStock, PermissionDenied, RewardUnavailable
from loyalty.ledger.entries import adjust_points, balance, expiry_date, reverse_purchase
from loyalty.ledger.redemptions import cancel_redemption, fulfil_redemption, redeem_reward
from tests.factories import make_member, make_purchase, make_reward, make_tier, utc

OPERATIONS = Actor("olga", "operations")
EXECUTIVE = Actor("erin", "executive")
JULY = utc(2024, 7, 1, 10)
JUNE = utc(2024, 6, 1)


def member_with_points(session: Session, points: int, earned_at: datetime = JUNE, **overrides: object) -> Member:
    member = make_member(session, **overrides)
    make_purchase(session, member, float(points), occurred_at=earned_at)
    return member


def footprint(session: Session) -> tuple[int, int, int, list[tuple[int, int | None]]]:
    """Entries, redemptions, audit rows and every reward's stock: what a refusal must not change."""
    session.rollback()  # end any read transaction, so commits of other connections are seen
    return (
        session.exec(select(func.count()).select_from(LedgerEntry)).one(),
        session.exec(select(func.count()).select_from(Redemption)).one(),
        session.exec(select(func.count()).select_from(AuditLog)).one(),
        list(session.exec(select(Reward.id, Reward.stock).order_by(Reward.id)).all()),
    )


def stock_of(session: Session, reward_id: int) -> int | None:
    session.rollback()
    return session.exec(select(Reward.stock).where(Reward.id == reward_id)).one()


# --- redeeming ------------------------------------------------------------------------------


def test_redeeming_a_reward_takes_its_points_and_one_unit_of_stock_and_is_audited(session):
    member = member_with_points(session, 500)
    reward = make_reward(session, name="Cinema ticket", points_cost=120, stock=3)

    result = redeem_reward(session=session, member_id=member.id, reward_id=reward.id, actor=OPERATIONS, now=JULY)

    assert result.balance == 380 == balance(session, member.id)
    assert stock_of(session, reward.id) == 2
    redemption = session.get(Redemption, result.redemption_id)
    assert (redemption.member_id, redemption.reward_id, redemption.points, redemption.status, redemption.requested_at) == (
        member.id,
        reward.id,
        120,
        "requested",
        JULY,
    )
    entry = session.exec(select(LedgerEntry).where(LedgerEntry.kind == "redeem")).one()
    assert (entry.member_id, entry.points, entry.occurred_at, entry.redemption_id, entry.actor) == (
        member.id,
        -120,
        JULY,
        result.redemption_id,
        "olga",
    )
    audit = session.exec(select(AuditLog)).one()
    assert (audit.actor, audit.action, audit.entity, audit.entity_id) == ("olga", "redemption.request", "redemption", str(result.redemption_id))
    assert audit.after == {"member": member.external_id, "reward": "Cinema ticket", "points": 120}


def test_redeeming_exactly_the_balance_leaves_zero(session):
    member = member_with_points(session, 250)
    reward = make_reward(session, points_cost=250)
    assert redeem_reward(session=session, member_id=member.id, reward_id=reward.id, actor=OPERATIONS, now=JULY).balance == 0
    assert balance(session, member.id) == 0


def test_redeeming_more_than_the_balance_is_refused_and_writes_nothing(session):
    member = member_with_points(session, 99)
    reward = make_reward(session, name="Tote bag", points_cost=100, stock=4)
    before = footprint(session)
    with pytest.raises(InsufficientPoints, match=f"Member {member.external_id} has 99 points; Tote bag costs 100."):
        redeem_reward(session=session, member_id=member.id, reward_id=reward.id, actor=OPERATIONS, now=JULY)
    assert footprint(session) == before
    assert balance(session, member.id) == 99


def test_a_reward_out_of_stock_is_refused_and_writes_nothing(session):
    member = member_with_points(session, 1000)
    reward = make_reward(session, name="Signed poster", points_cost=100, stock=0)
    before = footprint(session)
    with pytest.raises(OutOfStock, match="Signed poster is out of stock."):
        redeem_reward(session=session, member_id=member.id, reward_id=reward.id, actor=OPERATIONS, now=JULY)
    assert footprint(session) == before
    assert balance(session, member.id) == 1000


def test_the_last_unit_of_stock_goes_to_one_member_only(session):
    first, second = member_with_points(session, 300), member_with_points(session, 300)
    reward = make_reward(session, points_cost=100, stock=1)
    redeem_reward(session=session, member_id=first.id, reward_id=reward.id, actor=OPERATIONS, now=JULY)
    with pytest.raises(OutOfStock):
        redeem_reward(session=session, member_id=second.id, reward_id=reward.id, actor=OPERATIONS, now=JULY)
    assert stock_of(session, reward.id) == 0
    assert (balance(session, first.id), balance(session, second.id)) == (200, 300)


@pytest.mark.parametrize(
    ("reward_fields", "message"),
    [
        ({"active": False}, "is not active"),
        ({"available_from": utc(2024, 8, 1)}, "is available from 2024-08-01"),
        ({"available_until": utc(2024, 6, 30)}, "was available until 2024-06-30"),
        ({"available_from": utc(2024, 1, 1), "available_until": JULY - timedelta(microseconds=1)}, "was available until"),
    ],
    ids=["inactive", "before-its-window", "after-its-window", "a-microsecond-after-its-window"],
)
def test_a_reward_that_is_not_available_is_refused_and_writes_nothing(session, reward_fields, message):
    member = member_with_points(session, 1000)
    reward = make_reward(session, points_cost=100, stock=5, **reward_fields)
    before = footprint(session)
    with pytest.raises(RewardUnavailable, match=message):
        redeem_reward(session=session, member_id=member.id, reward_id=reward.id, actor=OPERATIONS, now=JULY)
    assert footprint(session) == before


def test_a_reward_can_be_redeemed_up_to_the_last_moment_of_its_window(session):
    member = member_with_points(session, 1000)
    reward = make_reward(session, points_cost=100, available_from=JULY, available_until=JULY)
    assert redeem_reward(session=session, member_id=member.id, reward_id=reward.id, actor=OPERATIONS, now=JULY).balance == 900


@pytest.mark.parametrize(
    ("member_tier", "allowed"),
    [(None, False), ("Silver", False), ("Gold", True), ("Platinum", True)],
    ids=["no-tier-refused", "lower-tier-refused", "the-tier-itself", "a-higher-tier"],
)
def test_a_tier_restricted_reward_is_for_members_of_that_tier_and_above(session, member_tier, allowed):
    tiers = {name: make_tier(session, name=name, rank=rank) for rank, name in enumerate(["Silver", "Gold", "Platinum"], 1)}
    tier_id = tiers[member_tier].id if member_tier else None
    member = member_with_points(session, 500, tier_id=tier_id)
    reward = make_reward(session, points_cost=100, min_tier_id=tiers["Gold"].id)
    if allowed:
        assert redeem_reward(session=session, member_id=member.id, reward_id=reward.id, actor=OPERATIONS, now=JULY).balance == 400
    else:
        before = footprint(session)
        with pytest.raises(RewardUnavailable, match="is for Gold members and above"):
            redeem_reward(session=session, member_id=member.id, reward_id=reward.id, actor=OPERATIONS, now=JULY)
        assert footprint(session) == before


def test_stale_lots_are_expired_before_the_balance_is_checked(session):
    member = member_with_points(session, 100, earned_at=utc(2024, 1, 1))
    make_purchase(session, member, 50.0, occurred_at=utc(2024, 9, 1))
    pricey, cheap = make_reward(session, points_cost=120), make_reward(session, points_cost=50)
    new_year = utc(2025, 1, 2)
    assert balance(session, member.id) == 150  # before expiry runs, the January lot still counts

    before = footprint(session)
    with pytest.raises(InsufficientPoints, match="has 50 points"):
        redeem_reward(session=session, member_id=member.id, reward_id=pricey.id, actor=OPERATIONS, now=new_year)
    assert footprint(session) == before  # the expiry it ran was rolled back with it

    assert redeem_reward(session=session, member_id=member.id, reward_id=cheap.id, actor=OPERATIONS, now=new_year).balance == 0
    entries = session.exec(select(LedgerEntry).where(LedgerEntry.member_id == member.id).order_by(LedgerEntry.id)).all()
    assert [(e.kind, e.points, e.occurred_at) for e in entries] == [
        ("earn", 100, utc(2024, 1, 1)),
        ("earn", 50, utc(2024, 9, 1)),
        ("expire", -100, new_year),
        ("redeem", -50, new_year),
    ]


# --- cancelling and fulfilling ------------------------------------------------------------------


def test_cancelling_a_redemption_returns_its_points_as_a_new_lot_and_its_stock(session):
    member = member_with_points(session, 500)
    reward = make_reward(session, name="Coffee mug", points_cost=120, stock=3)
    rid = redeem_reward(session=session, member_id=member.id, reward_id=reward.id, actor=OPERATIONS, now=JULY).redemption_id

    assert cancel_redemption(session=session, redemption_id=rid, actor=OPERATIONS, reason="out of colour") == 120

    assert balance(session, member.id) == 500
    assert stock_of(session, reward.id) == 3
    returned = session.exec(select(LedgerEntry).where(LedgerEntry.kind == "reverse")).one()
    assert (returned.points, returned.redemption_id, returned.reason) == (120, rid, "redemption cancelled: out of colour")
    assert returned.expires_at == expiry_date(returned.occurred_at, 12)
    redemption = session.exec(select(Redemption).where(Redemption.id == rid)).one()
    assert (redemption.status, redemption.handled_by, redemption.note) == ("cancelled", "olga", "out of colour")
    assert session.exec(select(AuditLog.action).order_by(AuditLog.id)).all() == ["redemption.request", "redemption.cancel"]


@pytest.mark.parametrize(
    "second",
    [
        lambda s, rid: cancel_redemption(session=s, redemption_id=rid, actor=OPERATIONS, reason="again"),
        lambda s, rid: fulfil_redemption(session=s, redemption_id=rid, actor=OPERATIONS),
    ],
    ids=["cancel-again", "fulfil-after-cancel"],
)
def test_a_cancelled_redemption_cannot_be_cancelled_or_fulfilled_again(session, second):
    member = member_with_points(session, 500)
    reward = make_reward(session, points_cost=120, stock=3)
    rid = redeem_reward(session=session, member_id=member.id, reward_id=reward.id, actor=OPERATIONS, now=JULY).redemption_id
    cancel_redemption(session=session, redemption_id=rid, actor=OPERATIONS, reason="member asked")
    before = footprint(session)
    with pytest.raises(AlreadyDone, match=f"Redemption {rid} is already cancelled."):
        second(session, rid)
    assert footprint(session) == before
    assert balance(session, member.id) == 500


def test_a_fulfilled_redemption_cannot_be_cancelled(session):
    member = member_with_points(session, 500)
    reward = make_reward(session, points_cost=120, stock=3)
    rid = redeem_reward(session=session, member_id=member.id, reward_id=reward.id, actor=OPERATIONS, now=JULY).redemption_id
    fulfil_redemption(session=session, redemption_id=rid, actor=OPERATIONS, note="posted")
    before = footprint(session)
    with pytest.raises(AlreadyDone, match="is already fulfilled"):
        cancel_redemption(session=session, redemption_id=rid, actor=OPERATIONS, reason="too late")
    assert footprint(session) == before
    assert (balance(session, member.id), stock_of(session, reward.id)) == (380, 2)


def test_a_redemption_cancelled_elsewhere_is_not_cancelled_again_by_a_session_that_saw_it_earlier(session, db_url):
    member = member_with_points(session, 500)
    reward = make_reward(session, points_cost=120, stock=3)
    rid = redeem_reward(session=session, member_id=member.id, reward_id=reward.id, actor=OPERATIONS, now=JULY).redemption_id
    with new_session(get_engine(db_url)) as other:
        seen = other.get(Redemption, rid)  # other holds the row as it was (say, on a page)
        other.commit()
        cancel_redemption(session=session, redemption_id=rid, actor=OPERATIONS, reason="member asked")
        with pytest.raises(AlreadyDone, match="already cancelled"):
            cancel_redemption(session=other, redemption_id=rid, actor=OPERATIONS, reason="member asked twice")
        assert seen.status == "cancelled"
    assert (balance(session, member.id), stock_of(session, reward.id)) == (500, 3)


@pytest.mark.parametrize(
    ("change", "expected"), [({"active": False}, RewardUnavailable), ({"points_cost": 600}, InsufficientPoints)], ids=["deactivated", "repriced"]
)
def test_a_reward_changed_elsewhere_is_redeemed_on_its_current_terms(session, db_url, change, expected):
    member = member_with_points(session, 500)
    reward = make_reward(session, points_cost=120, stock=3)
    with new_session(get_engine(db_url)) as other:
        seen = other.get(Reward, reward.id)  # other holds the row as it was (say, on a page)
        other.commit()
        for field_name, value in change.items():
            setattr(reward, field_name, value)
        session.add(reward)
        session.commit()
        with pytest.raises(expected):
            redeem_reward(session=other, member_id=member.id, reward_id=reward.id, actor=OPERATIONS, now=JULY)
        assert (seen.active, seen.points_cost) == (reward.active, reward.points_cost)
    assert balance(session, member.id) == 500


# --- who may ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "use_case",
    [
        lambda s, m, r, p: redeem_reward(session=s, member_id=m.id, reward_id=r.id, actor=EXECUTIVE, now=JULY),
        lambda s, m, r, p: adjust_points(session=s, member_id=m.id, points=50, reason="goodwill", actor=EXECUTIVE),
        lambda s, m, r, p: adjust_points(session=s, member_id=m.id, points=-50, reason="correction", actor=EXECUTIVE),
        lambda s, m, r, p: reverse_purchase(session=s, purchase_id=p, actor=EXECUTIVE),
    ],
    ids=["redeem", "add-points", "remove-points", "refund"],
)
def test_an_executive_cannot_move_points_and_nothing_is_written(session, use_case: Callable):
    member = make_member(session)
    purchase_id = make_purchase(session, member, 300.0, occurred_at=utc(2024, 6, 1))
    reward = make_reward(session, points_cost=100, stock=2)
    before = footprint(session)
    with pytest.raises(PermissionDenied, match=r"erin \(executive\) is not allowed"):
        use_case(session, member, reward, purchase_id)
    assert footprint(session) == before
    assert balance(session, member.id) == 300


def test_an_executive_cannot_cancel_a_redemption(session):
    member = member_with_points(session, 300)
    reward = make_reward(session, points_cost=100, stock=2)
    rid = redeem_reward(session=session, member_id=member.id, reward_id=reward.id, actor=OPERATIONS, now=JULY).redemption_id
    before = footprint(session)
    with pytest.raises(PermissionDenied):
        cancel_redemption(session=session, redemption_id=rid, actor=EXECUTIVE, reason="no")
    assert footprint(session) == before


# --- the command line -------------------------------------------------------------------------


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, object]:
    code = main(list(argv))
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, f"expected one line of JSON on stdout, got {out}"
    return code, json.loads(out[0])


def recent_member(session: Session, points: int) -> Member:
    # The command line redeems "now": a lot earned yesterday has not expired.
    return member_with_points(session, points, earned_at=datetime.now(UTC) - timedelta(days=1))


def test_the_redeem_command_prints_the_redemption_and_the_new_balance(session, capsys):
    member = recent_member(session, 500)
    reward = make_reward(session, points_cost=120, stock=2)
    code, payload = run_cli(capsys, "redeem", "--member", member.external_id, "--reward", str(reward.id), "--json")
    session.rollback()
    rid = session.exec(select(Redemption.id).where(Redemption.member_id == member.id)).one()
    assert (code, payload) == (0, {"ok": True, "redemption_id": rid, "balance": 380})
    assert stock_of(session, reward.id) == 1


@pytest.mark.parametrize(
    ("points", "stock", "error"),
    [(99, 5, "Member {member} has 99 points; Gift card costs 100."), (500, 0, "Gift card is out of stock.")],
    ids=["points-short", "stock-short"],
)
def test_the_redeem_command_exits_3_with_the_reason_when_points_or_stock_are_short(session, capsys, points, stock, error):
    member = recent_member(session, points)
    reward = make_reward(session, name="Gift card", points_cost=100, stock=stock)
    code, payload = run_cli(capsys, "redeem", "--member", member.external_id, "--reward", str(reward.id), "--json")
    assert (code, payload) == (3, {"ok": False, "error": error.format(member=member.external_id)})
    session.rollback()
    assert session.exec(select(func.count()).select_from(Redemption)).one() == 0
    assert balance(session, member.id) == points


def test_the_redeem_command_exits_4_for_an_unknown_member(session, capsys):
    reward = make_reward(session, points_cost=100)
    code, payload = run_cli(capsys, "redeem", "--member", "NOBODY", "--reward", str(reward.id), "--json")
    assert (code, payload) == (4, {"ok": False, "error": "No member with id NOBODY."})


def test_the_balance_command_prints_the_sum_of_the_members_entries(session, capsys):
    member = recent_member(session, 420)
    adjust_points(session=session, member_id=member.id, points=-20, reason="correction", actor=OPERATIONS)
    code, payload = run_cli(capsys, "balance", "--member", member.external_id, "--json")
    assert (code, {k: payload[k] for k in ("member", "balance")}) == (0, {"member": member.external_id, "balance": 400})


def test_the_rewards_list_command_prints_id_name_cost_and_stock_cheapest_first(session, capsys):
    mug = make_reward(session, name="Mug", points_cost=300, stock=7)
    ticket = make_reward(session, name="Ticket", points_cost=150, stock=None)
    code, payload = run_cli(capsys, "rewards", "list", "--json")
    assert (code, payload) == (
        0,
        [{"id": ticket.id, "name": "Ticket", "points_cost": 150, "stock": None}, {"id": mug.id, "name": "Mug", "points_cost": 300, "stock": 7}],
    )
