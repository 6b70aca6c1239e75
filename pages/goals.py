"""Goals and KPIs: objectives turned into KPI targets, each with its status from the snapshots."""

from datetime import date, timedelta

import streamlit as st

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
    goal_status,
    list_goals,
    restore_goal,
    restore_kpi_target,
    save_goal,
    save_kpi_target,
)
from loyalty.program.segments import list_segments
from loyalty.ui.auth import page_actor
from loyalty.ui.core import db_session, run_action
from loyalty.ui.forms import archive_toggle, choice_box, form_key, form_saved, lifecycle_buttons, show_flash

actor = page_actor("kpis.view")
st.title("Goals and KPIs")
STATUS_COLOUR = {"on track": "#dcfce7", "at risk": "#fef3c7", "off track": "#fee2e2", "no data": "#f1f5f9"}
show_flash("goals")
show_flash("goals_target")
show_archived = archive_toggle("goals", "goals and targets")

with db_session() as session:
    goals = list_goals(session, include_archived=show_archived)
    status = goal_status(session, include_archived=show_archived)
    segments = list_segments(session)

if goals.empty:
    st.info("No goals yet. Start from an objective (grow membership, raise sales, win back lapsing members…), then give it KPI targets.")
else:
    counts = status["status"].value_counts()
    cols = st.columns(4)
    for col, key in zip(cols, ["on track", "at risk", "off track", "no data"]):
        col.metric(key.capitalize(), int(counts.get(key, 0)))
    for goal in goals.itertuples():
        with st.container(border=True):
            st.markdown(f"**{goal.name}**{' (archived)' if goal.archived else ''} · {OBJECTIVES.get(goal.objective, goal.objective)} · owner {goal.owner} · "
                        f"{goal.starts_on:%Y-%m-%d} to {goal.ends_on:%Y-%m-%d} · reported {goal.reporting_frequency}")
            if goal.strategy:
                st.caption(goal.strategy)
            targets = status[status["goal_id"] == goal.id]
            if targets.empty:
                st.caption("No KPI targets yet.")
                continue
            shown = targets.assign(segment=targets["segment"].replace("", "all members"))
            st.dataframe(
                shown.style.map(lambda v: f"background-color: {STATUS_COLOUR.get(v, '')}", subset=["status"]),
                hide_index=True, width="stretch",
                column_order=["label", "segment", "period", "value_text", "target_text", "direction", "status", "trend", "period_start"]
                + (["archived"] if show_archived else []),
                column_config={"label": "KPI", "value_text": "latest", "target_text": "target",
                               "trend": st.column_config.LineChartColumn("trend (last 12)", width="medium"),
                               "period_start": st.column_config.DateColumn("period of latest", format="YYYY-MM")},
            )

if not actor.can("program.configure"):
    st.stop()

