"""Goals and KPI targets, and each target's status from the stored KPI snapshots.

Status of a target, from the latest snapshot of its metric, period and segment:

* **on track** when the value meets the target in the metric's good direction;
* **at risk** when it misses by no more than ``AT_RISK_MARGIN`` of the target;
* **off track** otherwise; **no data** before the first snapshot.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pandas as pd
from sqlmodel import Session, col, select

from db.engine import write_transaction
from db.models import Goal, KpiSnapshot, KpiTarget, Segment, stored_id
from loyalty.access.audit import record_audit
from loyalty.access.roles import Actor, require
from loyalty.errors import InvalidInput, NotFound
from loyalty.program.lifecycle import Removal, archive_record, clone_record, count_rows, delete_record, restore_record
from loyalty.settings import get_settings

__all__ = [
    "AT_RISK_MARGIN",
    "OBJECTIVES",
    "archive_goal",
    "archive_kpi_target",
    "clone_goal",
    "clone_kpi_target",
    "delete_goal",
    "delete_kpi_target",
    "goal_status",
    "kpi_tiles",
    "list_goals",
    "restore_goal",
    "restore_kpi_target",
    "save_goal",
    "save_kpi_target",
    "target_status",
]

OBJECTIVES = {
    "grow_membership": "Grow membership",
    "raise_sales": "Raise sales",
    "raise_profit": "Raise profit",
    "win_back": "Win back lapsing members",
    "retain": "Keep existing members",
    "satisfaction": "Raise satisfaction",
    "liability": "Keep points liability in check",
}
FREQUENCIES = ("weekly", "monthly", "quarterly")
PERIODS = ("month", "quarter")
AT_RISK_MARGIN = 0.10
TREND_POINTS = 12


def _metrics() -> dict[str, Any]:
    from loyalty.analytics.metrics import METRICS

    return METRICS


def list_goals(session: Session, *, include_archived: bool = False) -> pd.DataFrame:
    """The goals, newest first; archived ones only with ``include_archived`` (column ``archived``)."""
    query = select(Goal).order_by(col(Goal.starts_on).desc(), Goal.name)
    if not include_archived:
        query = query.where(col(Goal.archived_at).is_(None))
    rows = [{**g.model_dump(exclude={"archived_at"}), "archived": g.archived_at is not None} for g in session.exec(query)]
    return pd.DataFrame(
        rows, columns=["id", "name", "objective", "owner", "starts_on", "ends_on", "reporting_frequency", "strategy", "created_at", "archived"]
    )


def save_goal(
    *,
    session: Session,
    actor: Actor,
    name: str,
    objective: str,
    owner: str,
    starts_on: date | None,
    ends_on: date | None,
    reporting_frequency: str = "monthly",
    strategy: str = "",
    goal_id: int | None = None,
) -> Goal:
    require(actor, "program.configure")
    name = name.strip()
    if not name:
        raise InvalidInput("A goal needs a name.")
    if objective not in OBJECTIVES:
        raise InvalidInput(f"Unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}.")
    if not owner.strip():
        raise InvalidInput("A goal needs an owner: who answers for it?")
    if starts_on is None or ends_on is None:
        raise InvalidInput("A goal needs a period: choose its first and its last day.")
    if ends_on <= starts_on:
        raise InvalidInput("The goal ends before it starts.")
    if reporting_frequency not in FREQUENCIES:
        raise InvalidInput(f"Reporting frequency must be one of {', '.join(FREQUENCIES)}.")
    with write_transaction(session):
        goal = session.get(Goal, goal_id) if goal_id is not None else None
        if goal_id is not None and goal is None:
            raise NotFound(f"No goal with id {goal_id}.")
        if goal is not None and goal.archived_at is not None:
            raise InvalidInput(f"{goal.name} is archived: restore it before changing it.")
        clash = session.exec(select(Goal.id).where(Goal.name == name)).first()
        if clash is not None and clash != goal_id:
            raise InvalidInput(f"A goal named {name!r} already exists.")
        before = goal.model_dump(mode="json", exclude={"created_at", "archived_at"}) if goal else None
        goal = goal or Goal(name=name, objective=objective, starts_on=starts_on, ends_on=ends_on)
        goal.name, goal.objective, goal.owner, goal.starts_on, goal.ends_on = name, objective, owner.strip(), starts_on, ends_on
        goal.reporting_frequency, goal.strategy = reporting_frequency, strategy.strip()
        session.add(goal)
        session.flush()
        record_audit(
            session,
            actor=actor,
            action="goal.create" if before is None else "goal.update",
            entity="goal",
            entity_id=goal.id,
            before=before,
            after=goal.model_dump(mode="json", exclude={"created_at", "archived_at"}),
        )
    return goal


def save_kpi_target(
    *,
    session: Session,
    actor: Actor,
    goal_id: int,
    metric: str,
    target_value: float,
    direction: str | None = None,
    period: str = "month",
    segment_id: int | None = None,
    target_id: int | None = None,
) -> KpiTarget:
    """Attach a KPI target to a goal; the direction defaults to the metric's good direction."""
    require(actor, "program.configure")
    metrics = _metrics()
    if metric not in metrics:
        raise InvalidInput(f"Unknown metric {metric!r}; choose one of the catalogue: {', '.join(metrics)}.")
    direction = direction or metrics[metric].direction
    if direction not in ("up", "down"):
        raise InvalidInput("Direction must be up (higher is better) or down (lower is better).")
    if period not in PERIODS:
        raise InvalidInput(f"Period must be one of {', '.join(PERIODS)}.")
    if metrics[metric].unit == "share" and not 0 <= target_value <= 1:
        raise InvalidInput(f"{metrics[metric].label} is a share: give the target between 0 and 1 (0.35 for 35 %).")
    if metric == "nps" and not -100 <= target_value <= 100:
        raise InvalidInput("NPS runs from -100 to 100.")
    if metrics[metric].unit != "score" and target_value < 0:
        raise InvalidInput(f"A target for {metrics[metric].label} cannot be negative.")
    with write_transaction(session):
        goal = session.get(Goal, goal_id)
        if goal is None:
            raise NotFound(f"No goal with id {goal_id}.")
        if goal.archived_at is not None:
            raise InvalidInput(f"{goal.name} is archived: restore it before giving it targets.")
        if segment_id is not None and session.get(Segment, segment_id) is None:
            raise InvalidInput("That segment does not exist.")
        target = session.get(KpiTarget, target_id) if target_id is not None else None
        if target_id is not None and target is None:
            raise NotFound(f"No KPI target with id {target_id}.")
        if target is not None and target.archived_at is not None:
            raise InvalidInput("This KPI target is archived: restore it before changing it.")
        before = target.model_dump(exclude={"archived_at"}) if target else None
        target = target or KpiTarget(goal_id=goal_id, metric=metric, target_value=target_value)
        target.goal_id, target.metric, target.target_value = goal_id, metric, float(target_value)
        target.direction, target.period, target.segment_id = direction, period, segment_id
        session.add(target)
        session.flush()
        record_audit(
            session,
            actor=actor,
            action="kpi_target.save",
            entity="kpi_target",
            entity_id=target.id,
            before=before,
            after=target.model_dump(exclude={"archived_at"}),
        )
    return target


