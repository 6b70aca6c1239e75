"""Plotly figures drawn as PNG by matplotlib: sizes, colours where they belong, axes as plotly
sets them, and a loud refusal of anything the converter does not draw.

Pixel checks count pixels of a trace's exact colour (the inside of a bar or a thick line
is not anti-aliased); where a test needs a position it reads the drawn matplotlib figure.
"""

from __future__ import annotations

import io
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import plotly.graph_objects as go
import pytest
from PIL import Image

from loyalty.evaluation.static_charts import UnsupportedFigure, draw_figure, figure_png

PURPLE, GREEN, RED, BLUE = "#6a1b9a", "#2e7d32", "#c62828", "#1565c0"


def _pixels(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image.convert("RGB"))


def _count(pixels: np.ndarray, colour: str) -> int:
    rgb = tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return int(np.all(pixels == rgb, axis=-1).sum())


def _rows_of(pixels: np.ndarray, colour: str) -> np.ndarray:
    rgb = tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return np.nonzero(np.all(pixels == rgb, axis=-1).any(axis=1))[0]


def _vertical_bars() -> go.Figure:
    fig = go.Figure(
        go.Bar(
            x=["Spring", "Autumn"],
            y=[3.2, -1.1],
            marker_color=PURPLE,
            name="Spend uplift",
            error_y={"type": "data", "symmetric": False, "array": [2.3, 3.0], "arrayminus": [2.2, 2.9]},
        )
    )
    fig.update_layout(
        title="Campaign uplift",
        template="plotly_white",
        yaxis={"title": "Treatment minus holdout", "zeroline": True, "zerolinecolor": "#9e9e9e", "zerolinewidth": 2},
    )
    return fig


def _horizontal_bars() -> go.Figure:
    fig = go.Figure(
        go.Bar(x=[120, 35, 8], y=["(none) → Silver", "Silver → Gold", "Gold → Silver"], orientation="h", marker_color=[GREEN, GREEN, RED])
    )
    fig.update_layout(title="Tier movements", template="plotly_white", xaxis={"title": "Members"}, yaxis={"autorange": "reversed"}, height=305)
    return fig


def _lines() -> go.Figure:
    months = ["Jan 2026", "Feb 2026", "Mar 2026", "Apr 2026"]
    fig = go.Figure()
    fig.add_scatter(x=months, y=[0.55, None, 0.61, 0.58], name="Retention", mode="lines+markers", line={"color": GREEN, "width": 3})
    fig.add_scatter(x=months, y=[0.6] * 4, name="Target", mode="lines", line={"color": RED, "dash": "dash"})
    fig.update_layout(
        title="Retention", template="plotly_white", yaxis={"tickformat": ".0%", "rangemode": "tozero"}, legend={"orientation": "h", "y": -0.15}
    )
    return fig


def _bars_and_line_on_a_second_axis() -> go.Figure:
    months = ["Jan", "Feb", "Mar"]
    fig = go.Figure()
    fig.add_bar(x=months, y=[12000, 15000, 21000], name="Revenue ($)", marker_color="#90caf9")
    fig.add_scatter(x=months, y=[410, 450, 500], name="Active members", yaxis="y2", mode="lines+markers", line={"color": BLUE, "width": 3})
    fig.update_layout(
        title="Revenue ($) and active members",
        template="plotly_white",
        yaxis={"title": "Revenue", "rangemode": "tozero"},
        yaxis2={
            "title": "Active members",
            "overlaying": "y",
            "side": "right",
            "rangemode": "tozero",
            "tickmode": "auto",
            "showgrid": False,
            "tickformat": ",d",
        },
    )
    return fig


def _log_log() -> go.Figure:
    members = [10_000, 100_000, 1_000_000]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=members, y=[2.5, 7.0, 52.0], mode="lines+markers", name="evaluate-all"))
    fig.add_trace(go.Scatter(x=members, y=[2.5, 25.0, 250.0], mode="lines", name="linear growth", line={"dash": "dot", "color": "#888"}))
    fig.update_layout(
        title="Growth (log-log)",
        xaxis_title="members",
        yaxis_title="seconds",
        xaxis_type="log",
        yaxis_type="log",
        template="plotly_white",
        width=1000,
        height=600,
    )
    return fig


FIGURES = {
    "vertical bars with error bars": _vertical_bars,
    "horizontal bars, one colour each": _horizontal_bars,
    "lines, markers and a dashed line": _lines,
    "bars and a line on a second y axis": _bars_and_line_on_a_second_axis,
    "log-log lines": _log_log,
}


