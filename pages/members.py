"""Members: find a member and see everything about them on one screen."""

import streamlit as st

from loyalty.ledger.members import member_profile, search_members
from loyalty.ui.auth import page_actor
from loyalty.ui.core import db_session
from loyalty.ui.member_panels import engagement_panel, export_panel, ledger_panel, profile_header, purchases_panel, redemptions_panel

actor = page_actor("members.view")
st.title("Members")

query = st.text_input("Search by member id, name or e-mail", key="members_query", placeholder="e.g. M0000042, Garcia, @example.com")
with db_session() as session:
    results = search_members(session, query, actor=actor, limit=50)
if results.empty:
    st.info("No member matches this search." if query else "No members yet: import them on the Import page.")
    st.stop()

st.caption(f"Showing {len(results)} member(s){' (first 50)' if len(results) == 50 else ''}. Select a row to open the profile.")
# Keyed by the search: a selection is a row position, which must not carry over to other results.
picked = st.dataframe(
    results,
    hide_index=True,
    width="stretch",
    on_select="rerun",
    selection_mode="single-row",
    key=f"members_table_{query}",
    column_config={
        "balance": st.column_config.NumberColumn("balance", format="%d pts"),
        "joined_at": st.column_config.DatetimeColumn("joined", format="YYYY-MM-DD"),
    },
)
if actor.can("members.export"):
    export_panel(actor, results)
rows = picked.selection.rows if picked else []
member_id = (
    results.iloc[rows[0]]["member"] if rows else st.session_state.get("members_open", results.iloc[0]["member"] if len(results) == 1 else None)
)
if member_id is None:
    st.stop()
st.session_state["members_open"] = member_id

with db_session() as session:
    profile = member_profile(session, member_id, actor=actor)
profile_header(profile)

ledger_tab, purchases_tab, redemptions_tab, feedback_tab, challenges_tab = st.tabs(
    ["Points ledger", "Purchases", "Redemptions", "Feedback", "Challenges"], key="members_tab", on_change="rerun"
)
with ledger_tab:
    ledger_panel(actor, member_id, profile)
with purchases_tab:
    purchases_panel(actor, member_id, profile)
with redemptions_tab:
    redemptions_panel(actor, member_id, profile)
with feedback_tab:
    if profile.feedback.empty:
        st.info("No survey answers yet.")
    else:
        st.dataframe(profile.feedback, hide_index=True, width="stretch")
with challenges_tab:
    engagement_panel(profile)