def delete_kpi_target(*, session: Session, actor: Actor, target_id: int) -> None:
    require(actor, "program.configure")
    with write_transaction(session):
        target = session.get(KpiTarget, target_id)
        if target is None:
            raise NotFound(f"No KPI target with id {target_id}.")
        record_audit(
            session, actor=actor, action="kpi_target.delete", entity="kpi_target", entity_id=target_id, before=target.model_dump(mode="json")
        )
        session.delete(target)


def _copy_targets(session: Session, actor: Actor, source_goal_id: int, goal_id: int) -> None:
    for target in session.exec(
        select(KpiTarget).where(KpiTarget.goal_id == source_goal_id, col(KpiTarget.archived_at).is_(None)).order_by(col(KpiTarget.id))
    ).all():
        _copy_target(session, actor, target, goal_id)


def _copy_target(session: Session, actor: Actor, target: KpiTarget, goal_id: int) -> KpiTarget:
    return save_kpi_target(
        session=session,
        actor=actor,
        goal_id=goal_id,
        metric=target.metric,
        target_value=target.target_value,
        direction=target.direction,
        period=target.period,
        segment_id=target.segment_id,
    )


def clone_goal(*, session: Session, actor: Actor, goal_id: int) -> Goal:
    """A copy named ``"<name> (copy)"`` with the same objective, owner, period, strategy and (not archived) KPI targets."""

    def create(source: Goal, name: str) -> Goal:
        clone = save_goal(
            session=session,
            actor=actor,
            name=name,
            objective=source.objective,
            owner=source.owner,
            starts_on=source.starts_on,
            ends_on=source.ends_on,
            reporting_frequency=source.reporting_frequency,
            strategy=source.strategy,
        )
        _copy_targets(session, actor, stored_id(source), stored_id(clone))
        return clone

    return clone_record(
        session=session, actor=actor, model=Goal, record_id=goal_id, entity="goal", permission="program.configure", name_limit=200, create=create
    )


