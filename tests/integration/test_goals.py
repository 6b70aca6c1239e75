"""Goals, KPI targets, snapshots and each target's status."""

from __future__ import annotations

from datetime import date

import pytest
from sqlmodel import select

from db.models import KpiSnapshot
from loyalty.access.roles import Actor
from loyalty.errors import InvalidInput, PermissionDenied
from loyalty.evaluation.kpis import snapshot_kpis
from loyalty.program.goals import goal_status, save_goal, save_kpi_target, target_status
from tests.factories import make_member, make_purchase, utc

MANAGER = Actor("max", "manager")


@pytest.mark.parametrize(
    "value,target,direction,expected",
    [
        (0.40, 0.35, "up", "on track"),
        (0.33, 0.35, "up", "at risk"),
        (0.20, 0.35, "up", "off track"),
        (900, 1000, "down", "on track"),
        (1080, 1000, "down", "at risk"),
        (1500, 1000, "down", "off track"),
        (None, 1, "up", "no data"),
    ],
    ids=["up-met", "up-within-10pct", "up-missed", "down-met", "down-within-10pct", "down-missed", "no-snapshot"],
)
def test_status_compares_the_value_with_the_target_in_the_good_direction(value, target, direction, expected):
    assert target_status(value, target, direction) == expected


def test_a_goal_needs_an_owner_and_a_valid_period(session):
    with pytest.raises(InvalidInput, match="owner"):
        save_goal(
            session=session,
            actor=MANAGER,
            name="Grow",
            objective="grow_membership",
            owner=" ",
            starts_on=date(2026, 1, 1),
            ends_on=date(2026, 12, 31),
        )
    with pytest.raises(InvalidInput, match="ends before it starts"):
        save_goal(
            session=session,
            actor=MANAGER,
            name="Grow",
            objective="grow_membership",
            owner="Rita",
            starts_on=date(2026, 12, 1),
            ends_on=date(2026, 1, 1),
        )
    with pytest.raises(PermissionDenied):
        save_goal(
            session=session,
            actor=Actor("ann", "analyst"),
            name="Grow",
            objective="grow_membership",
            owner="Rita",
            starts_on=date(2026, 1, 1),
            ends_on=date(2026, 12, 31),
        )


def test_targets_are_checked_against_the_metric_catalogue(session):
    goal = save_goal(
        session=session, actor=MANAGER, name="Keep them", objective="retain", owner="Rita", starts_on=date(2026, 1, 1), ends_on=date(2026, 12, 31)
    )
    with pytest.raises(InvalidInput, match="Unknown metric"):
        save_kpi_target(session=session, actor=MANAGER, goal_id=goal.id, metric="happiness", target_value=1)
    with pytest.raises(InvalidInput, match="between 0 and 1"):
        save_kpi_target(session=session, actor=MANAGER, goal_id=goal.id, metric="retention_rate", target_value=35)
    target = save_kpi_target(session=session, actor=MANAGER, goal_id=goal.id, metric="retention_rate", target_value=0.5)
    assert target.direction == "up"


def test_snapshots_feed_each_targets_latest_value_status_and_trend(session):
    a, b = make_member(session), make_member(session)
    make_purchase(session, a, 10.0, occurred_at=utc(2026, 9, 5))
    make_purchase(session, b, 10.0, occurred_at=utc(2026, 9, 6))
    make_purchase(session, a, 10.0, occurred_at=utc(2026, 10, 5))
    goal = save_goal(
        session=session, actor=MANAGER, name="Keep them", objective="retain", owner="Rita", starts_on=date(2026, 1, 1), ends_on=date(2026, 12, 31)
    )
    save_kpi_target(session=session, actor=MANAGER, goal_id=goal.id, metric="retention_rate", target_value=0.6)
    save_kpi_target(session=session, actor=MANAGER, goal_id=goal.id, metric="active_members", target_value=2)

    snapshot_kpis(session, period="month", start=date(2026, 9, 1), end=date(2026, 10, 1))
    written = snapshot_kpis(session, period="month", start=date(2026, 10, 1), end=date(2026, 11, 1))
    again = snapshot_kpis(session, period="month", start=date(2026, 10, 1), end=date(2026, 11, 1))
    assert written == again
    october = session.exec(select(KpiSnapshot).where(KpiSnapshot.period_start == date(2026, 10, 1))).all()
    assert len(october) == written, "a second run replaces the period's rows"

    status = goal_status(session).set_index("metric")
    # October: of the 2 members active in September, 1 came back.
    assert status.loc["retention_rate", "value"] == pytest.approx(0.5)
    assert status.loc["retention_rate", "status"] == "off track"
    assert status.loc["active_members", "trend"] == [2.0, 1.0]
    assert status.loc["active_members", "status"] == "off track"
