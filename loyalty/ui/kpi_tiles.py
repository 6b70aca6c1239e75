"""KPI tiles as the Overview draws them: value, change, trend, target badge (from :func:`loyalty.program.goals.kpi_tiles`)."""

from __future__ import annotations

from typing import Any

import streamlit as st

from loyalty.ui.core import METRICS_DOC
from loyalty.ui.goal_forms import STATUS_BADGE


def kpi_tile_grid(tiles: list[dict[str, Any]], *, per_row: int = 4) -> None:
    cols = [c for _ in range(0, len(tiles), per_row) for c in st.columns(per_row)]
    for col, tile in zip(cols, tiles):
        with col.container(border=True):
            st.metric(
                tile["label"],
                tile["value_text"],
                delta=tile["delta_text"],
                delta_color="normal" if tile["better_when"] == "up" else "inverse",
                help=tile["definition"] + METRICS_DOC,
                chart_data=tile["trend"] if len(tile["trend"]) > 1 else None,
            )
            if tile["target_text"]:
                st.badge(f"{tile['status']} · target {tile['target_text']}", color=STATUS_BADGE[tile["status"]])
            else:
                st.caption("No monthly target set.")
