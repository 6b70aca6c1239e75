"""Goals page: targets with status and trend from snapshots; forms refuse bad input."""

from __future__ import annotations

from datetime import date

from sqlmodel import select

from db.models import Goal
from loyalty.access.roles import SYSTEM_CLI
from loyalty.evaluation.kpis import snapshot_kpis
from loyalty.program.goals import save_goal, save_kpi_target
from tests.factories import make_member, make_purchase, utc
from tests.pages.conftest import form_key_of, open_page


def _open(app, role):
    return open_page(app, role, "pages/goals.py")


def test_an_executive_reads_targets_with_their_status_and_trend(app, session):
    member = make_member(session)
    make_purchase(session, member, 10.0, occurred_at=utc(2026, 10, 5))
    goal = save_goal(
        session=session,
        actor=SYSTEM_CLI,
        name="Grow",
        objective="grow_membership",
        owner="Rita",
        starts_on=date(2026, 1, 1),
        ends_on=date(2026, 12, 31),
    )
    save_kpi_target(session=session, actor=SYSTEM_CLI, goal_id=goal.id, metric="active_members", target_value=1)
    snapshot_kpis(session, period="month", start=date(2026, 10, 1), end=date(2026, 11, 1))
    at = _open(app, "executive")
    table = at.dataframe[0].value
    assert table.iloc[0]["label"] == "Active members"
    assert table.iloc[0]["status"] == "on track"
    assert table.iloc[0]["trend"] == [1.0]
    assert not [b for b in at.button if b.label == "Add goal"]


def test_a_manager_adds_a_goal_and_a_goal_without_owner_is_refused(app, session):
    at = _open(app, "manager")
    assert "No goals yet" in at.info[0].value
    at.text_input(key=f"{form_key_of(at, 'goals')}_name").input("Win them back")
    at.button(key=f"{form_key_of(at, 'goals')}_submit").click().run()
    assert "needs an owner" in at.error[0].value
    at.text_input(key=f"{form_key_of(at, 'goals')}_name").input("Win them back")
    at.text_input(key=f"{form_key_of(at, 'goals')}_owner").input("Rita")
    at.button(key=f"{form_key_of(at, 'goals')}_submit").click().run()
    session.rollback()
    assert session.exec(select(Goal.name)).all() == ["Win them back"]