@pytest.mark.parametrize("make", FIGURES.values(), ids=FIGURES.keys())
@pytest.mark.parametrize("scale", [1, 2])
def test_each_figure_becomes_a_png_of_its_size_times_the_scale_with_ink_on_it(make, scale):
    figure = make()
    pixels = _pixels(figure_png(figure, width=figure.layout.width or 900, height=figure.layout.height or 400, scale=scale))
    assert pixels.shape[:2] == ((figure.layout.height or 400) * scale, (figure.layout.width or 900) * scale)
    white = np.all(pixels == 255, axis=-1).mean()
    assert 0.3 < white < 0.995, f"{white:.1%} of the image is white"


def test_bars_and_their_error_bars_are_drawn_in_their_colours():
    pixels = _pixels(figure_png(_vertical_bars(), width=900, height=400))
    assert _count(pixels, PURPLE) > 10_000, "two wide bars"
    assert _count(pixels, "#2a3f5f") > 300, "error bars in the template's error-bar colour"
    assert _count(pixels, "#9e9e9e") > 400, "the zero line in its own colour"


def test_a_colour_list_colours_each_bar_and_a_reversed_axis_puts_the_first_category_on_top():
    pixels = _pixels(figure_png(_horizontal_bars(), width=900, height=305))
    green, red = _rows_of(pixels, GREEN), _rows_of(pixels, RED)
    assert len(green) > 40 and len(red) > 20
    assert green.max() < red.min(), "the two green moves above the red one, as listed"
    drawn = draw_figure(_horizontal_bars(), width=900, height=305)
    labels = [t.get_text() for t in drawn.axes[0].get_yticklabels()]
    assert labels == ["(none) → Silver", "Silver → Gold", "Gold → Silver"]
    assert drawn.axes[0].yaxis_inverted()


def test_lines_keep_their_colour_width_and_dash_and_a_gap_stays_a_gap():
    drawn = draw_figure(_lines(), width=900, height=400)
    retention, target = drawn.axes[0].get_lines()[:2]
    assert retention.get_color() == GREEN and retention.get_marker() == "o"
    assert retention.get_linewidth() == pytest.approx(3 * 0.72)
    assert np.isnan(retention.get_ydata()[1]), "plotly leaves a missing month empty"
    assert target.get_linestyle() == "--" and target.get_marker() in (None, "None", "")
    pixels = _pixels(figure_png(_lines(), width=900, height=400))
    assert _count(pixels, GREEN) > 300 and _count(pixels, RED) > 100


def test_tick_formats_and_the_legend_follow_the_layout():
    drawn = draw_figure(_lines(), width=900, height=400)
    drawn.canvas.draw()
    axes = drawn.axes[0]
    labels = [t.get_text() for t in axes.get_yticklabels() if t.get_text()]
    assert labels[0] == "0%" and "60%" in labels
    assert axes.get_ylim()[0] == 0, "rangemode tozero"
    (legend,) = drawn.legends
    assert [t.get_text() for t in legend.get_texts()] == ["Retention", "Target"]
    assert legend.get_window_extent().y1 < axes.get_window_extent().y0, "a horizontal legend below the plot"
    assert drawn.get_suptitle() == "Retention"


def test_a_second_y_axis_has_its_own_scale_on_the_right():
    drawn = draw_figure(_bars_and_line_on_a_second_axis(), width=900, height=400)
    drawn.canvas.draw()
    revenue, members = drawn.axes
    assert members.get_ylim()[1] < 1000 < revenue.get_ylim()[1]
    assert members.yaxis.get_label_position() == "right" and members.get_ylabel() == "Active members"
    assert [t.get_text() for t in revenue.get_yticklabels() if t.get_text()][-1].endswith("k"), "plotly writes 20000 as 20k"
    member_ticks = [t.get_text() for t in members.get_yticklabels() if t.get_text()]
    assert all(text.isdigit() for text in member_ticks), member_ticks  # ",d": whole numbers
    assert drawn.get_suptitle() == "Revenue ($) and active members", "a dollar sign is text, not mathtext"
    line = members.get_lines()[0]
    pixels = _pixels(figure_png(_bars_and_line_on_a_second_axis(), width=900, height=400))
    assert _rows_of(pixels, BLUE).max() < 400 * 0.6, "the member line sits high on its own axis, not flat at the bottom"
    assert line.get_color() == BLUE


def test_log_axes_are_logarithmic_with_plotlys_labels_and_the_legend_on_the_right():
    drawn = draw_figure(_log_log())
    drawn.canvas.draw()
    axes = drawn.axes[0]
    assert (axes.get_xscale(), axes.get_yscale()) == ("log", "log")
    x_labels = {t.get_text() for t in axes.get_xticklabels()}
    assert {"10k", "100k", "1M"} <= x_labels
    assert {"10", "100"} <= {t.get_text() for t in axes.get_yticklabels()}
    default_colour, guide = axes.get_lines()[:2]
    assert default_colour.get_color() == "#636efa", "the first colour of the template's colorway"
    assert guide.get_linestyle() == ":" and guide.get_color() == "#888"
    (legend,) = drawn.legends
    assert legend.get_window_extent().x0 > axes.get_window_extent().x1, "a vertical legend right of the plot"


