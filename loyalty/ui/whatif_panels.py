"""The What-if page's parts: the form of changed rules, a scenario's result, the saved scenarios and the drafts made from one."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from loyalty.access.roles import Actor
from loyalty.decisions import whatif
from loyalty.ui.core import run_action
from loyalty.ui.whatif_charts import delta_colour, flows_chart, format_delta, format_settings, format_value, tiers_chart

__all__ = ["drafts_panel", "rules_form", "saved_scenarios_table", "scenario_result"]

TIER_COLUMNS = {
    "name": "Tier",
    "min_spend": "Min spend",
    "min_purchases": "Min purchases",
    "window_months": "Window (months)",
    "multiplier": "Multiplier",
    "grace_months": "Grace (months)",
    "benefits": "Benefits",
}


def rules_form(program: dict[str, Any]) -> dict[str, Any] | None:
    """Tiers, earn rate, expiry and reward costs, starting from the current program; the changes when Run is pressed."""
    with st.form("whatif_form"):
        st.markdown("**Tiers**, lowest first")
        tiers = st.data_editor(
            program["tiers"].drop(columns=["members", "benefits"]),
            hide_index=True,
            width="stretch",
            num_rows="dynamic",
            key="whatif_tiers",
            column_config={
                "id": None,
                "name": st.column_config.TextColumn("Tier", required=True),
                "min_spend": st.column_config.NumberColumn("Min spend", min_value=0, format="%.0f"),
                "min_purchases": st.column_config.NumberColumn("Min purchases", min_value=0, step=1),
                "window_months": st.column_config.NumberColumn("Window (months)", min_value=1, step=1),
                "multiplier": st.column_config.NumberColumn("Multiplier", min_value=0, format="%.2fx"),
                "grace_months": st.column_config.NumberColumn("Grace (months)", min_value=0, step=1),
            },
        )
        left, right = st.columns(2)
        rate = left.number_input(
            "Earn rate (points per currency unit)", min_value=0.0, value=program["points_per_currency_unit"], step=0.1, key="whatif_rate"
        )
        expiry = right.number_input(
            "Points expire after (months, 0 = never)", min_value=0, value=program["expiry_months"], step=1, key="whatif_expiry"
        )
        with st.expander("Reward costs"):
            rewards = st.data_editor(
                program["rewards"],
                hide_index=True,
                width="stretch",
                disabled=["name", "active"],
                key="whatif_rewards",
                column_config={
                    "id": None,
                    "name": "Reward",
                    "active": "Active",
                    "points_cost": st.column_config.NumberColumn("Points cost", min_value=1, step=1),
                },
            )
        if not st.form_submit_button("Run", type="primary", key="whatif_run"):
            return None
    return whatif.changes_from_inputs(
        program, tiers=tiers.to_dict("records"), points_per_currency_unit=rate, expiry_months=int(expiry), rewards=rewards.to_dict("records")
    )


def scenario_result(actor: Actor, result: dict[str, Any], currency: str) -> None:
    """The scenario against the current rules: eight numbers, tiers and points flows, and the form that saves it."""
    st.subheader(f"Scenario vs current rules, {whatif.window_label()}")
    if not result["changes"]:
        st.caption("Nothing changed yet: both columns replay the current rules.")
    summary = whatif.summary_frame(result)
    for offset in (0, 4):
        for column, row in zip(st.columns(4), summary.iloc[offset : offset + 4].itertuples()):
            column.metric(
                row.label,
                format_value(row.scenario, row.kind, currency),
                format_delta(row.current, row.scenario, row.kind, currency),
                delta_color=delta_colour(row.metric),
                help=f"Current rules: {format_value(row.current, row.kind, currency)}",
            )
    tier_table = whatif.tiers_frame(result)
    left, right = st.columns(2)
    left.plotly_chart(tiers_chart(tier_table), width="stretch")
    right.plotly_chart(flows_chart(whatif.flows_frame(result)), width="stretch")
    st.dataframe(
        tier_table,
        hide_index=True,
        width="stretch",
        column_config={
            "tier": "Tier",
            "difference": "Difference",
            "members_current": "Members (current)",
            "members_scenario": "Members (scenario)",
            "reach_current": st.column_config.NumberColumn("Can reach (current)", format="percent"),
            "reach_scenario": st.column_config.NumberColumn("Can reach (scenario)", format="percent"),
        },
    )
    with st.form("whatif_save", clear_on_submit=True):
        name = st.text_input("Scenario name", key="whatif_name")
        description = st.text_input("Description (optional)", key="whatif_description")
        if st.form_submit_button("Save scenario", key="whatif_save_scenario"):
            run_action(
                lambda s: whatif.save_scenario(session=s, actor=actor, name=name, description=description, changes=result["changes"], result=result),
                success=f"Scenario {name!r} saved.",
            )


def saved_scenarios_table(saved: pd.DataFrame, currency: str) -> None:
    st.dataframe(
        saved.drop(columns=["id"]),
        hide_index=True,
        width="stretch",
        column_config={
            "name": "Scenario",
            "description": "Description",
            "window_start": "From",
            "window_end": "Until (excl.)",
            "created_by": "By",
            "created_at": st.column_config.DatetimeColumn("Saved", format="D MMM YYYY, HH:mm"),
            "points_issued": st.column_config.NumberColumn("Points issued", format="localized"),
            "liability": st.column_config.NumberColumn(f"Liability ({currency})", format="%.0f"),
            "first_reward_reach": st.column_config.NumberColumn("Can reach first reward", format="percent"),
            "cost_share": st.column_config.NumberColumn("Cost / revenue", format="percent"),
        },
    )


def drafts_panel(actor: Actor, scenario_id: int, proposal: dict[str, Any]) -> None:
    """What drafting the scenario made: inactive rewards, proposed settings, and its tiers applied only after a confirmation."""
    if proposal["rewards"]:
        st.dataframe(
            proposal["rewards"],
            hide_index=True,
            width="stretch",
            column_config={"id": None, "name": "Draft reward (inactive)", "points_cost": "Points cost", "from_reward": "Copy of"},
        )
    if proposal["settings"]:
        st.info(f"Proposed settings, for an administrator on the Settings page: {format_settings(proposal['settings'])}.")
    if not proposal["rewards"] and not proposal["tiers"]:
        st.caption("This scenario changes no reward costs and no tiers: there is nothing to draft.")
    if not proposal["tiers"]:
        return
    st.markdown("**Proposed tiers** (not applied)")
    st.dataframe(proposal["tiers"], hide_index=True, width="stretch", column_order=list(TIER_COLUMNS), column_config=TIER_COLUMNS)
    confirm = st.checkbox("I understand this replaces the live tier table", key="whatif_confirm")
    if st.button("Apply these tiers", disabled=not confirm, key="whatif_apply"):
        run_action(
            lambda s: whatif.apply_scenario_tiers(session=s, actor=actor, scenario_id=scenario_id, confirm=confirm),
            success="Tiers replaced (audited); members move at the next tier evaluation.",
        )
