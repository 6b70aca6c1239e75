"""Segments page: live size from the rules, save, refusal, export respecting consent."""

from __future__ import annotations

from sqlmodel import select

from db.models import Segment
from loyalty.access.roles import SYSTEM_CLI
from loyalty.program.segments import save_segment
from tests.factories import make_member, make_purchase, utc
from tests.pages.conftest import figure, form_key_of, open_page


def _open(app, role):
    return open_page(app, role, "pages/segments.py")


def test_an_analyst_builds_and_saves_a_segment_with_its_live_size(app, session):
    make_member(session, acquisition_channel="referral")
    make_member(session, acquisition_channel="referral")
    make_member(session, acquisition_channel="web")
    at = _open(app, "analyst")
    at.multiselect(key=f"{form_key_of(at, 'segments')}_channel").set_value(["referral"]).run()
    assert {m.label: m.value for m in at.metric}["Members now"] == "2"
    at.text_input(key=f"{form_key_of(at, 'segments')}_name").input("Referred")
    at.button(key=f"{form_key_of(at, 'segments')}_submit").click().run()
    session.rollback()
    assert session.exec(select(Segment.rules)).one() == {"acquisition_channel": ["referral"]}


def test_a_segment_without_rules_is_refused(app, session):
    at = _open(app, "analyst")
    at.text_input(key=f"{form_key_of(at, 'segments')}_name").input("Everyone")
    at.button(key=f"{form_key_of(at, 'segments')}_submit").click().run()
    assert "at least one rule" in at.error[0].value


def test_the_segment_list_shows_size_and_revenue_share(app, session):
    a = make_member(session, acquisition_channel="referral", marketing_consent=True)
    b = make_member(session, acquisition_channel="web")
    make_purchase(session, a, 75.0, occurred_at=utc(2026, 10, 1))
    make_purchase(session, b, 25.0, occurred_at=utc(2026, 10, 1))
    save_segment(session=session, actor=SYSTEM_CLI, name="Referred", rules={"acquisition_channel": ["referral"]})
    at = _open(app, "manager")
    row = at.dataframe[0].value.iloc[0]
    assert (row["segment"], row["members"], row["revenue_share"]) == ("Referred", 1, 0.75)


def test_the_rfm_grid_counts_members_per_cell_and_lists_a_segments_members(app, session):
    for i in range(10):
        member = make_member(session)
        for k in range(i + 1):
            make_purchase(session, member, 10.0, occurred_at=utc(2026, 1 + k % 10, 1 + i))
    at = _open(app, "analyst")

    heat = figure(at, 0)["data"][0]
    assert sum(v for row in heat["z"] for v in row if v == v and v is not None) == 10  # NaN: empty cell
    segments = at.dataframe[0].value
    assert segments["members"].sum() == 10
    first = segments.iloc[0]
    assert len(at.dataframe) == 1, "an RFM segment's members are listed when asked: scoring reads every purchase"
    at.button(key="segments_rfm_list").click().run()
    behind = at.dataframe[1].value
    assert len(behind) == first["members"] and set(behind["segment"]) == {first["segment"]}


def test_the_segment_list_reads_the_nightly_counts_until_a_segment_changes(app, session, today):
    from datetime import timedelta

    import streamlit as st

    from loyalty.evaluation.jobs import run_job

    a = make_member(session, acquisition_channel="referral")
    make_member(session, acquisition_channel="web")
    make_purchase(session, a, 75.0, occurred_at=utc(2026, 10, 1))
    save_segment(session=session, actor=SYSTEM_CLI, name="Referred", rules={"acquisition_channel": ["referral"]})
    run_job("page-views", as_of=today - timedelta(days=1))
    make_member(session, acquisition_channel="referral")  # joins after the night: not in the stored count
    st.cache_data.clear()
    at = _open(app, "manager")
    assert any("Figures of the nightly evaluation" in c.value for c in at.caption)
    assert at.dataframe[0].value.iloc[0]["members"] == 1
    save_segment(session=session, actor=SYSTEM_CLI, name="Web", rules={"acquisition_channel": ["web"]})
    st.cache_data.clear()
    at = _open(app, "manager")
    counted = at.dataframe[0].value.set_index("segment")["members"].to_dict()
    assert counted == {"Referred": 2, "Web": 1}, "a new segment: every segment counted now"
    assert not any("Figures of the nightly evaluation" in c.value for c in at.caption)
