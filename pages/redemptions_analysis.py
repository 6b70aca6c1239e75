"""Redemption analysis: redemption rate, points flow, rewards redeemed, liability and breakage, and the liability forecast."""

import streamlit as st

from loyalty.decisions.forecast import backtest_forecast, backtest_table, latest_forecast
from loyalty.errors import InvalidInput
from loyalty.formatting import csv_text, percent
from loyalty.insights.analysis import reward_redeemers
from loyalty.ui.auth import page_actor
from loyalty.ui.charts import compact, points_flow
from loyalty.ui.core import METRICS_DOC, db_session
from loyalty.ui.filters import analysis_header, analysis_view
from loyalty.ui.forecast_charts import liability_chart, redemption_expiry_chart
from loyalty.ui.tables import readable

page_actor("analysis.view")
filters = analysis_header("redemption_analysis", "Redemptions and liability")


@st.cache_data(ttl=600, show_spinner=False)
def load_forecast() -> dict | None:
    with db_session() as session:
        return latest_forecast(session)


@st.cache_data(ttl=3600, show_spinner="Back-testing: fitting on the first 12 months, forecasting the next 6...")
def load_backtest() -> dict:
    with db_session() as session:
        return backtest_forecast(session)


view = analysis_view("redemption_analysis", filters)
if view["monthly"].empty:
    st.info("No points movements in this range for these filters.")
else:
    cols = st.columns(5)
    cols[0].metric("Points earned", f"{view['earned']:,}")
    definitions = view["definitions"]
    cols[1].metric("Redemption rate", percent(view["redemption_rate"]), help=definitions["redemption_rate"] + METRICS_DOC)
    cols[2].metric("Breakage estimate", percent(view["breakage"]), help=definitions["breakage_estimate"] + METRICS_DOC)
    cols[3].metric("Points outstanding", f"{view['outstanding']:,}", help=definitions["points_outstanding"] + METRICS_DOC)
    cols[4].metric("Points liability", compact(view["liability"], view["currency"]), help=definitions["points_liability"] + METRICS_DOC)

    st.plotly_chart(points_flow(view["monthly"]), width="stretch")
    st.download_button(
        "Monthly points (CSV)", csv_text(view["monthly"]), "points_monthly.csv", "text/csv", key="redemption_analysis_download_monthly"
    )

    st.subheader("Rewards redeemed")
    if view["by_reward"].empty:
        st.info("No rewards redeemed in this range.")
    else:
        st.bar_chart(view["by_reward"], x="reward", y="redemptions", horizontal=True)
        st.download_button(
            "Rewards (CSV)", csv_text(view["by_reward"]), "rewards_redeemed.csv", "text/csv", key="redemption_analysis_download_rewards"
        )
        reward = st.selectbox("Who redeemed", view["by_reward"]["reward"].tolist(), key="redemption_analysis_reward")
        with db_session() as session:
            st.dataframe(readable(reward_redeemers(session, filters, reward)), hide_index=True, width="stretch")

st.subheader("Liability forecast")
forecast = load_forecast()
if forecast is None:
    st.info(
        "No liability forecast stored yet. The **liability-forecast** job makes it (monthly, on the 1st); run it now "
        "from the Jobs page or with `python -m loyalty evaluate --job liability-forecast`."
    )
    st.stop()

currency, end = forecast["currency"], forecast["horizon_end"]
st.caption(
    f"Whole program, as of {forecast['as_of']:%-d %b %Y}; the next 12 months from members' earning and "
    "redemption behaviour, with an 80 % band. Filters above do not apply."
)
cols = st.columns(4)
cols[0].metric(
    f"Liability on {forecast['as_of']:%-d %b %Y}",
    compact((forecast["outstanding_now"] or 0) * forecast["point_value"], currency),
    help="Points outstanding at the end of that day x the value of a point: the catalogue's points liability." + METRICS_DOC,
)
cols[1].metric(
    f"Liability on {end['last_day']:%-d %b %Y}",
    compact(end["money"], currency),
    help=f"80 % band: {end['money_low']:,.0f} to {end['money_high']:,.0f} {currency} ({end['low']:,.0f} to {end['high']:,.0f} points).",
)
cols[2].metric(
    "Expected redemptions, 12 months",
    f"{forecast['expected_redeemed']:,.0f} pts",
    help=f"Expected expiry: {forecast['expected_expired']:,.0f} points.",
)
cols[3].metric("Expected breakage", percent(forecast["breakage"]), help="Expired / (expired + redeemed) over the 12 forecast months.")
st.plotly_chart(liability_chart(forecast["frame"], currency), width="stretch")
st.plotly_chart(redemption_expiry_chart(forecast["frame"]), width="stretch")
st.download_button(
    "Liability forecast (CSV)", csv_text(forecast["frame"]), "liability_forecast.csv", "text/csv", key="redemption_analysis_download_forecast"
)

st.markdown("**Back-test**: fit on the first 12 months of the history, forecast months 13-18, compare with what happened.")
if st.button("Run the back-test", key="redemption_analysis_backtest") or st.session_state.get("redemption_analysis_backtested"):
    st.session_state["redemption_analysis_backtested"] = True
    try:
        backtest = load_backtest()
    except InvalidInput as exc:
        st.info(str(exc))
    else:
        st.caption(f"Cutoff {backtest['cutoff']:%-d %b %Y}, model {backtest['model']}.")
        st.dataframe(backtest_table(backtest), hide_index=True, width="stretch")
