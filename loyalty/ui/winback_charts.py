"""Chart builders for the Win-back page: a DataFrame in, a Plotly figure out."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from loyalty.figures import house_layout
from loyalty.ui.charts import SLATE

__all__ = ["alive_then_vs_now"]

MAX_POINTS = 3000


def alive_then_vs_now(candidates: pd.DataFrame, *, min_drop: float, max_alive: float) -> go.Figure:
    """P(alive) at the reference date (x) against now (y), one marker per candidate, coloured by historical spend.

    The shaded corner is where the selection keeps members: below ``max_alive`` now and at
    least ``min_drop`` under the no-change diagonal. Above ``MAX_POINTS`` members the most
    valuable are drawn (the frame comes sorted by value).
    """
    shown = candidates.head(MAX_POINTS)
    fig = go.Figure()
    # The kept region: y < max_alive and y <= x - min_drop.
    top = min(max_alive, 1.0 - min_drop)
    fig.add_scatter(
        x=[min_drop, 1.0, 1.0, top + min_drop, min_drop],
        y=[0.0, 0.0, top, top, 0.0],
        fill="toself",
        mode="lines",
        line={"width": 0},
        fillcolor="rgba(225, 29, 72, 0.07)",
        name="selected region",
        hoverinfo="skip",
    )
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line={"color": SLATE, "dash": "dot", "width": 1}, name="no change", hoverinfo="skip")
    fig.add_scatter(
        x=shown["p_alive_then"],
        y=shown["p_alive_now"],
        mode="markers",
        name="candidates",
        text=shown["member"],
        customdata=shown[["historical_spend", "days_since_last_purchase"]].to_numpy(),
        marker={
            "color": shown["historical_spend"],
            "colorscale": [[0, "#5eead4"], [1, "#134e4a"]],
            "size": 9,
            "line": {"color": "white", "width": 0.5},
            "colorbar": {"title": "historical<br>spend"},
        },
        hovertemplate="%{text}<br>P(alive) then %{x:.0%} → now %{y:.0%}<br>spent %{customdata[0]:,.0f}, "
        "last purchase %{customdata[1]} days ago<extra></extra>",
    )
    fig.update_layout(
        xaxis={"title": "P(alive) at the reference date", "range": [0, 1.02], "tickformat": ".0%"},
        yaxis={"range": [0, 1.02], "tickformat": ".0%"},
        hovermode="closest",
    )
    return house_layout(fig, "Probability of being alive: then vs now (high-value candidates)", yaxis_title="P(alive) now")
