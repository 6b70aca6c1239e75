"""The Member messages page: statuses and reasons, the wording with a live preview, the CSV hand-over."""

from __future__ import annotations

import pytest
import time_machine
from sqlmodel import select

from db.models import MemberMessage
from loyalty.engagement.messages import queue_messages, templates
from tests.factories import make_member, make_purchase, utc
from tests.pages.conftest import open_page

NOW = utc(2026, 3, 1, 8)


@pytest.fixture
def queued(session):
    with time_machine.travel(NOW, tick=False):
        for external, consent in (("YES", True), ("NO", False)):
            make_purchase(
                session, make_member(session, external_id=external, name=external.title(), marketing_consent=consent), 80.0, utc(2025, 3, 10)
            )
        queue_messages(session, now=NOW)
        yield


def test_an_analyst_sees_statuses_and_reasons_but_not_the_wording(app, queued):
    with time_machine.travel(NOW, tick=False):
        at = open_page(app, "analyst", "pages/messages.py")
        assert not at.exception
        shown = {m.label: m.value for m in at.metric}
        assert (shown["Queued, last 30 days"], shown["Suppressed, last 30 days"], shown["Sent, last 30 days"]) == ("1", "1", "0")
        at.selectbox(key="messages_status").set_value("suppressed").run()
        rows = at.dataframe[0].value
        assert rows[["member_id", "kind", "status", "reason"]].values.tolist() == [["NO", "points_expiring", "suppressed", "no marketing consent"]]
        assert not [h for h in at.subheader if h.value == "Wording"]


def test_a_manager_words_a_message_with_a_live_preview_and_a_bad_placeholder_is_named(app, session):
    at = open_page(app, "manager", "pages/messages.py")
    assert "No message in the last 30 days" in at.info[0].value
    at.selectbox(key="messages_template_kind").set_value("tier_up").run()
    at.text_area(key="messages_body_tier_up").input("Your balance: {balance}").run()
    assert "unknown placeholder {balance}" in at.error[0].value
    assert not [b for b in at.button if b.label == "Save template"], "nothing to save while the wording is wrong"
    at.text_area(key="messages_body_tier_up").input("Well done {name}, you are {tier} now.").run()
    assert "Well done Alex Example, you are Gold now." in [t.value for t in at.text]
    next(b for b in at.button if b.label == "Save template").click().run()
    assert "The tier up template is saved (audited)" in at.success[0].value
    session.rollback()
    assert templates(session)["tier_up"]["body"] == "Well done {name}, you are {tier} now."
    next(b for b in at.button if b.label == "Send a test to me").click().run()
    assert "No mail server is set up" in at.error[0].value


def test_the_csv_for_the_e_mail_provider_needs_a_confirmation_and_marks_the_messages_sent(app, session, queued):
    with time_machine.travel(NOW, tick=False):
        at = open_page(app, "manager", "pages/messages.py")
        prepare = next(b for b in at.button if b.label == "Prepare the CSV")
        assert prepare.disabled, "nothing is marked sent before confirming"
        at.checkbox(key="messages_csv_sure").check().run()
        next(b for b in at.button if b.label == "Prepare the CSV").click().run()
        assert not at.exception
        assert [button.proto.label for button in at.get("download_button")] == ["Download the CSV (1 message)"]
        session.rollback()
        assert sorted(m.status for m in session.exec(select(MemberMessage))) == ["sent", "suppressed"]
        next(b for b in at.button if b.label == "Done: the file is uploaded").click().run()
        assert not at.get("download_button") and "No message waits for the CSV." in [c.value for c in at.caption]
