"""Members: find a member and see everything about them on one screen."""

import streamlit as st

from loyalty.ledger.approvals import pending_adjustments, request_adjustment
from loyalty.ledger.members import export_members, find_member, member_profile, search_members
from loyalty.ledger.purchases import refund_purchase
from loyalty.ledger.redemptions import list_rewards, redeem_reward
from loyalty.ui.auth import page_actor
from loyalty.ui.charts import member_balance
from loyalty.ui.core import db_session, run_action

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
    results, hide_index=True, width="stretch", on_select="rerun", selection_mode="single-row", key=f"members_table_{query}",
    column_config={"balance": st.column_config.NumberColumn("balance", format="%d pts"), "joined_at": st.column_config.DatetimeColumn("joined", format="YYYY-MM-DD")},
)
if actor.can("members.export"):
    purpose = st.radio("Export for", ["analysis", "marketing"], horizontal=True, key="members_export_purpose",
                       help="A marketing export leaves out members without marketing consent.")
    with db_session() as session:
        export = export_members(session, actor=actor, purpose=purpose, external_ids=results["member"].tolist()) if st.session_state.get("members_export_ready") else None
    if export is None:
        st.button("Prepare export of these members", on_click=lambda: st.session_state.update(members_export_ready=True), key="members_export_prepare")
    else:
        st.download_button(f"Download {len(export):,} members (CSV)", export.to_csv(index=False), f"members_{purpose}.csv", "text/csv",
                           on_click=lambda: st.session_state.update(members_export_ready=False), key="members_export_download")
rows = picked.selection.rows if picked else []
member_id = results.iloc[rows[0]]["member"] if rows else st.session_state.get("members_open", results.iloc[0]["member"] if len(results) == 1 else None)
if member_id is None:
    st.stop()
st.session_state["members_open"] = member_id

with db_session() as session:
    profile = member_profile(session, member_id, actor=actor)
m = profile.member
st.subheader(f"{m['name'] or 'Anonymised member'} · {m['external_id']}")
if m["erased_at"]:
    st.warning("This member's personal data was erased; purchases and points are kept for the program's totals.")
if notice := st.session_state.pop("members_notice", None):
    st.success(notice)
cols = st.columns(6)
cols[0].metric("Tier", profile.tier or "none")
cols[1].metric("Balance", f"{profile.balance:,} pts", help="What the member can spend now: points past their expiry date are left out.")
cols[2].metric("Next expiry", f"{profile.next_expiry_points:,} pts" if profile.next_expiry_on else "none",
               delta=f"on {profile.next_expiry_on:%Y-%m-%d}" if profile.next_expiry_on else None, delta_color="off", delta_arrow="off")
cols[3].metric("Expiring in 90 days", f"{profile.expiring_90_days:,} pts")
cols[4].metric("Total spend", f"{profile.total_spend:,.2f}", help="Less returns; refunded purchases left out.")
cols[5].metric("Purchases", f"{profile.purchase_count:,}")
st.caption(
    f"E-mail {m['email'] or '—'} · phone {m['phone'] or '—'} · {m['city'] or 'city unknown'} · joined {m['joined_at']:%Y-%m-%d} via "
    f"{m['acquisition_channel']} · marketing consent: {'yes' if m['marketing_consent'] else 'no'}"
)


def done(message: str) -> None:
    """After a change: say what happened and draw the page again from the database."""
    st.session_state["members_notice"] = message
    st.rerun()


ledger_tab, purchases_tab, redemptions_tab, feedback_tab = st.tabs(
    ["Points ledger", "Purchases", "Redemptions", "Feedback"], key="members_tab", on_change="rerun")
