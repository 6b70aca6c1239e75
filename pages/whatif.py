"""What-if: replay the last 12 months of real purchases under changed rules, side by side with the current ones."""

import streamlit as st

from loyalty.decisions import whatif
from loyalty.errors import LoyaltyError
from loyalty.ui.auth import page_actor
from loyalty.ui.core import db_session, run_action
from loyalty.ui.whatif_charts import comparison_chart, comparison_table
from loyalty.ui.whatif_panels import drafts_panel, rules_form, saved_scenarios_table, scenario_result

actor = page_actor("analysis.view")
st.title("What-if")
st.caption(
    "Change tiers, the earn rate, reward costs or the expiry period and see what the last 12 months would have "
    "given under them: the same real purchases and redemption habits, replayed under both rule sets."
)


@st.cache_data(ttl=600, show_spinner=False)
def load_program() -> dict:
    with db_session() as session:
        return whatif.current_program(session) | {"purchases": whatif.has_window_purchases(session)}


program = load_program()
start, end = whatif.window_of()
if not program["purchases"]:
    st.info(f"No purchases from {start:%d %b %Y} to {end:%d %b %Y}: there is nothing to replay yet. Import purchases first.")
    st.stop()
currency = program["currency"]

changes = rules_form(program)
if changes is not None:
    try:
        with st.spinner("Replaying 12 months…"), db_session() as session:
            st.session_state["whatif_result"] = whatif.simulate(session, changes=changes)
    except LoyaltyError as error:
        st.error(str(error))

if result := st.session_state.get("whatif_result"):
    scenario_result(actor, result, currency)

st.subheader("Saved scenarios")
with db_session() as session:
    saved = whatif.list_scenarios(session)
if saved.empty:
    st.info("No saved scenarios yet: run one above and save it with a name.")
    st.stop()
names = dict(zip(saved["id"], saved["name"]))
saved_scenarios_table(saved, currency)
chosen = st.multiselect("Compare", list(names), default=list(names)[:2], format_func=names.get, key="whatif_compare")
if chosen:
    with db_session() as session:
        comparison = whatif.compare_scenarios(session, chosen)
    st.dataframe(comparison_table(comparison, currency), hide_index=True, width="stretch", height="content")
    st.plotly_chart(comparison_chart(comparison), width="stretch")

picked = st.selectbox("Scenario", list(names), format_func=names.get, key="whatif_picked")
can_configure = actor.can("program.configure")
left, right = st.columns(2)
if left.button(
    "Create drafts from this scenario",
    disabled=not can_configure,
    key="whatif_draft",
    help="Creates inactive draft rewards with the scenario's costs and proposes its tiers; nothing goes live."
    if can_configure
    else "Only a loyalty manager or an administrator can turn a scenario into drafts.",
):
    st.session_state["whatif_proposal"] = run_action(
        lambda s: whatif.draft_from_scenario(session=s, actor=actor, scenario_id=picked) | {"id": picked},
        success="Drafts made (audited): new rewards are inactive and nothing goes live until confirmed.",
    )
if right.button("Delete scenario", key="whatif_delete") and run_action(
    lambda s: whatif.delete_scenario(session=s, actor=actor, scenario_id=picked), success="Scenario deleted."
):
    st.rerun()
proposal = st.session_state.get("whatif_proposal")
if proposal and proposal["id"] == picked:
    drafts_panel(actor, picked, proposal)
