"""Overview: the program at a glance, KPIs against their targets, and alerts."""

import streamlit as st

from loyalty.analytics.metrics import members_behind, period_bounds
from loyalty.formatting import csv_text
from loyalty.insights.overview import program_summary, recent_alerts
from loyalty.program.goals import kpi_tiles
from loyalty.ui.auth import page_actor
from loyalty.ui.charts import compact, monthly_points, monthly_revenue
from loyalty.ui.core import db_session
from loyalty.ui.kpi_tiles import kpi_tile_grid

actor = page_actor()


@st.cache_data(ttl=300, show_spinner=False)
def load():
    with db_session() as session:
        return program_summary(session), kpi_tiles(session), recent_alerts(session)


st.title("Overview")
summary, tiles, alerts = load()
if summary.members == 0:
    st.info("No members yet. An admin or manager can load members and purchases on the **Import** page.")
    st.stop()

for alert in alerts:
    (st.error if alert["severity"] == "critical" else st.warning)(f"**{alert['as_of']:%Y-%m-%d}** · {alert['message']}")

cols = st.columns(5)
cols[0].metric("Members", f"{summary.members:,}")
cols[1].metric("Active (90 days)", f"{summary.active_members:,}", help="Members with a purchase in the last 90 days.")
cols[2].metric("Revenue, 30 days", compact(summary.revenue_30d, summary.currency), help=f"{summary.purchases_30d:,} purchases, refunds excluded.")
cols[3].metric("Points outstanding", f"{summary.points_outstanding:,}", help="Sum of every member's balance: the program's liability.")
cols[4].metric("Liability", compact(summary.liability, summary.currency), help="Points outstanding at the configured value per point.")
notes = (
    [f"Activity, revenue and points as of the end of {summary.as_of:%-d %B %Y} (nightly evaluation); members and the redemption queue are live."]
    if summary.as_of
    else []
)
if summary.pending_redemptions:
    notes.append(f"{summary.pending_redemptions:,} redemptions are waiting to be fulfilled.")
if notes:
    st.caption(" ".join(notes))

measured = [t for t in tiles if t["value"] is not None]
if measured:
    latest = max(t["period_start"] for t in measured)
    st.subheader(f"KPIs for {latest:%B %Y}")
    kpi_tile_grid(tiles)
    if actor.can("members.view"):
        with st.expander("Members behind a KPI"):
            chosen = st.selectbox(
                "KPI",
                [t["metric"] for t in measured],
                format_func=dict((t["metric"], t["label"]) for t in tiles).get,
                index=None,
                placeholder="Choose a KPI to list its members",
                key="overview_drill",
            )
            if chosen:
                start, end = period_bounds("month", latest)
                with db_session() as session:
                    people = members_behind(session, chosen, start, end)
                st.dataframe(people.drop(columns=["member_id"], errors="ignore"), hide_index=True, width="stretch")
else:
    st.caption("KPI tiles appear after the first KPI snapshot (the nightly evaluation).")

left, right = st.columns(2)
left.plotly_chart(monthly_revenue(summary.monthly, summary.currency), width="stretch")
right.plotly_chart(monthly_points(summary.monthly), width="stretch")
st.download_button(
    "Download the monthly figures (CSV)", csv_text(summary.monthly), "overview_monthly.csv", "text/csv", key="overview_download_monthly"
)
