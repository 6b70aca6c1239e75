"""What-if page helpers: figure builders and tile formatting. Frames in, figures or text out; no Streamlit."""

from __future__ import annotations

from typing import Any, Literal

import pandas as pd
import plotly.graph_objects as go

from loyalty.figures import house_layout
from loyalty.ui.charts import AMBER, SLATE, TEAL, compact

__all__ = ["comparison_chart", "comparison_table", "delta_colour", "flows_chart", "format_delta", "format_settings", "format_value", "tiers_chart"]

# A rise in these is a cost to the program: shown red.
_COSTLY = {"liability", "cost_share", "points_outstanding"}
_NEUTRAL = {"active_members", "points_issued", "points_redeemed", "points_expired"}
_SCENARIO_COLOURS = (AMBER, "#7c3aed", "#2563eb", "#db2777", "#65a30d")


def format_value(value: Any, kind: str, currency: str = "") -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "n/a"
    if kind == "share":
        return f"{value:.1%}"
    if kind == "money":
        return compact(float(value), currency)
    return f"{value:,.0f}"


def format_delta(current: Any, scenario: Any, kind: str, currency: str = "") -> str | None:
    """The tile's delta: points of percentage for shares, else the signed difference and its percentage."""
    if current is None or scenario is None or scenario == current:
        return None  # no arrow for "no change": Streamlit would draw a rise
    difference = scenario - current
    if kind == "share":
        return f"{difference * 100:+.1f} pp"
    relative = f" ({difference / current:+.1%})" if current else ""
    # The sign first: Streamlit reads the arrow's direction from it.
    amount = compact(abs(float(difference)), currency) if kind == "money" else f"{abs(difference):,.0f}"
    return f"{'-' if difference < 0 else '+'}{amount}{relative}"


def delta_colour(metric: str) -> Literal["normal", "inverse", "off"]:
    return "inverse" if metric in _COSTLY else "off" if metric in _NEUTRAL else "normal"


def tiers_chart(tiers: pd.DataFrame) -> go.Figure:
    """Members per tier at the end of the window, current vs scenario (``tiers_frame``)."""
    fig = go.Figure()
    fig.add_bar(
        x=tiers["tier"], y=tiers["members_current"], name="Current rules", marker_color=SLATE, text=tiers["members_current"], textposition="outside"
    )
    fig.add_bar(
        x=tiers["tier"], y=tiers["members_scenario"], name="Scenario", marker_color=TEAL, text=tiers["members_scenario"], textposition="outside"
    )
    fig.update_layout(barmode="group", hovermode="closest")
    return house_layout(fig, "Members per tier at the end of the window", yaxis_title="members")


def flows_chart(flows: pd.DataFrame) -> go.Figure:
    """Points issued, redeemed, expired in the window and outstanding at its end (``flows_frame``)."""
    fig = go.Figure()
    fig.add_bar(x=flows["measure"], y=flows["current"], name="Current rules", marker_color=SLATE)
    fig.add_bar(x=flows["measure"], y=flows["scenario"], name="Scenario", marker_color=TEAL)
    fig.update_layout(barmode="group", hovermode="closest")
    return house_layout(fig, "Points over the 12 months", yaxis_title="points")


def comparison_chart(comparison: pd.DataFrame) -> go.Figure:
    """Each saved scenario's headline numbers as the change against the current rules (``compare_scenarios``).

    Counts and money in % of the current value; shares in percentage points.
    """
    headline = comparison[~comparison["metric"].str.contains(":")]
    scenarios = [c for c in comparison.columns if c not in ("metric", "label", "kind", "Current rules")]
    fig = go.Figure()
    for i, name in enumerate(scenarios):
        change: list[float | None] = []
        for now, then, kind in zip(headline["Current rules"], headline[name], headline["kind"]):
            if now is None or then is None or pd.isna(now) or pd.isna(then):
                change.append(None)
            elif kind == "share":
                change.append((then - now) * 100)
            else:
                change.append((then - now) / now * 100 if now else None)
        fig.add_bar(y=headline["label"], x=change, name=name, orientation="h", marker_color=_SCENARIO_COLOURS[i % len(_SCENARIO_COLOURS)])
    fig = house_layout(fig, "Change against the current rules (% of current; shares in points of %)")
    fig.update_layout(
        barmode="group",
        hovermode="closest",
        height=120 + 28 * len(headline) * max(len(scenarios), 1) ** 0.5,
        yaxis={"autorange": "reversed"},
        xaxis={"title": "%", "zeroline": True},
    )
    return fig


def comparison_table(comparison: pd.DataFrame, currency: str = "") -> pd.DataFrame:
    """``compare_scenarios`` with every value formatted for reading (a column ``Measure`` first)."""
    value_columns = [c for c in comparison.columns if c not in ("metric", "label", "kind")]
    shown = pd.DataFrame({"Measure": comparison["label"]})
    for column in value_columns:
        shown[column] = [format_value(v, k, currency) for v, k in zip(comparison[column], comparison["kind"])]
    return shown


def format_settings(settings: dict[str, Any]) -> str:
    """Proposed settings in words: ``earn rate 1.5 points per currency unit, points expire after 6 months``."""
    words = []
    if "points_per_currency_unit" in settings:
        words.append(f"earn rate {settings['points_per_currency_unit']:g} points per currency unit")
    if "expiry_months" in settings:
        months = settings["expiry_months"]
        words.append("points never expire" if months == 0 else f"points expire after {months} months")
    return ", ".join(words)
