"""The campaign form on the Campaigns page: a new draft or an edited one, with the guard-rail confirmation.

No ``st.form``: the holdout sizing follows the eligibility, dates and holdout as they
change. Every widget's key starts with the form's key (:func:`loyalty.ui.forms.form_key`),
so a new campaign starts blank and an edited draft from what is stored.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pandas as pd
import streamlit as st

from loyalty.program.campaigns import CAMPAIGN_KINDS, COMMUNICATION_CHANNELS, campaign_confirmations
from loyalty.ui.planner_widgets import holdout_sizing_panel

__all__ = ["campaign_form"]

ACQUISITION_CHANNELS = ["store", "web", "app", "referral", "social_ads", "partner", "unknown"]


def _rule_widgets(key: str, kind: str, rule: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if kind in ("multiplier", "category_bonus", "tier_offer"):
        out["multiplier"] = st.number_input(
            "Points multiplier (2 = double points)",
            min_value=1.0,
            step=0.25,
            key=f"{key}_multiplier",
            value=float(rule.get("multiplier", 1.0 if rule else 2.0)),
        )  # an edited offer without one: none
    if kind == "category_bonus":
        text = st.text_input("Categories (comma separated)", value=", ".join(rule.get("categories", ["eco-friendly"])), key=f"{key}_categories")
        out["categories"] = [c.strip() for c in text.split(",") if c.strip()]
    if kind in ("fixed_bonus", "spend_threshold", "win_back", "birthday", "tier_offer"):
        out["points"] = st.number_input(
            "Bonus points", min_value=0, step=10, key=f"{key}_points", value=int(rule.get("points", 0 if kind == "tier_offer" else 100))
        )
    if kind == "fixed_bonus":
        out["min_amount"] = st.number_input(
            "Minimum purchase amount", min_value=0.0, value=float(rule.get("min_amount", 0.0)), key=f"{key}_min_amount"
        )
    if kind == "spend_threshold":
        out["spend"] = st.number_input(
            "Spend to reach within the campaign", min_value=0.0, step=50.0, value=float(rule.get("spend", 300.0)), key=f"{key}_spend"
        )
    if kind == "win_back":
        out["inactive_days"] = st.number_input(
            "Members inactive for at least (days)", min_value=1, value=int(rule.get("inactive_days", 90)), key=f"{key}_inactive_days"
        )
    if kind == "birthday":
        occasions = ["birthday", "anniversary"]
        out["occasion"] = st.radio(
            "Occasion", occasions, horizontal=True, index=occasions.index(rule.get("occasion", "birthday")), key=f"{key}_occasion"
        )
        out["window_days"] = st.number_input("Days either side", min_value=0, value=int(rule.get("window_days", 7)), key=f"{key}_window_days")
    if kind == "tier_offer":
        out = {k: v for k, v in out.items() if v and not (k == "multiplier" and v <= 1)}
    return out


def _eligibility_widgets(key: str, eligibility: dict[str, Any], tiers: list[str], segments: pd.DataFrame) -> dict[str, Any]:
    st.markdown("**Who is eligible**")
    out: dict[str, Any] = {k: v for k, v in eligibility.items() if k in ("member_ids", "purchase_channels")}  # kept, not edited here
    out["tiers"] = st.multiselect("Tiers (empty: all)", tiers, default=[t for t in eligibility.get("tiers", []) if t in tiers], key=f"{key}_tiers")
    out["acquisition_channels"] = st.multiselect(
        "Acquisition channels (empty: all)", ACQUISITION_CHANNELS, default=eligibility.get("acquisition_channels", []), key=f"{key}_acquisition"
    )
    options = [None] + segments["id"].tolist()
    names = dict(zip(segments["id"], segments["name"]))
    chosen = eligibility.get("segment_id")
    out["segment_id"] = st.selectbox(
        "Segment",
        options,
        index=options.index(chosen) if chosen in options else 0,
        key=f"{key}_segment",
        format_func=lambda i: "all members" if i is None else names[i],
    )
    out["min_spend"] = st.number_input(
        "Minimum spend in the last 12 months", min_value=0.0, value=float(eligibility.get("min_spend", 0.0)), key=f"{key}_min_spend"
    )
    if "member_ids" in out:
        st.caption(f"Also limited to the {len(out['member_ids']):,} members listed when it was created.")
    return {k: v for k, v in out.items() if v}


def campaign_form(key: str, campaign: dict[str, Any] | None, *, tiers: list[str], segments: pd.DataFrame) -> tuple[dict[str, Any] | None, bool]:
    """The fields of a campaign (``None`` until the dates are chosen) and whether the person confirmed the guard rails."""
    campaign = campaign or {}
    kinds = list(CAMPAIGN_KINDS)
    kind = st.selectbox(
        "Type",
        kinds,
        index=kinds.index(campaign.get("kind", kinds[0])),
        format_func=CAMPAIGN_KINDS.__getitem__,
        key=f"{key}_kind",
        disabled=bool(campaign),
    )
    assert kind is not None  # a selectbox with options and an index always has a choice
    name = st.text_input("Campaign name", value=campaign.get("name", ""), key=f"{key}_name")
    today = date.today()
    runs = (
        (pd.Timestamp(campaign["starts_at"]).date(), (pd.Timestamp(campaign["ends_at"]) - timedelta(microseconds=1)).date())
        if campaign
        else (today, today + timedelta(days=30))
    )
    period = st.date_input("Runs", value=runs, key=f"{key}_runs")
    rule = _rule_widgets(key, kind, campaign.get("rule") or {})
    eligibility = _eligibility_widgets(key, campaign.get("eligibility") or {}, tiers, segments)
    channels = st.multiselect(
        "Communication channels", COMMUNICATION_CHANNELS, default=campaign.get("channels", ["email", "app"]), key=f"{key}_channels"
    )
    cols = st.columns(2)
    budget = cols[0].number_input(
        "Points budget (0 = no cap)", min_value=0, value=int(campaign.get("budget_points") or 0), step=1000, key=f"{key}_budget"
    )
    holdout = cols[1].slider(
        "Holdout group (gets nothing)", 0, 40, round(campaign.get("holdout_pct", 0.1) * 100), format="%d%%", key=f"{key}_holdout"
    )
    start, end = (list(period) + [None, None])[:2]
    # The campaign runs from the start day's first moment to the end day's last: whole days.
    holdout_sizing_panel(
        kind=kind, eligibility=eligibility, rule=rule, days=(end - start).days + 1 if start and end else None, holdout_pct=holdout / 100
    )
    confirmed = False
    if reasons := campaign_confirmations(rule, int(budget) or None):
        st.warning(" ".join(reasons) + " Please check this is intended.")
        confirmed = st.checkbox("Yes, save it with these values", key=f"{key}_confirm")
    if not (start and end):
        return None, confirmed
    return {
        "name": name,
        "kind": kind,
        "rule": rule,
        "eligibility": eligibility,
        "channels": channels,
        "starts_at": datetime.combine(start, time.min, tzinfo=UTC),
        "ends_at": datetime.combine(end, time.max, tzinfo=UTC),
        "budget_points": int(budget) or None,
        "holdout_pct": holdout / 100,
    }, confirmed
