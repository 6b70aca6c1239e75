"""The KPI catalogue: every programme metric defined once, in words and in code.

Each :class:`Metric` carries its name, label, definition, unit, display format, the
direction that means better, and the Polars expression that computes it from one of
two per-member tables built for a period ``[start, end)`` (UTC days, ``end``
exclusive):

* the **member table** (:func:`member_table`): one row per member, with their
  purchases, revenue and purchase days in the period, whether they were active in the
  previous period, their spend to date, whether they joined in the period, their NPS
  answers in the period and (on request) their predicted CLV;
* the **points table** (:func:`loyalty.analytics.data.ledger_totals`): points
  earned, redeemed, returned and expired in the period and over the trailing 12
  months, and the balance at ``end``; one row per member, or a single row of totals
  when no split is asked for (the fast path: no per-member read of the ledger).

A metric is a ratio of sums or a sum over the rows of its table, so the same
expression gives the overall number, and, after a join with a member -> group table,
the number per segment, tier or acquisition channel. The ``role`` expression of a
metric says which members are behind the number and how (retained or lost, promoter
or detractor...), for drill-down.

The previous period of ``[start, end)`` is the same number of calendar months before
it when both dates are the first of a month (January for February, the previous
quarter for a quarter), and otherwise the same number of days.

Definitions (the ``definition`` of each metric, repeated in :data:`METRICS`)
------------------------------------------------------------------------------
Refunded purchases never count. "Active" = at least one purchase in the period.
See :data:`METRICS` for the exact words; the code below is the reference.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd
import polars as pl
from sqlalchemy import func
from sqlmodel import Session, select

from db.models import Purchase, utcnow
from loyalty.analytics.arrays import align, member_arrays
from loyalty.analytics.data import (
    Reader,
    ledger_totals,
    ledger_totals_for_periods,
    load_feedback,
    load_ledger_entries,
    load_members,
    load_purchases,
    load_referrals,
    members_frame,
    purchases_frame,
)
from loyalty.errors import InvalidInput
from loyalty.formatting import money
from loyalty.periods import add_months, check_period, period_bounds, period_info, previous_period

__all__ = [
    "DEFAULT_METRICS",
    "DIMENSIONS",
    "KPI_SUMMARY_METRICS",
    "METRICS",
    "KpiAggregation",
    "KpiInputs",
    "Metric",
    "compute_kpis",
    "get_metric",
    "history_months",
    "kpi_definitions",
    "kpi_history",
    "kpi_summary",
    "kpis_from_inputs",
    "load_kpi_inputs",
    "MEASURES_SCHEMA",
    "member_table",
    "members_behind",
    "PERIOD_RULE",
    "period_bounds",
    "previous_period",
    "purchase_measures",
]

Dimension = Literal["segment", "tier", "channel"]
DIMENSIONS: tuple[Dimension, ...] = ("segment", "tier", "channel")
OVERALL = "overall"
SELECTED = "selected"  # the one group of compute_kpis(only=...)
TRAILING_MONTHS = 12  # breakage looks back this far
LEDGER_PERIODS_AT_ONCE = 4  # per-member ledger totals computed for this many periods at a time
# History (analyze history, the snapshot's backfill) goes back at most ten years from the
# first purchase, unless a first month is given.
HISTORY_MONTHS_MAX = 120
# Member columns every split (tier, channel, segment rules) may need.
SPLIT_MEMBER_COLUMNS = ("member_id", "joined_on", "acquisition_channel", "tier", "city", "marketing_consent")
CLV_TIME_UNIT = "week"
CLV_HORIZON_MONTHS = 12
PROMOTER_MIN, DETRACTOR_MAX = 9, 6  # NPS: 9-10 promoters, 0-6 detractors


# --- periods --------------------------------------------------------------------------------


# --- the catalogue -----------------------------------------------------------------------------


def _ratio(numerator: pl.Expr, denominator: pl.Expr) -> pl.Expr:
    """``numerator / denominator``, null when the denominator is 0 (the metric is undefined)."""
    return pl.when(denominator > 0).then(numerator / denominator)


def _count_where(condition: pl.Expr) -> pl.Expr:
    return condition.cast(pl.Int64).sum()


def _revenue_per_member_where(condition: pl.Expr) -> pl.Expr:
    """Revenue of the period / active members, over the active members meeting ``condition``."""
    chosen = pl.col("active") & condition
    return _ratio(pl.col("revenue").filter(chosen).sum(), _count_where(chosen))


def _referral_role() -> pl.Expr:
    return pl.when(pl.col("referred_in_period")).then(pl.when(pl.col("referral_paid")).then(pl.lit("paid")).otherwise(pl.lit("pending")))


def _count(column: str) -> pl.Expr:
    return pl.col(column).cast(pl.Int64).sum()


@dataclass(frozen=True)
class Metric:
    """One KPI: what it means, how it is shown, and how it is computed.

    Attributes
    ----------
    name
        Stable identifier (KPI targets, snapshots and the CLI use it).
    label, definition
        What a loyalty manager reads.
    unit
        ``share`` (0-1), ``members``, ``money``, ``purchases``, ``points`` or ``score``.
    format
        Python format spec for display, e.g. ``".1%"``.
    direction
        ``"up"`` when a higher value is better, ``"down"`` when lower is better.
    table
        ``"members"`` or ``"points"``: the per-member table it aggregates.
    aggregate
        Builds the Polars expression giving the metric's value over that table's rows.
    role
        Builds the expression naming each member's part in the number (null: not in it).
    columns
        The table columns worth showing next to the members behind the number.
    needs
        Inputs beyond the period's purchases: ``history`` (every purchase before the
        period end), ``members``, ``feedback``, ``model`` (the CLV fit).
    """

    name: str
    label: str
    definition: str
    unit: str
    format: str
    direction: Literal["up", "down"]
    table: Literal["members", "points"]
    aggregate: Callable[[], pl.Expr]
    role: Callable[[], pl.Expr]
    columns: tuple[str, ...] = ()
    needs: frozenset[str] = field(default_factory=frozenset)

    def display(self, value: float | None, currency: str | None = None) -> str:
        """The value formatted for a tile ("n/a" when undefined); money with its ``currency``
        code when given (``EUR 1,234.50``)."""
        if value is None or math.isnan(value):
            return "n/a"
        if self.unit == "money" and currency:
            return money(value, currency)
        return format(value, self.format)

    def display_change(self, change: float | None, currency: str | None = None) -> str | None:
        """A change between two values, sign first (a tile reads its direction from it):
        ``+1.0 pts`` for a share, ``-EUR 1.52`` for money, ``+152`` for a count."""
        if change is None or math.isnan(change):
            return None
        if self.unit == "share":
            magnitude = f"{abs(change) * 100:.1f} pts"
        elif self.unit == "money" and currency:
            magnitude = money(abs(change), currency)
        else:
            magnitude = format(abs(change), self.format.lstrip("+"))
        if not any(c in "123456789" for c in magnitude.replace(currency or "", "")):
            return magnitude  # rounds to nothing: no direction to show
        return ("-" if change < 0 else "+") + magnitude


def _active_role() -> pl.Expr:
    return pl.when(pl.col("active")).then(pl.lit("active"))


def _retention_role() -> pl.Expr:
    return pl.when(pl.col("active_previous")).then(pl.when(pl.col("active")).then(pl.lit("retained")).otherwise(pl.lit("lost")))


_PERIOD_COLUMNS = ("purchases", "revenue", "purchase_days")

METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric(
            "active_members",
            "Active members",
            "Members with at least one purchase in the period.",
            "members",
            ",.0f",
            "up",
            "members",
            lambda: _count("active"),
            _active_role,
            _PERIOD_COLUMNS,
        ),
        Metric(
            "new_members",
            "New members",
            "Members who joined the programme (joined_at) in the period.",
            "members",
            ",.0f",
            "up",
            "members",
            lambda: _count("joined"),
            lambda: pl.when(pl.col("joined")).then(pl.lit("new")),
            ("joined_on",),
            frozenset({"members"}),
        ),
        Metric(
            "retention_rate",
            "Retention rate",
            "Of the members active in the previous period (the same number of calendar months before, or of days "
            "for other ranges), the share who are active again in this period.",
            "share",
            ".1%",
            "up",
            "members",
            lambda: _ratio(_count("retained"), _count("active_previous")),
            _retention_role,
            _PERIOD_COLUMNS,
        ),
        Metric(
            "churn_rate",
            "Churn rate",
            "1 - retention rate: of the members active in the previous period, the share with no purchase in this one.",
            "share",
            ".1%",
            "down",
            "members",
            lambda: 1.0 - _ratio(_count("retained"), _count("active_previous")),
            _retention_role,
            _PERIOD_COLUMNS,
        ),
        Metric(
            "repeat_purchase_rate",
            "Repeat-purchase rate",
            "Of the members active in the period, the share who bought on at least two different days in it "
            "(several purchases on one UTC day are one visit).",
            "share",
            ".1%",
            "up",
            "members",
            lambda: _ratio((pl.col("purchase_days") >= 2).cast(pl.Int64).sum(), _count("active")),
            lambda: pl.when(pl.col("active")).then(pl.when(pl.col("purchase_days") >= 2).then(pl.lit("repeat")).otherwise(pl.lit("one visit"))),
            _PERIOD_COLUMNS,
        ),
        Metric(
            "average_transaction_value",
            "Average transaction value",
            "Revenue in the period / number of purchases in the period.",
            "money",
            ",.2f",
            "up",
            "members",
            lambda: _ratio(pl.col("revenue").sum(), pl.col("purchases").sum()),
            _active_role,
            _PERIOD_COLUMNS,
        ),
        Metric(
            "purchase_frequency",
            "Purchase frequency",
            "Purchases in the period / active members.",
            "purchases",
            ",.2f",
            "up",
            "members",
            lambda: _ratio(pl.col("purchases").sum(), _count("active")),
            _active_role,
            _PERIOD_COLUMNS,
        ),
        Metric(
            "revenue_per_member",
            "Revenue per active member",
            "Revenue in the period / active members.",
            "money",
            ",.2f",
            "up",
            "members",
            lambda: _ratio(pl.col("revenue").sum(), _count("active")),
            _active_role,
            _PERIOD_COLUMNS,
        ),
        Metric(
            "historical_clv",
            "Historical CLV",
            "Mean spend to date per customer: revenue of all purchases before the period end / members with at "
            "least one purchase before the period end.",
            "money",
            ",.2f",
            "up",
            "members",
            lambda: _ratio(pl.col("revenue_to_date").sum(), _count("customer")),
            lambda: pl.when(pl.col("customer")).then(pl.lit("customer")),
            ("revenue_to_date",),
            frozenset({"history"}),
        ),
        Metric(
            "predicted_clv",
            "Predicted CLV (12 months)",
            "Mean over the members with a purchase before the period end of their predicted spend in the next "
            "12 months (BG/NBD + Gamma-Gamma fitted on the purchases before the period end, weekly, discounted 1 % "
            "a month).",
            "money",
            ",.2f",
            "up",
            "members",
            lambda: pl.col("predicted_clv").mean(),
            lambda: pl.when(pl.col("predicted_clv").is_not_null()).then(pl.lit("customer")),
            ("predicted_clv", "revenue_to_date"),
            frozenset({"history", "model"}),
        ),
        Metric(
            "nps",
            "Net Promoter Score",
            "Among the NPS answers submitted in the period (each answer counts once): % promoters (9-10) minus % detractors (0-6), from -100 to 100.",
            "score",
            "+.0f",
            "up",
            "members",
            lambda: _ratio(100.0 * (pl.col("promoters").sum() - pl.col("detractors").sum()), pl.col("answers").sum()),
            lambda: pl.when(pl.col("answers") > 0).then(
                pl.when(pl.col("last_score") >= PROMOTER_MIN)
                .then(pl.lit("promoter"))
                .when(pl.col("last_score") <= DETRACTOR_MAX)
                .then(pl.lit("detractor"))
                .otherwise(pl.lit("passive"))
            ),
            ("answers", "promoters", "detractors", "last_score"),
            frozenset({"feedback"}),
        ),
        Metric(
            "referrals",
            "Referrals",
            "Members who joined with another member's referral code in the period.",
            "members",
            ",.0f",
            "up",
            "members",
            lambda: _count("referred_in_period"),
            _referral_role,
            ("joined_on", "purchases", "revenue"),
            frozenset({"members", "referrals"}),
        ),
        Metric(
            "referral_conversion",
            "Referral conversion",
            "Of the members referred in the period, the share whose first purchase of at least the minimum amount paid "
            "both referral bonuses by the period end (and was not refunded in full within the return window).",
            "share",
            ".1%",
            "up",
            "members",
            lambda: _ratio(_count_where(pl.col("referred_in_period") & pl.col("referral_paid")), _count("referred_in_period")),
            _referral_role,
            ("joined_on", "purchases", "revenue"),
            frozenset({"members", "referrals"}),
        ),
        Metric(
            "referral_bonus_cost",
            "Referral bonus cost",
            "Referral bonuses paid in the period (the referrer's and the new member's, counted on the new member), "
            "not taken back, x the money value of a point.",
            "money",
            ",.2f",
            "down",
            "members",
            lambda: pl.col("referral_bonus_value").sum(),
            lambda: pl.when(pl.col("referral_bonus_value") > 0).then(pl.lit("paid in the period")),
            ("referral_bonus_value",),
            frozenset({"members", "referrals"}),
        ),
        Metric(
            "referred_revenue_per_member",
            "Revenue per active referred member",
            "Revenue in the period / active members who joined with a referral code before the period end.",
            "money",
            ",.2f",
            "up",
            "members",
            lambda: _revenue_per_member_where(pl.col("referred")),
            lambda: pl.when(pl.col("active") & pl.col("referred")).then(pl.lit("referred")),
            _PERIOD_COLUMNS,
            frozenset({"members", "referrals"}),
        ),
        Metric(
            "unreferred_revenue_per_member",
            "Revenue per active member not referred",
            "Revenue in the period / active members who did not join with a referral code (the comparison for referred members).",
            "money",
            ",.2f",
            "up",
            "members",
            lambda: _revenue_per_member_where(~pl.col("referred")),
            lambda: pl.when(pl.col("active") & ~pl.col("referred")).then(pl.lit("not referred")),
            _PERIOD_COLUMNS,
            frozenset({"members", "referrals"}),
        ),
        Metric(
            "redemption_rate",
            "Redemption rate",
            "Points redeemed in the period, less points returned by redemptions cancelled in the period, / points "
            "earned in the period (earn + bonus entries).",
            "share",
            ".1%",
            "up",
            "points",
            lambda: _ratio(pl.col("redeemed").sum() - pl.col("returned").sum(), pl.col("earned").sum()),
            lambda: pl.when((pl.col("earned") > 0) | (pl.col("redeemed") > 0)).then(
                pl.when(pl.col("redeemed") > pl.col("returned")).then(pl.lit("redeemed")).otherwise(pl.lit("earned only"))
            ),
            ("earned", "redeemed", "returned"),
        ),
        Metric(
            "points_outstanding",
            "Points outstanding",
            "Sum of every ledger entry before the period end: the points members hold then (a liability).",
            "points",
            ",.0f",
            "down",
            "points",
            lambda: pl.col("balance").sum(),
            lambda: pl.when(pl.col("balance") > 0).then(pl.lit("holds points")).when(pl.col("balance") < 0).then(pl.lit("owes points")),
            ("balance",),
        ),
        Metric(
            "points_liability",
            "Points liability",
            "Points outstanding at the period end x the money value of a point (programme setting point_value).",
            "money",
            ",.2f",
            "down",
            "points",
            lambda: pl.col("liability").sum(),
            lambda: pl.when(pl.col("balance") > 0).then(pl.lit("holds points")).when(pl.col("balance") < 0).then(pl.lit("owes points")),
            ("balance", "liability"),
        ),
        Metric(
            "breakage_estimate",
            "Breakage estimate",
            "Of the points that left members' balances in the 12 months before the period end, the share that "
            "expired rather than being redeemed: expired / (expired + redeemed - returned by cancellations). "
            "Applied to points outstanding it estimates how many will never be redeemed.",
            "share",
            ".1%",
            "down",
            "points",
            lambda: _ratio(
                pl.col("trailing_expired").sum(),
                pl.col("trailing_expired").sum() + pl.col("trailing_redeemed").sum() - pl.col("trailing_returned").sum(),
            ),
            lambda: pl.when((pl.col("trailing_expired") > 0) | (pl.col("trailing_redeemed") > 0)).then(
                pl.when(pl.col("trailing_redeemed") == 0)
                .then(pl.lit("expired"))
                .when(pl.col("trailing_expired") == 0)
                .then(pl.lit("redeemed"))
                .otherwise(pl.lit("expired and redeemed"))
            ),
            ("trailing_expired", "trailing_redeemed", "trailing_returned"),
        ),
    )
}

# What `analyze kpis --json` prints, in this order (the contract), then the rest.
KPI_SUMMARY_METRICS = (
    "retention_rate",
    "repeat_purchase_rate",
    "active_members",
    "average_transaction_value",
    "purchase_frequency",
    "nps",
    "redemption_rate",
    "points_outstanding",
)
# Everything that needs no model fit; predicted_clv fits BG/NBD + Gamma-Gamma (seconds
# at a million members) and is computed when asked for by name.
DEFAULT_METRICS = tuple(name for name, m in METRICS.items() if "model" not in m.needs)
_COUNT_METRICS = frozenset({"active_members", "new_members", "points_outstanding", "referrals"})


# How every KPI reads its period; said once on the Goals page and in docs/metrics.md.
PERIOD_RULE = (
    "A KPI is computed over a period [start, end) of whole UTC days, usually a calendar month. Counts and sums "
    "take what happened inside the period; retention compares with the period before it (the previous calendar "
    "month for a month); points outstanding and liability are balances at the period's end; the breakage estimate "
    f"looks back {TRAILING_MONTHS} months from the period's end. A period that has not ended yet is 'so far'."
)


def kpi_definitions() -> pd.DataFrame:
    """The catalogue as people read it: ``KPI, key, definition, unit, better`` (one row per metric)."""
    return pd.DataFrame(
        [
            {"KPI": m.label, "key": m.name, "definition": m.definition, "unit": m.unit, "better": "higher" if m.direction == "up" else "lower"}
            for m in METRICS.values()
        ]
    )


def get_metric(name: str) -> Metric:
    """The catalogue entry of ``name``."""
    try:
        return METRICS[name]
    except KeyError:
        raise InvalidInput(f"Unknown metric {name!r}; choose one of {', '.join(METRICS)}.") from None


def _metric_names(metrics: Sequence[str] | None) -> list[str]:
    if metrics is None:
        return list(DEFAULT_METRICS)
    names = list(dict.fromkeys(metrics))
    for name in names:
        get_metric(name)
    return names


# --- the per-member tables -------------------------------------------------------------------------


MEASURES_SCHEMA = {
    "member_id": pl.Int64,
    "purchases": pl.Int64,
    "revenue": pl.Float64,
    "purchase_days": pl.Int64,
    "active_previous": pl.Boolean,
    "revenue_to_date": pl.Float64,
    "customer": pl.Boolean,
}


MEASURE_COLUMNS = ("purchases", "revenue", "purchase_days", "active_previous", "revenue_to_date", "customer")


def purchase_measures(purchases: pl.DataFrame | pd.DataFrame, start: date, end: date) -> pl.DataFrame:
    """Each member's purchases in ``[start, end)`` and before it: the aggregation behind the member table.

    Returns
    -------
    polars.DataFrame
        ``member_id`` (sorted, unique) then :data:`MEASURE_COLUMNS`: ``purchases`` and
        ``revenue`` in the period, ``purchase_days`` (distinct UTC days with a purchase in
        it), ``active_previous`` (a purchase in the previous period), ``revenue_to_date``
        and ``customer`` (a purchase before ``end``). Money is added exactly
        (:meth:`~loyalty.analytics.arrays.MemberArrays.money_sum`). Members may appear with
        nothing bought (all zero); the Spark engine
        (:func:`loyalty.analytics.spark.spark_purchase_measures`) gives the same figures.
    """
    check_period(start, end)
    previous_start, _ = previous_period(start, end)
    frame = purchases_frame(purchases)
    epoch = date(1970, 1, 1)
    first_day, previous_day, end_day = ((d - epoch).days for d in (start, previous_start, end))
    arrays = member_arrays(frame)
    before_end = arrays.day < end_day
    in_period = before_end & (arrays.day >= first_day)
    in_previous = (arrays.day >= previous_day) & (arrays.day < first_day)
    day_position, _ = arrays.distinct(arrays.day - first_day, end_day - first_day, rows=in_period)
    return pl.DataFrame(
        {
            "member_id": arrays.member_ids,
            "purchases": arrays.count(in_period),
            "revenue": arrays.money_sum(in_period),
            "purchase_days": np.bincount(day_position, minlength=arrays.size).astype(np.int64),
            "active_previous": arrays.count(in_previous) > 0,
            "revenue_to_date": arrays.money_sum(before_end),
            "customer": arrays.count(before_end) > 0,
        },
        schema=MEASURES_SCHEMA,
    )


def member_table(
    purchases: pl.DataFrame | pd.DataFrame | None,
    start: date,
    end: date,
    *,
    members: pl.DataFrame | pd.DataFrame | None = None,
    feedback: pl.DataFrame | pd.DataFrame | None = None,
    predicted_clv: pl.DataFrame | None = None,
    referrals: pl.DataFrame | None = None,
    measures: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """One row per member with everything the ``members`` metrics aggregate.

    Parameters
    ----------
    purchases
        Non-refunded purchases before ``end``: at least those since the previous period's
        start; ``revenue_to_date`` and ``customer`` count whatever is given, so pass the
        whole history for ``historical_clv``. None when ``measures`` are given.
    members
        ``member_id`` and ``joined_on``: every member of the programme, one row each (the
        table has exactly these rows). Without it, the rows are the members with a
        purchase or an answer.
    feedback
        NPS answers: ``member_id``, ``score`` and ``submitted_at`` (or ``submitted_on``);
        only those in the period count.
    predicted_clv
        ``member_id, predicted_clv`` from the CLV model.
    referrals
        ``member_id, referred_on, rewarded_on, bonus_value`` by referee (:func:`load_referrals`).
    measures
        :func:`purchase_measures` of these purchases, when an engine computed them already.

    Returns
    -------
    polars.DataFrame
        ``member_id, purchases, revenue, purchase_days, active, active_previous,
        retained, revenue_to_date, customer, joined, answers, promoters, detractors,
        last_score, predicted_clv``.
    """
    check_period(start, end)
    if measures is None:
        if purchases is None:
            raise InvalidInput("member_table needs the purchases or their measures.")
        measures = purchase_measures(purchases, start, end)
    member_ids = measures["member_id"].to_numpy()
    per_position = {name: measures[name].to_numpy() for name in MEASURE_COLUMNS}
    answers = _answers(feedback, start, end) if feedback is not None else None
    if members is not None:
        # The members frame is the universe: one row each, purchases or not.
        member_rows = members_frame(members)
        table = member_rows.select("member_id", *(["joined_on"] if "joined_on" in member_rows.columns else []))
    else:
        ids = member_ids[per_position["customer"]]
        if answers is not None:
            ids = np.union1d(ids, answers["member_id"].to_numpy())
        table = pl.DataFrame({"member_id": ids}, schema={"member_id": pl.Int64})
    # Gather each member's numbers by position (a sorted search, not a join).
    index, found = align(member_ids, table["member_id"].to_numpy())
    table = (
        table.with_columns(
            # values is empty when nobody bought in the period: everyone gets 0.
            pl.Series(name, np.where(found, values[index], values.dtype.type(0)) if len(values) else np.zeros(len(found), values.dtype))
            for name, values in per_position.items()
        )
        .with_columns(active=pl.col("purchases") > 0)
        .with_columns(retained=pl.col("active") & pl.col("active_previous"))
    )
    if "joined_on" in table.columns:
        table = table.with_columns(joined=((pl.col("joined_on") >= start) & (pl.col("joined_on") < end)).fill_null(False))
    else:
        table = table.with_columns(joined_on=pl.lit(None, dtype=pl.Date), joined=pl.lit(False))
    if answers is not None:
        table = table.join(answers, on="member_id", how="left", maintain_order="left")
    else:
        table = table.with_columns(
            answers=pl.lit(None, pl.Int64), promoters=pl.lit(None, pl.Int64), detractors=pl.lit(None, pl.Int64), last_score=pl.lit(None, pl.Int64)
        )
    table = table.with_columns(pl.col("answers", "promoters", "detractors").fill_null(0))
    if predicted_clv is not None:
        table = table.join(predicted_clv.select("member_id", "predicted_clv"), on="member_id", how="left", maintain_order="left")
    else:
        table = table.with_columns(predicted_clv=pl.lit(None, dtype=pl.Float64))
    table = _with_referrals(table, referrals, start, end)
    return table if table["member_id"].is_sorted() else table.sort("member_id")


def _with_referrals(table: pl.DataFrame, referrals: pl.DataFrame | None, start: date, end: date) -> pl.DataFrame:
    """``referred`` (joined with a code before ``end``), ``referred_in_period``, ``referral_paid`` (its bonuses
    paid by ``end`` and not taken back) and ``referral_bonus_value`` (paid in the period)."""
    if referrals is None:
        return table.with_columns(
            referred=pl.lit(False), referred_in_period=pl.lit(False), referral_paid=pl.lit(False), referral_bonus_value=pl.lit(0.0)
        )
    table = table.join(referrals.select("member_id", "referred_on", "rewarded_on", "bonus_value"), on="member_id", how="left", maintain_order="left")
    return table.with_columns(
        referred=(pl.col("referred_on") < end).fill_null(False),
        referred_in_period=((pl.col("referred_on") >= start) & (pl.col("referred_on") < end)).fill_null(False),
        referral_paid=(pl.col("rewarded_on") < end).fill_null(False),
        referral_bonus_value=pl.when((pl.col("rewarded_on") >= start) & (pl.col("rewarded_on") < end)).then(pl.col("bonus_value")).otherwise(0.0),
    ).drop("referred_on", "rewarded_on", "bonus_value")


def _answers(feedback: pl.DataFrame | pd.DataFrame, start: date, end: date) -> pl.DataFrame:
    frame = feedback if isinstance(feedback, pl.DataFrame) else pl.from_pandas(feedback)
    if "submitted_on" not in frame.columns:
        if "submitted_at" not in frame.columns:
            raise InvalidInput("The feedback frame needs submitted_at (or submitted_on); load it with load_feedback().")
        at = frame.schema["submitted_at"]
        column = pl.col("submitted_at")
        if isinstance(at, pl.Datetime) and at.time_zone is not None:
            column = column.dt.convert_time_zone("UTC")
        frame = frame.with_columns(submitted_on=column.dt.date(), order=column)
    else:
        frame = frame.with_columns(order=pl.col("submitted_on"))
    frame = frame.filter((pl.col("submitted_on") >= start) & (pl.col("submitted_on") < end))
    if frame.filter((pl.col("score") < 0) | (pl.col("score") > 10)).height:
        raise InvalidInput("NPS scores run from 0 to 10; fix the answers outside that range.")
    return (
        frame.sort("order")
        .group_by("member_id")
        .agg(
            answers=pl.len().cast(pl.Int64),
            promoters=(pl.col("score") >= PROMOTER_MIN).cast(pl.Int64).sum(),
            detractors=(pl.col("score") <= DETRACTOR_MAX).cast(pl.Int64).sum(),
            last_score=pl.col("score").last().cast(pl.Int64),
        )
    )


def _points_table(ledger: pl.DataFrame, point_value: float) -> pl.DataFrame:
    return ledger.with_columns(liability=pl.col("balance").cast(pl.Float64) * point_value)


# --- loading ---------------------------------------------------------------------------------------


@dataclass
class KpiInputs:
    """Everything :func:`kpis_from_inputs` needs for one period, already in memory."""

    start: date
    end: date
    purchases: pl.DataFrame | None  # None when an engine gave the measures instead
    ledger: pl.DataFrame | None
    point_value: float
    members: pl.DataFrame | None = None
    feedback: pl.DataFrame | None = None
    predicted_clv: pl.DataFrame | None = None
    referrals: pl.DataFrame | None = None
    groups: pl.DataFrame | None = None  # member_id, dimension_value
    dimension: str = OVERALL
    measures: pl.DataFrame | None = None  # purchase_measures() of the purchases, from another engine


class KpiAggregation(Protocol):
    """Another engine's aggregation of the two large tables (the Spark engine,
    :mod:`loyalty.analytics.spark`): the same figures as :func:`purchase_measures` and
    :func:`~loyalty.analytics.data.ledger_totals` (overall), from which the catalogue's own
    expressions compute the KPIs."""

    def purchase_measures(self, session: Session, start: date, end: date, *, since: date | None) -> pl.DataFrame:
        """:func:`purchase_measures` of the purchases since ``since`` (None: all) before ``end``."""
        ...

    def ledger_totals(self, session: Session, start: date, end: date, *, trailing_start: date) -> pl.DataFrame:
        """:func:`~loyalty.analytics.data.ledger_totals` of the period, one row of totals."""
        ...

    def member_ledger_totals(self, session: Session, start: date, end: date, *, trailing_start: date) -> pl.DataFrame:
        """The same totals per member, as :func:`~loyalty.analytics.data.ledger_totals_for_periods` gives them."""
        ...

    def rfm_measures(self, session: Session, as_of: date) -> pl.DataFrame:
        """:func:`~loyalty.analytics.rfm.rfm_measures` of every purchase up to ``as_of`` (what segment rules read)."""
        ...


def _needs(names: Sequence[str]) -> set[str]:
    return set().union(*(METRICS[n].needs for n in names)) if names else set()


def load_kpi_inputs(
    session: Session,
    start: date,
    end: date,
    *,
    by: Dimension | None = None,
    metrics: Sequence[str] | None = None,
    per_member: bool = False,
    point_value: float | None = None,
    reader: Reader = "auto",
    only: Sequence[int] | None = None,
    aggregation: KpiAggregation | None = None,
) -> KpiInputs:
    """Read what the requested metrics need for ``[start, end)``, and nothing more.

    Purchases since the previous period's start (all before ``end`` when a metric needs
    history); the points ledger summed (per member only when split, ``per_member`` or
    ``only``); members when split or when new members are asked for; NPS answers of the
    period. ``only``: the ids of the members to count (a page's filters), overall only.
    ``aggregation``: another engine sums the purchases and the ledger (overall KPIs only).
    """
    check_period(start, end)
    if by is not None and by not in DIMENSIONS:
        raise InvalidInput(f"Split KPIs by one of {', '.join(DIMENSIONS)}, not {by!r}.")
    if by is not None and only is not None:
        raise InvalidInput("KPIs of chosen members are overall numbers: do not split them too.")
    per_member = per_member or only is not None
    names = _metric_names(metrics)
    needs = _needs(names)
    if aggregation is not None and (by is not None or per_member or "model" in needs):
        raise InvalidInput("The Spark engine computes the overall KPIs; split them, list members or predict CLV with the default engine.")
    if point_value is None:
        from loyalty.settings import get_settings

        point_value = get_settings(session).point_value
    previous_start, _ = previous_period(start, end)
    history = "history" in needs or by == "segment"
    since = None if history else previous_start
    purchases = measures = None
    if aggregation is None:
        purchases = load_purchases(session, start=since, end=end, reader=reader)
    else:
        measures = aggregation.purchase_measures(session, start, end, since=since)
    if any(METRICS[n].table == "points" for n in names):
        trailing = add_months(end, -TRAILING_MONTHS)
        if aggregation is None:
            ledger = ledger_totals(session, start, end, trailing_start=trailing, by_member=by is not None or per_member, reader=reader)
        else:
            ledger = aggregation.ledger_totals(session, start, end, trailing_start=trailing)
    else:
        ledger = None
    members = None
    if by is not None or "members" in needs or per_member:
        columns = ["member_id", "joined_on"]
        if by == "tier":
            columns.append("tier")
        elif by == "channel":
            columns.append("acquisition_channel")
        elif by == "segment":
            columns = list(SPLIT_MEMBER_COLUMNS)
        if per_member:
            columns.append("external_id")
        members = load_members(session, columns=columns, reader=reader)
    feedback = load_feedback(session, start=start, end=end, reader=reader) if "feedback" in needs else None
    predicted = _predicted_clv(purchases, end) if purchases is not None and "model" in needs else None
    referrals = load_referrals(session, point_value=float(point_value), reader=reader) if "referrals" in needs else None
    groups = _groups(session, by, members, purchases, end)
    if only is not None:  # one group of the chosen members: the KPIs over them alone
        # Member id -1 matches no row: the group exists even when the filters chose nobody,
        # and then reads as the metrics over nobody (0 for a count, none for a ratio).
        chosen = np.concatenate([np.asarray(only, dtype=np.int64), np.array([-1], dtype=np.int64)])
        groups = pl.DataFrame({"member_id": chosen, "dimension_value": SELECTED}, schema={"member_id": pl.Int64, "dimension_value": pl.String})
    return KpiInputs(
        start=start,
        end=end,
        purchases=purchases,
        ledger=ledger,
        point_value=float(point_value),
        members=members,
        feedback=feedback,
        predicted_clv=predicted,
        referrals=referrals,
        groups=groups,
        dimension=by or OVERALL,
        measures=measures,
    )


def _groups(
    session: Session,
    by: Dimension | None,
    members: pl.DataFrame | None,
    purchases: pl.DataFrame | None,
    end: date,
    *,
    rfm: pl.DataFrame | None = None,
) -> pl.DataFrame | None:
    """``member_id, dimension_value`` of a split (segments as of the period's last day), None overall.

    ``rfm``: the members' RFM measures as of that day, when another engine computed them
    (then ``purchases`` may be None)."""
    if by == "tier":
        assert members is not None  # loaded for a tier or channel split
        return members.select("member_id", dimension_value="tier")
    if by == "channel":
        assert members is not None
        return members.select("member_id", dimension_value="acquisition_channel")
    if by == "segment":
        from loyalty.analytics.segments import segment_memberships

        assert purchases is not None or rfm is not None  # read or measured for a segment split
        return segment_memberships(session, as_of=end - timedelta(days=1), members=members, purchases=purchases, rfm=rfm).rename(
            {"segment": "dimension_value"}
        )
    return None


def _predicted_clv(purchases: pl.DataFrame, end: date) -> pl.DataFrame | None:
    """Per-member 12-month predicted CLV, or None when there is too little data to fit."""
    from loyalty.analytics.clv import clv_table, fit_clv, summary_data

    summary = summary_data(purchases, end - timedelta(days=1), CLV_TIME_UNIT)
    try:
        model = fit_clv(summary, CLV_TIME_UNIT)
    except InvalidInput:
        return None
    return clv_table(summary, model, horizon_months=CLV_HORIZON_MONTHS).select("member_id", "predicted_clv")


# --- computing ---------------------------------------------------------------------------------------


def _tables(inputs: KpiInputs) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    members = member_table(
        inputs.purchases,
        inputs.start,
        inputs.end,
        members=inputs.members,
        feedback=inputs.feedback,
        predicted_clv=inputs.predicted_clv,
        referrals=inputs.referrals,
        measures=inputs.measures,
    )
    points = _points_table(inputs.ledger, inputs.point_value) if inputs.ledger is not None else None
    return members, points


def kpis_from_inputs(
    inputs: KpiInputs, metrics: Sequence[str] | None = None, *, tables: tuple[pl.DataFrame, pl.DataFrame | None] | None = None
) -> pl.DataFrame:
    """The KPI values from loaded inputs: ``metric, dimension, dimension_value, value``.

    Overall (``dimension = "overall"``, ``dimension_value = ""``), or one row per metric
    and group when ``inputs.groups`` is set; a group's value is the metric over its
    members only. Undefined values (a ratio over nobody) are null. ``tables``: the
    member and points tables of these inputs when already built (they do not depend on
    the split).
    """
    names = _metric_names(metrics)
    members, points = tables if tables is not None else _tables(inputs)
    by_table: dict[str, list[Metric]] = {"members": [], "points": []}
    for name in names:
        by_table[METRICS[name].table].append(METRICS[name])
    wide: list[pl.DataFrame] = []
    for table_name, table in (("members", members), ("points", points)):
        chosen = by_table[table_name]
        if not chosen:
            continue
        if table is None:
            raise InvalidInput("The points ledger was not loaded; load the inputs with these metrics.")
        expressions = [m.aggregate().alias(m.name) for m in chosen]
        as_float: dict[Any, Any] = {m.name: pl.Float64 for m in chosen}  # polars types the keys as names or selectors
        if inputs.groups is None:
            wide.append(table.select(expressions).cast(as_float).with_columns(dimension_value=pl.lit("")))
        else:
            joined = table.join(inputs.groups, on="member_id", how="inner")
            grouped = joined.group_by("dimension_value").agg(expressions).cast(as_float)
            # A group with no row in this table gets the metric's value over nobody:
            # 0 for a sum, null for a ratio.
            nobody = table.head(0).select(expressions).cast(as_float).row(0, named=True)
            every = inputs.groups.select("dimension_value").unique()
            wide.append(
                every.join(grouped, on="dimension_value", how="left").with_columns(
                    pl.col(name).fill_null(value) for name, value in nobody.items() if value is not None
                )
            )
    if not wide:
        return pl.DataFrame(schema={"metric": pl.String, "dimension": pl.String, "dimension_value": pl.String, "value": pl.Float64})
    combined = wide[0]
    for extra in wide[1:]:
        combined = combined.join(extra, on="dimension_value", how="full", coalesce=True)
    order = {name: i for i, name in enumerate(names)}
    return (
        combined.unpivot(index="dimension_value", on=names, variable_name="metric", value_name="value")
        .with_columns(dimension=pl.lit(inputs.dimension), value=pl.col("value").fill_nan(None))
        .sort(pl.col("metric").replace_strict(order, return_dtype=pl.Int32), "dimension_value")
        .select("metric", "dimension", "dimension_value", "value")
    )


def compute_kpis(
    session: Session,
    start: date,
    end: date,
    *,
    by: Dimension | None = None,
    metrics: Sequence[str] | None = None,
    point_value: float | None = None,
    reader: Reader = "auto",
    only: Sequence[int] | None = None,
    aggregation: KpiAggregation | None = None,
) -> pd.DataFrame:
    """KPIs for the period ``[start, end)`` (UTC days, ``end`` exclusive).

    Parameters
    ----------
    session
        A session on the programme's database.
    start, end
        The period: ``2024-01-01`` to ``2024-02-01`` is January; a quarter or any range works.
    by
        ``None`` for the overall numbers, or ``"segment"`` (each saved segment, as of the
        period's last day; segments may overlap), ``"tier"`` (current tier; ``"(none)"``)
        or ``"channel"`` (acquisition channel).
    metrics
        Names from :data:`METRICS`; default :data:`DEFAULT_METRICS` (all but the
        model-based ``predicted_clv``, which fits the CLV models).
    point_value
        Money value of a point; default the programme setting.
    only
        Member ids: the KPIs over these members alone (a page's tier, channel or segment
        filters), one row per metric with ``dimension_value`` ``"selected"``.
    aggregation
        Another engine's sums of the purchases and the ledger (the Spark engine); overall only.

    Returns
    -------
    pandas.DataFrame
        ``metric, dimension, dimension_value, value``, metrics in catalogue order;
        ``value`` is NaN when undefined (e.g. retention with nobody active before).
    """
    names = _metric_names(metrics)
    inputs = load_kpi_inputs(session, start, end, by=by, metrics=names, point_value=point_value, reader=reader, only=only, aggregation=aggregation)
    return kpis_from_inputs(inputs, names).to_pandas()


def kpis_for_periods(
    session: Session,
    periods: Sequence[tuple[date, date]],
    *,
    dimensions: Sequence[Dimension | None] = (None, *DIMENSIONS),
    point_value: float | None = None,
    reader: Reader = "auto",
    progress: Callable[[int, int], None] | None = None,
    loaded: Callable[[pl.DataFrame, pl.DataFrame], None] | None = None,
    aggregation: KpiAggregation | None = None,
) -> list[pd.DataFrame]:
    """The default KPIs of several periods, overall and by each dimension, from one read.

    What :func:`compute_kpis` gives for each ``(start, end)`` and dimension, but the
    purchases, members, NPS answers and points ledger are read once for all of them
    and cut per period in memory (the nightly snapshot: 3 periods x 4 splits would
    otherwise read the same tables 72 times). One frame per period, splits stacked.

    ``aggregation``: another engine (Spark) sums the purchases and the ledger per member
    and period, and the members' RFM measures for the segment rules; the small tables
    (members, answers, referrals) are read here, and the catalogue's expressions do the
    rest, so the values are the same. ``loaded`` is then not called: nothing large is read.
    """
    if not periods:
        return []
    for start, end in periods:
        check_period(start, end)
    names = list(DEFAULT_METRICS)
    if point_value is None:
        from loyalty.settings import get_settings

        point_value = get_settings(session).point_value
    last_end = max(end for _, end in periods)
    first_start = min(start for start, _ in periods)
    purchases = load_purchases(session, end=last_end, reader=reader) if aggregation is None else None
    members = load_members(session, columns=list(SPLIT_MEMBER_COLUMNS), reader=reader)
    feedback = load_feedback(session, start=first_start, end=last_end, reader=reader)
    referrals = load_referrals(session, point_value=float(point_value), reader=reader)
    entries = load_ledger_entries(session, last_end, reader=reader) if aggregation is None else None
    if loaded and purchases is not None and entries is not None:  # the caller reuses what was read (the nightly job: the Overview's numbers)
        loaded(purchases, entries)
    frames = []

    def ledgers() -> Iterator[pl.DataFrame]:
        # A few periods at a time: each period adds nine columns per member (a backfill of
        # two years at a million members would otherwise hold 32 periods' at once).
        for first in range(0, len(periods), LEDGER_PERIODS_AT_ONCE):
            chunk = [(start, end, add_months(end, -TRAILING_MONTHS)) for start, end in periods[first : first + LEDGER_PERIODS_AT_ONCE]]
            if aggregation is not None:
                yield from (aggregation.member_ledger_totals(session, start, end, trailing_start=trailing) for start, end, trailing in chunk)
            else:
                assert entries is not None  # read above for the default engine
                yield from ledger_totals_for_periods(entries, chunk)

    for done, ((start, end), ledger) in enumerate(zip(periods, ledgers())):
        if progress:
            progress(done, len(periods))
        cut = measures = rfm = None
        if purchases is not None:
            cut = purchases.filter(pl.col("occurred_on") < end) if end < last_end else purchases
        else:
            assert aggregation is not None
            measures = aggregation.purchase_measures(session, start, end, since=None)
            if "segment" in dimensions:
                rfm = aggregation.rfm_measures(session, end - timedelta(days=1))
        answers = feedback.filter(pl.col("submitted_at").dt.date().is_between(start, end, closed="left"))
        overall_ledger = ledger.drop("member_id").sum()
        base = KpiInputs(
            start=start,
            end=end,
            purchases=cut,
            ledger=ledger,
            point_value=float(point_value),
            members=members,
            feedback=answers,
            referrals=referrals,
            measures=measures,
        )
        member_rows = _tables(KpiInputs(**{**base.__dict__, "ledger": None}))[0]
        parts = []
        for by in dimensions:
            groups = _groups(session, by, members, cut, end, rfm=rfm)
            ledger_rows = overall_ledger if by is None else ledger
            inputs = KpiInputs(**{**base.__dict__, "ledger": ledger_rows, "groups": groups, "dimension": by or OVERALL})
            parts.append(kpis_from_inputs(inputs, names, tables=(member_rows, _points_table(ledger_rows, float(point_value)))).to_pandas())
        frames.append(pd.concat(parts, ignore_index=True))
    return frames


def kpi_summary(session: Session, start: date, end: date, *, reader: Reader = "auto", aggregation: KpiAggregation | None = None) -> dict[str, Any]:
    """The overall KPIs as ``analyze kpis --json`` prints them (``aggregation``: see :func:`compute_kpis`).

    Returns
    -------
    dict
        ``{"kpis": {"retention_rate", "repeat_purchase_rate", "active_members",
        "average_transaction_value", "purchase_frequency", "nps", "redemption_rate",
        "points_outstanding", then new_members, churn_rate, revenue_per_member,
        points_liability, breakage_estimate}, "period": {"from", "to"}}``;
        counts are ints, shares 0-1, NPS -100..100, undefined values ``None``.
    """
    frame = compute_kpis(session, start, end, metrics=SUMMARY_NAMES, reader=reader, aggregation=aggregation)
    return {"kpis": _plain_kpis(frame), "period": period_info(start, end, utcnow())}


# What ``analyze kpis`` and ``analyze history`` print: the summary metrics, then the default
# metrics that need no full purchase history (so a period reads only its own purchases and
# those of the period before).
SUMMARY_NAMES = list(KPI_SUMMARY_METRICS) + [n for n in DEFAULT_METRICS if n not in KPI_SUMMARY_METRICS and "history" not in METRICS[n].needs]


def _plain_kpis(frame: pd.DataFrame) -> dict[str, Any]:
    """``{metric: value}`` of :data:`SUMMARY_NAMES` as JSON has them: counts int, undefined None."""
    values = dict(zip(frame["metric"], frame["value"]))
    kpis: dict[str, Any] = {}
    for name in SUMMARY_NAMES:
        value = values.get(name)
        if value is None or math.isnan(value):
            kpis[name] = None
        elif name in _COUNT_METRICS:
            kpis[name] = round(value)
        else:
            kpis[name] = float(value)
    return kpis


def history_months(session: Session, end: date, *, first: date | None = None) -> list[date]:
    """The first day of each month before ``end``, from the month of ``first`` or, by default,
    of the first purchase (at most :data:`HISTORY_MONTHS_MAX` months back); none without purchases."""
    from loyalty.periods import month_start

    if first is None:
        earliest = session.exec(select(func.min(Purchase.occurred_at))).one()
        if earliest is None:
            return []
        month = max(month_start(earliest.date()), add_months(end, -HISTORY_MONTHS_MAX))
    else:
        month = month_start(first)
    months: list[date] = []
    while month < end:
        months.append(month)
        month = add_months(month, 1)
    return months


def kpi_history(session: Session, *, first: date | None = None, last: date | None = None, reader: Reader = "auto") -> dict[str, Any]:
    """The KPIs of every complete month, as ``analyze history --json`` prints them.

    From the month of ``first`` (default: of the first purchase) to the month of ``last``
    (default: the last complete month); each month's values are those of ``analyze kpis``
    for that month (one read of the tables for all of them).

    Returns
    -------
    dict
        ``{"months": ["YYYY-MM", ...], "kpis": {metric: [value per month]}, "period":
        {"from", "to", "complete"}}``; no months when nothing was bought yet.
    """
    from loyalty.periods import last_complete_month, month_start

    now = utcnow()
    # Never a month that has not started (it would read as nobody buying); the running one
    # only when asked for, marked incomplete.
    running_end = add_months(month_start(now.date()), 1)
    end = min(add_months(month_start(last), 1), running_end) if last is not None else last_complete_month(now)[1]
    months = history_months(session, end, first=first)
    if not months:
        return {"months": [], "kpis": {name: [] for name in SUMMARY_NAMES}, "period": None}
    frames = kpis_for_periods(session, [(m, add_months(m, 1)) for m in months], dimensions=(None,), reader=reader)
    rows = [_plain_kpis(frame) for frame in frames]
    return {
        "months": [f"{m:%Y-%m}" for m in months],
        "kpis": {name: [row[name] for row in rows] for name in SUMMARY_NAMES},
        "period": period_info(months[0], end, now),
    }


def members_behind(
    session: Session,
    metric: str,
    start: date,
    end: date,
    dimension: Dimension | None = None,
    value: str | None = None,
    *,
    point_value: float | None = None,
    reader: Reader = "auto",
) -> pd.DataFrame:
    """The members behind a KPI value, for drill-down from a number to people.

    Parameters
    ----------
    metric
        A name from :data:`METRICS`.
    start, end
        The period, as in :func:`compute_kpis`.
    dimension, value
        Restrict to one group of a split (``"tier", "Gold"``); both or neither.

    Returns
    -------
    pandas.DataFrame
        ``member_id, external_id, role`` and the metric's own columns, e.g. for
        ``retention_rate`` the members active in the previous period with role
        ``retained`` or ``lost``; for ``nps`` each member who answered, as
        ``promoter``/``passive``/``detractor`` by their latest answer. Sorted by role
        then member id.
    """
    definition = get_metric(metric)
    if (dimension is None) != (value is None):
        raise InvalidInput("Give both a dimension and its value (e.g. tier and Gold), or neither.")
    inputs = load_kpi_inputs(session, start, end, by=dimension, metrics=[metric], per_member=True, point_value=point_value, reader=reader)
    members, points = _tables(inputs)
    table = members if definition.table == "members" else points
    assert table is not None
    if inputs.groups is not None:
        chosen = inputs.groups.filter(pl.col("dimension_value") == value).select("member_id")
        table = table.join(chosen, on="member_id", how="semi")
    behind = table.with_columns(role=definition.role()).filter(pl.col("role").is_not_null())
    assert inputs.members is not None
    behind = behind.join(inputs.members.select("member_id", "external_id"), on="member_id", how="left")
    columns = ["member_id", "external_id", "role", *[c for c in definition.columns if c in behind.columns]]
    return behind.select(columns).sort("role", "member_id").to_pandas()
