"""Campaigns: plan, preview, launch and follow bonus campaigns with a holdout group."""

import streamlit as st

from loyalty.decisions.planner import preview_campaign
from loyalty.insights.campaign_results import uplift_summary, uplift_table
from loyalty.program.campaigns import (
    activate_campaign,
    archive_campaign,
    campaign_details,
    campaign_overview,
    clone_campaign,
    delete_campaign,
    edit_campaign,
    end_campaign,
    pause_campaign,
    restore_campaign,
    save_campaign,
)
from loyalty.program.segments import list_segments
from loyalty.program.tiers import list_tiers
from loyalty.ui.auth import page_actor
from loyalty.ui.campaign_form import campaign_form
from loyalty.ui.charts import budget_burn, uplift_chart
from loyalty.ui.core import db_session, run_action
from loyalty.ui.forms import archive_toggle, choice_box, form_key, form_saved, lifecycle_buttons, show_flash
from loyalty.ui.planner_widgets import impact_panel

actor = page_actor("analysis.view")
st.title("Campaigns")
st.caption(
    "Multipliers do not compound: only the highest applies to a purchase. Fixed bonuses add. "
    "Points are earned on the amount paid. The holdout group gets nothing, so results can be measured."
)
show_flash("campaigns")
show_archived = archive_toggle("campaigns", "campaigns")

with db_session() as session:
    campaigns = campaign_overview(session, include_archived=show_archived)
    tiers = list_tiers(session)["name"].tolist()
    segments = list_segments(session)

if campaigns.empty:
    st.info("No campaigns yet: create the first one below.")
else:
    st.dataframe(
        campaigns.drop(columns=["id"] + ([] if show_archived else ["archived"])),
        hide_index=True,
        width="stretch",
        column_config={
            "budget_burned": st.column_config.ProgressColumn("budget burned", min_value=0, max_value=1, format="percent"),
            "holdout_pct": st.column_config.NumberColumn("holdout", format="percent"),
            "starts_at": st.column_config.DatetimeColumn("starts", format="YYYY-MM-DD"),
            "ends_at": st.column_config.DatetimeColumn("ends", format="YYYY-MM-DD"),
        },
    )
    if campaigns["budget_points"].notna().any():
        st.plotly_chart(budget_burn(campaigns), width="stretch")
    st.subheader("Results against the holdout")
    with db_session() as session:
        uplift = uplift_summary(session, stored=True)
    if not uplift["campaigns"]:
        st.info("No results yet: a campaign with a holdout is measured by the nightly campaign evaluation once it has started.")
    else:
        st.caption(
            f"Measured to the end of {uplift['as_of']}; ROI = (incremental revenue x gross margin {uplift['gross_margin']:.0%} - cost) / cost."
        )
        st.plotly_chart(uplift_chart(uplift), width="stretch")
        st.dataframe(uplift_table(uplift), hide_index=True, width="stretch")

if not actor.can("program.configure"):
    st.stop()

names = dict(zip(campaigns["name"], campaigns["id"])) if not campaigns.empty else {}
if (saved_name := st.session_state.pop("campaigns_saved", None)) in names:  # a draft made on the Win-back page
    st.session_state["campaigns_pending_choice"] = saved_name
choice = choice_box("campaigns", "Create or manage", ["New campaign"] + list(names))
campaign = None
if choice != "New campaign":
    campaign_id = int(names[choice])
    with db_session() as session:
        campaign = campaign_details(session, campaign_id)
        preview = preview_campaign(session, campaign_id) if campaign["status"] == "draft" else None
    status = campaign["status"]
    if preview:
        cols = st.columns(4)
        cols[0].metric("Eligible members", f"{preview['eligible']:,}")
        cols[1].metric("Treatment", f"{preview['treatment']:,}")
        cols[2].metric("Holdout (gets nothing)", f"{preview['holdout']:,}")
        estimate = preview["estimated_points"]
        cols[3].metric(
            "Estimated points cost",
            "not enough history" if estimate is None else f"{estimate:,}",
            help=f"The campaign's own rules replayed on the last {preview['lookback_days']:,.0f} days: "
            f"{preview['purchases_in_window']:,} purchases of {preview['replayed_members']:,} members.",
        )
        impact_panel(campaign_id, preview)
    buttons = st.columns(3)
    if (
        status in ("draft", "paused")
        and not campaign["archived"]
        and buttons[0].button("Activate" if status == "draft" else "Resume", type="primary", key="campaigns_activate")
    ):
        if run_action(lambda s: activate_campaign(session=s, campaign_id=campaign_id, actor=actor), success=f"{choice} is live (or scheduled)."):
            st.rerun()
    if status in ("scheduled", "active") and buttons[1].button("Pause", key="campaigns_pause"):
        if run_action(lambda s: pause_campaign(session=s, campaign_id=campaign_id, actor=actor)):
            st.rerun()
    if status in ("scheduled", "active", "paused") and buttons[2].button("End now", key="campaigns_end"):
        if run_action(lambda s: end_campaign(session=s, campaign_id=campaign_id, actor=actor)):
            st.rerun()
    lifecycle_buttons(
        "campaigns",
        name=choice,
        archived=campaign["archived"],
        new_choice="New campaign",
        clone=lambda s: clone_campaign(session=s, actor=actor, campaign_id=campaign_id),
        archive=lambda s: archive_campaign(session=s, actor=actor, campaign_id=campaign_id),
        restore=lambda s: restore_campaign(session=s, actor=actor, campaign_id=campaign_id),
        delete=lambda s: delete_campaign(session=s, actor=actor, campaign_id=campaign_id),
    )
    if campaign["archived"] or status != "draft":
        st.info(
            f"{choice} is archived: restore it to change it."
            if campaign["archived"]
            else f"{choice} is {status}: only a draft can be edited. Clone it to make a new draft with its settings."
        )
        st.stop()
    st.subheader(f"Edit {choice}")

key = form_key("campaigns", campaign["id"] if campaign else None)
fields, confirmed = campaign_form(key, campaign, tiers=tiers, segments=segments)
if st.button("Save as draft" if campaign is None else "Save changes", type="primary", key="campaigns_save"):
    if fields is None:
        st.error("Choose a start and an end date.")
    else:
        saved = run_action(
            lambda s: (
                save_campaign(session=s, actor=actor, confirmed=confirmed, **fields)
                if campaign is None
                else edit_campaign(
                    session=s, actor=actor, campaign_id=campaign["id"], confirmed=confirmed, **{k: v for k, v in fields.items() if k != "kind"}
                )
            )
        )
        if saved:
            form_saved("campaigns", f"{saved.name} saved as a draft. Check the preview, then activate it.", choice=saved.name)
