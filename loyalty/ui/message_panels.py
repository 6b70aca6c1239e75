"""The Member messages page's template editor and the CSV hand-over to the e-mail provider."""

from __future__ import annotations

import streamlit as st

from loyalty.access.roles import Actor
from loyalty.engagement.messages import KINDS, export_csv, preview, save_template, send_test, templates
from loyalty.errors import LoyaltyError
from loyalty.ui.core import db_session
from loyalty.ui.notices import run_and_reload


def template_editor(actor: Actor) -> None:
    """Choose a kind, edit its subject and body with a live preview, save it or mail a test to yourself."""
    with db_session() as session:
        wording = templates(session)
    kind = st.selectbox("Message", KINDS, format_func=lambda k: k.replace("_", " "), key="messages_template_kind")
    current = wording[kind]
    st.caption(
        "Placeholders: "
        + ", ".join("{" + p + "}" for p in current["placeholders"])
        + (f" · last changed by {current['changed_by']}" if current["changed_by"] else " · the default wording")
    )
    # Keyed per kind: switching kinds shows that kind's stored wording, not the one being edited.
    subject = st.text_input("Subject", value=current["subject"], max_chars=200, key=f"messages_subject_{kind}")
    body = st.text_area("Body", value=current["body"], height=160, max_chars=4000, key=f"messages_body_{kind}")
    try:
        shown_subject, shown_body = preview(kind, subject, body)
    except LoyaltyError as error:
        st.error(str(error))
        return
    with st.container(border=True):
        st.markdown(f"**Preview** · {shown_subject}")
        st.text(shown_body)
    left, right = st.columns(2)
    if left.button("Save template", type="primary", key="messages_save_template"):
        run_and_reload(
            "messages",
            lambda s: save_template(s, kind=kind, subject=subject, body=body, actor=actor),
            f"The {kind.replace('_', ' ')} template is saved (audited): messages sent from now on use it.",
        )
    if right.button("Send a test to me", key="messages_send_test"):
        run_and_reload("messages", lambda s: send_test(s, kind=kind, subject=subject, body=body, actor=actor), lambda to: f"A test was sent to {to}.")


def csv_handover(actor: Actor, queued: int) -> None:
    """Hand the queued CSV-channel messages to the e-mail provider: confirm, export (marks them sent), download."""
    ready = st.session_state.get("messages_csv")
    if ready is not None:
        st.download_button(
            f"Download the CSV ({ready[1]:,} message{'s' if ready[1] != 1 else ''})",
            ready[0],
            file_name="member-messages.csv",
            mime="text/csv",
            key="messages_download",
            type="primary",
        )
        st.caption("These messages are marked sent: upload the file to the e-mail provider now.")
        if st.button("Done: the file is uploaded", key="messages_csv_done"):
            st.session_state.pop("messages_csv", None)
            st.rerun()
        return
    if not queued:
        st.caption("No message waits for the CSV.")
        return
    sure = st.checkbox(f"I will upload these {queued:,} messages to the e-mail provider (they are marked sent)", key="messages_csv_sure")
    if st.button("Prepare the CSV", disabled=not sure, key="messages_prepare_csv"):
        with db_session() as session:
            st.session_state["messages_csv"] = export_csv(session, actor=actor)
        st.rerun()
