"""Goals and KPIs: objectives turned into KPI targets, each with its status from the snapshots."""

from datetime import date, timedelta

import streamlit as st

from loyalty.analytics.metrics import METRICS
from loyalty.goals import FREQUENCIES, OBJECTIVES, PERIODS, goal_status, list_goals, save_goal, save_kpi_target
from loyalty.segments import list_segments
from loyalty.ui.auth import page_actor
from loyalty.ui.core import db_session, run_action

actor = page_actor("kpis.view")
st.title("Goals and KPIs")
STATUS_COLOUR = {"on track": "#dcfce7", "at risk": "#fef3c7", "off track": "#fee2e2", "no data": "#f1f5f9"}

with db_session() as session:
    goals = list_goals(session)
    status = goal_status(session)
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
            st.markdown(f"**{goal.name}** · {OBJECTIVES.get(goal.objective, goal.objective)} · owner {goal.owner} · "
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
                column_order=["label", "segment", "period", "value_text", "target_text", "direction", "status", "trend", "period_start"],
                column_config={"label": "KPI", "value_text": "latest", "target_text": "target",
                               "trend": st.column_config.LineChartColumn("trend (last 12)", width="medium"),
                               "period_start": st.column_config.DateColumn("period of latest", format="YYYY-MM")},
            )

if not actor.can("program.configure"):
    st.stop()

left, right = st.columns(2)
with left, st.form("goals_new_goal", clear_on_submit=True):
    st.markdown("**New goal**")
    name = st.text_input("Goal name")
    objective = st.selectbox("Objective", list(OBJECTIVES), format_func=OBJECTIVES.get)
    owner = st.text_input("Owner")
    period = st.date_input("Period", value=(date.today().replace(day=1), date.today().replace(day=1) + timedelta(days=365)))
    frequency = st.selectbox("Reporting frequency", FREQUENCIES, index=1)
    strategy = st.text_area("Strategy (short)")
    if st.form_submit_button("Add goal", type="primary"):
        start, end = (list(period) + [None, None])[:2]
        if run_action(lambda s: save_goal(session=s, actor=actor, name=name, objective=objective, owner=owner, starts_on=start,
                                          ends_on=end or start, reporting_frequency=frequency, strategy=strategy), success="Goal added."):
            st.rerun()

if not goals.empty:
    with right, st.form("goals_new_target", clear_on_submit=True):
        st.markdown("**New KPI target**")
        goal_id = st.selectbox("Goal", goals["id"].tolist(), format_func=dict(zip(goals["id"], goals["name"])).get)
        metric = st.selectbox("KPI", list(METRICS), format_func=lambda m: METRICS[m].label, help="Definitions are on the Overview page.")
        value = st.number_input("Target value (shares as 0-1, e.g. 0.35)", value=0.0, format="%.4f")
        target_period = st.selectbox("Measured per", PERIODS)
        segment = st.selectbox("For segment", [None] + segments["id"].tolist(), format_func=lambda i: "all members" if i is None else segments.set_index("id").loc[i, "name"])
        if st.form_submit_button("Add target", type="primary"):
            if run_action(lambda s: save_kpi_target(session=s, actor=actor, goal_id=goal_id, metric=metric, target_value=value,
                                                    period=target_period, segment_id=segment), success="Target added."):
                st.rerun()
