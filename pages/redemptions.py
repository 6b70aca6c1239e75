"""Redemptions: the operations queue of requested rewards to fulfil or cancel."""

import streamlit as st

from loyalty.rewards import cancel_redemption, fulfil_redemption, redemption_queue
from loyalty.ui.auth import page_actor
from loyalty.ui.core import db_session, run_action

actor = page_actor("redemptions.fulfil")
st.title("Redemptions")

status = st.segmented_control("Show", ["requested", "fulfilled", "cancelled"], default="requested", key="redemptions_status") or "requested"
with db_session() as session:
    queue = redemption_queue(session, status=status)

if queue.empty:
    st.info("Nothing waiting: every requested reward has been handled." if status == "requested" else f"No {status} redemptions.")
    st.stop()
st.caption(f"{len(queue):,} {status} redemption(s), oldest first.")
picked = st.dataframe(queue, hide_index=True, width="stretch", on_select="rerun", selection_mode="multi-row", key="redemptions_table",
                      column_config={"requested_at": st.column_config.DatetimeColumn("requested", format="YYYY-MM-DD HH:mm")})
chosen = queue.iloc[picked.selection.rows]["redemption_id"].tolist() if picked and picked.selection.rows else []

if status == "requested":
    note = st.text_input("Note or cancellation reason", key="redemptions_note")
    left, right = st.columns(2)
    if left.button(f"Mark {len(chosen)} fulfilled", disabled=not chosen, type="primary"):
        for rid in chosen:
            run_action(lambda s, rid=rid: fulfil_redemption(session=s, redemption_id=int(rid), actor=actor, note=note))
        st.rerun()
    if right.button(f"Cancel {len(chosen)} and return the points", disabled=not chosen):
        if not note.strip():
            st.error("Give a cancellation reason: the member and the auditors will see it.")
        else:
            for rid in chosen:
                run_action(lambda s, rid=rid: cancel_redemption(session=s, redemption_id=int(rid), actor=actor, reason=note.strip()))
            st.rerun()