segment_names = dict(zip(segments["id"], segments["name"]))
left, right = st.columns(2)
with left:
    goal_ids = dict(zip(goals["name"], goals["id"]))
    choice = choice_box("goals", "Add or edit a goal", ["New goal"] + list(goal_ids))
    goal = goals.set_index("name").loc[choice].to_dict() | {"id": goal_ids[choice]} if choice in goal_ids else None
    if goal:
        lifecycle_buttons("goals", name=choice, archived=goal["archived"], new_choice="New goal",
                          clone=lambda s: clone_goal(session=s, actor=actor, goal_id=goal["id"]),
                          archive=lambda s: archive_goal(session=s, actor=actor, goal_id=goal["id"]),
                          restore=lambda s: restore_goal(session=s, actor=actor, goal_id=goal["id"]),
                          delete=lambda s: delete_goal(session=s, actor=actor, goal_id=goal["id"]))
    key = form_key("goals", goal["id"] if goal else None)
    if goal and goal["archived"]:
        st.info(f"{choice} is archived: restore it to change it.")
    else:
        with st.form(key):
            goal = goal or {}
            name = st.text_input("Goal name", value=goal.get("name", ""), key=f"{key}_name")
            objectives = list(OBJECTIVES)
            objective = st.selectbox("Objective", objectives, index=objectives.index(goal.get("objective", objectives[0])), format_func=OBJECTIVES.get,
                                     key=f"{key}_objective")
            owner = st.text_input("Owner", value=goal.get("owner", ""), key=f"{key}_owner")
            first = date.today().replace(day=1)
            period = st.date_input("Period", value=(goal.get("starts_on", first), goal.get("ends_on", first + timedelta(days=365))), key=f"{key}_period")
            frequency = st.selectbox("Reporting frequency", FREQUENCIES, index=FREQUENCIES.index(goal.get("reporting_frequency", "monthly")),
                                     key=f"{key}_frequency")
            strategy = st.text_area("Strategy (short)", value=goal.get("strategy", ""), key=f"{key}_strategy")
            if st.form_submit_button("Save goal" if goal else "Add goal", type="primary", key=f"{key}_submit"):
                start, end = (list(period) + [None, None])[:2]
                saved = run_action(lambda s: save_goal(session=s, actor=actor, name=name, objective=objective, owner=owner, starts_on=start,
                                                       ends_on=end or start, reporting_frequency=frequency, strategy=strategy, goal_id=goal.get("id")))
                if saved:
                    form_saved("goals", f"Goal {saved.name} saved (audited).", choice="New goal" if not goal else saved.name)

live_goals = goals[~goals["archived"]]
if not live_goals.empty:
    with right:
        labels = {f"{t.goal} · {t.label} · {t.segment or 'all members'} · per {t.period} (#{t.target_id})": t for t in status.itertuples()}
        picked = choice_box("goals_target", "Add or edit a KPI target", ["New KPI target"] + list(labels))
        target = labels.get(picked)
        if target:
            lifecycle_buttons("goals_target", name=f"KPI target #{target.target_id}", archived=target.archived, new_choice="New KPI target",
                              clone=lambda s: clone_kpi_target(session=s, actor=actor, target_id=target.target_id),
                              archive=lambda s: archive_kpi_target(session=s, actor=actor, target_id=target.target_id),
                              restore=lambda s: restore_kpi_target(session=s, actor=actor, target_id=target.target_id),
                              delete=lambda s: delete_kpi_target(session=s, actor=actor, target_id=target.target_id))
        key = form_key("goals_target", target.target_id if target else None)
        if target and target.archived:
            st.info("This KPI target (or its goal) is archived: restore it to change it.")
        else:
            with st.form(key):
                goal_options = live_goals["id"].tolist()
                goal_id = st.selectbox("Goal", goal_options, format_func=dict(zip(goals["id"], goals["name"])).get, key=f"{key}_goal",
                                       index=goal_options.index(target.goal_id) if target else 0)
                metrics = list(METRICS)
                metric = st.selectbox("KPI", metrics, format_func=lambda m: METRICS[m].label, help="Definitions are on the Overview page.",
                                      index=metrics.index(target.metric) if target else 0, key=f"{key}_metric")
                value = st.number_input("Target value (shares as 0-1, e.g. 0.35)", value=float(target.target) if target else 0.0, format="%.4f",
                                        key=f"{key}_value")
                target_period = st.selectbox("Measured per", PERIODS, index=PERIODS.index(target.period) if target else 0, key=f"{key}_period")
                segment_options = [None] + segments["id"].tolist()
                segment = st.selectbox("For segment", segment_options, format_func=lambda i: "all members" if i is None else segment_names[i],
                                       index=segment_options.index(target.segment_id) if target and target.segment_id in segment_options else 0,
                                       key=f"{key}_segment")
                if st.form_submit_button("Save target" if target else "Add target", type="primary", key=f"{key}_submit"):
                    saved = run_action(lambda s: save_kpi_target(session=s, actor=actor, goal_id=goal_id, metric=metric, target_value=value,
                                                                 period=target_period, segment_id=segment,
                                                                 target_id=target.target_id if target else None))
                    if saved:
                        form_saved("goals_target", "KPI target saved (audited).", choice="New KPI target" if not target else None)
