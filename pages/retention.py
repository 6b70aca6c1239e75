"""Retention: cohorts, curves by acquisition channel, churn over time."""

import streamlit as st

from loyalty.formatting import csv_text
from loyalty.insights.analysis import Filters, cohort_members
from loyalty.ui.auth import page_actor
from loyalty.ui.charts import churn_chart, cohort_heatmap, retention_curves_chart
from loyalty.ui.core import METRICS_DOC, db_session
from loyalty.ui.filters import analysis_header, analysis_view, listed_on_request
from loyalty.ui.tables import readable

page_actor("analysis.view")
filters = analysis_header(
    "retention",
    "Retention",
    "Cohort retention: of the members whose first purchase fell in a month, the share who bought again N months later. "
    "The KPI retention rate (Overview, Goals, report) compares each month with the one before it." + METRICS_DOC,
)


view = analysis_view("retention", filters)
if view["matrix"].empty:
    st.info("No purchases in this range for these filters: widen the date range or clear a filter.")
    st.stop()

st.plotly_chart(cohort_heatmap(view["matrix"], view["sizes"]), width="stretch")
st.download_button("Cohort data (CSV)", csv_text(view["cohorts"]), "retention_cohorts.csv", "text/csv", key="retention_download_cohorts")
left, right = st.columns(2)
if not view["curves"].empty:
    left.plotly_chart(retention_curves_chart(view["curves"]), width="stretch")
    left.download_button("Curves (CSV)", csv_text(view["curves"]), "retention_by_channel.csv", "text/csv", key="retention_download_curves")
if not view["churn"].empty:
    right.plotly_chart(churn_chart(view["churn"]), width="stretch")
    right.download_button("Churn (CSV)", csv_text(view["churn"]), "churn.csv", "text/csv", key="retention_download_churn")

st.subheader("The members behind a cell")
cols = st.columns(2)
cohort = cols[0].selectbox("Cohort", list(view["matrix"].index), key="retention_cohort")
ages = [int(a) for a in view["matrix"].columns if view["matrix"].loc[cohort].notna().get(a, False)]
age = cols[1].selectbox("Months after the first purchase", ages, index=min(1, len(ages) - 1), key="retention_age")


@st.cache_data(ttl=600, show_spinner="Finding the members of the cohort…")
def members_of(filters: Filters, cohort: str, age: int):
    with db_session() as session:
        return cohort_members(session, filters, cohort, age)


if not listed_on_request("retention_list", (filters, cohort, age)):
    st.stop()
people = members_of(filters, cohort, age)
kept = int(people["active_at_age"].sum())
st.caption(f"{kept:,} of {len(people):,} members of the {cohort} cohort bought in month +{age}; the others are listed first.")
st.dataframe(readable(people), hide_index=True, width="stretch")
st.download_button("These members (CSV)", csv_text(people), f"cohort_{cohort}_plus{age}.csv", "text/csv", key="retention_download_members")
