"""Campaigns: plan, preview, launch and follow bonus campaigns with a holdout group."""

from datetime import date, datetime, time, timedelta, timezone

import streamlit as st

from loyalty.campaigns import CAMPAIGN_KINDS, COMMUNICATION_CHANNELS, activate_campaign, campaign_overview, end_campaign, pause_campaign, preview_campaign, save_campaign
from loyalty.segments import list_segments
from loyalty.tiers import list_tiers
from loyalty.ui.auth import page_actor
from loyalty.ui.charts import budget_burn
from loyalty.ui.core import db_session, run_action
from loyalty.ui.planner_widgets import holdout_sizing_panel, impact_panel

actor = page_actor("analysis.view")
st.title("Campaigns")
st.caption("Multipliers do not compound: only the highest applies to a purchase. Fixed bonuses add. "
           "Points are earned on the amount paid. The holdout group gets nothing, so results can be measured.")

with db_session() as session:
    campaigns = campaign_overview(session)
    tiers = list_tiers(session)["name"].tolist()
    segments = list_segments(session)

if campaigns.empty:
    st.info("No campaigns yet: create the first one below.")
else:
    st.dataframe(campaigns.drop(columns=["id"]), hide_index=True, width="stretch",
                 column_config={"budget_burned": st.column_config.ProgressColumn("budget burned", min_value=0, max_value=1, format="percent"),
                                "holdout_pct": st.column_config.NumberColumn("holdout", format="percent"),
                                "starts_at": st.column_config.DatetimeColumn("starts", format="YYYY-MM-DD"),
                                "ends_at": st.column_config.DatetimeColumn("ends", format="YYYY-MM-DD")})
    if campaigns["budget_points"].notna().any():
        st.plotly_chart(budget_burn(campaigns), width="stretch")

if not actor.can("program.configure"):
    st.stop()

names = dict(zip(campaigns["name"], campaigns["id"])) if not campaigns.empty else {}
if (saved_name := st.session_state.pop("campaigns_saved", None)) in names:
    st.session_state["campaigns_choice"] = saved_name
    st.success(f"{saved_name} saved as a draft. Check the preview, then activate it.")
choice = st.selectbox("Create or manage", ["New campaign"] + list(names), key="campaigns_choice")
if choice != "New campaign":
    row = campaigns.set_index("name").loc[choice]
    campaign_id = int(names[choice])
    with db_session() as session:
        preview = preview_campaign(session, campaign_id) if row["status"] == "draft" else None
    if preview:
        cols = st.columns(4)
        cols[0].metric("Eligible members", f"{preview['eligible']:,}")
        cols[1].metric("Treatment", f"{preview['treatment']:,}")
        cols[2].metric("Holdout (gets nothing)", f"{preview['holdout']:,}")
        cols[3].metric("Estimated points cost", f"{preview['estimated_points']:,}", help="From the eligible members' purchases of the last 90 days.")
        impact_panel(campaign_id, preview)
    buttons = st.columns(3)
    if row["status"] in ("draft", "paused") and buttons[0].button("Activate" if row["status"] == "draft" else "Resume", type="primary"):
        if run_action(lambda s: activate_campaign(session=s, campaign_id=campaign_id, actor=actor), success=f"{choice} is live (or scheduled)."):
            st.rerun()
    if row["status"] in ("scheduled", "active") and buttons[1].button("Pause"):
        if run_action(lambda s: pause_campaign(session=s, campaign_id=campaign_id, actor=actor)):
            st.rerun()
    if row["status"] in ("scheduled", "active", "paused") and buttons[2].button("End now"):
        if run_action(lambda s: end_campaign(session=s, campaign_id=campaign_id, actor=actor)):
            st.rerun()
    st.stop()

kind = st.selectbox("Type", list(CAMPAIGN_KINDS), format_func=CAMPAIGN_KINDS.get, key="campaigns_kind")
# No st.form: the holdout sizing follows the eligibility, dates and holdout as they change.
name = st.text_input("Campaign name")
period = st.date_input("Runs", value=(date.today(), date.today() + timedelta(days=30)))
rule: dict = {}
if kind in ("multiplier", "category_bonus", "tier_offer"):
    rule["multiplier"] = st.number_input("Points multiplier (2 = double points)", min_value=1.0, value=2.0, step=0.25)
if kind == "category_bonus":
    rule["categories"] = [c.strip() for c in st.text_input("Categories (comma separated)", value="eco-friendly").split(",") if c.strip()]
if kind in ("fixed_bonus", "spend_threshold", "win_back", "birthday") or kind == "tier_offer":
    rule["points"] = st.number_input("Bonus points", min_value=0, value=0 if kind == "tier_offer" else 100, step=10)
if kind == "fixed_bonus":
    rule["min_amount"] = st.number_input("Minimum purchase amount", min_value=0.0, value=0.0)
if kind == "spend_threshold":
    rule["spend"] = st.number_input("Spend to reach within the campaign", min_value=0.0, value=300.0, step=50.0)
if kind == "win_back":
    rule["inactive_days"] = st.number_input("Members inactive for at least (days)", min_value=1, value=90)
if kind == "birthday":
    rule["occasion"] = st.radio("Occasion", ["birthday", "anniversary"], horizontal=True)
    rule["window_days"] = st.number_input("Days either side", min_value=0, value=7)
if kind == "tier_offer":
    rule = {k: v for k, v in rule.items() if v and not (k == "multiplier" and v <= 1)}
st.markdown("**Who is eligible**")
eligibility: dict = {}
eligibility["tiers"] = st.multiselect("Tiers (empty: all)", tiers)
eligibility["acquisition_channels"] = st.multiselect("Acquisition channels (empty: all)", ["store", "web", "app", "referral", "social_ads", "partner", "unknown"])
segment = st.selectbox("Segment", [None] + segments["id"].tolist(), format_func=lambda i: "all members" if i is None else segments.set_index("id").loc[i, "name"])
eligibility["segment_id"] = segment
eligibility["min_spend"] = st.number_input("Minimum spend in the last 12 months", min_value=0.0, value=0.0)
eligibility = {k: v for k, v in eligibility.items() if v}
channels = st.multiselect("Communication channels", COMMUNICATION_CHANNELS, default=["email", "app"])
cols = st.columns(2)
budget = cols[0].number_input("Points budget (0 = no cap)", min_value=0, value=0, step=1000)
holdout = cols[1].slider("Holdout group (gets nothing)", 0, 40, 10, format="%d%%")
start, end = (list(period) + [None, None])[:2]
# The campaign runs from the start day's first moment to the end day's last: whole days.
holdout_sizing_panel(kind=kind, eligibility=eligibility, rule=rule, days=(end - start).days + 1 if start and end else None, holdout_pct=holdout / 100)
if st.button("Save as draft", type="primary"):
    if not (start and end):
        st.error("Choose a start and an end date.")
    else:
        saved = run_action(lambda s: save_campaign(
            session=s, actor=actor, name=name, kind=kind, rule=rule, eligibility=eligibility, channels=channels,
            starts_at=datetime.combine(start, time.min, tzinfo=timezone.utc), ends_at=datetime.combine(end, time.max, tzinfo=timezone.utc),
            budget_points=int(budget) or None, holdout_pct=holdout / 100))
        if saved:
            st.session_state["campaigns_saved"] = saved.name
            st.rerun()
