"""PNG images of plotly figures, drawn by matplotlib: no browser, no system library.

Each chart of the product has one definition, a ``plotly.graph_objects.Figure``: the
pages and the HTML report show it interactively, and :func:`figure_png` draws the same
figure as a still image for the PDF report and the benchmark's chart. The drawing uses
``matplotlib.figure.Figure`` with the Agg canvas and no pyplot, so there is no global
state and several threads may render at once.

Only what the product's figures use is drawn, and everything else is refused: a property
this module does not know raises :class:`UnsupportedFigure` naming it, so a new chart
that needs more fails in the tests instead of losing a line in the PDF. Supported:

* traces ``bar`` (vertical or horizontal, one colour or one per bar, ``error_y`` of type
  ``data``, several bar traces side by side) and ``scatter`` (``lines``, ``markers`` or
  both; line colour, width and dash; marker colour and size), on ``x``/``y`` or a second
  y axis ``y2`` overlaying ``y`` on the right;
* axes: title, ``linear``/``log``/``category`` (strings make an axis categorical, as in
  plotly), ``rangemode`` ``tozero``, ``autorange`` ``reversed``, ``tickformat`` of the
  d3 forms ``d``, ``,d``, ``.Nf``, ``,.Nf`` and ``.N%``, grid and zero line;
* layout: title, font size, width, height, margin (the plot area is placed by
  matplotlib's constrained layout, which like plotly's ``automargin`` makes room for
  labels), legend (vertical on the right or horizontal below) and the template's colours
  (colorway, font colour, grid and zero-line colours, backgrounds).

Sizes follow plotly's: a figure ``width`` x ``height`` pixels at ``scale`` gives a PNG of
``width * scale`` x ``height * scale`` pixels; font sizes and line widths are in the same
pixels (1 px = 0.72 pt at the 100 dpi this module draws at).
"""

from __future__ import annotations

import io
import itertools
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import plotly.graph_objects as go
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.ticker import FixedLocator, Formatter, LogLocator, MaxNLocator, NullFormatter

__all__ = ["DEFAULT_HEIGHT_PX", "DEFAULT_WIDTH_PX", "UnsupportedFigure", "draw_figure", "figure_png"]

DEFAULT_WIDTH_PX, DEFAULT_HEIGHT_PX = 700, 500  # plotly's own defaults
_DPI = 100
_PT_PER_PX = 72 / _DPI
_DEFAULT_FONT_PX = 12
_TITLE_FONT_FACTOR, _AXIS_TITLE_FONT_FACTOR = 1.4, 1.2  # plotly.js: title and axis-title fonts against the base font
_LINE_WIDTH_PX, _MARKER_SIZE_PX = 2, 6
_ERROR_BAR = {"thickness_px": 2, "half_width_px": 4}
_BAR_GROUP_WIDTH = 0.8  # plotly's default bargap of 0.2
_DASHES = {"solid": "-", "dot": ":", "dash": "--", "dashdot": "-.", "longdash": (0, (8, 2)), "longdashdot": (0, (8, 2, 1, 2))}
_SI_SUFFIXES = {3: "k", 6: "M", 9: "B", 12: "T"}  # plotly's default exponentformat "B"
_SI_MIN_EXPONENT = 3  # plotly's minexponent: 1000 stays 1000, 10000 is 10k
_TICKFORMAT_RE = re.compile(r"^(?P<comma>,)?(?:\.(?P<precision>\d+))?(?P<kind>[df%])$")
_RGB_RE = re.compile(r"^rgba?\(\s*([\d.]+)\s*,\s*([\d.]+)\s*,\s*([\d.]+)\s*(?:,\s*([\d.]+)\s*)?\)$")
_MINUS = "\u2212"
_TICK_SPACING_PX = {"x": 80, "y": 40}
_AXES_FRAME_PX = {"x": 150, "y": 140}  # what titles, labels and legend take from the figure, roughly

