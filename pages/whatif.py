"""What-if: replay the last 12 months of real purchases under changed rules, side by side with the current ones."""

import streamlit as st

from loyalty.decisions import whatif
from loyalty.errors import LoyaltyError
from loyalty.ui.auth import page_actor
from loyalty.ui.core import db_session, run_action
from loyalty.ui.whatif_charts import (
    comparison_chart,
    comparison_table,
    delta_colour,
    flows_chart,
    format_delta,
    format_settings,
    format_value,
    tiers_chart,
)

actor = page_actor("analysis.view")
st.title("What-if")
st.caption("Change tiers, the earn rate, reward costs or the expiry period and see what the last 12 months would have "
           "given under them: the same real purchases and redemption habits, replayed under both rule sets.")


@st.cache_data(ttl=600, show_spinner=False)
def load_program() -> dict:
    with db_session() as session:
        return whatif.current_program(session) | {"purchases": whatif.window_purchases(session)}


program = load_program()
start, end = whatif.window_of()
if not program["purchases"]:
    st.info(f"No purchases from {start:%d %b %Y} to {end:%d %b %Y}: there is nothing to replay yet. Import purchases first.")
    st.stop()
currency = program["currency"]

with st.form("whatif_form"):
    st.markdown("**Tiers**, lowest first")
    tiers = st.data_editor(
        program["tiers"].drop(columns=["members", "benefits"]), hide_index=True, width="stretch", num_rows="dynamic", key="whatif_tiers",
        column_config={"id": None, "name": st.column_config.TextColumn("Tier", required=True),
                       "min_spend": st.column_config.NumberColumn("Min spend", min_value=0, format="%.0f"),
                       "min_purchases": st.column_config.NumberColumn("Min purchases", min_value=0, step=1),
                       "window_months": st.column_config.NumberColumn("Window (months)", min_value=1, step=1),
                       "multiplier": st.column_config.NumberColumn("Multiplier", min_value=0, format="%.2fx"),
                       "grace_months": st.column_config.NumberColumn("Grace (months)", min_value=0, step=1)})
    left, right = st.columns(2)
    rate = left.number_input("Earn rate (points per currency unit)", min_value=0.0, value=program["points_per_currency_unit"], step=0.1, key="whatif_rate")
    expiry = right.number_input("Points expire after (months, 0 = never)", min_value=0, value=program["expiry_months"], step=1, key="whatif_expiry")
    with st.expander("Reward costs"):
        rewards = st.data_editor(program["rewards"], hide_index=True, width="stretch", disabled=["name", "active"], key="whatif_rewards",
                                 column_config={"id": None, "name": "Reward", "active": "Active",
                                                "points_cost": st.column_config.NumberColumn("Points cost", min_value=1, step=1)})
    run = st.form_submit_button("Run", type="primary", key="whatif_run")

if run:
    changes = whatif.changes_from_inputs(program, tiers=tiers.to_dict("records"), points_per_currency_unit=rate, expiry_months=int(expiry),
                                         rewards=rewards.to_dict("records"))
    try:
        with st.spinner("Replaying 12 months…"), db_session() as session:
            st.session_state["whatif_result"] = whatif.simulate(session, changes=changes)
    except LoyaltyError as error:
        st.error(str(error))

result = st.session_state.get("whatif_result")
if result:
    st.subheader(f"Scenario vs current rules, {whatif.window_label()}")
    if not result["changes"]:
        st.caption("Nothing changed yet: both columns replay the current rules.")
    summary = whatif.summary_frame(result)
    for offset in (0, 4):
        for column, row in zip(st.columns(4), summary.iloc[offset:offset + 4].itertuples()):
            column.metric(row.label, format_value(row.scenario, row.kind, currency), format_delta(row.current, row.scenario, row.kind, currency),
                          delta_color=delta_colour(row.metric), help=f"Current rules: {format_value(row.current, row.kind, currency)}")
    tier_table = whatif.tiers_frame(result)
    left, right = st.columns(2)
    left.plotly_chart(tiers_chart(tier_table), width="stretch")
    right.plotly_chart(flows_chart(whatif.flows_frame(result)), width="stretch")
    st.dataframe(tier_table, hide_index=True, width="stretch", column_config={
        "tier": "Tier", "difference": "Difference", "members_current": "Members (current)", "members_scenario": "Members (scenario)",
        "reach_current": st.column_config.NumberColumn("Can reach (current)", format="percent"),
        "reach_scenario": st.column_config.NumberColumn("Can reach (scenario)", format="percent")})
    with st.form("whatif_save", clear_on_submit=True):
        name = st.text_input("Scenario name", key="whatif_name")
        description = st.text_input("Description (optional)", key="whatif_description")
        if st.form_submit_button("Save scenario", key="whatif_save_scenario"):
            run_action(lambda s: whatif.save_scenario(session=s, actor=actor, name=name, description=description,
                                                      changes=result["changes"], result=result), success=f"Scenario {name!r} saved.")

