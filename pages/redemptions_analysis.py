"""Redemption analysis: redemption rate, points flow, rewards redeemed, liability and breakage."""

import streamlit as st

from loyalty.analysis import Filters, redemptions_view, reward_redeemers
from loyalty.ui.auth import page_actor
from loyalty.ui.charts import compact, points_flow
from loyalty.ui.core import db_session
from loyalty.ui.filters import filter_bar

page_actor("analysis.view")
st.title("Redemptions and liability")
filters = filter_bar("redemption_analysis")


@st.cache_data(ttl=600, show_spinner=False)
def load(filters: Filters) -> dict:
    with db_session() as session:
        return redemptions_view(session, filters)


view = load(filters)
if view["monthly"].empty:
    st.info("No points movements in this range for these filters.")
    st.stop()

cols = st.columns(5)
cols[0].metric("Points earned", f"{view['earned']:,}")
cols[1].metric("Redemption rate", "n/a" if view["redemption_rate"] is None else f"{view['redemption_rate']:.1%}", help="Points redeemed / points earned in the range.")
cols[2].metric("Breakage", "n/a" if view["breakage"] is None else f"{view['breakage']:.1%}", help="Expired / (expired + redeemed): the share of points that leave without being used.")
cols[3].metric("Points outstanding", f"{view['outstanding']:,}", help="At the end of the range.")
cols[4].metric("Liability", compact(view["liability"], view["currency"]))

st.plotly_chart(points_flow(view["monthly"]), width="stretch")
st.download_button("Monthly points (CSV)", view["monthly"].to_csv(index=False), "points_monthly.csv", "text/csv")

st.subheader("Rewards redeemed")
if view["by_reward"].empty:
    st.info("No rewards redeemed in this range.")
else:
    st.bar_chart(view["by_reward"], x="reward", y="redemptions", horizontal=True)
    st.download_button("Rewards (CSV)", view["by_reward"].to_csv(index=False), "rewards_redeemed.csv", "text/csv")
    reward = st.selectbox("Who redeemed", view["by_reward"]["reward"].tolist(), key="redemption_analysis_reward")
    with db_session() as session:
        st.dataframe(reward_redeemers(session, filters, reward), hide_index=True, width="stretch")
