"""The campaign planner on the Campaigns page: holdout sizing and expected impact panels.

Streamlit widgets and display only; every number comes from :mod:`loyalty.decisions.planner`.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import streamlit as st

from loyalty.decisions.planner import (
    DEFAULT_ALPHA,
    DEFAULT_POWER,
    CampaignImpact,
    HoldoutSizing,
    SegmentSpend,
    expected_campaign_impact,
    plan_holdout,
)
from loyalty.errors import LoyaltyError
from loyalty.formatting import money
from loyalty.settings import get_settings
from loyalty.ui.core import db_session

__all__ = ["holdout_sizing_panel", "impact_panel"]

# The Campaigns form offers holdouts up to this share (the rules allow below 50 %).
FORM_MAX_HOLDOUT = 0.40
UPLIFT_UNITS = ("% of spend", "money per member")


@st.cache_data(ttl=600, show_spinner="Measuring the segment's spend…")
def _holdout_plan(
    kind: str,
    eligibility: dict[str, Any],
    rule: dict[str, Any],
    days: float,
    holdout_pct: float,
    target: float,
    relative: bool,
    alpha: float,
    power: float,
) -> tuple[HoldoutSizing, SegmentSpend, str]:
    with db_session() as session:
        sizing, segment = plan_holdout(
            session,
            kind=kind,
            eligibility=eligibility,
            rule=rule,
            days=days,
            holdout_pct=holdout_pct,
            target_uplift=target,
            relative=relative,
            alpha=alpha,
            power=power,
        )
        return sizing, segment, get_settings(session).currency


@st.cache_data(ttl=600, show_spinner="Estimating from past campaigns…")
def _impact(campaign_id: int, preview: dict[str, Any]) -> CampaignImpact:
    # The page's preview saves replaying the campaign a second time; as part of the key it
    # keeps the cost shown here the one in the preview tiles above.
    with db_session() as session:
        return expected_campaign_impact(session, campaign_id=campaign_id, preview=preview)


def holdout_sizing_panel(*, kind: str, eligibility: dict[str, Any], rule: dict[str, Any], days: float | None, holdout_pct: float) -> None:
    """Live sizing of the holdout chosen in the form: what it can detect, and what a target needs."""
    st.markdown("**Can this holdout measure the campaign?**")
    if not days:
        st.caption("Choose a start and an end date to size the holdout.")
        return
    # On request: sizing reads the eligible members' past purchases (seconds on a program of a million).
    if not st.toggle(
        "Size the holdout from past spend", key="campaigns_size_holdout", help="Reads the past purchases of the members it would reach."
    ):
        return
    cols = st.columns([1.3, 1, 1, 1])
    unit = cols[0].radio("Target uplift as", UPLIFT_UNITS, horizontal=True, key="campaigns_uplift_unit")
    relative = unit == UPLIFT_UNITS[0]
    target = cols[1].number_input(
        "Target uplift" + (" (%)" if relative else " per member"),
        min_value=0.1,
        value=20.0 if relative else 10.0,
        step=1.0,
        key=f"campaigns_uplift_{'relative' if relative else 'money'}",
        help="The smallest uplift in spend per member over the campaign worth knowing about.",
    )
    power = cols[2].select_slider(
        "Power",
        [0.7, 0.8, 0.9, 0.95],
        value=DEFAULT_POWER,
        format_func=lambda p: f"{p:.0%}",
        key="campaigns_power",
        help="The chance of detecting the uplift when it is there.",
    )
    alpha = cols[3].select_slider(
        "Significance",
        [0.01, 0.05, 0.1],
        value=DEFAULT_ALPHA,
        format_func=lambda a: f"{a:.0%}",
        key="campaigns_alpha",
        help="The chance of seeing an uplift that is not there (two-sided).",
    )
    try:
        sizing, segment, currency = _holdout_plan(
            kind, eligibility, rule, float(days), holdout_pct, target / 100 if relative else target, relative, alpha, power
        )
    except LoyaltyError as error:
        st.warning(str(error))  # the form's own errors (st.error) are about saving
        return
    if segment.members == 0:
        st.warning("No member meets this eligibility: there is nothing to measure.")
        return
    if sizing.target_uplift is None and sizing.message:
        st.warning(sizing.message)
        return
    st.caption(
        f"The {segment.members:,} members this campaign would reach spent on average {money(segment.mean, currency)} each "
        f"(standard deviation {money(segment.sigma, currency)}) in the last {days:,.0f} days, as long as this campaign."
    )
    metrics = st.columns(2)
    if sizing.mde is None:
        metrics[0].metric(f"Smallest detectable uplift at {holdout_pct:.0%} holdout", "none")
        st.warning(sizing.message)
    else:
        metrics[0].metric(
            f"Smallest detectable uplift at {holdout_pct:.0%} holdout",
            f"{money(sizing.mde, currency)} per member",
            delta=None if sizing.mde_relative is None else f"{sizing.mde_relative:.0%} of spend",
            delta_color="off",
            delta_arrow="off",
            help=f"The smallest uplift in spend per member this holdout detects with {power:.0%} power at {alpha:.0%} significance.",
        )
    goal = money(sizing.target_uplift, currency) + " per member" + (f" (+{target:g}%)" if relative else "")
    if sizing.needed_pct is None:
        metrics[1].metric("Holdout needed", "over 50%")
        st.warning(f"Target {goal}. {sizing.message}")
        return
    needed = math.ceil(sizing.needed_pct * 100 - 1e-9)
    metrics[1].metric(
        "Holdout needed",
        f"{needed}%",
        help=f"The smallest holdout that detects {goal} with {power:.0%} power at {alpha:.0%} significance: {sizing.needed_pct:.2%}, rounded up.",
    )
    if needed > FORM_MAX_HOLDOUT * 100:
        st.warning(
            f"Detecting {goal} needs a {needed}% holdout, more than the {FORM_MAX_HOLDOUT:.0%} this form offers: "
            "aim for a larger uplift or a larger segment."
        )
    elif needed > holdout_pct * 100:
        st.info(f"A {holdout_pct:.0%} holdout is too small to detect {goal}: raise it to {needed}%.")
    else:
        st.success(f"A {holdout_pct:.0%} holdout is enough to detect {goal} ({needed}% would do).")


def impact_panel(campaign_id: int, preview: dict[str, Any]) -> None:
    """A draft's expected incremental revenue and cost from comparable past campaigns, or why there is none.

    ``preview`` is :func:`loyalty.decisions.planner.preview_campaign` of the draft, which the page already shows.
    """
    st.subheader("Expected impact")
    try:
        impact = _impact(campaign_id, preview)
    except LoyaltyError as error:
        st.error(str(error))
        return
    cur = impact.currency
    if impact.reason:
        st.info(impact.reason)
        if impact.points_cost is not None:
            st.caption(f"Points cost estimated from recent purchases: {impact.points_cost:,} points ({money(impact.cost, cur)}).")
    else:
        level = f"{impact.confidence:.0%}"
        cols = st.columns(4)
        cols[0].metric(
            "Incremental revenue",
            money(impact.incremental_revenue, cur),
            help=f"{level} interval {money(impact.incremental_revenue_low, cur)} to {money(impact.incremental_revenue_high, cur)}.",
        )
        cols[1].metric("Points cost", f"{impact.points_cost:,} pts", delta=money(impact.cost, cur), delta_color="off", delta_arrow="off")
        cols[2].metric("Net of points cost", money(impact.net, cur))
        cols[3].metric(f"Revenue per point ({cur})", "n/a" if impact.revenue_per_point is None else f"{impact.revenue_per_point:,.3f}")
        st.markdown(
            f"Expected uplift **{money(impact.uplift_per_member, cur)}** per treated member over {impact.days:,.0f} days "
            f"({level} interval {money(impact.uplift_low, cur)} to {money(impact.uplift_high, cur)}), "
            f"× {impact.treatment:,} treated members = **{money(impact.incremental_revenue, cur)}** "
            f"({money(impact.incremental_revenue_low, cur)} to {money(impact.incremental_revenue_high, cur)}); "
            f"net of points cost {money(impact.net_low, cur)} to {money(impact.net_high, cur)}."
        )
        for note in impact.notes:
            st.caption(note)
        with st.expander(f"From {len(impact.comparable)} comparable campaign(s) measured against their holdout"):
            amount = st.column_config.NumberColumn(format="%.2f")
            st.dataframe(
                _comparable_table(impact.comparable, impact.days),
                hide_index=True,
                width="stretch",
                column_config={
                    "uplift per member": amount,
                    "standard error": amount,
                    f"over {impact.days:,.0f} days": amount,
                    "started": st.column_config.DateColumn(format="YYYY-MM-DD"),
                    "weight": st.column_config.ProgressColumn("weight", min_value=0, max_value=1, format="percent"),
                },
            )
            st.caption(
                "Comparable = the same type of campaign, whatever its segment. Each uplift is scaled to this campaign's "
                "length (per-purchase bonuses: in proportion to the days, assuming the daily uplift holds; once-per-member "
                "bonuses: not scaled), then pooled with a random-effects mean (DerSimonian-Laird); between-campaign spread "
                f"{money(impact.between_campaign_sd or 0, cur)} per member."
            )
    sizing = impact.holdout_sizing
    if sizing is not None and sizing.mde is not None and sizing.mde <= 0:
        # Nobody spent anything in as many days (a win-back's members have stopped buying): no spread to size from.
        st.caption(f"Not enough history to size the holdout: the eligible members spent nothing in the last {impact.days:,.0f} days.")
    elif sizing is not None and sizing.mde is not None:
        share = (
            "" if sizing.mde_relative is None else f", {sizing.mde_relative:.0%} of the {money(sizing.baseline, cur)} a member spent in as many days"
        )
        text = (
            f"At its {sizing.holdout_pct:.0%} holdout this campaign can detect an uplift of {money(sizing.mde, cur)} per member "
            f"or more{share} ({sizing.power:.0%} power, {sizing.alpha:.0%} significance)."
        )
        if sizing.target_uplift is not None and sizing.needed_pct is not None:
            needed = math.ceil(sizing.needed_pct * 100 - 1e-9)
            text += f" Detecting the expected {money(sizing.target_uplift, cur)} needs a {needed}% holdout."
        elif sizing.target_uplift is not None:
            text += f" The expected {money(sizing.target_uplift, cur)} is too small to detect even with a 50% holdout."
        st.caption(text)
    elif sizing is not None:
        st.caption("This draft has no holdout: its uplift will not be measured.")


def _comparable_table(comparable: pd.DataFrame, days: float) -> pd.DataFrame:
    return comparable.rename(
        columns={
            "window_start": "started",
            "treatment_members": "treated",
            "holdout_members": "held out",
            "spend_uplift": "uplift per member",
            "se": "standard error",
            "scaled_uplift": f"over {days:,.0f} days",
        }
    )[["campaign", "started", "days", "treated", "held out", "uplift per member", "standard error", f"over {days:,.0f} days", "weight"]]
