"""Chart builders for the liability forecast: a forecast frame in, a Plotly figure out. No Streamlit, no queries.

The frame is ``loyalty.decisions.forecast.forecast_summary(...)["frame"]``: one row per month with
``kind`` (actual/forecast), each measure with ``_low``/``_high`` and ``outstanding_money``.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from loyalty.figures import house_layout
from loyalty.ui.charts import AMBER, ROSE, SLATE, TEAL

__all__ = ["liability_chart", "redemption_expiry_chart"]

BAND_FILL = "rgba(15, 118, 110, 0.18)"


def liability_chart(frame: pd.DataFrame, currency: str, band: float = 0.8) -> go.Figure:
    """Outstanding points in money at each month's end: the history, then the forecast with its band.

    Traces, in order: ``Band low`` and ``Band high`` (the filled band), ``Actual``,
    ``Forecast`` (which starts at the last actual month so the lines join). Points sit on
    each month's last day: the last actual point is the liability at the forecast's start.
    """
    actual = frame[frame["kind"] == "actual"]
    future = frame[frame["kind"] == "forecast"]
    fig = go.Figure()
    fig.add_scatter(
        x=future["last_day"], y=future["outstanding_money_low"], name="Band low", mode="lines", line={"width": 0}, showlegend=False, hoverinfo="skip"
    )
    fig.add_scatter(
        x=future["last_day"],
        y=future["outstanding_money_high"],
        name=f"Band ({band:.0%})",
        mode="lines",
        line={"width": 0},
        fill="tonexty",
        fillcolor=BAND_FILL,
    )
    fig.add_scatter(x=actual["last_day"], y=actual["outstanding_money"], name="Actual", mode="lines+markers", line_color=SLATE)
    joined = pd.concat([actual.tail(1), future])
    fig.add_scatter(x=joined["last_day"], y=joined["outstanding_money"], name="Forecast", mode="lines+markers", line={"color": TEAL, "dash": "dash"})
    fig.update_layout(yaxis={"rangemode": "tozero", "tickformat": ",.0f"})
    return house_layout(fig, "Points outstanding (liability) at each month's end: history and forecast", yaxis_title=currency)


def redemption_expiry_chart(frame: pd.DataFrame) -> go.Figure:
    """Expected points redeemed and expired per forecast month (bars with the band as error bars), breakage on the right axis."""
    future = frame[frame["kind"] == "forecast"]
    fig = go.Figure()
    for measure, name, colour in (("redeemed", "Expected redemptions", AMBER), ("expired", "Expected expiry", ROSE)):
        fig.add_bar(
            x=future["month"],
            y=future[measure],
            name=name,
            marker_color=colour,
            error_y={
                "type": "data",
                "symmetric": False,
                "array": (future[f"{measure}_high"] - future[measure]).clip(lower=0),
                "arrayminus": (future[measure] - future[f"{measure}_low"]).clip(lower=0),
                "thickness": 1,
            },
        )
    fig.add_scatter(x=future["month"], y=future["breakage"] * 100, name="Breakage", yaxis="y2", mode="lines+markers", line_color=SLATE)
    fig.update_layout(
        barmode="group",
        yaxis={"tickformat": ",.0f"},
        yaxis2={
            "overlaying": "y",
            "side": "right",
            "ticksuffix": "%",
            "showgrid": False,
            "rangemode": "tozero",
            "tickmode": "auto",
            "tickformat": ".0f",
        },
    )
    return house_layout(fig, "Expected redemptions and expiry per month, and breakage (expired / (expired + redeemed))", yaxis_title="points")
