"""Goals and KPIs: objectives turned into KPI targets, each with its status from the snapshots."""

import streamlit as st

from loyalty.analytics.metrics import PERIOD_RULE, kpi_definitions
from loyalty.program.goals import goal_status, list_goals
from loyalty.program.segments import list_segments
from loyalty.ui.auth import page_actor
from loyalty.ui.core import db_session
from loyalty.ui.forms import archive_toggle, show_flash
from loyalty.ui.goal_forms import goal_cards, goal_editor, kpi_target_editor

actor = page_actor("kpis.view")
st.title("Goals and KPIs")
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
    goal_cards(goals, status, show_archived=show_archived)

if actor.can("program.configure"):
    left, right = st.columns(2)
    with left:
        goal_editor(actor, goals)
    if not goals["archived"].all():
        with right:
            kpi_target_editor(actor, goals, status, segments)

st.subheader("KPI definitions", anchor="kpi-definitions")
st.caption(PERIOD_RULE)
st.dataframe(kpi_definitions(), hide_index=True, width="stretch", column_config={"definition": st.column_config.TextColumn(width="large")})