def test_dollar_signs_stay_dollars_in_titles_legends_and_category_labels():
    fig = go.Figure(go.Bar(x=["from $5 to $10", "over $10"], y=[3, 4], name="Spend in $ per $ of points"))
    fig.add_scatter(x=["from $5 to $10", "over $10"], y=[1, 2], name="Cost in $ per $ earned")
    fig.update_layout(title="Rewards in $ and $ spent", yaxis_title="$ per $")
    drawn = draw_figure(fig, width=800, height=400)
    drawn.canvas.draw()
    texts = [drawn.get_suptitle(), drawn.axes[0].get_ylabel(), *(t.get_text() for t in drawn.legends[0].get_texts())]
    assert texts == ["Rewards in $ and $ spent", "$ per $", "Spend in $ per $ of points", "Cost in $ per $ earned"]
    assert [t.get_text() for t in drawn.axes[0].get_xticklabels()] == [r"from \$5 to \$10", r"over \$10"], "escaped for mathtext"


def test_crowded_category_labels_are_turned_as_plotly_turns_them():
    names = [f"Campaign number {i} with a long name" for i in range(8)]
    drawn = draw_figure(go.Figure(go.Bar(x=names, y=list(range(8)))), width=700, height=400)
    assert {t.get_rotation() for t in drawn.axes[0].get_xticklabels()} == {30}
    roomy = draw_figure(go.Figure(go.Bar(x=["A", "B"], y=[1, 2])), width=700, height=400)
    assert {t.get_rotation() for t in roomy.axes[0].get_xticklabels()} == {0}


def test_figures_render_the_same_from_several_threads_at_once():
    makers = list(FIGURES.values()) * 2
    alone = [figure_png(make(), width=800, height=400) for make in makers]
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(lambda make: figure_png(make(), width=800, height=400), makers))
    assert together == alone


UNSUPPORTED = {
    "a pie": (lambda: go.Figure(go.Pie(labels=["a", "b"], values=[1, 2])), "type 'pie' is not drawn"),
    "a heatmap": (lambda: go.Figure(go.Heatmap(z=[[1, 2], [3, 4]])), "type 'heatmap' is not drawn"),
    "bar labels": (lambda: go.Figure(go.Bar(x=["a"], y=[1], text=["1"])), "'text' is not drawn"),
    "an annotation": (lambda: go.Figure(go.Bar(x=["a"], y=[1])).add_annotation(text="note", x=0, y=1), "'annotations' is not drawn"),
    "a shape": (lambda: go.Figure(go.Bar(x=["a"], y=[1])).add_hline(y=1), "'shapes' is not drawn"),
    "stacked bars": (lambda: go.Figure(go.Bar(x=["a"], y=[1])).update_layout(barmode="stack"), "'barmode' is not drawn"),
    "a filled area": (lambda: go.Figure(go.Scatter(x=[1, 2], y=[1, 2], fill="tozeroy")), "'fill' is not drawn"),
    "text mode": (lambda: go.Figure(go.Scatter(x=[1, 2], y=[1, 2], mode="text", text=["a", "b"])), "'text' is not drawn"),
    "a tick format": (lambda: go.Figure(go.Bar(x=["a"], y=[1])).update_layout(yaxis_tickformat="$.2s"), "tickformat '$.2s'"),
    "a date axis": (lambda: go.Figure(go.Scatter(x=[1, 2], y=[1, 2])).update_layout(xaxis_type="date"), "type 'date'"),
    "a third axis": (lambda: go.Figure(go.Scatter(x=[1, 2], y=[1, 2], yaxis="y3")), "yaxis 'y3' is not drawn"),
    "a dash pattern": (lambda: go.Figure(go.Scatter(x=[1, 2], y=[1, 2], line={"dash": "5px,10px"})), "dash '5px,10px'"),
    "numeric bar positions": (lambda: go.Figure(go.Bar(x=[1, 2], y=[1, 2])), "category positions only"),
}


@pytest.mark.parametrize(("make", "message"), UNSUPPORTED.values(), ids=UNSUPPORTED.keys())
def test_what_the_converter_does_not_draw_is_refused_by_name(make, message):
    with pytest.raises(UnsupportedFigure, match=re.escape(message)):
        figure_png(make(), width=400, height=300)
