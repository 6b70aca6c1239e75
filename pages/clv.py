"""Customer lifetime value: distribution, by tier and channel, predicted vs historical, members at risk."""

import streamlit as st

from loyalty.errors import LoyaltyError
from loyalty.formatting import csv_text
from loyalty.insights.analysis import AT_RISK_ALIVE, LOST_ALIVE, Filters, clv_high_value, clv_members_table
from loyalty.ui.auth import page_actor
from loyalty.ui.charts import binned_bars, clv_scatter, group_bars
from loyalty.ui.core import METRICS_DOC, db_session
from loyalty.ui.filters import analysis_header, analysis_view
from loyalty.ui.tables import readable

page_actor("analysis.view")
filters = analysis_header(
    "clv",
    "Customer lifetime value",
    "Predicted CLV: BG/NBD purchase model with Gamma-Gamma spend (Fader, Hardie and Lee 2005), fitted on purchases up to the end of the range; 12-month horizon, 1 % monthly discount.",
    default_months=24,
)

try:
    view = analysis_view("clv", filters)
except LoyaltyError as error:  # too few buyers for the model, say
    st.info(f"The CLV model cannot be fitted here: {error}")
    st.stop()
if not view["members"]:
    st.info("No members with purchases for these filters.")
    st.stop()


def members_csv(filters: Filters, which: str | None = None) -> str:
    """Made when the download is clicked: the per-member table has a row for every buyer."""
    with db_session() as session:
        table = clv_members_table(session, filters)
    return csv_text(table if which is None else clv_high_value(table, which))


cols = st.columns(5)
cols[0].metric("Members", f"{view['members']:,}")
definitions = view["definitions"]
cols[1].metric("Mean historical CLV", f"{view['historical_clv']:,.0f}", help=definitions["historical_clv"] + METRICS_DOC)
cols[2].metric("Mean predicted CLV (12 m)", f"{view['predicted_clv']:,.0f}", help=definitions["predicted_clv"] + METRICS_DOC)
cols[3].metric(
    "High value at risk",
    f"{view['at_risk_count']:,}",
    help=f"Top fifth by historical CLV with probability alive from {LOST_ALIVE:.0%} to below {AT_RISK_ALIVE:.0%}: still worth winning back.",
)
cols[4].metric(
    "High value lost", f"{view['lost_count']:,}", help=f"Top fifth by historical CLV with probability alive below {LOST_ALIVE:.0%}: most likely gone."
)

left, right = st.columns(2)
left.plotly_chart(binned_bars(view["predicted_bins"], "Distribution of predicted CLV (12 months)", "predicted CLV"), width="stretch")
right.plotly_chart(clv_scatter(view["sample"]), width="stretch")
left, right = st.columns(2)
left.plotly_chart(group_bars(view["by_tier"], ["historical_clv", "predicted_clv"], "Mean CLV by tier"), width="stretch")
right.plotly_chart(group_bars(view["by_channel"], ["historical_clv", "predicted_clv"], "Mean CLV by acquisition channel"), width="stretch")
st.download_button(
    "Per-member CLV (CSV)",
    lambda: members_csv(filters),
    "clv_members.csv",
    "text/csv",
    key="clv_download_members",
    help=f"Every one of the {view['members']:,} members, computed from today's data when clicked.",
)

st.subheader("Members at risk: high value, falling probability of being alive")
if view["at_risk_count"] > len(view["at_risk"]):
    st.caption(f"The {len(view['at_risk']):,} of highest value of {view['at_risk_count']:,}; the CSV lists them all.")
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
st.download_button("Members at risk (CSV)", lambda: members_csv(filters, "at_risk"), "clv_at_risk.csv", "text/csv", key="clv_download_at_risk")
with st.expander(f"High-value members most likely lost ({view['lost_count']:,}, probability alive below {LOST_ALIVE:.0%})"):
    st.dataframe(readable(view["lost"]), hide_index=True, width="stretch")
