"""Win-back page: the list of lapsing high-value members, its chart, and the one action (a draft campaign)."""

from __future__ import annotations

import pytest
from sqlmodel import select

from db.models import AuditLog, Campaign, CampaignAssignment
from tests.factories import make_member, make_purchase, utc
from tests.integration.test_winback import winback_program
from tests.pages.conftest import figure, open_page

CREATE = "Create draft win-back campaign"


@pytest.fixture
def program(session, today):
    """The integration tests' program (module docstring there), ending today: three Gold members lapsed 99 days ago."""
    return winback_program(session, today)


def _open(app, role):
    return open_page(app, role, "pages/winback.py")


@pytest.mark.calendar
def test_a_manager_sees_the_lapsing_members_and_creates_a_draft_campaign_for_them(app, session, program):
    at = _open(app, "manager")
    lapsed = list(reversed(program["lapsed"][:3]))  # the most valuable first; the fourth is erased
    table = at.dataframe[0].value
    assert table["member"].tolist() == [m.external_id for m in lapsed]
    assert table["name"].tolist() == [m.name for m in lapsed]
    assert table["historical_spend"].tolist() == pytest.approx([4560.0, 4180.0, 3800.0])
    assert {m.label: m.value for m in at.metric}["Candidates"] == "3"
    candidates = figure(at)["data"][2]
    assert candidates["text"] == table["member"].tolist()
    assert candidates["x"] == pytest.approx(table["p_alive_then"].tolist()) and candidates["y"] == pytest.approx(table["p_alive_now"].tolist())

    at.text_input(key="winback_name").input("Bring back Gold")
    at.button(key="winback_create").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.success[0].value == "Bring back Gold saved as a draft for 3 members. Review it there, then activate it."
    assert at.session_state["campaigns_saved"] == "Bring back Gold"
    session.rollback()
    campaign = session.exec(select(Campaign)).one()
    assert (campaign.status, campaign.kind, campaign.created_by) == ("draft", "win_back", "test-manager")
    assert campaign.eligibility == {"member_ids": sorted(m.id for m in lapsed)}
    assert session.exec(select(CampaignAssignment)).all() == []
    assert session.exec(select(AuditLog.actor).where(AuditLog.action == "campaign.create")).all() == ["test-manager"]

    campaigns = at.switch_page("pages/campaigns.py").run()
    assert campaigns.selectbox(key="campaigns_choice").value == "Bring back Gold"
    assert {m.label: m.value for m in campaigns.metric}["Eligible members"] == "3"


@pytest.mark.calendar
def test_an_analyst_sees_masked_names_and_a_disabled_action(app, session, program):
    at = _open(app, "analyst")
    table = at.dataframe[0].value
    assert table["name"].tolist() == ["T***"] * 3 and table["email"].str.endswith("***@example.com").all()
    button = at.button(key="winback_create")
    assert button.disabled
    assert any("Only a loyalty manager or an administrator" in c.value for c in at.caption)
    session.rollback()
    assert session.exec(select(Campaign)).all() == []


@pytest.mark.calendar
def test_a_stricter_fall_than_anyone_s_shows_the_empty_state(app, program):
    at = _open(app, "manager")
    at.slider(key="winback_min_drop").set_value(90).run()  # their fall is about 0.986: 99 points would be needed
    at.slider(key="winback_top_share").set_value(5).run()
    assert at.dataframe[0].value["member"].tolist()  # still listed at 90 points
    at.selectbox(key="winback_reference_days").set_value(30).run()  # 30 days ago they had already lapsed 69 days
    assert not at.dataframe
    assert "No high-value member's probability of being alive fell by 90 points" in at.info[0].value
    assert not [b for b in at.button if b.label == CREATE]


def test_without_enough_buyers_the_page_says_the_model_cannot_be_fitted(app, session):
    member = make_member(session)
    make_purchase(session, member, 20.0, occurred_at=utc(2026, 1, 5))
    at = _open(app, "manager")
    assert at.info[0].value.startswith("The CLV model cannot be fitted here: Only 1 members bought")
    assert not at.get("plotly_chart")


@pytest.mark.calendar
def test_after_the_night_the_page_reads_the_stored_list_without_a_member_erased_since_and_other_thresholds_compute_now(app, session, program, today):
    from loyalty.access.roles import SYSTEM_CLI
    from loyalty.evaluation.jobs import run_job
    from loyalty.ledger.erasure import erase_member

    assert run_job("page-views", as_of=today, actor=SYSTEM_CLI)["status"] == "succeeded"
    lapsed = list(reversed(program["lapsed"][:3]))
    erase_member(session=session, external_id=lapsed[0].external_id, actor=SYSTEM_CLI)  # after the night, before the page opens
    at = _open(app, "manager")
    assert any("Figures of the nightly evaluation" in c.value for c in at.caption)
    table = at.dataframe[0].value
    assert table["member"].tolist() == [m.external_id for m in lapsed[1:]]
    assert table["name"].tolist() == [m.name for m in lapsed[1:]]
    assert {m.label: m.value for m in at.metric}["Candidates"] == "2"

    at.slider(key="winback_top_share").set_value(25).run()
    assert not any("Figures of the nightly evaluation" in c.value for c in at.caption)
    assert at.dataframe[0].value["member"].tolist() == [m.external_id for m in lapsed[1:]]
