"""Overview: the program at a glance."""

import streamlit as st

from loyalty.overview import program_summary
from loyalty.ui.auth import page_actor
from loyalty.ui.charts import compact, monthly_points, monthly_revenue
from loyalty.ui.core import db_session

page_actor()


@st.cache_data(ttl=300, show_spinner=False)
def load_summary():
    with db_session() as session:
        return program_summary(session)


st.title("Overview")
summary = load_summary()
if summary.members == 0:
    st.info("No members yet. An admin or manager can load members and purchases on the **Import** page.")
    st.stop()

cols = st.columns(5)
cols[0].metric("Members", f"{summary.members:,}")
cols[1].metric("Active (90 days)", f"{summary.active_members:,}", help="Members with a purchase in the last 90 days.")
cols[2].metric("Revenue, 30 days", compact(summary.revenue_30d, summary.currency), help=f"{summary.purchases_30d:,} purchases, refunds excluded.")
cols[3].metric("Points outstanding", f"{summary.points_outstanding:,}", help="Sum of every member's balance: the program's liability.")
cols[4].metric("Liability", compact(summary.liability, summary.currency), help="Points outstanding at the configured value per point.")
if summary.pending_redemptions:
    st.caption(f"{summary.pending_redemptions:,} redemptions are waiting to be fulfilled.")

left, right = st.columns(2)
left.plotly_chart(monthly_revenue(summary.monthly, summary.currency), width="stretch")
right.plotly_chart(monthly_points(summary.monthly), width="stretch")
st.download_button("Download the monthly figures (CSV)", summary.monthly.to_csv(index=False), "overview_monthly.csv", "text/csv")
