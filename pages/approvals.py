"""Approvals: point adjustments above the limit wait here for a second admin."""

import streamlit as st

from loyalty.ledger.approvals import approve_adjustment, decided_adjustments, pending_adjustments, reject_adjustment
from loyalty.settings import get_settings
from loyalty.ui.auth import page_actor
from loyalty.ui.core import db_session, run_action
from loyalty.ui.notices import keep_notice, show_notice

actor = page_actor("points.approve")
st.title("Approvals")
with db_session() as session:
    limit = get_settings(session).adjustment_approval_limit
    waiting = pending_adjustments(session)
    decided = decided_adjustments(session, limit=20)
st.caption(
    f"Point adjustments above {limit:,} points (Settings) wait here until a second admin approves or rejects "
    "them. Nobody decides on their own request."
)

show_notice("approvals")

if not waiting:
    st.info("No adjustment waits for approval.")
else:
    st.dataframe(
        waiting,
        hide_index=True,
        width="stretch",
        column_order=["id", "member", "name", "points", "reason", "requested_by", "requested_at"],
        column_config={
            "id": st.column_config.NumberColumn("#", format="%d"),
            "points": st.column_config.NumberColumn("points", format="%+d"),
            "requested_at": st.column_config.DatetimeColumn("asked at", format="YYYY-MM-DD HH:mm"),
            "requested_by": "asked by",
        },
    )
    labels = {w["id"]: f"#{w['id']} · {w['points']:+,} points for {w['member']} · asked by {w['requested_by']}" for w in waiting}
    with st.form("approvals_decide", clear_on_submit=True):
        chosen = st.selectbox(
            "Adjustment",
            list(labels),
            index=None,
            format_func=labels.get,
            placeholder="Choose the adjustment",
            key=f"approvals_choice_{'-'.join(map(str, labels))}",
        )
        note = st.text_input("Note (kept in the audit trail)", key="approvals_note")
        approve, reject = st.columns(2)
        approved = approve.form_submit_button("Approve and post", type="primary", key="approvals_approve")
        rejected = reject.form_submit_button("Reject", key="approvals_reject")
    if approved or rejected:
        if chosen is None:
            st.error("Choose the adjustment to decide on.")
        elif approved and (entry := run_action(lambda s: approve_adjustment(session=s, adjustment_id=chosen, actor=actor, note=note))):
            keep_notice("approvals", f"Approved {labels[chosen]}: posted as ledger entry {entry.id}.")
            st.rerun()
        elif rejected and run_action(lambda s: reject_adjustment(session=s, adjustment_id=chosen, actor=actor, note=note)):
            keep_notice("approvals", f"Rejected {labels[chosen]}: nothing was posted.")
            st.rerun()

st.subheader("Recently decided")
if decided:
    st.dataframe(
        decided,
        hide_index=True,
        width="stretch",
        column_order=["id", "member", "points", "status", "decided_by", "decided_at", "decision_note", "requested_by", "reason"],
        column_config={
            "id": st.column_config.NumberColumn("#", format="%d"),
            "points": st.column_config.NumberColumn("points", format="%+d"),
            "decided_at": st.column_config.DatetimeColumn("decided at", format="YYYY-MM-DD HH:mm"),
            "decision_note": "note",
            "requested_by": "asked by",
            "decided_by": "decided by",
        },
    )
else:
    st.info("Nothing decided yet.")