with ledger_tab:
    if profile.ledger.empty:
        st.info("No points movements yet.")
    else:
        st.plotly_chart(member_balance(profile.ledger), width="stretch")
        st.dataframe(profile.ledger, hide_index=True, width="stretch", key=f"members_ledger_{member_id}",
                     column_config={"occurred_at": st.column_config.DatetimeColumn("when", format="YYYY-MM-DD HH:mm"),
                                    "description": st.column_config.TextColumn("what", width="large"),
                                    "expires_at": st.column_config.DatetimeColumn("expires", format="YYYY-MM-DD")})
    if actor.can("points.adjust"):
        with st.form("members_adjust", clear_on_submit=True):
            st.markdown("**Adjust points**")
            points = st.number_input("Points (negative to remove)", step=10, value=0, key="members_adjust_points")
            reason = st.text_input("Reason (required, shown to auditors)", key="members_adjust_reason")
            if st.form_submit_button("Apply adjustment", key="members_adjust_apply") and (outcome := run_action(
                    lambda s: request_adjustment(session=s, member_id=find_member(s, member_id).id, points=int(points), reason=reason, actor=actor))):
                done(f"{int(points):+,} points is above the approval limit of {outcome.limit:,}: the adjustment waits for a second "
                     "admin on the Approvals page." if outcome.pending else f"Adjusted {int(points):+,} points.")
        with db_session() as session:
            waiting = pending_adjustments(session, member_external_id=member_id)
        for w in waiting:
            st.warning(f"Waiting for approval: {w['points']:+,} points ({w['reason']}), asked by {w['requested_by']} "
                       f"on {w['requested_at']:%Y-%m-%d}.")
with purchases_tab:
    if profile.purchases.empty:
        st.info("No purchases yet.")
    else:
        st.dataframe(profile.purchases, hide_index=True, width="stretch", key=f"members_purchases_{member_id}",
                     column_config={"returned": st.column_config.NumberColumn("returned", format="%.2f"),
                                    "occurred_at": st.column_config.DatetimeColumn("bought", format="YYYY-MM-DD HH:mm"),
                                    "refunded_at": st.column_config.DatetimeColumn("refunded in full", format="YYYY-MM-DD HH:mm")})
        if actor.can("purchases.refund") and profile.returnable:
            # The choice is the purchase's own id, kept under a key of this member: never a row position.
            with st.form(f"members_refund_{member_id}", clear_on_submit=True):
                st.markdown("**Refund or return part of a purchase** (takes back that share of its points)")
                chosen = st.selectbox("Purchase", list(profile.returnable), index=None, format_func=profile.returnable.get,
                                      placeholder="Choose the purchase", key=f"members_refund_purchase_{member_id}")
                amount = st.number_input(f"Amount returned ({profile.currency}); empty refunds all that is left",
                                         min_value=0.01, value=None, step=1.0, format="%.2f", key=f"members_refund_amount_{member_id}")
                why = st.text_input("Reason", placeholder="e.g. one item returned", key=f"members_refund_reason_{member_id}")
                if st.form_submit_button("Refund", key=f"members_refund_submit_{member_id}"):
                    if chosen is None:
                        st.error("Choose the purchase to refund.")
                    elif back := run_action(lambda s: refund_purchase(session=s, purchase=chosen, actor=actor, reason=why or "refund",
                                                                       amount=None if amount is None else f"{amount:.2f}")):
                        done(back.summary(profile.currency))
with redemptions_tab:
    if actor.can("redemptions.request"):
        with db_session() as session:
            rewards = {r["id"]: f"{r['name']} · {r['points_cost']:,} pts · " + ("unlimited" if r["stock"] is None else f"{r['stock']:,} in stock")
                       for r in list_rewards(session, active_only=True)}
        with st.form(f"members_redeem_{member_id}", clear_on_submit=True):
            st.markdown(f"**Redeem a reward at the counter** ({profile.balance:,} points to spend)")
            reward_id = st.selectbox("Reward", list(rewards), index=None, format_func=rewards.get, placeholder="Choose the reward",
                                     key=f"members_redeem_reward_{member_id}")
            if st.form_submit_button("Redeem", key=f"members_redeem_submit_{member_id}"):
                if reward_id is None:
                    st.error("Choose the reward to redeem.")
                elif result := run_action(lambda s: redeem_reward(session=s, member_id=find_member(s, member_id).id, reward_id=reward_id, actor=actor)):
                    done(f"Redeemed {rewards[reward_id].split(' · ')[0]} (redemption {result.redemption_id}); balance now {result.balance:,} points.")
    st.dataframe(profile.redemptions, hide_index=True, width="stretch") if not profile.redemptions.empty else st.info("No redemptions yet.")
with feedback_tab:
    st.dataframe(profile.feedback, hide_index=True, width="stretch") if not profile.feedback.empty else st.info("No survey answers yet.")
