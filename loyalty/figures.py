"""The house look of every Plotly figure: on a page, and printed in a report (HTML and PDF)."""

from __future__ import annotations

from typing import Literal

import plotly.graph_objects as go

__all__ = ["house_layout"]

# On a page: compact, legend below the axis labels (placed from the figure's bottom, so
# labels of two lines never run under it), one hover label for all series at an x.
_SCREEN = {
    "margin": {"l": 10, "r": 10, "t": 50, "b": 10},
    "height": 360,
    "legend": {"orientation": "h", "yref": "container", "y": 0.0, "yanchor": "bottom"},
    "hovermode": "x unified",
}
# In a report: white background, room for axis labels, a larger font that survives printing.
_PRINT = {
    "template": "plotly_white",
    "margin": {"l": 60, "r": 30, "t": 60, "b": 40},
    "legend": {"orientation": "h", "y": -0.15},
    "font": {"size": 13},
}


def house_layout(fig: go.Figure, title: str, *, yaxis_title: str = "", medium: Literal["screen", "print"] = "screen") -> go.Figure:
    """``fig`` with the title and the layout of its medium (changed in place and returned)."""
    layout = _SCREEN if medium == "screen" else _PRINT
    fig.update_layout(title=title, **layout)
    if yaxis_title or medium == "screen":
        fig.update_layout(yaxis_title=yaxis_title)
    return fig
