"""Purchase cycle: do purchases repeat often enough for a loyalty program?"""

import streamlit as st

from loyalty.formatting import csv_text
from loyalty.insights.analysis import Filters, slow_repeaters
from loyalty.ui.auth import page_actor
from loyalty.ui.charts import counted_bars
from loyalty.ui.core import METRICS_DOC, db_session
from loyalty.ui.filters import analysis_header, analysis_view, listed_on_request
from loyalty.ui.tables import readable

page_actor("analysis.view")
filters = analysis_header("purchase_cycle", "Purchase cycle")


view = analysis_view("purchase_cycle", filters)
if view["active_members"] == 0:
    st.info("No purchases in this range for these filters.")
    st.stop()
st.info(view["verdict"])
cols = st.columns(3)
cols[0].metric("Median days between purchases", "n/a" if view["median_gap"] is None else f"{view['median_gap']:.0f}")
cols[1].metric(
    "Members buying on 2+ days",
    "n/a" if view["repeat_share"] is None else f"{view['repeat_share']:.0%}",
    help="The catalogue's repeat-purchase rate over the range." + METRICS_DOC,
)
cols[2].metric("Active members in range", f"{view['active_members']:,}")
left, right = st.columns(2)
gaps, frequency = view["gaps"], view["frequency"]
left.plotly_chart(
    counted_bars(gaps["days_between_purchases"], gaps["gaps"], "Days between a member's purchases (to the 99th percentile)", "days", "gaps"),
    width="stretch",
)
right.plotly_chart(
    counted_bars(
        (frequency["purchases_per_year_from"] + frequency["purchases_per_year_to"]) / 2,
        frequency["members"],
        "Purchase frequency per active member",
        "purchases per year",
        "members",
    ),
    width="stretch",
)
left.download_button("Gaps (CSV)", csv_text(view["gaps"]), "purchase_gaps.csv", "text/csv", key="purchase_cycle_download_gaps")
right.download_button("Frequency (CSV)", csv_text(view["frequency"]), "purchase_frequency.csv", "text/csv", key="purchase_cycle_download_frequency")

st.subheader("Members behind the long gaps")
threshold = st.slider("Typical gap between purchases of at least (days)", 7, 365, 90, key="purchase_cycle_gap")


@st.cache_data(ttl=600, show_spinner="Finding the members…")
def slow(filters: Filters, threshold: int):
    with db_session() as session:
        return slow_repeaters(session, filters, min_gap_days=threshold)


if not listed_on_request("purchase_cycle_list", (filters, threshold)):
    st.stop()
slow = slow(filters, threshold)
st.caption(f"{len(slow):,} repeat buyers usually wait {threshold} days or more between purchases.")
st.dataframe(readable(slow), hide_index=True, width="stretch")
st.download_button("These members (CSV)", csv_text(slow), "slow_repeaters.csv", "text/csv", key="purchase_cycle_download_slow")
