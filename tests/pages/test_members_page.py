"""The Members page: refunds and returns of the chosen purchase, staff redemptions, balances."""

from __future__ import annotations

import pytest
import time_machine
from sqlmodel import select

from db.models import Purchase, Redemption
from loyalty.ledger.entries import balance
from tests.factories import make_member, make_purchase, make_reward, utc
from tests.pages.conftest import open_page

TODAY = utc(2026, 3, 20, 12)


@pytest.fixture
def frozen():
    with time_machine.travel(TODAY):
        yield


@pytest.fixture
def carla(session):
    """A member with three purchases (120 + 45 + 30 points) and a lot from 2025 past its date."""
    member = make_member(session, external_id="M9", name="Carla Reyes")
    make_purchase(session, member, 200.00, occurred_at=utc(2025, 3, 1), external_id="P-OLD")
    purchases = {
        ref: make_purchase(session, member, amount, occurred_at=at, external_id=ref)
        for ref, amount, at in [("P-A", 120.00, utc(2026, 1, 5)), ("P-B", 45.00, utc(2026, 2, 2)), ("P-C", 30.00, utc(2026, 3, 2))]
    }
    return {"member": member, "purchases": purchases}


def open_member(app, role: str = "operations"):
    at = open_page(app, role, "pages/members.py")
    at.text_input(key="members_query").input("M9").run()
    assert not at.exception, at.exception
    return at


def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def refund(at, purchase: str, amount: float | None = None):
    at.selectbox(key="members_refund_purchase_M9").set_value(purchase)
    if amount is not None:
        next(n for n in at.number_input if n.label.startswith("Amount returned")).set_value(amount)
    next(b for b in at.button if b.label == "Refund").click().run()
    assert not at.exception, at.exception
    return at


def refunded(session) -> dict[str, int]:
    session.rollback()
    return dict(session.exec(select(Purchase.external_id, Purchase.returned_cents)).all())


def test_the_balance_leaves_out_points_past_their_date_and_shows_the_next_expiry(app, carla, frozen):
    at = open_member(app)
    shown = metrics(at)
    assert shown["Balance"] == "195 pts"  # the 200 of March 2025 expired on 2026-03-01; the job has not run
    assert shown["Next expiry"] == "120 pts"
    assert at.metric[2].proto.delta == "on 2027-01-05"


def test_refunding_two_purchases_in_a_row_touches_only_those_and_updates_the_balance_at_once(app, carla, session, frozen):
    at = open_member(app)
    refund(at, "P-B")
    assert at.success[0].value == "Refunded purchase P-B in full: 45 points taken back."
    assert metrics(at)["Balance"] == "150 pts"
    assert refunded(session) == {"P-OLD": 0, "P-A": 0, "P-B": 4500, "P-C": 0}
    # The refunded purchase is no longer offered; the choice starts blank again.
    assert at.selectbox(key="members_refund_purchase_M9").value is None
    assert "P-B" not in at.selectbox(key="members_refund_purchase_M9").options[0]

    refund(at, "P-C")
    assert at.success[0].value == "Refunded purchase P-C in full: 30 points taken back."
    assert metrics(at)["Balance"] == "120 pts"
    assert refunded(session) == {"P-OLD": 0, "P-A": 0, "P-B": 4500, "P-C": 3000}
    ledger = at.dataframe[1].value
    assert "Returned: Purchase #P-C (EUR 30.00, 2026-03-02)" in set(ledger["description"])


def test_a_partial_return_on_the_page_takes_back_its_share_and_says_so(app, carla, session, frozen):
    at = open_member(app)
    refund(at, "P-A", 30.0)
    assert at.success[0].value == "Returned EUR 30.00 of purchase P-A (EUR 120.00): 30 points taken back."
    assert metrics(at)["Balance"] == "165 pts"
    assert "P-A · 2026-01-05 · EUR 120.00 (EUR 30.00 returned)" in at.selectbox(key="members_refund_purchase_M9").options
    refund(at, "P-A", 100.0)
    assert "at most EUR 90.00 can be returned now, not EUR 100.00" in at.error[0].value
    assert refunded(session)["P-A"] == 3000


def test_refund_without_choosing_a_purchase_asks_for_one_and_changes_nothing(app, carla, session, frozen):
    at = open_member(app)
    next(b for b in at.button if b.label == "Refund").click().run()
    assert at.error[0].value == "Choose the purchase to refund."
    assert set(refunded(session).values()) == {0}


def test_operations_redeem_a_reward_at_the_counter_from_the_profile(app, carla, session, frozen):
    coffee = make_reward(session, name="Free coffee", points_cost=50, stock=1)
    at = open_member(app)
    at.selectbox(key="members_redeem_reward_M9").set_value(coffee.id)
    next(b for b in at.button if b.label == "Redeem").click().run()
    assert not at.error
    assert at.success[0].value.startswith("Redeemed Free coffee (redemption ")
    assert metrics(at)["Balance"] == "145 pts"
    session.rollback()
    assert session.exec(select(Redemption.reward_id).where(Redemption.member_id == carla["member"].id)).all() == [coffee.id]

    at.selectbox(key="members_redeem_reward_M9").set_value(coffee.id)
    next(b for b in at.button if b.label == "Redeem").click().run()
    assert at.error[0].value == "Free coffee is out of stock."
    assert balance(session, carla["member"].id) == 145  # the redemption wrote the stale lot off: entries and page agree


def test_a_redemption_the_member_cannot_afford_is_refused_in_words(app, carla, session, frozen):
    watch = make_reward(session, name="Watch", points_cost=500)
    at = open_member(app)
    at.selectbox(key="members_redeem_reward_M9").set_value(watch.id)
    next(b for b in at.button if b.label == "Redeem").click().run()
    assert at.error[0].value == "Member M9 has 195 points; Watch costs 500."
    assert metrics(at)["Balance"] == "195 pts"


def test_an_analyst_sees_neither_refund_nor_redemption_forms(app, carla, frozen):
    at = open_member(app, role="analyst")
    assert not [b for b in at.button if b.label in ("Refund", "Redeem", "Apply adjustment")]


def test_the_challenges_tab_shows_badges_progress_and_a_full_refund_taking_one_back(app, session, frozen):
    from loyalty.access.roles import Actor
    from loyalty.ledger.challenges import define_challenge

    manager = Actor("maria", "manager")
    define_challenge(session, name="Two buys", purchases=2, points=150, badge="Duo", starts=utc(2026, 1, 1), actor=manager)
    define_challenge(session, name="Spend 500", min_spend=500, points=1000, starts=utc(2026, 1, 1), actor=manager)
    member = make_member(session, external_id="M9", name="Carla Reyes")
    make_purchase(session, member, 120.00, occurred_at=utc(2026, 2, 5), external_id="P-A")
    make_purchase(session, member, 80.00, occurred_at=utc(2026, 3, 2), external_id="P-B")
    at = open_member(app)
    assert "Badges: Duo (2026-03-02) · 2 month(s) in a row with a purchase" in [c.value for c in at.caption]
    shown = at.dataframe[-1].value
    assert shown[["name", "progress", "target"]].values.tolist() == [["Two buys", 2, 2], ["Spend 500", 200.0, 500.0]]
    assert shown["share"].tolist() == [1.0, 0.4]
    assert metrics(at)["Balance"] == f"{120 + 80 + 150} pts"
    refund(at, "P-B")
    assert metrics(at)["Balance"] == "120 pts", "the refund took back the purchase's points and the challenge's"
    assert "Badges: none yet · 1 month(s) in a row with a purchase" in [c.value for c in at.caption]
