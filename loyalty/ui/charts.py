"""Chart builders: a DataFrame in, a Plotly figure out. No Streamlit, no queries."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from loyalty.figures import house_layout

TEAL, AMBER, ROSE, SLATE = "#0f766e", "#d97706", "#e11d48", "#64748b"


def compact(value: float, currency: str = "") -> str:
    """A money amount short enough for a metric tile: 133.4k, 2.1M."""
    prefix = f"{currency} " if currency else ""
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e4, "k")):
        if abs(value) >= limit:
            return f"{prefix}{value / (limit if limit != 1e4 else 1e3):,.1f}{suffix}"
    return f"{prefix}{value:,.0f}"


SO_FAR_OPACITY = 0.4


def so_far(monthly: pd.DataFrame) -> tuple[list[str], list[float], list[bool]]:
    """Month labels, bar opacities and completeness: a month still running (``complete``
    False) reads "YYYY-MM (so far)" and is drawn faint, so it does not pass for a fall."""
    complete = [bool(c) for c in monthly["complete"]] if "complete" in monthly else [True] * len(monthly)
    labels = [m if c else f"{m} (so far)" for m, c in zip(monthly["month"], complete)]
    return labels, [1.0 if c else SO_FAR_OPACITY for c in complete], complete


def _month_axis(fig: go.Figure, labels: list[str], *, most: int = 8) -> None:
    """Months as categories (a "(so far)" month, or one month alone, keeps a proper axis), at
    most ``most`` ticks written "Nov / 2026" ("Dec / so far" for a running month), the latest
    month always labelled."""
    step = max(1, -(-len(labels) // most))
    shown = labels[::-1][::step][::-1]

    def words(label: str) -> str:
        month = pd.Timestamp(label[:7] + "-01")
        return f"{month:%b}<br>{'so far' if label.endswith('(so far)') else month.year}"

    fig.update_xaxes(type="category", tickmode="array", tickvals=shown, ticktext=[words(label) for label in shown], tickangle=0)


def _line_with_so_far(fig: go.Figure, x: list[str], y: pd.Series, complete: list[bool], *, name: str, colour: str, yaxis: str = "y") -> None:
    """A line over the complete months, dashed on to a running month."""
    done = [i for i, c in enumerate(complete) if c]
    fig.add_scatter(x=[x[i] for i in done], y=[y.iloc[i] for i in done], name=name, yaxis=yaxis, mode="lines+markers", line_color=colour)
    running = [i for i, c in enumerate(complete) if not c]
    if running:
        tail = done[-1:] + running
        fig.add_scatter(
            x=[x[i] for i in tail],
            y=[y.iloc[i] for i in tail],
            name=f"{name} (so far)",
            yaxis=yaxis,
            mode="lines+markers",
            line={"color": colour, "dash": "dash"},
            marker={"symbol": "circle-open"},
        )


def monthly_revenue(monthly: pd.DataFrame, currency: str) -> go.Figure:
    labels, opacity, complete = so_far(monthly)
    fig = go.Figure()
    fig.add_bar(x=labels, y=monthly["revenue"], name="Revenue", marker_color=TEAL, marker_opacity=opacity)
    _line_with_so_far(fig, labels, monthly["buyers"], complete, name="Buying members", colour=AMBER, yaxis="y2")
    fig.update_layout(yaxis2={"overlaying": "y", "side": "right", "showgrid": False, "title": "members", "rangemode": "tozero"})
    _month_axis(fig, labels)
    return house_layout(fig, "Revenue and buying members per month", yaxis_title=currency)


def monthly_points(monthly: pd.DataFrame) -> go.Figure:
    labels, opacity, _ = so_far(monthly)
    fig = go.Figure()
    fig.add_bar(x=labels, y=monthly["points_earned"] + monthly.get("points_bonus", 0), name="Earned", marker_color=TEAL, marker_opacity=opacity)
    fig.add_bar(x=labels, y=-monthly["points_redeemed"], name="Redeemed", marker_color=AMBER, marker_opacity=opacity)
    fig.add_bar(x=labels, y=-monthly["points_expired"], name="Expired", marker_color=ROSE, marker_opacity=opacity)
    fig.update_layout(barmode="relative")
    _month_axis(fig, labels)
    return house_layout(fig, "Points earned, redeemed and expired per month", yaxis_title="points")


def member_balance(ledger: pd.DataFrame) -> go.Figure:
    ordered = ledger.sort_values("occurred_at")
    fig = go.Figure(go.Scatter(x=ordered["occurred_at"], y=ordered["balance"], mode="lines", line_shape="hv", line_color=TEAL))
    return house_layout(fig, "Points balance over time", yaxis_title="points")


def members_per_tier(tiers: pd.DataFrame, barrier: pd.DataFrame) -> go.Figure:
    fig = go.Figure(go.Bar(x=tiers["name"], y=tiers["members"], name="Members now", marker_color=TEAL, text=tiers["members"], textposition="outside"))
    if not barrier.empty:
        fig.add_bar(x=barrier["tier"], y=barrier["reachable_members"], name="Active members who can reach it", marker_color=AMBER)
    return house_layout(fig, "Members per tier, and who can reach each", yaxis_title="members")


def reward_reach(barrier: pd.DataFrame) -> go.Figure:
    colours = [ROSE if flagged else TEAL for flagged in barrier["barrier"]]
    fig = go.Figure(
        go.Bar(
            y=barrier["reward"],
            x=barrier["reachable_share"] * 100,
            orientation="h",
            marker_color=colours,
            text=[f"{v:.0%}" for v in barrier["reachable_share"]],
            textposition="outside",
        )
    )
    fig.update_layout(yaxis={"autorange": "reversed"}, xaxis={"range": [0, 105], "ticksuffix": "%"}, hovermode="closest")
    fig = house_layout(fig, "Share of active members who can reach each reward within 12 months (red: entry barrier)", yaxis_title="")
    return fig.update_layout(height=max(340, 90 + 26 * len(barrier)))


def budget_burn(campaigns: pd.DataFrame) -> go.Figure:
    capped = campaigns[campaigns["budget_points"].notna()]
    fig = go.Figure()
    fig.add_bar(y=capped["name"], x=capped["budget_points"], name="Budget", orientation="h", marker_color="#cbd5e1")
    fig.add_bar(y=capped["name"], x=capped["points_awarded"], name="Awarded", orientation="h", marker_color=TEAL)
    fig.update_layout(barmode="overlay", hovermode="closest", yaxis={"autorange": "reversed"})
    return house_layout(fig, "Points budget burned per campaign", yaxis_title="")


def cohort_heatmap(matrix: pd.DataFrame, sizes: pd.Series) -> go.Figure:
    labels = [f"{c} ({int(sizes.get(c, 0)):,})" for c in matrix.index]
    fig = go.Figure(
        go.Heatmap(
            z=matrix.to_numpy() * 100,
            x=[f"+{int(a)}" for a in matrix.columns],
            y=labels,
            colorscale="Teal",
            zmin=0,
            zmax=100,
            text=[[("" if pd.isna(v) else f"{v:.0%}") for v in row] for row in matrix.to_numpy()],
            texttemplate="%{text}",
            hovertemplate="cohort %{y}<br>month %{x}<br>%{z:.1f}% bought<extra></extra>",
            colorbar={"title": "%"},
        )
    )
    fig.update_layout(yaxis={"autorange": "reversed", "title": "cohort (first purchase month, size)"}, xaxis_title="months since first purchase")
    return house_layout(fig, "Cohort retention: share of each cohort buying k months later", yaxis_title="").update_layout(
        height=max(360, 60 + 28 * len(matrix)), hovermode="closest"
    )


def retention_curves_chart(curves: pd.DataFrame, by: str = "acquisition_channel") -> go.Figure:
    fig = go.Figure()
    for value, part in curves.groupby(by):
        fig.add_scatter(x=part["age"], y=part["retention"] * 100, mode="lines+markers", name=str(value))
    fig.update_layout(xaxis_title="months since first purchase", yaxis={"ticksuffix": "%", "range": [0, 105]})
    return house_layout(fig, "Retention by acquisition channel", yaxis_title="").update_layout(legend={"orientation": "h", "y": -0.28})


def churn_chart(churn: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    fig.add_scatter(x=churn["period"], y=churn["retention_rate"] * 100, name="Retention", mode="lines+markers", line_color=TEAL)
    fig.add_scatter(x=churn["period"], y=churn["churn_rate"] * 100, name="Churn", mode="lines+markers", line_color=ROSE)
    fig.update_layout(yaxis={"ticksuffix": "%", "range": [0, 100]})
    return house_layout(fig, "Month-on-month retention and churn of active members", yaxis_title="")


def counted_bars(x: pd.Series, counts: pd.Series, title: str, x_title: str, y_title: str, *, colour: str = TEAL) -> go.Figure:
    """A histogram already counted (bins in ``x``, their counts): small to send whatever the data size."""
    fig = go.Figure(go.Bar(x=x, y=counts, marker_color=colour))
    fig.update_layout(xaxis_title=x_title, bargap=0.05, hovermode="closest")
    return house_layout(fig, title, yaxis_title=y_title)


def group_bars(frame: pd.DataFrame, columns: list[str], title: str, yaxis: str = "") -> go.Figure:
    fig = go.Figure()
    for column, colour in zip(columns, (TEAL, AMBER, SLATE)):
        fig.add_bar(x=frame["group"].astype(str), y=frame[column], name=column.replace("_", " "), marker_color=colour)
    return house_layout(fig, title, yaxis_title=yaxis).update_layout(hovermode="closest")


def binned_bars(bins: pd.DataFrame, title: str, x_title: str, y_title: str = "members", *, colour: str = TEAL) -> go.Figure:
    """A histogram counted before drawing: ``bins`` has a lower edge, an upper edge and a count,
    in that column order (``loyalty.insights.analysis.clv_view``'s ``predicted_bins``)."""
    low, high, counts = (bins.iloc[:, i] for i in range(3))
    fig = go.Figure(go.Bar(x=(low + high) / 2, y=counts, width=high - low, marker_color=colour))
    fig.update_layout(xaxis_title=x_title, bargap=0.05, hovermode="closest")
    return house_layout(fig, title, yaxis_title=y_title)


def clv_scatter(sample: pd.DataFrame) -> go.Figure:
    """Historical against predicted CLV for a sample of members (``clv_view``'s ``sample``)."""
    fig = go.Figure(
        go.Scattergl(
            x=sample["historical_clv"],
            y=sample["predicted_clv"],
            mode="markers",
            text=sample["external_id"],
            marker={"color": sample["probability_alive"], "colorscale": "RdYlGn", "cmin": 0, "cmax": 1, "size": 5, "colorbar": {"title": "P(alive)"}},
            hovertemplate="%{text}<br>historical %{x:,.0f}<br>predicted 12 m %{y:,.0f}<extra></extra>",
        )
    )
    fig.update_layout(xaxis_title="historical CLV (spend to date)", hovermode="closest")
    return house_layout(fig, "Predicted CLV (12 months) vs spend to date, by P(alive)", yaxis_title="predicted CLV")


def points_flow(monthly: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    fig.add_bar(x=monthly["month"], y=monthly["earned"], name="Earned", marker_color=TEAL)
    fig.add_bar(x=monthly["month"], y=-monthly["redeemed"], name="Redeemed", marker_color=AMBER)
    fig.add_bar(x=monthly["month"], y=-monthly["expired"], name="Expired", marker_color=ROSE)
    fig.add_scatter(
        x=monthly["month"], y=monthly["redemption_rate"] * 100, name="Redemption rate", yaxis="y2", mode="lines+markers", line_color=SLATE
    )
    # An explicit range with head room: with one month, autorange put the single marker on the top edge.
    top = float(pd.to_numeric(monthly["redemption_rate"], errors="coerce").fillna(0).max() if len(monthly) else 0.0) * 100
    fig.update_layout(
        barmode="relative",
        yaxis2={"overlaying": "y", "side": "right", "ticksuffix": "%", "showgrid": False, "tickmode": "auto", "tickformat": ".0f"}
        | {"range": [0, top * 1.25 if top > 0 else 100]},
    )
    _month_axis(fig, [str(m) for m in monthly["month"]])
    return house_layout(fig, "Points earned vs redeemed vs expired, and the redemption rate", yaxis_title="points")


def nps_chart(monthly: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    # The line sits on the overlaying axis so it is drawn above the bars.
    fig.add_bar(x=monthly["month"], y=monthly["answers"], name="Answers", marker_color="#cbd5e1")
    fig.add_scatter(x=monthly["month"], y=monthly["nps"], name="NPS", mode="lines+markers", line_color=TEAL, yaxis="y2")
    fig.update_layout(yaxis2={"overlaying": "y", "side": "right", "showgrid": False, "range": [-100, 100], "dtick": 25, "title": "NPS"})
    _month_axis(fig, [str(m) for m in monthly["month"]])
    return house_layout(fig, "Net Promoter Score per month (% promoters 9-10 minus % detractors 0-6)", yaxis_title="answers")


def rfm_heatmap(cells: pd.DataFrame) -> go.Figure:
    """Recency score (rows, 5 = most recent) by frequency score (columns), members per cell."""
    grid = cells.pivot_table(index="r_score", columns="f_score", values="members", aggfunc="sum").reindex(
        index=[5, 4, 3, 2, 1], columns=[1, 2, 3, 4, 5]
    )
    names = cells.drop_duplicates(["r_score", "f_score"]).set_index(["r_score", "f_score"])["segment"]
    text = [[f"{names.get((r, f), '')}<br>{0 if pd.isna(grid.loc[r, f]) else int(grid.loc[r, f]):,}" for f in grid.columns] for r in grid.index]
    fig = go.Figure(
        go.Heatmap(
            z=grid.to_numpy(),
            x=[f"F{f}" for f in grid.columns],
            y=[f"R{r}" for r in grid.index],
            text=text,
            texttemplate="%{text}",
            colorscale="Teal",
            hovertemplate="%{y} %{x}<br>%{z} members<extra></extra>",
        )
    )
    fig.update_layout(xaxis_title="frequency score (5 = most purchases)", yaxis_title="recency score (5 = most recent)", hovermode="closest")
    return house_layout(fig, "RFM grid: members per recency x frequency cell", yaxis_title="").update_layout(height=460)


def uplift_chart(summary: dict) -> go.Figure:
    """Each campaign's incremental revenue with its 95 % interval; the zero line is "no effect"."""
    rows = [c for c in summary["campaigns"] if c["incremental_revenue"] is not None]
    names = [c["campaign"] for c in rows]
    centre = [c["incremental_revenue"] for c in rows]
    fig = go.Figure(
        go.Scatter(
            x=centre,
            y=names,
            mode="markers",
            marker={"size": 10, "color": [SLATE if c["underpowered"] else (TEAL if c["incremental_revenue"] > 0 else ROSE) for c in rows]},
            error_x={
                "type": "data",
                "symmetric": False,
                "array": [(c["ci_high"] - c["incremental_revenue"]) if c["ci_high"] is not None else 0 for c in rows],
                "arrayminus": [(c["incremental_revenue"] - c["ci_low"]) if c["ci_low"] is not None else 0 for c in rows],
                "color": SLATE,
            },
            name="Incremental revenue (95 % interval)",
            showlegend=False,
        )
    )
    fig.add_vline(x=0, line_dash="dot", line_color=SLATE)
    fig.update_yaxes(type="category", autorange="reversed", automargin=True)
    fig.update_layout(height=max(220, 70 + 45 * len(rows)))
    return house_layout(fig, "Incremental revenue against the holdout, with its 95 % interval (grey: cannot tell)", yaxis_title="")


def challenge_completions(weekly: pd.DataFrame) -> go.Figure:
    """Completions per week, a bar per challenge (``week, challenge, completions``)."""
    fig = go.Figure()
    for name, rows in weekly.groupby("challenge", sort=False):
        fig.add_bar(x=rows["week"], y=rows["completions"], name=str(name))
    most = int(weekly.groupby("week")["completions"].sum().max())
    fig.update_layout(barmode="stack", xaxis={"type": "category"}, bargap=0.5, yaxis={"tick0": 0, "dtick": max(1, -(-most // 5))})
    return house_layout(fig, "Completions per week (taken back ones left out)", yaxis_title="completions")


def messages_per_day(daily: pd.DataFrame) -> go.Figure:
    """Messages queued or suppressed per day, stacked by kind (``day, kind, messages``)."""
    fig = go.Figure()
    for kind, rows in daily.groupby("kind", sort=True):
        fig.add_bar(x=rows["day"], y=rows["messages"], name=str(kind).replace("_", " "))
    # The days in the frame's order (oldest first): by default Plotly orders categories as the traces
    # bring them, so a day with a kind no earlier day had came first.
    fig.update_layout(barmode="stack", xaxis={"type": "category", "categoryorder": "array", "categoryarray": list(daily["day"].unique())}, bargap=0.5)
    return house_layout(fig, "Messages per day by kind (all statuses)", yaxis_title="messages")


def referrals_per_month(monthly: pd.DataFrame) -> go.Figure:
    """Members referred per month (bars) and the referral conversion (line, right axis), from the monthly snapshots."""
    months = [f"{m:%b %Y}" for m in pd.to_datetime(monthly["month"])]
    fig = go.Figure(go.Bar(x=months, y=monthly["referrals"], name="Members referred", marker_color=TEAL))
    fig.add_scatter(x=months, y=monthly["referral_conversion"] * 100, name="Conversion", yaxis="y2", mode="lines+markers", line_color=AMBER)
    fig.update_layout(
        xaxis={"type": "category"}, yaxis2={"overlaying": "y", "side": "right", "ticksuffix": "%", "rangemode": "tozero", "showgrid": False}
    )
    return house_layout(fig, "Members referred per month, and the share whose first purchase paid the bonuses", yaxis_title="members")
