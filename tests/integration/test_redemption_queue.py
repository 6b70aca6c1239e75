"""Handling several redemptions at once: exactly the chosen ids, all of them or none."""

from __future__ import annotations

import pytest
from sqlmodel import select

from db.models import Redemption
from loyalty.access.roles import Actor
from loyalty.errors import AlreadyDone, InvalidInput, PermissionDenied
from loyalty.ledger.entries import balance
from loyalty.ledger.redemptions import cancel_redemption, cancel_redemptions, fulfil_redemption, fulfil_redemptions, redeem_reward
from tests.factories import make_reward
from tests.integration.test_redemptions import JULY, OPERATIONS, footprint, member_with_points, stock_of


@pytest.fixture
def requested(session) -> list[int]:
    """Three requested redemptions of a 100-point reward (stock 10), by members M1, M2, M3."""
    reward = make_reward(session, name="Cinema ticket", points_cost=100, stock=10)
    return [
        redeem_reward(
            session=session, member_id=member_with_points(session, 300, external_id=f"M{n}").id, reward_id=reward.id, actor=OPERATIONS, now=JULY
        ).redemption_id
        for n in (1, 2, 3)
    ]


def status_of(session, ids: list[int]) -> list[str]:
    session.rollback()
    found = dict(session.exec(select(Redemption.id, Redemption.status).where(Redemption.id.in_(ids))).all())
    return [found[i] for i in ids]


def test_fulfilling_chosen_redemptions_touches_exactly_those_and_names_them(session, requested):
    first, _, third = requested
    handled = fulfil_redemptions(session=session, redemption_ids=[third, first], actor=OPERATIONS, note="posted")
    assert status_of(session, requested) == ["fulfilled", "requested", "fulfilled"]
    assert [r["id"] for r in handled.redemptions] == [third, first]
    assert handled.summary == f"Fulfilled 2 redemptions: #{third} Cinema ticket for M3; #{first} Cinema ticket for M1."


def test_cancelling_chosen_redemptions_returns_each_members_points_and_the_stock(session, requested):
    first, second, _ = requested
    reward_id = session.get(Redemption, first).reward_id
    handled = cancel_redemptions(session=session, redemption_ids=[first, second], actor=OPERATIONS, reason="cinema closed")
    assert handled.points_returned == 200
    assert handled.summary.startswith("Cancelled 2 redemptions and returned 200 points: ")
    assert status_of(session, requested) == ["cancelled", "cancelled", "requested"]
    members = [session.get(Redemption, rid).member_id for rid in requested]
    assert [balance(session, m) for m in members] == [300, 300, 200]
    assert stock_of(session, reward_id) == 9


@pytest.mark.parametrize("use_case", ["fulfil", "cancel"])
def test_one_redemption_handled_meanwhile_refuses_the_whole_batch_and_writes_nothing(session, requested, use_case):
    first, second, third = requested
    fulfil_redemption(session=session, redemption_id=second, actor=OPERATIONS)
    before = footprint(session)
    with pytest.raises(AlreadyDone, match=f"Redemption {second} is already fulfilled"):
        if use_case == "fulfil":
            fulfil_redemptions(session=session, redemption_ids=requested, actor=OPERATIONS)
        else:
            cancel_redemptions(session=session, redemption_ids=requested, actor=OPERATIONS, reason="closed")
    assert footprint(session) == before
    assert status_of(session, [first, third]) == ["requested", "requested"]


def test_an_id_chosen_twice_is_handled_once(session, requested):
    handled = fulfil_redemptions(session=session, redemption_ids=[requested[0], requested[0]], actor=OPERATIONS)
    assert len(handled.redemptions) == 1


def test_choosing_nothing_is_refused(session, requested):
    with pytest.raises(InvalidInput, match="Choose at least one redemption"):
        fulfil_redemptions(session=session, redemption_ids=[], actor=OPERATIONS)


@pytest.mark.parametrize("reason", ["", "   "], ids=["empty", "spaces"])
def test_a_cancellation_without_a_reason_is_refused_and_writes_nothing(session, requested, reason):
    before = footprint(session)
    with pytest.raises(InvalidInput, match="Give a cancellation reason"):
        cancel_redemption(session=session, redemption_id=requested[0], actor=OPERATIONS, reason=reason)
    with pytest.raises(InvalidInput, match="Give a cancellation reason"):
        cancel_redemptions(session=session, redemption_ids=requested, actor=OPERATIONS, reason=reason)
    assert footprint(session) == before


def test_an_executive_cannot_handle_the_queue(session, requested):
    with pytest.raises(PermissionDenied):
        fulfil_redemptions(session=session, redemption_ids=requested, actor=Actor("erin", "executive"))
    assert status_of(session, requested) == ["requested"] * 3
