"""Audit: who changed what and when, filtered and exported."""

from datetime import UTC, date, datetime, time, timedelta

import streamlit as st

from loyalty.access.audit import audit_entries, audit_facets
from loyalty.formatting import csv_text
from loyalty.ui.auth import page_actor
from loyalty.ui.core import db_session

actor = page_actor("audit.view")
st.title("Audit trail")
st.caption("Every change to program configuration, users, points adjustments and redemptions. Append-only.")

with db_session() as session:
    facets = audit_facets(session)
cols = st.columns(4)
chosen = cols[0].date_input("Period", value=(date.today() - timedelta(days=30), date.today()), key="audit_period")
start, end = (list(chosen) + [None, None])[:2]  # a single date while the user is still picking the range
who = cols[1].selectbox("Who", [""] + facets["actor"], format_func=lambda v: v or "anyone", key="audit_who")
entity = cols[2].selectbox("What", [""] + facets["entity"], format_func=lambda v: v or "anything", key="audit_entity")
action = cols[3].selectbox("Action", [""] + facets["action"], format_func=lambda v: v or "any action", key="audit_action")

since = datetime.combine(start, time.min, tzinfo=UTC) if start else None
until = datetime.combine(end, time.min, tzinfo=UTC) + timedelta(days=1) if end else None
with db_session() as session:
    entries = audit_entries(session, actor=actor, since=since, until=until, who=who, entity=entity, action=action)

if entries.empty:
    st.info("No audited change matches these filters.")
    st.stop()
st.caption(f"{len(entries):,} change(s){' (newest 5,000)' if len(entries) == 5000 else ''}.")
st.dataframe(entries, hide_index=True, width="stretch", column_config={"at": st.column_config.DatetimeColumn("when", format="YYYY-MM-DD HH:mm:ss")})
st.download_button("Download as CSV", csv_text(entries), "audit_log.csv", "text/csv", key="audit_download")
