"""The rule builder of the Segments page: one widget per rule, the rules they describe as a dict."""

from __future__ import annotations

import streamlit as st

from loyalty.analytics.rfm import RFM_SEGMENTS
from loyalty.ui.filters import CHANNELS

__all__ = ["segment_rules"]

MAX_DAYS = 730
MAX_SPEND = 10_000
CONSENTS = ["any", "given", "not given"]


def segment_rules(key: str, saved_rules: dict, tiers: list[str]) -> dict:
    """Draw the rule widgets (keys prefixed with the form's ``key``) from ``saved_rules`` and return the rules chosen.

    A widget left at its widest setting adds no rule; every rule narrows the group (AND).
    """
    rules: dict = {}
    cols = st.columns(3)
    if picked := cols[0].multiselect("RFM segment", list(RFM_SEGMENTS), default=saved_rules.get("rfm_segment", []), key=f"{key}_rfm"):
        rules["rfm_segment"] = picked
    if picked := cols[1].multiselect("Tier", tiers, default=[t for t in saved_rules.get("tier", []) if t in tiers], key=f"{key}_tier"):
        rules["tier"] = picked
    if picked := cols[2].multiselect("Acquisition channel", list(CHANNELS), default=saved_rules.get("acquisition_channel", []), key=f"{key}_channel"):
        rules["acquisition_channel"] = picked
    cols = st.columns(3)
    days = saved_rules.get("days_since_last_purchase", {})
    low, high = cols[0].slider("Days since last purchase", 0, MAX_DAYS, (days.get("min", 0), days.get("max", MAX_DAYS)), key=f"{key}_days")
    if (low, high) != (0, MAX_DAYS):
        rules["days_since_last_purchase"] = {
            k: v for k, v in (("min", low), ("max", high)) if (k == "min" and v > 0) or (k == "max" and v < MAX_DAYS)
        }
    spend = saved_rules.get("spend", {})
    clv_low, clv_high = cols[1].slider(
        "CLV band: historical CLV (lifetime spend)",
        0,
        MAX_SPEND,
        (int(spend.get("min", 0)), int(spend.get("max", MAX_SPEND))),
        step=100,
        key=f"{key}_clv",
        help="Historical CLV is what the member has spent so far; 10,000 means no upper limit.",
    )
    if (clv_low, clv_high) != (0, MAX_SPEND):
        rules["spend"] = {k: float(v) for k, v in (("min", clv_low), ("max", clv_high)) if (k == "min" and v > 0) or (k == "max" and v < MAX_SPEND)}
    consent = cols[2].selectbox(
        "Marketing consent",
        CONSENTS,
        key=f"{key}_consent",
        index=0 if "marketing_consent" not in saved_rules else (1 if saved_rules["marketing_consent"] else 2),
    )
    if consent != "any":
        rules["marketing_consent"] = consent == "given"
    typed = st.text_input("Cities (comma separated)", value=", ".join(saved_rules.get("city", [])), key=f"{key}_cities")
    if cities := [c.strip() for c in typed.split(",") if c.strip()]:
        rules["city"] = cities
    return rules
