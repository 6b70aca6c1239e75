"""Rewards: the catalogue, and who can actually reach each reward."""

from datetime import UTC, datetime, time

import streamlit as st

from loyalty.ledger.redemptions import list_rewards
from loyalty.program.rewards import REWARD_KINDS, archive_reward, clone_reward, delete_reward, restore_reward, save_reward
from loyalty.program.tiers import list_tiers
from loyalty.ui.auth import page_actor
from loyalty.ui.charts import reward_reach
from loyalty.ui.core import db_session, run_action
from loyalty.ui.filters import analysis_view
from loyalty.ui.forms import archive_toggle, choice_box, form_key, form_saved, lifecycle_buttons, show_flash

actor = page_actor("analysis.view")
st.title("Rewards")
show_flash("rewards")
show_archived = archive_toggle("rewards", "rewards")

with db_session() as session:
    rewards = list_rewards(session, include_archived=show_archived)
    tiers = list_tiers(session)
tier_names = dict(zip(tiers["id"], tiers["name"]))
barrier = analysis_view("rewards", view="barrier")["rewards"]  # the nightly reach, or computed now after a change

if not rewards:
    st.info("The catalogue is empty: add the first reward below.")
else:
    st.dataframe(
        [
            {
                **r,
                "kind": REWARD_KINDS.get(r["kind"], r["kind"]),
                "min_tier": tier_names.get(r["min_tier_id"], ""),
                "stock": "unlimited" if r["stock"] is None else f"{r['stock']:,}",
            }
            for r in rewards
        ],
        hide_index=True,
        width="stretch",
        column_order=["id", "name", "kind", "points_cost", "stock", "min_tier", "partner", "available_from", "available_until", "active"]
        + (["archived"] if show_archived else []),
    )
if not barrier.empty:
    st.plotly_chart(reward_reach(barrier), width="stretch")
    flagged = barrier.loc[barrier["barrier"], "reward"].tolist()
    if flagged:
        st.warning(f"Entry barrier: most active members can never reach {', '.join(flagged)} at their current pace.")

if not actor.can("program.configure"):
    st.stop()

existing = {r["name"]: r for r in rewards}
choice = choice_box("rewards", "Add or edit", ["New reward"] + list(existing))
current = existing.get(choice, {})
if current:
    lifecycle_buttons(
        "rewards",
        name=choice,
        archived=current["archived"],
        new_choice="New reward",
        clone=lambda s: clone_reward(session=s, actor=actor, reward_id=current["id"]),
        archive=lambda s: archive_reward(session=s, actor=actor, reward_id=current["id"]),
        restore=lambda s: restore_reward(session=s, actor=actor, reward_id=current["id"]),
        delete=lambda s: delete_reward(session=s, actor=actor, reward_id=current["id"]),
    )
if current.get("archived"):
    st.info(f"{choice} is archived: restore it to change it.")
    st.stop()
key = form_key("rewards", current.get("id"))
with st.form(key):
    name = st.text_input("Name", value=current.get("name", ""), key=f"{key}_name")
    kinds = list(REWARD_KINDS)
    kind = st.selectbox("Kind", kinds, index=kinds.index(current["kind"]) if current else 0, format_func=REWARD_KINDS.get, key=f"{key}_kind")
    cols = st.columns(3)
    cost = cols[0].number_input("Points cost", min_value=1, value=int(current.get("points_cost") or 500), step=50, key=f"{key}_cost")
    limited = cols[1].checkbox("Limited stock", value=current.get("stock") is not None, key=f"{key}_limited")
    stock = cols[2].number_input("Stock", min_value=0, value=int(current.get("stock") or 0), step=1, key=f"{key}_stock")
    tier_options = [None] + list(tier_names)
    min_tier = st.selectbox(
        "Only for tier and above",
        tier_options,
        index=tier_options.index(current.get("min_tier_id")) if current.get("min_tier_id") in tier_options else 0,
        format_func=lambda t: "everyone" if t is None else tier_names[t],
        key=f"{key}_tier",
    )
    partner = st.text_input("Partner (for partner rewards)", value=current.get("partner", ""), key=f"{key}_partner")
    dates = st.columns(2)
    start = dates[0].date_input(
        "Available from (empty: now)", value=current["available_from"].date() if current.get("available_from") else None, key=f"{key}_from"
    )
    end = dates[1].date_input(
        "Available until (empty: always)", value=current["available_until"].date() if current.get("available_until") else None, key=f"{key}_until"
    )
    active = st.checkbox("Active", value=current.get("active", True), key=f"{key}_active")
    if st.form_submit_button("Save reward", type="primary", key=f"{key}_submit"):
        fields = dict(
            name=name,
            kind=kind,
            points_cost=int(cost),
            stock=int(stock) if limited else None,
            min_tier_id=min_tier,
            partner=partner,
            active=active,
            available_from=datetime.combine(start, time.min, tzinfo=UTC) if start else None,
            available_until=datetime.combine(end, time.max, tzinfo=UTC) if end else None,
        )
        seen = {"stock_seen": current["stock"]} if current else {}
        saved = run_action(lambda s: save_reward(session=s, actor=actor, reward_id=current.get("id"), **seen, **fields))
        if saved:
            # A new reward: the next form starts blank; an edit: the form shows what is stored.
            form_saved("rewards", f"{saved.name} saved (audited).", choice="New reward" if not current else saved.name)
