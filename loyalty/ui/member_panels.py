"""The Members page's parts: the export of a search, the profile's header and one panel per tab (ledger, purchases, redemptions)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from loyalty.access.roles import Actor
from loyalty.formatting import csv_text
from loyalty.ledger.approvals import pending_adjustments, request_adjustment
from loyalty.ledger.members import MemberProfile, export_members, member_key
from loyalty.ledger.purchases import refund_purchase
from loyalty.ledger.redemptions import list_rewards, redeem_reward
from loyalty.ui.charts import member_balance
from loyalty.ui.core import db_session, run_action

__all__ = ["export_panel", "ledger_panel", "profile_header", "purchases_panel", "redemptions_panel"]


def done(message: str) -> None:
    """After a change: say what happened and draw the page again from the database."""
    st.session_state["members_notice"] = message
    st.rerun()


def export_panel(actor: Actor, results: pd.DataFrame) -> None:
    """Prepare, then download, the members of this search as CSV (a marketing export keeps only those who consented)."""
    purpose = st.radio(
        "Export for",
        ["analysis", "marketing"],
        horizontal=True,
        key="members_export_purpose",
        help="A marketing export leaves out members without marketing consent.",
    )
    if not st.session_state.get("members_export_ready"):
        st.button(
            "Prepare export of these members", on_click=lambda: st.session_state.update(members_export_ready=True), key="members_export_prepare"
        )
        return
    with db_session() as session:
        export = export_members(session, actor=actor, purpose=purpose, external_ids=results["member"].tolist())
    st.download_button(
        f"Download {len(export):,} members (CSV)",
        csv_text(export),
        f"members_{purpose}.csv",
        "text/csv",
        on_click=lambda: st.session_state.update(members_export_ready=False),
        key="members_export_download",
    )


def profile_header(profile: MemberProfile) -> None:
    """Name, erasure warning, the last change's notice, the member's numbers and contact line."""
    m = profile.member
    st.subheader(f"{m['name'] or 'Anonymised member'} · {m['external_id']}")
    if m["erased_at"]:
        st.warning("This member's personal data was erased; purchases and points are kept for the program's totals.")
    if notice := st.session_state.pop("members_notice", None):
        st.success(notice)
    cols = st.columns(6)
    cols[0].metric("Tier", profile.tier or "none")
    cols[1].metric("Balance", f"{profile.balance:,} pts", help="What the member can spend now: points past their expiry date are left out.")
    cols[2].metric(
        "Next expiry",
        f"{profile.next_expiry_points:,} pts" if profile.next_expiry_on else "none",
        delta=f"on {profile.next_expiry_on:%Y-%m-%d}" if profile.next_expiry_on else None,
        delta_color="off",
        delta_arrow="off",
    )
    cols[3].metric("Expiring in 90 days", f"{profile.expiring_90_days:,} pts")
    cols[4].metric("Total spend", f"{profile.total_spend:,.2f}", help="Less returns; refunded purchases left out.")
    cols[5].metric("Purchases", f"{profile.purchase_count:,}")
    st.caption(
        f"E-mail {m['email'] or '—'} · phone {m['phone'] or '—'} · {m['city'] or 'city unknown'} · joined {m['joined_at']:%Y-%m-%d} via "
        f"{m['acquisition_channel']} · marketing consent: {'yes' if m['marketing_consent'] else 'no'}"
    )


def ledger_panel(actor: Actor, member_id: str, profile: MemberProfile) -> None:
    """The balance over time and the ledger; for those allowed, the adjustment form and the adjustments waiting for approval."""
    if profile.ledger.empty:
        st.info("No points movements yet.")
    else:
        st.plotly_chart(member_balance(profile.ledger), width="stretch")
        st.dataframe(
            profile.ledger,
            hide_index=True,
            width="stretch",
            key=f"members_ledger_{member_id}",
            column_config={
                "occurred_at": st.column_config.DatetimeColumn("when", format="YYYY-MM-DD HH:mm"),
                "description": st.column_config.TextColumn("what", width="large"),
                "expires_at": st.column_config.DatetimeColumn("expires", format="YYYY-MM-DD"),
            },
        )
    if not actor.can("points.adjust"):
        return
    with st.form("members_adjust", clear_on_submit=True):
        st.markdown("**Adjust points**")
        points = st.number_input("Points (negative to remove)", step=10, value=0, key="members_adjust_points")
        reason = st.text_input("Reason (required, shown to auditors)", key="members_adjust_reason")
        if st.form_submit_button("Apply adjustment", key="members_adjust_apply") and (
            outcome := run_action(
                lambda s: request_adjustment(session=s, member_id=member_key(s, member_id), points=int(points), reason=reason, actor=actor)
            )
        ):
            done(
                f"{int(points):+,} points is above the approval limit of {outcome.limit:,}: the adjustment waits for a second "
                "admin on the Approvals page."
                if outcome.pending
                else f"Adjusted {int(points):+,} points."
            )
    with db_session() as session:
        waiting = pending_adjustments(session, member_external_id=member_id)
    for w in waiting:
        st.warning(f"Waiting for approval: {w['points']:+,} points ({w['reason']}), asked by {w['requested_by']} on {w['requested_at']:%Y-%m-%d}.")


def purchases_panel(actor: Actor, member_id: str, profile: MemberProfile) -> None:
    """The member's purchases; for those allowed, a refund or partial return of one of them."""
    if profile.purchases.empty:
        st.info("No purchases yet.")
        return
    st.dataframe(
        profile.purchases,
        hide_index=True,
        width="stretch",
        key=f"members_purchases_{member_id}",
        column_config={
            "returned": st.column_config.NumberColumn("returned", format="%.2f"),
            "occurred_at": st.column_config.DatetimeColumn("bought", format="YYYY-MM-DD HH:mm"),
            "refunded_at": st.column_config.DatetimeColumn("refunded in full", format="YYYY-MM-DD HH:mm"),
        },
    )
    if not (actor.can("purchases.refund") and profile.returnable):
        return
    # The choice is the purchase's own id, kept under a key of this member: never a row position.
    with st.form(f"members_refund_{member_id}", clear_on_submit=True):
        st.markdown("**Refund or return part of a purchase** (takes back that share of its points)")
        chosen = st.selectbox(
            "Purchase",
            list(profile.returnable),
            index=None,
            format_func=lambda p: profile.returnable[p],
            placeholder="Choose the purchase",
            key=f"members_refund_purchase_{member_id}",
        )
        amount = st.number_input(
            f"Amount returned ({profile.currency}); empty refunds all that is left",
            min_value=0.01,
            value=None,
            step=1.0,
            format="%.2f",
            key=f"members_refund_amount_{member_id}",
        )
        why = st.text_input("Reason", placeholder="e.g. one item returned", key=f"members_refund_reason_{member_id}")
        if st.form_submit_button("Refund", key=f"members_refund_submit_{member_id}"):
            if chosen is None:
                st.error("Choose the purchase to refund.")
            elif back := run_action(
                lambda s: refund_purchase(
                    session=s, purchase=chosen, actor=actor, reason=why or "refund", amount=None if amount is None else f"{amount:.2f}"
                )
            ):
                done(back.summary(profile.currency))


