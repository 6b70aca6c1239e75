"""Segments: rule-based groups of members with their live size and revenue share."""

import streamlit as st

from loyalty.formatting import csv_text
from loyalty.insights.analysis import rfm_segment_members
from loyalty.ledger.members import export_members
from loyalty.program.segments import (
    archive_segment,
    clone_segment,
    delete_segment,
    list_segments,
    restore_segment,
    save_segment,
    segment_stats,
    segments_overview,
)
from loyalty.program.tiers import list_tiers
from loyalty.ui.auth import page_actor
from loyalty.ui.charts import rfm_heatmap
from loyalty.ui.core import db_session, run_action
from loyalty.ui.filters import analysis_view, listed_on_request
from loyalty.ui.forms import archive_toggle, choice_box, form_key, form_saved, lifecycle_buttons, show_flash
from loyalty.ui.segment_form import segment_rules

actor = page_actor("analysis.view")
st.title("Segments")
st.caption("Every rule narrows the group (AND). Segments can be a campaign's eligibility and a KPI target's scope.")
show_flash("segments")
show_archived = archive_toggle("segments", "segments")


@st.cache_data(ttl=300, show_spinner="Counting members…")
def stats(rules: dict) -> dict:
    with db_session() as session:
        return segment_stats(session, rules)


@st.cache_data(ttl=300, show_spinner="Counting members…")
def overview_with_archived():
    with db_session() as session:
        return segments_overview(session, include_archived=True)


with db_session() as session:
    segments = list_segments(session, include_archived=show_archived)
    tiers = list_tiers(session)["name"].tolist()

if segments.empty:
    st.info("No segments yet: build the first one below.")
else:
    overview = overview_with_archived() if show_archived else analysis_view("segments")["overview"]
    rows = [
        {"segment": r.name, "members": r.members, "revenue_share": r.revenue_share, "rules": r.rules_text, "description": r.description}
        | ({"archived": r.archived} if show_archived else {})
        for r in overview.itertuples()
    ]
    st.dataframe(
        rows,
        hide_index=True,
        width="stretch",
        column_config={"revenue_share": st.column_config.ProgressColumn("share of 12-month revenue", min_value=0, max_value=1, format="percent")},
    )
    if actor.can("members.export"):
        cols = st.columns([2, 1, 1])
        chosen = cols[0].selectbox("Export the members of", segments["name"].tolist(), key="segments_export_choice")
        purpose = cols[1].radio("For", ["analysis", "marketing"], key="segments_export_purpose", help="Marketing leaves out members without consent.")
        if cols[2].button("Prepare CSV", key="segments_export_prepare"):
            rules = segments.set_index("name").loc[chosen, "rules"]
            export = run_action(lambda s: export_members(s, actor=actor, purpose=purpose, member_ids=stats(rules)["member_ids"].tolist()))
            if export is not None:
                st.download_button(
                    f"Download {len(export):,} members",
                    csv_text(export),
                    f"segment_{chosen}_{purpose}.csv",
                    "text/csv",
                    key="segments_export_download",
                )

st.subheader("RFM grid")


@st.cache_data(ttl=600, show_spinner="Scoring members…")
def rfm_members_of(segment: str):
    with db_session() as session:
        return rfm_segment_members(session, segment)


grid = analysis_view("segments", view="rfm", say_which=False)
if grid["cells"].empty:
    st.info("No purchases yet, so no RFM scores.")
else:
    left, right = st.columns([3, 2])
    left.plotly_chart(rfm_heatmap(grid["cells"]), width="stretch")
    right.dataframe(
        grid["segments"],
        hide_index=True,
        width="stretch",
        column_config={
            "revenue": st.column_config.NumberColumn(format="%.0f"),
            "revenue_share": st.column_config.ProgressColumn("revenue share", min_value=0, max_value=1, format="percent"),
        },
    )
    right.download_button("RFM grid (CSV)", csv_text(grid["cells"]), "rfm_grid.csv", "text/csv", key="segments_download_rfm")
    name = right.selectbox("Members of RFM segment", grid["segments"]["segment"].tolist(), key="segments_rfm_drill")
    right.caption("Save it as a segment below with the RFM segment rule to target it.")
    if listed_on_request("segments_rfm_list", name, label="List the first 500 members", where=right):
        st.dataframe(rfm_members_of(name), hide_index=True, width="stretch")

if not actor.can("segments.manage"):
    st.stop()

st.subheader("Build or edit a segment")
by_name = {r.name: r for r in segments.itertuples()}
choice = choice_box("segments", "Segment", ["New segment"] + list(by_name))
current = by_name.get(choice)
if current is not None:
    lifecycle_buttons(
        "segments",
        name=choice,
        archived=current.archived,
        new_choice="New segment",
        clone=lambda s: clone_segment(session=s, actor=actor, segment_id=current.id),
        archive=lambda s: archive_segment(session=s, actor=actor, segment_id=current.id),
        restore=lambda s: restore_segment(session=s, actor=actor, segment_id=current.id),
        delete=lambda s: delete_segment(session=s, actor=actor, segment_id=current.id),
    )
    if current.archived:
        st.info(f"{choice} is archived: restore it to change it.")
        st.stop()
saved_rules: dict = current.rules if current is not None else {}
key = form_key("segments", current.id if current is not None else None)
rules = segment_rules(key, saved_rules, tiers)

if rules:
    live = stats(rules)
    left, right = st.columns(2)
    left.metric("Members now", f"{live['members']:,}")
    right.metric("Share of 12-month revenue", f"{live['revenue_share']:.1%}")
with st.form(f"{key}_save"):
    name = st.text_input("Segment name", value=choice if current is not None else "", key=f"{key}_name")
    description = st.text_input("Description", value=current.description if current is not None else "", key=f"{key}_description")
    if st.form_submit_button("Save segment", type="primary", key=f"{key}_submit"):
        saved = run_action(
            lambda s: save_segment(
                session=s, actor=actor, name=name, rules=rules, description=description, segment_id=current.id if current is not None else None
            )
        )
        if saved:
            form_saved("segments", f"Segment {saved.name} saved (audited).", choice="New segment" if current is None else saved.name)
