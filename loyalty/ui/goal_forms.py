"""The Goals and KPIs page's parts: a card per goal with its targets' status, the goal form and the KPI target form."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Literal

import pandas as pd
import streamlit as st

from loyalty.access.roles import Actor
from loyalty.analytics.metrics import METRICS
from loyalty.program.goals import (
    FREQUENCIES,
    OBJECTIVES,
    PERIODS,
    archive_goal,
    archive_kpi_target,
    clone_goal,
    clone_kpi_target,
    delete_goal,
    delete_kpi_target,
    restore_goal,
    restore_kpi_target,
    save_goal,
    save_kpi_target,
)
from loyalty.ui.core import run_action
from loyalty.ui.forms import choice_box, form_key, form_saved, lifecycle_buttons

__all__ = ["goal_cards", "goal_editor", "kpi_target_editor"]

STATUS_COLOUR = {"on track": "#dcfce7", "at risk": "#fef3c7", "off track": "#fee2e2", "no data": "#f1f5f9"}
STATUS_BADGE: dict[str, Literal["green", "orange", "red", "gray"]] = {
    "on track": "green",
    "at risk": "orange",
    "off track": "red",
    "no data": "gray",
}  # st.badge colours
NEW_GOAL = "New goal"
NEW_TARGET = "New KPI target"


def goal_cards(goals: pd.DataFrame, status: pd.DataFrame, *, show_archived: bool) -> None:
    """Counts of targets by status, then one card per goal with its KPI targets coloured by status."""
    counts = status["status"].value_counts()
    for col, key in zip(st.columns(4), ["on track", "at risk", "off track", "no data"]):
        col.metric(key.capitalize(), int(counts.get(key, 0)))
    for goal in goals.itertuples():
        with st.container(border=True):
            st.markdown(
                f"**{goal.name}**{' (archived)' if goal.archived else ''} · {OBJECTIVES.get(goal.objective, goal.objective)} · owner {goal.owner} · "
                f"{goal.starts_on:%Y-%m-%d} to {goal.ends_on:%Y-%m-%d} · reported {goal.reporting_frequency}"
            )
            if goal.strategy:
                st.caption(goal.strategy)
            targets = status[status["goal_id"] == goal.id]
            if targets.empty:
                st.caption("No KPI targets yet.")
                continue
            shown = targets.assign(segment=targets["segment"].replace("", "all members"))
            st.dataframe(
                shown.style.map(lambda v: f"background-color: {STATUS_COLOUR.get(v, '')}", subset=["status"]),
                hide_index=True,
                width="stretch",
                column_order=["label", "segment", "period", "value_text", "target_text", "direction", "status", "trend", "period_start"]
                + (["archived"] if show_archived else []),
                column_config={
                    "label": "KPI",
                    "value_text": "latest",
                    "target_text": "target",
                    "trend": st.column_config.LineChartColumn("trend (last 12)", width="medium"),
                    "period_start": st.column_config.DateColumn("period of latest", format="YYYY-MM"),
                },
            )


def goal_editor(actor: Actor, goals: pd.DataFrame) -> None:
    """Choose a goal (or a new one): its lifecycle buttons and its form, saved through :func:`save_goal`."""
    goal_ids = dict(zip(goals["name"], goals["id"]))
    choice = choice_box("goals", "Add or edit a goal", [NEW_GOAL, *goal_ids])
    goal = goals.set_index("name").loc[choice].to_dict() | {"id": goal_ids[choice]} if choice in goal_ids else None
    if goal:
        goal_id = goal["id"]
        lifecycle_buttons(
            "goals",
            name=choice,
            archived=goal["archived"],
            new_choice=NEW_GOAL,
            clone=lambda s: clone_goal(session=s, actor=actor, goal_id=goal_id),
            archive=lambda s: archive_goal(session=s, actor=actor, goal_id=goal_id),
            restore=lambda s: restore_goal(session=s, actor=actor, goal_id=goal_id),
            delete=lambda s: delete_goal(session=s, actor=actor, goal_id=goal_id),
        )
        if goal["archived"]:
            st.info(f"{choice} is archived: restore it to change it.")
            return
    _goal_form(actor, goal or {})


def _goal_form(actor: Actor, goal: dict) -> None:
    key = form_key("goals", goal.get("id"))
    with st.form(key):
        name = st.text_input("Goal name", value=goal.get("name", ""), key=f"{key}_name")
        objectives = list(OBJECTIVES)
        objective = st.selectbox(
            "Objective",
            objectives,
            index=objectives.index(goal.get("objective", objectives[0])),
            format_func=lambda o: OBJECTIVES[o],
            key=f"{key}_objective",
        )
        owner = st.text_input("Owner", value=goal.get("owner", ""), key=f"{key}_owner")
        first = date.today().replace(day=1)
        period = st.date_input("Period", value=(goal.get("starts_on", first), goal.get("ends_on", first + timedelta(days=365))), key=f"{key}_period")
        frequency = st.selectbox(
            "Reporting frequency", FREQUENCIES, index=FREQUENCIES.index(goal.get("reporting_frequency", "monthly")), key=f"{key}_frequency"
        )
        strategy = st.text_area("Strategy (short)", value=goal.get("strategy", ""), key=f"{key}_strategy")
        if st.form_submit_button("Save goal" if goal else "Add goal", type="primary", key=f"{key}_submit"):
            start, end = (list(period) + [None, None])[:2]
            saved = run_action(
                lambda s: save_goal(
                    session=s,
                    actor=actor,
                    name=name,
                    objective=objective,
                    owner=owner,
                    starts_on=start,
                    ends_on=end,
                    reporting_frequency=frequency,
                    strategy=strategy,
                    goal_id=goal.get("id"),
                )
            )
            if saved:
                form_saved("goals", f"Goal {saved.name} saved (audited).", choice=saved.name if goal else NEW_GOAL)


def kpi_target_editor(actor: Actor, goals: pd.DataFrame, status: pd.DataFrame, segments: pd.DataFrame) -> None:
    """Choose a KPI target (or a new one) of a live goal: its lifecycle buttons and its form."""
    labels = {
        f"{t['goal']} · {t['label']} · {t['segment'] or 'all members'} · per {t['period']} (#{t['target_id']})": t for t in status.to_dict("records")
    }
    target = labels.get(choice_box("goals_target", "Add or edit a KPI target", [NEW_TARGET, *labels]), {})
    if target:
        target_id = target["target_id"]
        lifecycle_buttons(
            "goals_target",
            name=f"KPI target #{target_id}",
            archived=target["archived"],
            new_choice=NEW_TARGET,
            clone=lambda s: clone_kpi_target(session=s, actor=actor, target_id=target_id),
            archive=lambda s: archive_kpi_target(session=s, actor=actor, target_id=target_id),
            restore=lambda s: restore_kpi_target(session=s, actor=actor, target_id=target_id),
            delete=lambda s: delete_kpi_target(session=s, actor=actor, target_id=target_id),
        )
        if target["archived"]:
            st.info("This KPI target (or its goal) is archived: restore it to change it.")
            return
    _kpi_target_form(actor, target, goals, segments)


def _kpi_target_form(actor: Actor, current: dict, goals: pd.DataFrame, segments: pd.DataFrame) -> None:
    key = form_key("goals_target", current.get("target_id"))
    goal_names = dict(zip(goals["id"], goals["name"]))
    segment_names = dict(zip(segments["id"], segments["name"]))
    with st.form(key):
        goal_options = goals.loc[~goals["archived"], "id"].tolist()
        goal_id = st.selectbox(
            "Goal",
            goal_options,
            format_func=lambda g: goal_names[g],
            key=f"{key}_goal",
            index=goal_options.index(current["goal_id"]) if current else 0,
        )
        metrics = list(METRICS)
        metric = st.selectbox(
            "KPI",
            metrics,
            format_func=lambda m: METRICS[m].label,
            help="Definitions are on the Overview page.",
            index=metrics.index(current["metric"]) if current else 0,
            key=f"{key}_metric",
        )
        value = st.number_input(
            "Target value (shares as 0-1, e.g. 0.35)", value=float(current["target"]) if current else 0.0, format="%.4f", key=f"{key}_value"
        )
        period = st.selectbox("Measured per", PERIODS, index=PERIODS.index(current["period"]) if current else 0, key=f"{key}_period")
        segment_options = [None, *segments["id"].tolist()]
        segment = st.selectbox(
            "For segment",
            segment_options,
            format_func=lambda i: "all members" if i is None else segment_names[i],
            index=segment_options.index(current["segment_id"]) if current and current["segment_id"] in segment_options else 0,
            key=f"{key}_segment",
        )
        if st.form_submit_button("Save target" if current else "Add target", type="primary", key=f"{key}_submit"):
            saved = run_action(
                lambda s: save_kpi_target(
                    session=s,
                    actor=actor,
                    goal_id=goal_id,
                    metric=metric,
                    target_value=value,
                    period=period,
                    segment_id=segment,
                    target_id=current.get("target_id"),
                )
            )
            if saved:
                form_saved("goals_target", "KPI target saved (audited).", choice=None if current else NEW_TARGET)
