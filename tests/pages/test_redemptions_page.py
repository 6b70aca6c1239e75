"""Redemption queue page: act on the chosen rows by id, reload, keep the message, confirm bulk actions."""

from __future__ import annotations

import pytest
from sqlmodel import select

from db.models import Redemption
from loyalty.access.roles import SYSTEM_CLI
from loyalty.ledger.entries import balance
from loyalty.ledger.redemptions import fulfil_redemption, redeem_reward
from loyalty.ui.tables import selection_key
from tests.factories import make_member, make_purchase, make_reward, utc
from tests.pages.conftest import open_page


@pytest.fixture
def queue(session) -> dict[str, int]:
    """Three requested redemptions, oldest first: a coffee for M1, a mug for M2, a bag for M3."""
    ids = {}
    for n, reward_name in enumerate(["coffee", "mug", "bag"], start=1):
        member = make_member(session, external_id=f"M{n}")
        make_purchase(session, member, 500.0, occurred_at=utc(2026, 10, 1))
        reward = make_reward(session, name=reward_name, points_cost=100 * n, stock=5)
        ids[reward_name] = redeem_reward(
            session=session, member_id=member.id, reward_id=reward.id, actor=SYSTEM_CLI, now=utc(2026, 11, n)
        ).redemption_id
    return ids


def statuses(session) -> dict[int, str]:
    session.rollback()  # see what the page's own connection committed
    return dict(session.exec(select(Redemption.id, Redemption.status)).all())


def select_rows(at, *positions: int):
    """Select rows of the table as a person clicks them, on the rows the table shows now."""
    shown = at.dataframe[0].value["redemption_id"]
    at.session_state[selection_key("redemptions_table_requested", shown)] = {"selection": {"rows": list(positions), "columns": []}}
    return at.run()


def click(at, label_start: str):
    next(b for b in at.button if b.label.startswith(label_start)).click().run()
    assert not at.exception, at.exception
    return at


def test_two_redemptions_fulfilled_one_after_the_other_change_exactly_those_rows(app, session, queue):
    at = open_page(app, "operations", "pages/redemptions.py")
    click(select_rows(at, 0), "Mark 1 fulfilled")
    assert statuses(session) == {queue["coffee"]: "fulfilled", queue["mug"]: "requested", queue["bag"]: "requested"}
    assert f"#{queue['coffee']} coffee for M1" in at.success[0].value
    assert list(at.dataframe[0].value["reward"]) == ["mug", "bag"], "the table is read again"
    assert [b.label for b in at.button if b.label.startswith("Mark")] == ["Mark 0 fulfilled"], "the selection is cleared"

    select_rows(at, 1)
    assert f"#{queue['coffee']} coffee for M1" in at.success[0].value, "the message stays until dismissed"
    click(at, "Mark 1 fulfilled")
    assert statuses(session) == {queue["coffee"]: "fulfilled", queue["mug"]: "requested", queue["bag"]: "fulfilled"}
    assert f"#{queue['bag']} bag for M3" in at.success[0].value
    click(at, "Dismiss")
    assert not at.success


def test_a_selection_made_on_rows_that_changed_meanwhile_acts_on_nothing(app, session, queue):
    at = open_page(app, "operations", "pages/redemptions.py")
    shown_before = at.dataframe[0].value["redemption_id"]
    fulfil_redemption(session=session, redemption_id=queue["coffee"], actor=SYSTEM_CLI)  # a colleague, meanwhile
    # The person clicked the first row of the table as it was: the coffee, now gone.
    at.session_state[selection_key("redemptions_table_requested", shown_before)] = {"selection": {"rows": [0], "columns": []}}
    at.run()
    assert [b.label for b in at.button if b.label.startswith("Mark")] == ["Mark 0 fulfilled"]
    assert statuses(session) == {queue["coffee"]: "fulfilled", queue["mug"]: "requested", queue["bag"]: "requested"}


def test_a_bulk_fulfilment_says_how_many_and_which_and_waits_for_confirmation(app, session, queue):
    at = open_page(app, "operations", "pages/redemptions.py")
    click(select_rows(at, 0, 2), "Mark 2 fulfilled")
    assert f"Fulfil these 2 redemptions: #{queue['coffee']}, #{queue['bag']}?" in at.warning[0].value
    assert set(statuses(session).values()) == {"requested"}, "nothing happens before the confirmation"
    click(at, "Back: change nothing")
    assert not at.warning and set(statuses(session).values()) == {"requested"}
    click(at, "Mark 2 fulfilled")
    click(at, "Yes, fulfil 2 redemptions")
    assert statuses(session) == {queue["coffee"]: "fulfilled", queue["mug"]: "requested", queue["bag"]: "fulfilled"}
    assert "Fulfilled 2 redemptions" in at.success[0].value
    assert list(at.dataframe[0].value["reward"]) == ["mug"]


def test_a_bulk_cancellation_needs_a_reason_and_returns_each_members_points(app, session, queue):
    at = open_page(app, "operations", "pages/redemptions.py")
    select_rows(at, 0, 1)
    assert next(b for b in at.button if b.label.startswith("Cancel 2")).disabled, "no reason typed yet"
    at.text_input(key="redemptions_note").input("reward discontinued").run()
    click(at, "Cancel 2 and return the points")
    assert "Their points go back to the members" in at.warning[0].value
    click(at, "Yes, cancel 2 redemptions")
    assert "Cancelled 2 redemptions and returned 300 points" in at.success[0].value
    assert statuses(session) == {queue["coffee"]: "cancelled", queue["mug"]: "cancelled", queue["bag"]: "requested"}
    members = {r.member_id for r in session.exec(select(Redemption).where(Redemption.status == "cancelled"))}
    assert sorted(balance(session, m) for m in members) == [500, 500]


def test_a_confirmed_bulk_action_on_a_redemption_handled_meanwhile_changes_nothing(app, session, queue):
    at = open_page(app, "operations", "pages/redemptions.py")
    click(select_rows(at, 0, 1), "Mark 2 fulfilled")
    fulfil_redemption(session=session, redemption_id=queue["mug"], actor=SYSTEM_CLI)  # a colleague, meanwhile
    click(at, "Yes, fulfil 2 redemptions")
    assert f"Redemption {queue['mug']} is already fulfilled" in at.error[0].value
    assert statuses(session)[queue["coffee"]] == "requested", "all or nothing"