# What may be set, as nested key sets; a key set to ``None`` is a leaf checked where it is drawn.
_AXIS_KEYS: dict[str, Any] = {
    "title": {"text": None},
    "type": None,
    "rangemode": None,
    "autorange": None,
    "tickformat": None,
    "tickmode": None,
    "showgrid": None,
    "zeroline": None,
    "zerolinewidth": None,
    "zerolinecolor": None,
    "overlaying": None,
    "side": None,
}
_LAYOUT_KEYS: dict[str, Any] = {
    "template": None,
    "title": {"text": None},
    "font": {"size": None},
    "width": None,
    "height": None,
    "margin": {"l": None, "r": None, "t": None, "b": None},
    "showlegend": None,
    "legend": {"orientation": None, "y": None, "font": {"size": None}},
    "xaxis": _AXIS_KEYS,
    "yaxis": _AXIS_KEYS,
    "yaxis2": _AXIS_KEYS,
}
_COMMON_TRACE_KEYS: dict[str, Any] = {"type": None, "x": None, "y": None, "name": None, "xaxis": None, "yaxis": None, "showlegend": None}
_TRACE_KEYS: dict[str, dict[str, Any]] = {
    "bar": {
        **_COMMON_TRACE_KEYS,
        "orientation": None,
        "marker": {"color": None},
        "error_y": {"type": None, "symmetric": None, "array": None, "arrayminus": None},
    },
    "scatter": {**_COMMON_TRACE_KEYS, "mode": None, "line": {"color": None, "width": None, "dash": None}, "marker": {"color": None, "size": None}},
}


class UnsupportedFigure(ValueError):
    """The figure uses something :func:`figure_png` does not draw; the message names it."""


def figure_png(figure: go.Figure, *, width: int | None = None, height: int | None = None, scale: float = 1.0) -> bytes:
    """The figure as PNG bytes of ``width * scale`` x ``height * scale`` pixels.

    ``width`` and ``height`` default to the figure's layout, then to plotly's 700 x 500.
    Raises :class:`UnsupportedFigure` for a trace type, property or value not drawn here.
    """
    drawing = draw_figure(figure, width=width, height=height, scale=scale)
    buffer = io.BytesIO()
    drawing.savefig(buffer, format="png", dpi=drawing.dpi)
    return buffer.getvalue()


def draw_figure(figure: go.Figure, *, width: int | None = None, height: int | None = None, scale: float = 1.0) -> Figure:
    """The figure drawn on a new matplotlib ``Figure`` (Agg canvas, no pyplot), as :func:`figure_png` saves it."""
    spec = figure.to_plotly_json()
    layout = spec.get("layout", {})
    _check_keys(layout, _LAYOUT_KEYS, "layout")
    for index, trace in enumerate(spec.get("data", [])):
        kind = trace.get("type", "scatter")
        if kind not in _TRACE_KEYS:
            raise UnsupportedFigure(
                f"trace {index} ({trace.get('name') or 'unnamed'}): type {kind!r} is not drawn; supported: {', '.join(_TRACE_KEYS)}"
            )
        _check_keys(trace, _TRACE_KEYS[kind], f"trace {index} ({kind})")
    width_px = int(width or figure.layout.width or DEFAULT_WIDTH_PX)
    height_px = int(height or figure.layout.height or DEFAULT_HEIGHT_PX)
    if scale <= 0:
        raise ValueError(f"scale must be positive, not {scale}")
    return _Drawing(figure, width_px, height_px, scale).draw()


def _check_keys(node: Mapping[str, Any], allowed: Mapping[str, Any], where: str) -> None:
    for key, value in node.items():
        if key not in allowed:
            raise UnsupportedFigure(f"{where}: {key!r} is not drawn; supported: {', '.join(sorted(allowed))}")
        if allowed[key] is not None:
            if not isinstance(value, Mapping):
                raise UnsupportedFigure(f"{where}.{key}: expected settings, got {value!r}")
            _check_keys(value, allowed[key], f"{where}.{key}")


def _colour(value: Any, where: str) -> Any:
    """A plotly colour (``#rgb``, ``#rrggbb``, ``rgb()``, ``rgba()``, a CSS name) as a matplotlib colour."""
    if isinstance(value, str):
        text = value.strip()
        if match := _RGB_RE.match(text):
            red, green, blue = (float(match[i]) / 255 for i in (1, 2, 3))
            return (red, green, blue, float(match[4]) if match[4] else 1.0)
        from matplotlib.colors import is_color_like

        if is_color_like(text) and not text.replace(".", "", 1).isdigit():  # "0.5" is grey to matplotlib, not to plotly
            return text
    raise UnsupportedFigure(f"{where}: colour {value!r} is not one of #rrggbb, rgb(), rgba() or a CSS colour name")


