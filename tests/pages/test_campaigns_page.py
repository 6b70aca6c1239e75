"""Campaigns page: create a draft, see the preview, activate, and the refusal messages."""

from __future__ import annotations

from sqlmodel import select

from db.models import Campaign, CampaignAssignment
from tests.factories import make_member, make_purchase, utc
from tests.pages.conftest import open_page


def _open(app, role):
    return open_page(app, role, "pages/campaigns.py")


def test_a_manager_creates_previews_and_activates_a_campaign(app, session):
    members = [make_member(session) for _ in range(5)]
    for m in members:
        make_purchase(session, m, 20.0, occurred_at=utc(2026, 11, 1))
    at = _open(app, "manager")
    assert "No campaigns yet" in at.info[0].value
    at.text_input[0].input("Double November")
    next(b for b in at.button if b.label == "Save as draft").click().run()
    assert "saved as a draft" in at.success[0].value, [e.value for e in at.error]
    assert at.selectbox(key="campaigns_choice").value == "Double November"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Eligible members"] == "5"
    next(b for b in at.button if b.label == "Activate").click().run()
    session.rollback()
    campaign = session.exec(select(Campaign)).one()
    assert campaign.status in ("scheduled", "active")
    assert len(session.exec(select(CampaignAssignment)).all()) == 5


def test_a_campaign_without_a_name_is_refused_in_words(app, session):
    at = _open(app, "manager")
    next(b for b in at.button if b.label == "Save as draft").click().run()
    assert at.error[0].value == "A campaign needs a name."
    session.rollback()
    assert session.exec(select(Campaign)).all() == []


def test_an_analyst_reads_campaigns_but_gets_no_form(app, session):
    at = _open(app, "analyst")
    assert not [b for b in at.button if b.label == "Save as draft"]
