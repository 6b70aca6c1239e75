"""Member messages: what the daily job queued, sent, failed or suppressed, and the wording of each kind."""

import streamlit as st

from loyalty.engagement.messages import KINDS, STATUSES, list_messages, message_overview
from loyalty.ui.auth import page_actor
from loyalty.ui.charts import messages_per_day
from loyalty.ui.core import db_session
from loyalty.ui.message_panels import csv_handover, template_editor
from loyalty.ui.notices import show_notice

actor = page_actor("analysis.view")
st.title("Member messages")
st.caption(
    "The daily job (Jobs: member-messages) queues reminders of points expiring within 30 days, tier news, completed challenges "
    "and campaign offers. Only members who consented to marketing and have an e-mail address get them, at most the monthly "
    "cap of Settings; the others are suppressed with the reason."
)
show_notice("messages")

with db_session() as session:
    overview = message_overview(session)
channel = "e-mail (LOYALTY_SMTP_HOST)" if overview["channel"] == "email" else "a CSV for the e-mail provider (no mail server set up)"
st.markdown(f"Messages go out by **{channel}**.")
cols = st.columns(len(STATUSES))
for col, status in zip(cols, STATUSES):
    col.metric(f"{status.capitalize()}, last {overview['days']} days", f"{overview['per_status'][status]:,}")
if overview["daily"].empty:
    st.info("No message in the last 30 days: the member-messages job queues them every morning.")
else:
    st.plotly_chart(messages_per_day(overview["daily"]), width="stretch")

st.subheader("Messages")
left, right = st.columns(2)
status = left.selectbox("Status", ["any", *STATUSES], key="messages_status")
kind = right.selectbox("Kind", ["any", *KINDS], key="messages_kind")
with db_session() as session:
    found = list_messages(session, status=None if status == "any" else status, kind=None if kind == "any" else kind, limit=500)
if found:
    st.dataframe(
        found,
        hide_index=True,
        width="stretch",
        column_config={
            "created_at": st.column_config.DatetimeColumn("queued", format="YYYY-MM-DD HH:mm"),
            "sent_at": st.column_config.DatetimeColumn("sent", format="YYYY-MM-DD HH:mm"),
        },
    )
    st.caption(f"The newest {len(found):,} (at most 500).")
else:
    st.caption("No message matches.")

if actor.can("program.configure"):
    if overview["channel"] == "csv" or overview["queued_for_csv"]:
        st.subheader("Hand over to the e-mail provider")
        csv_handover(actor, overview["queued_for_csv"])
    st.subheader("Wording")
    template_editor(actor)
