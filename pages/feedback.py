"""Feedback: NPS over time and by group, and what members say."""

import streamlit as st

from loyalty.access.roles import Actor
from loyalty.formatting import csv_text
from loyalty.insights.analysis import Filters, feedback_view
from loyalty.ui.auth import page_actor
from loyalty.ui.charts import group_bars, nps_chart
from loyalty.ui.core import METRICS_DOC, db_session
from loyalty.ui.filters import analysis_header
from loyalty.ui.tables import readable

actor = page_actor("analysis.view")
filters = analysis_header("feedback", "Feedback (NPS)")


@st.cache_data(ttl=600, show_spinner=False)
def load(filters: Filters, actor: Actor) -> dict:  # cached per actor: what a comment shows depends on the role
    with db_session() as session:
        return feedback_view(session, filters, actor=actor)


view = load(filters, actor)
if view["answers"].empty:
    st.info("No survey answers in this range. Import them on the Import page (member_id, submitted_at, score 0-10, comment).")
    st.stop()
groups = view["answers"]["group"].value_counts()
cols = st.columns(4)
cols[0].metric(
    "NPS", "n/a" if view["nps"] is None else f"{view['nps']:+.0f}", help="The catalogue's Net Promoter Score over the range." + METRICS_DOC
)
cols[1].metric("Promoters (9-10)", f"{groups.get('promoter', 0):,}")
cols[2].metric("Passives (7-8)", f"{groups.get('passive', 0):,}")
cols[3].metric("Detractors (0-6)", f"{groups.get('detractor', 0):,}")
st.plotly_chart(nps_chart(view["monthly"]), width="stretch")
left, right = st.columns(2)
left.plotly_chart(group_bars(view["by_tier"], ["nps"], "NPS by tier", "NPS"), width="stretch")
right.plotly_chart(group_bars(view["by_channel"], ["nps"], "NPS by acquisition channel", "NPS"), width="stretch")
st.download_button(
    "Answers (CSV)", csv_text(view["answers"].drop(columns=["member_id"])), "nps_answers.csv", "text/csv", key="feedback_download_answers"
)
st.subheader("Latest comments")
st.dataframe(readable(view["comments"]), hide_index=True, width="stretch")

st.subheader("Members behind the score")
group = st.segmented_control("Show", ["detractor", "passive", "promoter"], default="detractor", key="feedback_group") or "detractor"
people = view["answers"][view["answers"]["group"] == group][["submitted_at", "member", "score", "comment", "tier", "acquisition_channel"]]
st.caption(f"{len(people):,} {group} answers in the range.")
st.dataframe(readable(people.sort_values("submitted_at", ascending=False)), hide_index=True, width="stretch")
