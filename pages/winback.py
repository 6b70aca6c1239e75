"""Win-back: high-value members whose probability of being alive is falling, and one action: a draft campaign for them."""

from datetime import date, timedelta

import streamlit as st

from loyalty.decisions.winback import (
    DEFAULT_MAX_ALIVE,
    EXPORT_COLUMNS,
    WINBACK_HOLDOUT,
    WINBACK_POINTS,
    WinbackChoice,
    campaign_window,
    create_winback_campaign,
    winback_scores,
    winback_view,
    with_contacts,
)
from loyalty.errors import LoyaltyError
from loyalty.formatting import csv_text
from loyalty.ui.auth import page_actor
from loyalty.ui.charts import compact
from loyalty.ui.core import db_session, run_action
from loyalty.ui.filters import analysis_view
from loyalty.ui.winback_charts import alive_then_vs_now

actor = page_actor("analysis.view")
st.title("Win-back")
st.caption(
    "High-value members (top share by historical spend or predicted 12-month CLV) whose probability of being alive fell "
    f"since the comparison date to below {DEFAULT_MAX_ALIVE:.0%} now. One BG/NBD model, fitted on every purchase to today, "
    "scores each member then and now."
)

cols = st.columns(3)
top_share = cols[0].slider("High value: top share by CLV", 5, 50, 20, step=5, format="%d%%", key="winback_top_share")
min_drop = cols[1].slider("Minimum fall in P(alive), in points", 5, 90, 20, step=5, key="winback_min_drop")
reference_days = cols[2].selectbox(
    "Compared with", [30, 60, 90, 180, 365], index=2, format_func=lambda d: f"{d} days ago", key="winback_reference_days"
)


@st.cache_data(ttl=600, show_spinner="Fitting the CLV model…")
def load_scores(reference_days: int):
    with db_session() as session:
        return winback_scores(session, reference_days=reference_days)


@st.cache_data(ttl=600, show_spinner="Selecting members…")
def load_view(choice: WinbackChoice):
    with db_session() as session:
        return winback_view(session, choice, scores=load_scores(choice.reference_days))


choice = WinbackChoice(reference_days, top_share, min_drop)
try:  # the default thresholds: the list of the nightly evaluation; others: computed now
    view = analysis_view("winback") if choice == WinbackChoice() else load_view(choice)
except LoyaltyError as error:  # too few buyers for the model, say
    st.info(f"The CLV model cannot be fitted here: {error}")
    st.stop()
with db_session() as session:  # names and e-mails as this person may see them
    candidates = with_contacts(session, view, actor=actor)
criteria = candidates.attrs["criteria"]
if candidates.empty:
    st.info(
        f"No high-value member's probability of being alive fell by {min_drop} points or more since {criteria['reference']} "
        f"to below {DEFAULT_MAX_ALIVE:.0%}. Try a smaller fall, a larger value share or an earlier comparison date."
    )
    st.stop()

tiles = st.columns(4)
tiles[0].metric("Candidates", f"{criteria['matched']:,}", help=f"Of {criteria['members_scored']:,} members who have bought.")
tiles[1].metric("Their spend to date", compact(candidates["historical_spend"].sum(), criteria["currency"]))
tiles[2].metric("Their predicted CLV, next 12 months", compact(candidates["predicted_clv_12m"].sum(), criteria["currency"]))
tiles[3].metric("Median days since last purchase", f"{candidates['days_since_last_purchase'].median():.0f}")
if criteria["matched"] > criteria["listed"]:
    st.caption(f"Showing the {criteria['listed']:,} with the highest spend to date.")

st.plotly_chart(alive_then_vs_now(candidates, min_drop=min_drop / 100, max_alive=DEFAULT_MAX_ALIVE), width="stretch")
percent = {"min_value": 0, "max_value": 1, "format": "percent"}
st.dataframe(
    candidates,
    hide_index=True,
    width="stretch",
    column_order=EXPORT_COLUMNS,
    column_config={
        "p_alive_then": st.column_config.ProgressColumn("P(alive) then", **percent),
        "p_alive_now": st.column_config.ProgressColumn("P(alive) now", **percent),
        "drop": st.column_config.NumberColumn("fall", format="percent"),
        "historical_spend": st.column_config.NumberColumn("spend to date", format="%.0f"),
        "predicted_clv_12m": st.column_config.NumberColumn("predicted CLV 12 m", format="%.0f"),
        "expected_purchases_12m": st.column_config.NumberColumn("expected purchases 12 m", format="%.1f"),
        "last_purchase": st.column_config.DateColumn("last purchase", format="YYYY-MM-DD"),
        "days_since_last_purchase": st.column_config.NumberColumn("days since"),
        "purchase_days": st.column_config.NumberColumn("purchase days"),
    },
)
st.download_button("Win-back list (CSV)", csv_text(candidates[EXPORT_COLUMNS]), "winback_members.csv", "text/csv", key="winback_download")

st.subheader("Act on the list")
starts, ends = campaign_window()
st.caption(
    f"A draft campaign of the win-back kind for the {len(candidates):,} members listed: {WINBACK_POINTS} bonus points on "
    f"their first purchase between {starts:%d %b} and {ends - timedelta(days=1):%d %b %Y}, with "
    f"{WINBACK_HOLDOUT:.0%} held out to measure the effect. Nothing is sent or awarded until it is activated on the Campaigns page."
)
can_create = actor.can("program.configure")
name = st.text_input("Campaign name", value=f"Win-back {date.today():%Y-%m-%d}", key="winback_name", disabled=not can_create)
if st.button(
    "Create draft win-back campaign",
    type="primary",
    disabled=not can_create,
    key="winback_create",
    help=None if can_create else "Only a loyalty manager or an administrator can create campaigns.",
):
    campaign = run_action(
        lambda s: create_winback_campaign(session=s, actor=actor, member_ids=candidates["member_id"].tolist(), name=name, criteria=criteria)
    )
    if campaign:
        st.session_state["campaigns_saved"] = campaign.name  # the Campaigns page opens on it
        st.success(f"{campaign.name} saved as a draft for {len(candidates):,} members. Review it there, then activate it.")
        st.page_link("pages/campaigns.py", label="Open it on the Campaigns page", icon=":material/campaign:")
if not can_create:
    st.caption("Only a loyalty manager or an administrator can create campaigns: share the CSV with one of them.")