def _text(value: Any) -> str:
    """Plain text: plotly's ``<br>`` is a new line (titles and labels are drawn with ``parse_math=False``)."""
    return re.sub(r"<br\s*/?>", "\n", str(value), flags=re.IGNORECASE)


def _tick_text(value: Any) -> str:
    """A tick label: tick texts are parsed as mathtext, so ``$`` is escaped to stay a dollar."""
    return _text(value).replace("$", r"\$")


def _values(values: Any) -> list[Any]:
    return [] if values is None else list(np.asarray(values, dtype=object).ravel())


def _is_category(values: Sequence[Any]) -> bool:
    return any(isinstance(v, str) for v in values)


def _numbers(values: Sequence[Any], where: str) -> np.ndarray:
    try:
        return np.array([np.nan if v is None else float(v) for v in values], dtype=float)
    except (TypeError, ValueError):
        raise UnsupportedFigure(f"{where}: values must be numbers or category names, got {values[:3]!r}...") from None


class _TickFormat(Formatter):
    """plotly's tick labels: a d3 ``tickformat`` when given, else its default (``20k``, ``1.5M``, ``0.25``)."""

    def __init__(self, tickformat: str | None, where: str, *, each_on_its_own: bool = False) -> None:
        self.each_on_its_own = each_on_its_own  # log axes: 10k, 100k, 1M rather than one suffix for all
        self.match = None
        if tickformat:
            self.match = _TICKFORMAT_RE.match(tickformat)
            if self.match is None:
                raise UnsupportedFigure(f"{where}.tickformat {tickformat!r} is not drawn; supported: d, ,d, .Nf, ,.Nf, .N%")
        self.locs: list[float] = []

    def set_locs(self, locs: Sequence[float]) -> None:
        self.locs = [loc for loc in locs if math.isfinite(loc)]

    def __call__(self, value: float, pos: int | None = None) -> str:
        text = self._d3(value) if self.match else self._default(value)
        return text.replace("-", _MINUS) if text.startswith("-") else text

    def _d3(self, value: float) -> str:
        assert self.match is not None  # called only with a tickformat
        comma = "," if self.match["comma"] else ""
        kind, precision = self.match["kind"], self.match["precision"]
        if kind == "d":
            return f"{round(value):{comma}d}"
        digits = int(precision) if precision is not None else 6
        return f"{value:{comma}.{digits}{kind}}"

    def _default(self, value: float) -> str:
        largest = abs(value) if self.each_on_its_own or self.axis is None else max(abs(v) for v in self.axis.get_view_interval())
        exponent = _si_exponent(largest)
        divisor, suffix = 10.0**exponent, _SI_SUFFIXES.get(exponent, "")
        if self.each_on_its_own:
            step = abs(value) / divisor
        else:
            step = min((abs(b - a) for a, b in zip(self.locs, self.locs[1:]) if b != a), default=0.0) / divisor
        decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step else 0
        text = f"{value / divisor:.{decimals}f}"
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        return "0" if float(text) == 0 else text + suffix


def _si_exponent(largest: float) -> int:
    """The power of 1000 plotly.js shows ticks in, from the largest value of the range (its autoTickRound)."""
    if not largest or not math.isfinite(largest):
        return 0
    range_exponent = math.floor(math.log10(largest) + 0.01)
    if abs(range_exponent) <= _SI_MIN_EXPONENT or range_exponent < 0:
        return 0
    return min(3 * round((range_exponent - 1) / 3), max(_SI_SUFFIXES))


class _LogMinorFormat(Formatter):
    """The 2 and 5 between decades, as plotly labels them (small digits)."""

    def __call__(self, value: float, pos: int | None = None) -> str:
        digit = value / 10 ** math.floor(math.log10(value) + 1e-9)
        return f"{digit:.0f}" if round(digit) in (2, 5) else ""


