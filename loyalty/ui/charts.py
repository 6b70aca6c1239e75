"""Chart builders: a DataFrame in, a Plotly figure out. No Streamlit, no queries."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

TEAL, AMBER, ROSE, SLATE = "#0f766e", "#d97706", "#e11d48", "#64748b"


def compact(value: float, currency: str = "") -> str:
    """A money amount short enough for a metric tile: 133.4k, 2.1M."""
    prefix = f"{currency} " if currency else ""
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e4, "k")):
        if abs(value) >= limit:
            return f"{prefix}{value / (limit if limit != 1e4 else 1e3):,.1f}{suffix}"
    return f"{prefix}{value:,.0f}"


def _layout(fig: go.Figure, title: str, yaxis: str = "") -> go.Figure:
    fig.update_layout(
        title=title, margin={"l": 10, "r": 10, "t": 50, "b": 10}, height=340, yaxis_title=yaxis,
        legend={"orientation": "h", "y": -0.15}, hovermode="x unified",
    )
    return fig


def monthly_revenue(monthly: pd.DataFrame, currency: str) -> go.Figure:
    fig = go.Figure()
    fig.add_bar(x=monthly["month"], y=monthly["revenue"], name="Revenue", marker_color=TEAL)
    fig.add_scatter(x=monthly["month"], y=monthly["buyers"], name="Buying members", yaxis="y2", mode="lines+markers", line_color=AMBER)
    fig.update_layout(yaxis2={"overlaying": "y", "side": "right", "showgrid": False, "title": "members", "rangemode": "tozero"})
    return _layout(fig, "Revenue and buying members per month", currency)


def monthly_points(monthly: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    fig.add_bar(x=monthly["month"], y=monthly["points_earned"] + monthly.get("points_bonus", 0), name="Earned", marker_color=TEAL)
    fig.add_bar(x=monthly["month"], y=-monthly["points_redeemed"], name="Redeemed", marker_color=AMBER)
    fig.add_bar(x=monthly["month"], y=-monthly["points_expired"], name="Expired", marker_color=ROSE)
    fig.update_layout(barmode="relative")
    return _layout(fig, "Points earned, redeemed and expired per month", "points")


def member_balance(ledger: pd.DataFrame) -> go.Figure:
    ordered = ledger.sort_values("occurred_at")
    fig = go.Figure(go.Scatter(x=ordered["occurred_at"], y=ordered["balance"], mode="lines", line_shape="hv", line_color=TEAL))
    return _layout(fig, "Points balance over time", "points")


def members_per_tier(tiers: pd.DataFrame, barrier: pd.DataFrame) -> go.Figure:
    fig = go.Figure(go.Bar(x=tiers["name"], y=tiers["members"], name="Members now", marker_color=TEAL, text=tiers["members"], textposition="outside"))
    if not barrier.empty:
        fig.add_bar(x=barrier["tier"], y=barrier["reachable_members"], name="Active members who can reach it", marker_color=AMBER)
    return _layout(fig, "Members per tier, and who can reach each", "members")


def reward_reach(barrier: pd.DataFrame) -> go.Figure:
    colours = [ROSE if flagged else TEAL for flagged in barrier["barrier"]]
    fig = go.Figure(go.Bar(y=barrier["reward"], x=barrier["reachable_share"] * 100, orientation="h", marker_color=colours,
                           text=[f"{v:.0%}" for v in barrier["reachable_share"]], textposition="outside"))
    fig.update_layout(yaxis={"autorange": "reversed"}, xaxis={"range": [0, 105], "ticksuffix": "%"}, hovermode="closest")
    fig = _layout(fig, "Share of active members who can reach each reward within 12 months (red: entry barrier)", "")
    return fig.update_layout(height=max(340, 90 + 26 * len(barrier)))


def budget_burn(campaigns: pd.DataFrame) -> go.Figure:
    capped = campaigns[campaigns["budget_points"].notna()]
    fig = go.Figure()
    fig.add_bar(y=capped["name"], x=capped["budget_points"], name="Budget", orientation="h", marker_color="#cbd5e1")
    fig.add_bar(y=capped["name"], x=capped["points_awarded"], name="Awarded", orientation="h", marker_color=TEAL)
    fig.update_layout(barmode="overlay", hovermode="closest", yaxis={"autorange": "reversed"})
    return _layout(fig, "Points budget burned per campaign", "")