def redemptions_panel(actor: Actor, member_id: str, profile: MemberProfile) -> None:
    """For those allowed, a redemption at the counter; then the member's redemptions."""
    if actor.can("redemptions.request"):
        with db_session() as session:
            rewards = {
                r["id"]: f"{r['name']} · {r['points_cost']:,} pts · " + ("unlimited" if r["stock"] is None else f"{r['stock']:,} in stock")
                for r in list_rewards(session, active_only=True)
            }
        with st.form(f"members_redeem_{member_id}", clear_on_submit=True):
            st.markdown(f"**Redeem a reward at the counter** ({profile.balance:,} points to spend)")
            reward_id = st.selectbox(
                "Reward",
                list(rewards),
                index=None,
                format_func=lambda r: rewards[r],
                placeholder="Choose the reward",
                key=f"members_redeem_reward_{member_id}",
            )
            if st.form_submit_button("Redeem", key=f"members_redeem_submit_{member_id}"):
                if reward_id is None:
                    st.error("Choose the reward to redeem.")
                elif result := run_action(lambda s: redeem_reward(session=s, member_id=member_key(s, member_id), reward_id=reward_id, actor=actor)):
                    done(f"Redeemed {rewards[reward_id].split(' · ')[0]} (redemption {result.redemption_id}); balance now {result.balance:,} points.")
    if profile.redemptions.empty:
        st.info("No redemptions yet.")
    else:
        st.dataframe(profile.redemptions, hide_index=True, width="stretch")


def engagement_panel(profile: MemberProfile) -> None:
    """Badges held, the months in a row with a purchase, and each active challenge's progress."""
    badges = ", ".join(f"{b['name']} ({b['earned_at']:%Y-%m-%d})" for b in profile.badges)
    st.caption(f"Badges: {badges or 'none yet'} · {profile.streak_months} month(s) in a row with a purchase")
    referral = profile.referral
    st.caption(
        f"Referral code **{referral['referral_code']}** · referred {referral['referrals']:,} member(s)"
        + (f" · joined referred by {referral['referred_by']}" if referral["referred_by"] else "")
    )
    if not profile.challenges:
        st.info("No active challenge: managers define them with `python -m loyalty challenges add`.")
        return
    st.dataframe(
        profile.challenges,
        hide_index=True,
        width="stretch",
        column_order=["name", "progress", "target", "share", "completions", "completed_at"],
        column_config={
            "share": st.column_config.ProgressColumn("towards the next completion", min_value=0.0, max_value=1.0, format="percent"),
            "completed_at": st.column_config.DatetimeColumn("last completed", format="YYYY-MM-DD"),
        },
    )
