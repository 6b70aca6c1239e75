"""Campaigns page: create a draft, see the preview, activate, and the refusal messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlmodel import select

from db.models import Campaign, CampaignAssignment
from loyalty.access.roles import Actor
from loyalty.decisions.planner import expected_campaign_impact
from loyalty.insights.campaign_results import evaluate_campaigns, store_campaign_results
from loyalty.program.campaigns import activate_campaign, save_campaign
from tests.factories import make_member, make_purchase, utc
from tests.pages.conftest import form_key_of, open_page


def _open(app, role):
    return open_page(app, role, "pages/campaigns.py")


def test_a_manager_creates_previews_and_activates_a_campaign(app, session):
    members = [make_member(session) for _ in range(5)]
    for m in members:
        make_purchase(session, m, 20.0, occurred_at=utc(2026, 11, 1))
    at = _open(app, "manager")
    assert "No campaigns yet" in at.info[0].value
    at.text_input(key=f"{form_key_of(at, 'campaigns')}_name").input("Double November")
    at.button(key="campaigns_save").click().run()
    assert "saved as a draft" in at.success[0].value, [e.value for e in at.error]
    assert at.selectbox(key="campaigns_choice").value == "Double November"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Eligible members"] == "5"
    at.button(key="campaigns_activate").click().run()
    session.rollback()
    campaign = session.exec(select(Campaign)).one()
    assert campaign.status in ("scheduled", "active")
    assert len(session.exec(select(CampaignAssignment)).all()) == 5


def test_a_campaign_without_a_name_is_refused_in_words(app, session):
    at = _open(app, "manager")
    at.button(key="campaigns_save").click().run()
    assert at.error[0].value == "A campaign needs a name."
    session.rollback()
    assert session.exec(select(Campaign)).all() == []


def test_an_analyst_reads_campaigns_but_gets_no_form(app, session):
    at = _open(app, "analyst")
    assert not [b for b in at.button if b.label == "Save as draft"]


# --- the campaign planner ----------------------------------------------------------------------------


def _buyers_spending(session, amounts, days_ago=2):
    """Members who spent ``amounts`` (0: nothing) a few days ago, inside any holdout-sizing window."""
    members = [make_member(session) for _ in amounts]
    for member, amount in zip(members, amounts):
        if amount:
            make_purchase(session, member, amount, occurred_at=datetime.now(UTC) - timedelta(days=days_ago))
    return members


@pytest.mark.calendar
def test_the_holdout_sizing_follows_the_holdout_and_the_target_as_they_change(app, session):
    # Spend 0, 10, 20, 30 in the last 31 days (the default campaign length): mean 15, sd sqrt(500/3) = 12.91.
    _buyers_spending(session, [0.0, 10.0, 20.0, 30.0])
    at = _open(app, "manager")
    assert not at.metric, "the sizing reads past purchases: only when asked"
    at.toggle(key="campaigns_size_holdout").set_value(True).run()
    assert "The 4 members this campaign would reach spent on average EUR 15.00 each (standard deviation EUR 12.91)" in at.caption[-1].value
    metrics = {m.label: m.value for m in at.metric}
    # 10 %: (1.959964 + 0.841621) * 12.9099 * sqrt(1/3.6 + 1/0.4) = 36.1680 * 1.666667 = 60.28
    assert metrics["Smallest detectable uplift at 10% holdout"] == "EUR 60.28 per member"

    at.radio(key="campaigns_uplift_unit").set_value("money per member").run()
    at.number_input(key="campaigns_uplift_money").set_value(50.0).run()
    # c = 4 * (50 / 36.1680)^2 = 7.6445; k = (1 - sqrt(1 - 4 / 7.6445)) / 2 = 0.1548: 16 %.
    assert {m.label: m.value for m in at.metric}["Holdout needed"] == "16%"
    assert at.info[-1].value == "A 10% holdout is too small to detect EUR 50.00 per member: raise it to 16%."

    at.slider(key=f"{form_key_of(at, 'campaigns')}_holdout").set_value(20).run()
    metrics = {m.label: m.value for m in at.metric}
    # 20 %: 36.1680 * sqrt(1/3.2 + 1/0.8) = 36.1680 * 1.25 = 45.21
    assert metrics["Smallest detectable uplift at 20% holdout"] == "EUR 45.21 per member"
    assert at.success[0].value == "A 20% holdout is enough to detect EUR 50.00 per member (16% would do)."


def test_a_target_even_an_even_split_cannot_detect_is_said_in_words(app, session):
    _buyers_spending(session, [0.0, 10.0, 20.0, 30.0])
    at = _open(app, "manager")
    at.toggle(key="campaigns_size_holdout").set_value(True).run()
    # +20 % of 15 = 3 per member: c = 4 * (3 / 36.1680)^2 = 0.0275 < 4; 4 * (36.1680 / 3)^2 = 581.4 -> 582 members.
    assert {m.label: m.value for m in at.metric}["Holdout needed"] == "over 50%"
    assert at.warning[0].value == (
        "Target EUR 3.00 per member (+20%). Even a 50% holdout cannot detect this uplift on 4 members: "
        "it would take a segment of 582 members, or a larger uplift."
    )


def test_a_draft_of_a_kind_never_measured_shows_no_comparable_history(app, session):
    _buyers_spending(session, [20.0, 30.0])
    now = datetime.now(UTC)
    save_campaign(
        session=session,
        actor=Actor("max", "manager"),
        name="Referral bonus",
        kind="fixed_bonus",
        rule={"points": 100},
        starts_at=now + timedelta(days=10),
        ends_at=now + timedelta(days=40),
        holdout_pct=0.1,
    )
    at = _open(app, "manager")
    at.selectbox(key="campaigns_choice").set_value("Referral bonus").run()
    assert not at.exception, at.exception
    # Two purchases are too few to estimate the cost either: both are said, no 0 shown.
    (estimate,) = [i.value for i in at.info if i.value.startswith("Not enough history to estimate")]
    assert estimate.startswith("Not enough history to estimate: 2 purchases in the window, need 10")
    assert "No comparable history: no fixed bonus per purchase campaign has been measured" in estimate
    assert {m.label: m.value for m in at.metric}["Estimated points cost"] == "not enough history"
    assert "Incremental revenue" not in [m.label for m in at.metric]


@pytest.mark.calendar
def test_a_draft_shows_its_expected_impact_from_a_measured_campaign_of_its_kind(app, session):
    now = datetime.now(UTC)
    manager = Actor("max", "manager")
    members = [make_member(session) for _ in range(20)]
    past = save_campaign(
        session=session,
        actor=manager,
        name="Past double points",
        kind="multiplier",
        rule={"multiplier": 2.0},
        starts_at=now - timedelta(days=40),
        ends_at=now - timedelta(days=30),
        holdout_pct=0.45,
    )
    activate_campaign(session=session, campaign_id=past.id, actor=manager, now=now - timedelta(days=41))
    groups = dict(session.exec(select(CampaignAssignment.member_id, CampaignAssignment.group).where(CampaignAssignment.campaign_id == past.id)).all())
    held = [m for m in members if groups[m.id] == "holdout"]
    for m in members:
        amount = 50.0 if groups[m.id] == "treatment" else (20.0 if held.index(m) % 2 == 0 else 40.0)
        make_purchase(session, m, amount, occurred_at=now - timedelta(days=35))
    store_campaign_results(session, evaluate_campaigns(session, cutoff=now))
    draft = save_campaign(
        session=session,
        actor=manager,
        name="Next double points",
        kind="multiplier",
        rule={"multiplier": 2.0},
        starts_at=now + timedelta(days=5),
        ends_at=now + timedelta(days=25),
        holdout_pct=0.1,
    )

    at = _open(app, "manager")
    at.selectbox(key="campaigns_choice").set_value("Next double points").run()

    assert not at.exception, at.exception
    impact = expected_campaign_impact(session, campaign_id=draft.id)
    holdout_mean = np.mean([20.0 if i % 2 == 0 else 40.0 for i in range(len(held))])
    # 10 days measured, 20 planned: twice the past uplift, for each treated member.
    assert impact.uplift_per_member == pytest.approx(2 * (50.0 - holdout_mean))
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Incremental revenue"] == f"EUR {2 * (50.0 - holdout_mean) * impact.treatment:,.2f}"
    assert metrics["Points cost"] == f"{impact.points_cost:,} pts"
    assert "From 1 comparable campaign(s) measured against their holdout" in [e.label for e in at.expander]


def test_an_analyst_sees_each_measured_campaign_in_money_with_its_interval_and_verdict(app, session, now):
    from loyalty.demo.simulation import create_demo
    from loyalty.evaluation.jobs import run_job

    create_demo(session, members=300, months=12, seed=3, actor=Actor("max", "manager"), now=now)
    run_job("campaign-evaluation", as_of=now.date() - timedelta(days=1), actor=Actor("max", "manager"))
    at = _open(app, "analyst")
    assert "Results against the holdout" in [h.value for h in at.subheader]
    results = next(d.value for d in at.dataframe if "verdict" in d.value.columns)
    revenue = results["incremental revenue (95 %)"]
    # A holdout of one member has no interval: the figure alone, and the verdict says it cannot tell.
    assert revenue.str.fullmatch(r"EUR -?[\d,]+( \(EUR -?[\d,]+ to EUR -?[\d,]+\))?").all() and revenue.str.contains(" to ").sum() >= 2
    assert results["verdict"].str.contains("underpowered|measured|cannot tell").all()
    assert any("ROI = (incremental revenue x gross margin 30% - cost) / cost" in c.value for c in at.caption)
