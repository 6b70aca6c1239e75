"""Redemptions: the operations queue of requested rewards to fulfil or cancel."""

import streamlit as st

from loyalty.ledger.redemptions import cancel_redemptions, fulfil_redemptions, redemption_queue
from loyalty.ui.auth import page_actor
from loyalty.ui.core import db_session
from loyalty.ui.notices import run_and_reload, show_notice
from loyalty.ui.tables import selected_ids, selection_key

actor = page_actor("redemptions.fulfil")
st.title("Redemptions")
show_notice("redemptions")

status = st.segmented_control("Show", ["requested", "fulfilled", "cancelled"], default="requested", key="redemptions_status") or "requested"
with db_session() as session:
    queue = redemption_queue(session, status=status)

if queue.empty:
    st.info("Nothing waiting: every requested reward has been handled." if status == "requested" else f"No {status} redemptions.")
    st.stop()
st.caption(f"{len(queue):,} {status} redemption(s), oldest first." + (" Select rows to fulfil or cancel them." if status == "requested" else ""))
# Keyed by the rows shown: when they change, the selection starts empty instead of pointing at other rows.
picked = st.dataframe(
    queue,
    hide_index=True,
    width="stretch",
    on_select="rerun",
    selection_mode="multi-row",
    key=selection_key(f"redemptions_table_{status}", queue["redemption_id"]),
    column_config={
        "redemption_id": st.column_config.NumberColumn("#", format="%d"),
        "requested_at": st.column_config.DatetimeColumn("requested", format="YYYY-MM-DD HH:mm"),
    },
)
chosen = selected_ids(picked.selection.rows, queue["redemption_id"]) if status == "requested" else []


def handle(action: str, ids: list[int], note: str) -> None:
    """Fulfil or cancel exactly ``ids``; the outcome stays on the page until dismissed."""
    st.session_state.pop("redemptions_pending", None)
    st.session_state.pop("redemptions_note", None)

    def use_case(session):
        if action == "fulfil":
            return fulfil_redemptions(session=session, redemption_ids=ids, actor=actor, note=note)
        return cancel_redemptions(session=session, redemption_ids=ids, actor=actor, reason=note)

    run_and_reload("redemptions", use_case, lambda handled: handled.summary)


if status == "requested":
    pending = st.session_state.get("redemptions_pending")
    if pending:
        # A bulk action: say how many and which redemptions, act only once confirmed.
        ids, verb = pending["ids"], "fulfil" if pending["action"] == "fulfil" else "cancel"
        consequence = " Their points go back to the members." if verb == "cancel" else ""
        st.warning(f"{verb.capitalize()} these {len(ids)} redemptions: {', '.join(f'#{i}' for i in ids)}?{consequence}")
        yes, back = st.columns(2)
        if yes.button(f"Yes, {verb} {len(ids)} redemptions", type="primary", key="redemptions_confirm"):
            handle(pending["action"], ids, pending["note"])
        if back.button("Back: change nothing", key="redemptions_back"):
            st.session_state.pop("redemptions_pending", None)
            st.rerun()
        st.stop()

    note = st.text_input("Note or cancellation reason", key="redemptions_note")
    left, right = st.columns(2)
    fulfil = left.button(f"Mark {len(chosen)} fulfilled", disabled=not chosen, type="primary", key="redemptions_fulfil")
    cancel = right.button(
        f"Cancel {len(chosen)} and return the points",
        disabled=not chosen or not note.strip(),
        key="redemptions_cancel",
        help="Type a cancellation reason first: the member and the auditors will see it.",
    )
    action = "fulfil" if fulfil else "cancel" if cancel else None
    if action and chosen:
        if len(chosen) == 1:
            handle(action, chosen, note.strip())
        st.session_state["redemptions_pending"] = {"action": action, "ids": chosen, "note": note.strip()}
        st.rerun()