class _Drawing:
    """One figure drawn onto one matplotlib Figure."""

    def __init__(self, figure: go.Figure, width_px: int, height_px: int, scale: float) -> None:
        self.figure, self.layout, self.template = figure, figure.layout, figure.layout.template.layout
        self.font_px = self.layout.font.size or self.template.font.size or _DEFAULT_FONT_PX
        self.font_colour = _colour(self.layout.font.color or self.template.font.color or "#444", "layout.font.color")
        self.canvas_figure = Figure(
            figsize=(width_px / _DPI, height_px / _DPI),
            dpi=_DPI * scale,
            layout="constrained",
            facecolor=_colour(self.template.paper_bgcolor or "white", "template.paper_bgcolor"),
        )
        layout_engine = self.canvas_figure.get_layout_engine()
        assert isinstance(layout_engine, ConstrainedLayoutEngine)  # layout="constrained"
        layout_engine.set(h_pad=0.12, w_pad=0.08)  # inches around the plot, as plotly leaves
        FigureCanvasAgg(self.canvas_figure)
        self.axes = self.canvas_figure.add_subplot()
        self.axes.set_facecolor(_colour(self.template.plot_bgcolor or "white", "template.plot_bgcolor"))
        self.secondary: Axes | None = None
        self.legend_entries: list[tuple[Any, str]] = []
        self.colorway = list(self.template.colorway or ["#1f77b4"])
        self.categories: dict[str, list[str]] = {"x": [], "y": []}

    # --- the whole figure -------------------------------------------------------------------------------

    def draw(self) -> Figure:
        traces = list(self.figure.data)
        self._collect_categories(traces)
        if any(t.yaxis == "y2" for t in traces):
            self._check_secondary_axis()
            self.secondary = self.axes.twinx()
        bars = [t for t in traces if t.type == "bar"]
        for index, trace in enumerate(traces):
            where = f"trace {index} ({trace.type})"
            colour = self.colorway[index % len(self.colorway)]
            if trace.type == "bar":
                self._bar(trace, where, colour, bars.index(trace), len(bars))
            else:
                self._scatter(trace, where, colour)
        self._style_axis(self.axes, "x", self.layout.xaxis, "layout.xaxis")
        self._style_axis(self.axes, "y", self.layout.yaxis, "layout.yaxis")
        if self.secondary is not None:
            self._style_axis(self.secondary, "y", self.layout.yaxis2, "layout.yaxis2")
        self._title()
        self._legend(traces)
        self._turn_crowded_labels()
        return self.canvas_figure

    def _collect_categories(self, traces: Sequence[Any]) -> None:
        """Category names per axis in order of first appearance across traces, as plotly orders them."""
        for letter in ("x", "y"):
            axis_type = self.layout[f"{letter}axis"].type
            for trace in traces:
                values = _values(trace[letter])
                if axis_type == "category" or (axis_type in (None, "-") and _is_category(values)):
                    for value in values:
                        if str(value) not in self.categories[letter]:
                            self.categories[letter].append(str(value))

    def _check_secondary_axis(self) -> None:
        axis = self.layout.yaxis2
        if axis.overlaying != "y" or axis.side != "right":
            raise UnsupportedFigure("layout.yaxis2: only a second y axis overlaying 'y' on the right side is drawn")
        if self.layout.yaxis.type == "log" or axis.type == "log" or self.categories["y"]:
            raise UnsupportedFigure("layout.yaxis2: only a linear second y axis beside a linear or log first one is drawn")

    def _positions(self, letter: str, values: Sequence[Any], where: str) -> np.ndarray:
        if self.categories[letter]:
            return np.array([self.categories[letter].index(str(v)) for v in values], dtype=float)
        return _numbers(values, f"{where}.{letter}")

    def _axes_of(self, trace: Any, where: str) -> Axes:
        if trace.xaxis not in (None, "x"):
            raise UnsupportedFigure(f"{where}: xaxis {trace.xaxis!r} is not drawn; only 'x'")
        if trace.yaxis in (None, "y"):
            return self.axes
        if trace.yaxis == "y2" and self.secondary is not None:
            return self.secondary
        raise UnsupportedFigure(f"{where}: yaxis {trace.yaxis!r} is not drawn; only 'y' and 'y2'")

    # --- traces -------------------------------------------------------------------------------------------

    def _bar(self, trace: Any, where: str, default_colour: str, slot: int, bar_traces: int) -> None:
        axes = self._axes_of(trace, where)
        horizontal = (trace.orientation or "v") == "h"
        if trace.orientation not in (None, "v", "h"):
            raise UnsupportedFigure(f"{where}: orientation {trace.orientation!r}; only 'v' and 'h'")
        place, length = ("y", "x") if horizontal else ("x", "y")
        if not self.categories[place]:
            raise UnsupportedFigure(f"{where}: bars are drawn at category positions only; {place} holds numbers")
        positions = self._positions(place, _values(trace[place]), where)
        lengths = _numbers(_values(trace[length]), f"{where}.{length}")
        bar_width = _BAR_GROUP_WIDTH / bar_traces
        positions = positions - _BAR_GROUP_WIDTH / 2 + bar_width * (slot + 0.5)
        colours = trace.marker.color if trace.marker.color is not None else default_colour
        if isinstance(colours, str):
            colours = [_colour(colours, f"{where}.marker.color")] * len(positions)
        else:
            colours = [_colour(c, f"{where}.marker.color") for c in _values(colours)]
        edge = self._bar_edge()
        draw = axes.barh if horizontal else axes.bar
        bars = draw(positions, lengths, bar_width, color=colours, zorder=2, **edge)
        if trace.error_y.type is not None or trace.error_y.array is not None:
            self._error_bars(axes, trace, where, positions, lengths, horizontal)
        self.legend_entries.append((bars, trace.name or ""))

    def _bar_edge(self) -> dict[str, Any]:
        templates = self.figure.layout.template.data.bar
        line = templates[0].marker.line if templates else None
        if line is None or not line.width:
            return {"linewidth": 0}
        return {"edgecolor": _colour(line.color or "white", "template bar line"), "linewidth": line.width * _PT_PER_PX}

    def _error_bars(self, axes: Axes, trace: Any, where: str, positions: np.ndarray, lengths: np.ndarray, horizontal: bool) -> None:
        error = trace.error_y
        if horizontal:
            raise UnsupportedFigure(f"{where}.error_y: error bars on horizontal bars are not drawn")
        if error.type != "data":
            raise UnsupportedFigure(f"{where}.error_y.type {error.type!r}: only 'data'")
        above = _numbers(_values(error.array), f"{where}.error_y.array")
        below = (
            above
            if error.symmetric in (None, True) or error.arrayminus is None
            else _numbers(_values(error.arrayminus), f"{where}.error_y.arrayminus")
        )
        templates = self.figure.layout.template.data.bar
        colour = (templates[0].error_y.color if templates else None) or self.template.font.color or "#444"
        axes.errorbar(
            positions,
            lengths,
            yerr=[np.nan_to_num(below), np.nan_to_num(above)],
            fmt="none",
            zorder=3,
            ecolor=_colour(colour, f"{where}.error_y colour"),
            elinewidth=_ERROR_BAR["thickness_px"] * _PT_PER_PX,
            capthick=_ERROR_BAR["thickness_px"] * _PT_PER_PX,
            capsize=_ERROR_BAR["half_width_px"] * _PT_PER_PX,
        )

    def _scatter(self, trace: Any, where: str, default_colour: str) -> None:
        axes = self._axes_of(trace, where)
        mode = trace.mode or ("lines+markers" if len(_values(trace.x)) < 20 else "lines")  # plotly's default
        parts = set(mode.split("+"))
        if not parts <= {"lines", "markers"} or not parts:
            raise UnsupportedFigure(f"{where}: mode {mode!r}; only lines, markers or lines+markers")
        dash = trace.line.dash or "solid"
        if dash not in _DASHES:
            raise UnsupportedFigure(f"{where}.line.dash {dash!r}; supported: {', '.join(_DASHES)}")
        line_colour = _colour(trace.line.color or default_colour, f"{where}.line.color")
        marker_colour = trace.marker.color if trace.marker.color is not None else trace.line.color or default_colour
        if not isinstance(marker_colour, str):
            raise UnsupportedFigure(f"{where}.marker.color: one colour per point is not drawn")
        x = self._positions("x", _values(trace.x), where)
        y = self._positions("y", _values(trace.y), where)
        (line,) = axes.plot(
            x,
            y,
            zorder=4,
            linestyle=_DASHES[dash] if "lines" in parts else "none",
            linewidth=(trace.line.width if trace.line.width is not None else _LINE_WIDTH_PX) * _PT_PER_PX,
            color=line_colour,
            marker="o" if "markers" in parts else None,
            markersize=(trace.marker.size or _MARKER_SIZE_PX) * _PT_PER_PX,
            markerfacecolor=_colour(marker_colour, f"{where}.marker.color"),
            markeredgewidth=0,
        )
        self.legend_entries.append((line, trace.name or ""))

    # --- axes, title, legend --------------------------------------------------------------------------------

    def _style_axis(self, axes: Axes, letter: Literal["x", "y"], axis: Any, where: str) -> None:
        template = self.template[f"{letter}axis"]
        scale_axis = axes.xaxis if letter == "x" else axes.yaxis
        axis_type = axis.type or "-"
        categories = self.categories[letter] if axes is self.axes else []
        if axis_type not in ("-", "linear", "log", "category"):
            raise UnsupportedFigure(f"{where}.type {axis_type!r}; only linear, log and category")
        if axis.tickmode not in (None, "auto"):
            raise UnsupportedFigure(f"{where}.tickmode {axis.tickmode!r}; only 'auto'")
        if axis.rangemode not in (None, "normal", "tozero"):
            raise UnsupportedFigure(f"{where}.rangemode {axis.rangemode!r}; only normal and tozero")
        if axis.autorange not in (None, True, "reversed"):
            raise UnsupportedFigure(f"{where}.autorange {axis.autorange!r}; only true and 'reversed'")
        set_limits = axes.set_xlim if letter == "x" else axes.set_ylim
        get_limits = axes.get_xlim if letter == "x" else axes.get_ylim
        if categories:
            if axis.tickformat:
                raise UnsupportedFigure(f"{where}.tickformat on a category axis is not drawn")
            scale_axis.set_major_locator(FixedLocator(range(len(categories))))
            scale_axis.set_major_formatter(lambda value, pos: _tick_text(categories[round(value)]) if 0 <= round(value) < len(categories) else "")
            set_limits(-0.5, len(categories) - 0.5)
        elif axis_type == "log":
            if axis.rangemode == "tozero":
                raise UnsupportedFigure(f"{where}: rangemode 'tozero' on a log axis")
            (axes.set_xscale if letter == "x" else axes.set_yscale)("log")
            scale_axis.set_major_locator(LogLocator(base=10))
            scale_axis.set_major_formatter(_TickFormat(axis.tickformat, where, each_on_its_own=True))
            scale_axis.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0)))
            scale_axis.set_minor_formatter(_LogMinorFormat())
        else:
            integers = bool(axis.tickformat) and axis.tickformat.endswith("d")
            scale_axis.set_major_locator(MaxNLocator(nbins=self._tick_count(letter), steps=[1, 2, 5, 10], integer=integers))
            scale_axis.set_major_formatter(_TickFormat(axis.tickformat, where))
            scale_axis.set_minor_formatter(NullFormatter())
            if axis.rangemode == "tozero":
                low, high = get_limits()
                set_limits(min(low, 0.0), max(high, 0.0))
        if axis.autorange == "reversed":
            (axes.invert_xaxis if letter == "x" else axes.invert_yaxis)()
        self._grid_and_zero_line(axes, letter, axis, template, categories, axis_type, where)
        title = axis.title.text
        font_pt = self.font_px * _PT_PER_PX
        if title:
            label = axes.set_xlabel if letter == "x" else axes.set_ylabel
            label(_text(title), parse_math=False, fontsize=self.font_px * _AXIS_TITLE_FONT_FACTOR * _PT_PER_PX, color=self.font_colour)
        axes.tick_params(axis=letter, which="major", labelsize=font_pt, labelcolor=self.font_colour, length=0, pad=6)
        axes.tick_params(axis=letter, which="minor", labelsize=font_pt * 0.75, labelcolor=self.font_colour, length=0, pad=6)
        for spine in axes.spines.values():
            spine.set_visible(False)

    def _tick_count(self, letter: str) -> int:
        """About as many ticks as plotly.js: one per 40 px of a y axis or 80 px of an x axis, 5 to 10."""
        width_px, height_px = self.canvas_figure.get_size_inches() * _DPI
        length_px = width_px - _AXES_FRAME_PX["x"] if letter == "x" else height_px - _AXES_FRAME_PX["y"]
        return int(min(max(length_px / _TICK_SPACING_PX[letter], 4), 9)) + 1

    def _grid_and_zero_line(
        self, axes: Axes, letter: Literal["x", "y"], axis: Any, template: Any, categories: Sequence[str], axis_type: str, where: str
    ) -> None:
        # plotly draws no grid along a category axis that bars stand on (the lines would cross the bars).
        bars_along = any(t.type == "bar" and (t.orientation == "h") == (letter == "y") for t in self.figure.data)
        if axis.showgrid is True or (axis.showgrid is None and not (categories and bars_along)):
            grid_colour = _colour(template.gridcolor or "#eee", f"{where}.gridcolor")
            axes.grid(True, axis=letter, which="both" if axis_type == "log" else "major", color=grid_colour, linewidth=_PT_PER_PX, zorder=0)
            axes.set_axisbelow(True)
        if axis.zeroline is False or categories or axis_type == "log":
            return
        low, high = sorted(axes.get_xlim() if letter == "x" else axes.get_ylim())
        if not low <= 0 <= high:
            return
        colour = _colour(axis.zerolinecolor or template.zerolinecolor or "#444", f"{where}.zerolinecolor")
        width = (axis.zerolinewidth or template.zerolinewidth or 1) * _PT_PER_PX
        draw = axes.axvline if letter == "x" else axes.axhline
        draw(0, color=colour, linewidth=width, zorder=2.5)

    def _title(self) -> None:
        title = self.layout.title.text
        if title:
            x = self.layout.title.x if self.layout.title.x is not None else (self.template.title.x or 0.5)
            self.canvas_figure.suptitle(
                _text(title),
                x=x,
                parse_math=False,
                ha="left" if x < 0.5 else "center",
                fontsize=self.font_px * _TITLE_FONT_FACTOR * _PT_PER_PX,
                color=self.font_colour,
            )

    def _legend(self, traces: Sequence[Any]) -> None:
        shown = [(handle, label) for (handle, label), trace in zip(self.legend_entries, traces) if trace.showlegend is not False]
        if self.layout.showlegend is False or (self.layout.showlegend is None and len(shown) < 2):
            return
        legend = self.layout.legend
        if legend.orientation not in (None, "v", "h"):
            raise UnsupportedFigure(f"layout.legend.orientation {legend.orientation!r}; only 'v' and 'h'")
        font_pt = (legend.font.size or self.font_px) * _PT_PER_PX
        handles = [h for h, _ in shown]
        labels = [_text(label) for _, label in shown]
        if legend.orientation == "h":
            below = legend.y is None or legend.y < 0.5
            place: Literal["outside lower left", "outside upper left", "outside right upper"]
            place, columns = ("outside lower left" if below else "outside upper left"), len(shown)
        else:
            place, columns = "outside right upper", 1
        drawn = self.canvas_figure.legend(
            handles, labels, loc=place, ncols=columns, fontsize=font_pt, frameon=False, labelcolor=self.font_colour, handlelength=2.2
        )
        for text in drawn.get_texts():
            text.set_parse_math(False)

    def _turn_crowded_labels(self) -> None:
        """Category labels that would overlap are turned 30 degrees, as plotly does."""
        if not self.categories["x"]:
            return
        canvas = self.canvas_figure.canvas
        assert isinstance(canvas, FigureCanvasAgg)  # attached in __init__
        renderer = canvas.get_renderer()
        self.canvas_figure.draw_without_rendering()
        boxes = [label.get_window_extent(renderer) for label in self.axes.get_xticklabels() if label.get_text()]
        if any(a.x1 > b.x0 for a, b in itertools.pairwise(boxes)):
            for label in self.axes.get_xticklabels():
                label.set_rotation(30)
                label.set_horizontalalignment("right")
                label.set_rotation_mode("anchor")