st.subheader("Saved scenarios")
with db_session() as session:
    saved = whatif.list_scenarios(session)
if saved.empty:
    st.info("No saved scenarios yet: run one above and save it with a name.")
    st.stop()
names = dict(zip(saved["id"], saved["name"]))
st.dataframe(saved.drop(columns=["id"]), hide_index=True, width="stretch", column_config={
    "name": "Scenario", "description": "Description", "window_start": "From", "window_end": "Until (excl.)", "created_by": "By",
    "created_at": st.column_config.DatetimeColumn("Saved", format="D MMM YYYY, HH:mm"),
    "points_issued": st.column_config.NumberColumn("Points issued", format="localized"),
    "liability": st.column_config.NumberColumn(f"Liability ({currency})", format="%.0f"),
    "first_reward_reach": st.column_config.NumberColumn("Can reach first reward", format="percent"),
    "cost_share": st.column_config.NumberColumn("Cost / revenue", format="percent")})
chosen = st.multiselect("Compare", list(names), default=list(names)[:2], format_func=names.get, key="whatif_compare")
if chosen:
    with db_session() as session:
        comparison = whatif.compare_scenarios(session, chosen)
    st.dataframe(comparison_table(comparison, currency), hide_index=True, width="stretch", height="content")
    st.plotly_chart(comparison_chart(comparison), width="stretch")

picked = st.selectbox("Scenario", list(names), format_func=names.get, key="whatif_picked")
can_configure = actor.can("program.configure")
left, right = st.columns(2)
if left.button("Create drafts from this scenario", disabled=not can_configure, key="whatif_draft",
               help="Creates inactive draft rewards with the scenario's costs and proposes its tiers; nothing goes live."
               if can_configure else "Only a loyalty manager or an administrator can turn a scenario into drafts."):
    st.session_state["whatif_proposal"] = run_action(lambda s: whatif.draft_from_scenario(session=s, actor=actor, scenario_id=picked) | {"id": picked},
                                                     success="Drafts made (audited): new rewards are inactive and nothing goes live until confirmed.")
if right.button("Delete scenario", key="whatif_delete") and run_action(
        lambda s: whatif.delete_scenario(session=s, actor=actor, scenario_id=picked), success="Scenario deleted.") is not None:
    st.rerun()
proposal = st.session_state.get("whatif_proposal")
if proposal and proposal["id"] == picked:
    if proposal["rewards"]:
        st.dataframe(proposal["rewards"], hide_index=True, width="stretch", column_config={
            "id": None, "name": "Draft reward (inactive)", "points_cost": "Points cost", "from_reward": "Copy of"})
    if proposal["settings"]:
        st.info(f"Proposed settings, for an administrator on the Settings page: {format_settings(proposal['settings'])}.")
    if not proposal["rewards"] and not proposal["tiers"]:
        st.caption("This scenario changes no reward costs and no tiers: there is nothing to draft.")
    if proposal["tiers"]:
        st.markdown("**Proposed tiers** (not applied)")
        st.dataframe(proposal["tiers"], hide_index=True, width="stretch", column_order=[
            "name", "min_spend", "min_purchases", "window_months", "multiplier", "grace_months", "benefits"], column_config={
            "name": "Tier", "min_spend": "Min spend", "min_purchases": "Min purchases", "window_months": "Window (months)",
            "multiplier": "Multiplier", "grace_months": "Grace (months)", "benefits": "Benefits"})
        confirm = st.checkbox("I understand this replaces the live tier table", key="whatif_confirm")
        if st.button("Apply these tiers", disabled=not confirm, key="whatif_apply"):
            run_action(lambda s: whatif.apply_scenario_tiers(session=s, actor=actor, scenario_id=picked, confirm=confirm),
                       success="Tiers replaced (audited); members move at the next tier evaluation.")