def archive_goal(*, session: Session, actor: Actor, goal_id: int) -> Goal:
    """Hide a goal (and so its targets) from the page, the status checks and the alerts; restorable."""
    return archive_record(session=session, actor=actor, model=Goal, record_id=goal_id, entity="goal", permission="program.configure")


def restore_goal(*, session: Session, actor: Actor, goal_id: int) -> Goal:
    return restore_record(session=session, actor=actor, model=Goal, record_id=goal_id, entity="goal", permission="program.configure")


def delete_goal(*, session: Session, actor: Actor, goal_id: int) -> Removal:
    """Delete a goal without KPI targets; one with targets is archived instead (they keep their history)."""
    return delete_record(
        session=session,
        actor=actor,
        model=Goal,
        record_id=goal_id,
        entity="goal",
        permission="program.configure",
        references=lambda s, goal: [("KPI target", count_rows(s, KpiTarget.goal_id, goal.id))],
        snapshot=lambda goal: goal.model_dump(mode="json", exclude={"created_at", "archived_at"}),
    )


def clone_kpi_target(*, session: Session, actor: Actor, target_id: int) -> KpiTarget:
    """The same KPI target again on the same goal (to change its segment or period, say); audited."""
    return clone_record(
        session=session,
        actor=actor,
        model=KpiTarget,
        record_id=target_id,
        entity="kpi_target",
        permission="program.configure",
        create=lambda source, _name: _copy_target(session, actor, source, source.goal_id),
    )


def archive_kpi_target(*, session: Session, actor: Actor, target_id: int) -> KpiTarget:
    return archive_record(session=session, actor=actor, model=KpiTarget, record_id=target_id, entity="kpi_target", permission="program.configure")


def restore_kpi_target(*, session: Session, actor: Actor, target_id: int) -> KpiTarget:
    return restore_record(session=session, actor=actor, model=KpiTarget, record_id=target_id, entity="kpi_target", permission="program.configure")


def target_status(value: float | None, target: float, direction: str) -> str:
    """``on track``, ``at risk``, ``off track`` or ``no data`` for one value against its target."""
    if value is None or value != value:
        return "no data"
    gap = (target - value) if direction == "up" else (value - target)
    if gap <= 0:
        return "on track"
    return "at risk" if gap <= AT_RISK_MARGIN * abs(target) else "off track"


