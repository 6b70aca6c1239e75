"""Rewards: the catalogue, and who can actually reach each reward."""

from datetime import datetime, time, timezone

import streamlit as st

from loyalty.barrier import entry_barrier
from loyalty.catalogue import REWARD_KINDS, save_reward
from loyalty.rewards import list_rewards
from loyalty.tiers import list_tiers
from loyalty.ui.auth import page_actor
from loyalty.ui.charts import reward_reach
from loyalty.ui.core import db_session, run_action

actor = page_actor("analysis.view")
st.title("Rewards")

with db_session() as session:
    rewards = list_rewards(session)
    tiers = list_tiers(session)
    barrier = entry_barrier(session)["rewards"]
tier_names = dict(zip(tiers["id"], tiers["name"]))

if not rewards:
    st.info("The catalogue is empty: add the first reward below.")
else:
    st.dataframe(
        [{**r, "kind": REWARD_KINDS.get(r["kind"], r["kind"]), "min_tier": tier_names.get(r["min_tier_id"], ""),
          "stock": "unlimited" if r["stock"] is None else f"{r['stock']:,}"} for r in rewards],
        hide_index=True, width="stretch", column_order=["id", "name", "kind", "points_cost", "stock", "min_tier", "partner", "available_from", "available_until", "active"],
    )
if not barrier.empty:
    st.plotly_chart(reward_reach(barrier), width="stretch")
    flagged = barrier.loc[barrier["barrier"], "reward"].tolist()
    if flagged:
        st.warning(f"Entry barrier: most active members can never reach {', '.join(flagged)} at their current pace.")

if actor.can("program.configure"):
    existing = {r["name"]: r for r in rewards}
    choice = st.selectbox("Add or edit", ["New reward"] + list(existing), key="rewards_choice")
    current = existing.get(choice, {})
    with st.form("rewards_form"):
        name = st.text_input("Name", value=current.get("name", ""))
        kinds = list(REWARD_KINDS)
        kind = st.selectbox("Kind", kinds, index=kinds.index(current["kind"]) if current else 0, format_func=REWARD_KINDS.get)
        cols = st.columns(3)
        cost = cols[0].number_input("Points cost", min_value=1, value=int(current.get("points_cost") or 500), step=50)
        limited = cols[1].checkbox("Limited stock", value=current.get("stock") is not None)
        stock = cols[2].number_input("Stock", min_value=0, value=int(current.get("stock") or 0), step=1)
        tier_options = [None] + list(tier_names)
        min_tier = st.selectbox("Only for tier and above", tier_options, index=tier_options.index(current.get("min_tier_id")) if current.get("min_tier_id") in tier_options else 0,
                                format_func=lambda t: "everyone" if t is None else tier_names[t])
        partner = st.text_input("Partner (for partner rewards)", value=current.get("partner", ""))
        dates = st.columns(2)
        start = dates[0].date_input("Available from (empty: now)", value=current["available_from"].date() if current.get("available_from") else None)
        end = dates[1].date_input("Available until (empty: always)", value=current["available_until"].date() if current.get("available_until") else None)
        active = st.checkbox("Active", value=current.get("active", True))
        if st.form_submit_button("Save reward", type="primary"):
            fields = dict(name=name, kind=kind, points_cost=int(cost), stock=int(stock) if limited else None, min_tier_id=min_tier,
                          partner=partner, active=active,
                          available_from=datetime.combine(start, time.min, tzinfo=timezone.utc) if start else None,
                          available_until=datetime.combine(end, time.max, tzinfo=timezone.utc) if end else None)
            seen = {"stock_seen": current["stock"]} if current else {}
            saved = run_action(lambda s: save_reward(session=s, actor=actor, reward_id=current.get("id"), **seen, **fields))
            if saved:
                st.success(f"{saved.name} saved (audited).")
