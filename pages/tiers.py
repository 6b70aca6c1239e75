"""Tiers: levels, thresholds, multipliers and benefits, edited as a table."""

import streamlit as st

from loyalty.program.tiers import list_tiers, save_tiers
from loyalty.ui.auth import page_actor
from loyalty.ui.charts import members_per_tier
from loyalty.ui.core import db_session, run_action
from loyalty.ui.filters import analysis_view

actor = page_actor("analysis.view")
st.title("Tiers")
st.caption(
    "A member qualifies for the highest tier whose spend **and** purchase thresholds they meet, "
    "both cumulative over the tier's rolling window. Downgrades wait for the grace period."
)

with db_session() as session:
    tiers = list_tiers(session)
barrier = analysis_view("tiers", view="barrier")["tiers"]  # the nightly reach, or computed now after a change

if not tiers.empty:
    st.plotly_chart(members_per_tier(tiers, barrier), width="stretch")

editable = actor.can("program.configure")
edited = st.data_editor(
    tiers,
    hide_index=True,
    width="stretch",
    num_rows="dynamic" if editable else "fixed",
    disabled=not editable,
    key="tiers_editor",
    column_config={
        "id": None,
        "name": st.column_config.TextColumn("Tier", required=True),
        "min_spend": st.column_config.NumberColumn("Min spend in window", min_value=0, format="%.0f"),
        "min_purchases": st.column_config.NumberColumn("Min purchases in window", min_value=0, step=1),
        "window_months": st.column_config.NumberColumn("Window (months)", min_value=1, step=1),
        "multiplier": st.column_config.NumberColumn("Earn multiplier", min_value=0, format="%.2fx"),
        "benefits": st.column_config.TextColumn("Benefits (separate with ;)", width="large"),
        "grace_months": st.column_config.NumberColumn("Downgrade grace (months)", min_value=0, step=1),
        "members": st.column_config.NumberColumn("Members now", disabled=True),
    },
)
if editable:
    st.caption("Order rows from the lowest tier to the highest. Removing a tier that still has members is refused.")
    if st.button("Save tiers", type="primary", key="tiers_save"):
        rows = edited.drop(columns=["members"]).to_dict("records")
        if run_action(lambda s: save_tiers(session=s, tiers=rows, actor=actor), success="Tiers saved (audited).") is not None:
            st.rerun()

if not barrier.empty:
    st.subheader("Can members reach each tier?")
    st.caption("Share of active members (a purchase in the last 6 months) whose current pace reaches the tier's thresholds within its window.")
    shown = barrier.assign(reachable=lambda f: (f["reachable_share"] * 100).round(1).astype(str) + " %")
    st.dataframe(
        shown[["tier", "min_spend", "min_purchases", "reachable_members", "active_members", "reachable", "barrier"]], hide_index=True, width="stretch"
    )
    flagged = barrier.loc[barrier["barrier"], "tier"].tolist()
    if flagged:
        st.warning(f"Entry barrier: fewer than a quarter of active members can reach {', '.join(flagged)} at their current pace.")
