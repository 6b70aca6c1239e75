"""Referrals: members bringing members, what it costs and what referred members spend."""

import streamlit as st

from loyalty.engagement.results import referral_overview
from loyalty.ui.auth import page_actor
from loyalty.ui.charts import referrals_per_month
from loyalty.ui.core import db_session
from loyalty.ui.kpi_tiles import kpi_tile_grid

actor = page_actor("analysis.view")
st.title("Referrals")
with db_session() as session:
    overview = referral_overview(session)
rules = overview["rules"]
st.caption(
    f"Every member has a referral code (Members page). A member who joins with one is referred; their first purchase of at least "
    f"{rules['currency']} {rules['min_purchase']:,.2f} pays the referrer {rules['referrer_points']:,} points and them "
    f"{rules['referee_points']:,} points, once. A full refund of that purchase within {rules['return_window_days']} days takes both "
    "back for good. The rules are in Settings."
)

status = overview["by_status"]
if not sum(status.values()):
    st.info("No referral yet: members join referred through the members import (column referred_by) or the API.")
    st.stop()
cols = st.columns(3)
cols[0].metric("Waiting for a first purchase", f"{status['pending']:,}")
cols[1].metric("Paid", f"{status['rewarded']:,}")
cols[2].metric("Taken back (refunded)", f"{status['reversed']:,}")

measured = [t for t in overview["tiles"] if t["value"] is not None]
if measured:
    st.subheader(f"KPIs for {max(t['period_start'] for t in measured):%B %Y}")
    kpi_tile_grid(overview["tiles"], per_row=3)
else:
    st.caption("The referral KPIs appear after the first KPI snapshot (the nightly evaluation).")
if not overview["monthly"].empty:
    st.plotly_chart(referrals_per_month(overview["monthly"]), width="stretch")

st.subheader("Members who referred most")
st.dataframe(
    overview["top_referrers"],
    hide_index=True,
    width="stretch",
    column_config={
        "bonus_points": st.column_config.NumberColumn("bonus points earned", format="%d"),
        "last_referral": st.column_config.DatetimeColumn("last referral", format="YYYY-MM-DD"),
    },
)