def goal_status(session: Session, *, include_archived: bool = False) -> pd.DataFrame:
    """Every KPI target with its goal, latest value, status and recent trend (oldest first).

    Archived targets and the targets of archived goals only with ``include_archived``
    (column ``archived``: the target or its goal is archived).
    """
    metrics = _metrics()
    currency = get_settings(session).currency
    segments = dict(session.exec(select(Segment.id, Segment.name)).all())
    rows = []
    query = select(KpiTarget, Goal).join(Goal, col(Goal.id) == KpiTarget.goal_id).order_by(col(Goal.name), col(KpiTarget.id))
    if not include_archived:
        query = query.where(col(KpiTarget.archived_at).is_(None), col(Goal.archived_at).is_(None))
    for target, goal in session.exec(query):
        dimension, value_key = ("segment", segments.get(target.segment_id, "")) if target.segment_id else ("overall", "")
        history = session.exec(
            select(KpiSnapshot.period_start, KpiSnapshot.value)  # type: ignore[call-overload]  # value is Optional: no overload takes a "float | None" column
            .where(
                KpiSnapshot.metric == target.metric,
                KpiSnapshot.period == target.period,
                KpiSnapshot.dimension == dimension,
                KpiSnapshot.dimension_value == value_key,
            )
            .order_by(col(KpiSnapshot.period_start).desc())
            .limit(TREND_POINTS)
        ).all()[::-1]
        latest = history[-1] if history else None
        metric = metrics.get(target.metric)
        value = latest[1] if latest else None
        rows.append(
            {
                "goal_id": goal.id,
                "goal": goal.name,
                "objective": OBJECTIVES.get(goal.objective, goal.objective),
                "owner": goal.owner,
                "target_id": target.id,
                "metric": target.metric,
                "label": metric.label if metric else target.metric,
                "segment": segments.get(target.segment_id, "") if target.segment_id else "",
                "period": target.period,
                "target": target.target_value,
                "direction": target.direction,
                "value": value,
                "period_start": latest[0] if latest else None,
                "status": target_status(value, target.target_value, target.direction),
                "trend": [h[1] for h in history],
                "value_text": metric.display(value, currency) if metric else str(value),
                "target_text": metric.display(target.target_value, currency) if metric else str(target.target_value),
                "segment_id": target.segment_id,
                "archived": target.archived_at is not None or goal.archived_at is not None,
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "goal_id",
            "goal",
            "objective",
            "owner",
            "target_id",
            "metric",
            "label",
            "segment",
            "period",
            "target",
            "direction",
            "value",
            "period_start",
            "status",
            "trend",
            "value_text",
            "target_text",
            "segment_id",
            "archived",
        ],
    )


OVERVIEW_METRICS = (
    "active_members",
    "retention_rate",
    "average_transaction_value",
    "purchase_frequency",
    "nps",
    "redemption_rate",
    "points_outstanding",
)


def kpi_tiles(session: Session, *, metrics: tuple[str, ...] = OVERVIEW_METRICS, period: str = "month") -> list[dict[str, Any]]:
    """The Overview's KPI tiles: latest overall snapshot, change on the period before, target and status, trend."""
    catalogue = _metrics()
    currency = get_settings(session).currency
    targets = {
        t.metric: t
        for t in session.exec(
            select(KpiTarget)
            .join(Goal, col(Goal.id) == KpiTarget.goal_id)
            .where(
                KpiTarget.period == period, col(KpiTarget.segment_id).is_(None), col(KpiTarget.archived_at).is_(None), col(Goal.archived_at).is_(None)
            )
        )
    }
    tiles = []
    for name in metrics:
        history = session.exec(
            select(KpiSnapshot.period_start, KpiSnapshot.value)  # type: ignore[call-overload]  # value is Optional: no overload takes a "float | None" column
            .where(KpiSnapshot.metric == name, KpiSnapshot.period == period, KpiSnapshot.dimension == "overall")
            .order_by(col(KpiSnapshot.period_start).desc())
            .limit(TREND_POINTS)
        ).all()[::-1]
        metric = catalogue[name]
        value = history[-1][1] if history else None
        previous = history[-2][1] if len(history) > 1 else None
        target = targets.get(name)
        tiles.append(
            {
                "metric": name,
                "label": metric.label,
                "definition": metric.definition,
                "value": value,
                "value_text": metric.display(value, currency),
                "period_start": history[-1][0] if history else None,
                "delta_text": None if value is None or previous is None else metric.display_change(value - previous, currency),
                "better_when": metric.direction,
                "target_text": metric.display(target.target_value, currency) if target else None,
                "status": target_status(value, target.target_value, target.direction) if target else None,
                "trend": [v for _, v in history if v is not None],
            }
        )
    return tiles
