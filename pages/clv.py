"""Customer lifetime value: distribution, by tier and channel, predicted vs historical, members at risk."""

import streamlit as st

from loyalty.errors import LoyaltyError
from loyalty.formatting import csv_text
from loyalty.insights.analysis import AT_RISK_ALIVE, LOST_ALIVE, Filters, clv_view
from loyalty.ui.auth import page_actor
from loyalty.ui.charts import clv_scatter, group_bars, histogram
from loyalty.ui.core import METRICS_DOC, db_session
from loyalty.ui.filters import analysis_header
from loyalty.ui.tables import readable

page_actor("analysis.view")
filters = analysis_header(
    "clv",
    "Customer lifetime value",
    "Predicted CLV: BG/NBD purchase model with Gamma-Gamma spend (Fader, Hardie and Lee 2005), fitted on purchases up to the end of the range; 12-month horizon, 1 % monthly discount.",
    default_months=24,
)


@st.cache_data(ttl=600, show_spinner="Fitting the CLV model…")
def load(filters: Filters) -> dict:
    with db_session() as session:
        return clv_view(session, filters)


try:
    view = load(filters)
except LoyaltyError as error:  # too few buyers for the model, say
    st.info(f"The CLV model cannot be fitted here: {error}")
    st.stop()
members = view["members"]
if members.empty:
    st.info("No members with purchases for these filters.")
    st.stop()

cols = st.columns(5)
cols[0].metric("Members", f"{len(members):,}")
definitions = view["definitions"]
cols[1].metric("Mean historical CLV", f"{view['historical_clv']:,.0f}", help=definitions["historical_clv"] + METRICS_DOC)
cols[2].metric("Mean predicted CLV (12 m)", f"{view['predicted_clv']:,.0f}", help=definitions["predicted_clv"] + METRICS_DOC)
cols[3].metric(
    "High value at risk",
    f"{len(view['at_risk']):,}",
    help=f"Top fifth by historical CLV with probability alive from {LOST_ALIVE:.0%} to below {AT_RISK_ALIVE:.0%}: still worth winning back.",
)
cols[4].metric(
    "High value lost", f"{len(view['lost']):,}", help=f"Top fifth by historical CLV with probability alive below {LOST_ALIVE:.0%}: most likely gone."
)

left, right = st.columns(2)
left.plotly_chart(histogram(members["predicted_clv"], "Distribution of predicted CLV (12 months)", "predicted CLV"), width="stretch")
right.plotly_chart(clv_scatter(members), width="stretch")
left, right = st.columns(2)
left.plotly_chart(group_bars(view["by_tier"], ["historical_clv", "predicted_clv"], "Mean CLV by tier"), width="stretch")
right.plotly_chart(group_bars(view["by_channel"], ["historical_clv", "predicted_clv"], "Mean CLV by acquisition channel"), width="stretch")
st.download_button("Per-member CLV (CSV)", csv_text(members), "clv_members.csv", "text/csv", key="clv_download_members")

st.subheader("Members at risk: high value, falling probability of being alive")
st.dataframe(
    readable(view["at_risk"]),
    hide_index=True,
    width="stretch",
    column_config={
        "probability alive": st.column_config.ProgressColumn("P(alive)", min_value=0, max_value=1, format="percent"),
        "historical CLV": st.column_config.NumberColumn(format="%.0f"),
        "predicted CLV": st.column_config.NumberColumn(format="%.0f"),
    },
)
st.download_button("Members at risk (CSV)", csv_text(view["at_risk"]), "clv_at_risk.csv", "text/csv", key="clv_download_at_risk")
with st.expander(f"High-value members most likely lost ({len(view['lost']):,}, probability alive below {LOST_ALIVE:.0%})"):
    st.dataframe(readable(view["lost"]), hide_index=True, width="stretch")
