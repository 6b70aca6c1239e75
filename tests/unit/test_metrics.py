"""The KPI catalogue, cohorts, RFM and segment rules on small hand-computed frames.

The programme below is small enough to count on paper. The period is June 2024
(``[2024-06-01, 2024-07-01)``), so the previous period is May 2024.

=========  ============  =========================================================
member     joined        purchases (UTC days; refunds never reach these frames)
=========  ============  =========================================================
1 (A)      2024-01-10    May 10: 50; Jun 5: 100 and 20 (same day); Jun 20: 30
2 (B)      2024-05-20    May 25: 40
3 (C)      2024-06-15    Jun 16: 60; Jul 2: 999 (after the period)
4 (D)      2024-02-01    Mar 1: 80; May 2: 10; Jun 28: 200
5 (E)      2024-06-03    none
=========  ============  =========================================================

June: active A, C, D (3); purchases 5; revenue 410; A bought on 2 days. May active: A,
B, D; retained A, D. NPS answers in June: A 10, A 9, B 7, C 3, D 9 (D's 0 in May and
A's 2 in July do not count): promoters 3, detractors 1, of 5 answers.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from loyalty.analytics.cohorts import churn_over_time, cohort_table, retention_cohorts, retention_curves
from loyalty.analytics.data import purchases_frame
from loyalty.analytics.metrics import (
    DEFAULT_METRICS,
    KPI_SUMMARY_METRICS,
    METRICS,
    KpiInputs,
    get_metric,
    kpis_from_inputs,
    member_table,
    period_bounds,
    previous_period,
)
from loyalty.analytics.rfm import RFM_GRID, RFM_SEGMENTS, rfm_segment_of, rfm_summary, rfm_table
from loyalty.analytics.segments import RULE_KEYS, match_members, validate_rules
from loyalty.errors import InvalidInput

JUNE = (date(2024, 6, 1), date(2024, 7, 1))
A, B, C, D, E = 1, 2, 3, 4, 5


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def purchases() -> pl.DataFrame:
    rows = [
        (A, date(2024, 5, 10), 50.0),
        (A, date(2024, 6, 5), 100.0),
        (A, date(2024, 6, 5), 20.0),
        (A, date(2024, 6, 20), 30.0),
        (B, date(2024, 5, 25), 40.0),
        (C, date(2024, 6, 16), 60.0),
        (C, date(2024, 7, 2), 999.0),
        (D, date(2024, 3, 1), 80.0),
        (D, date(2024, 5, 2), 10.0),
        (D, date(2024, 6, 28), 200.0),
    ]
    return pl.DataFrame(rows, schema={"member_id": pl.Int64, "occurred_on": pl.Date, "amount": pl.Float64}, orient="row")


@pytest.fixture
def members() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "member_id": [A, B, C, D, E],
            "joined_on": [date(2024, 1, 10), date(2024, 5, 20), date(2024, 6, 15), date(2024, 2, 1), date(2024, 6, 3)],
            "acquisition_channel": ["store", "referral", "web", "store", "web"],
            "tier": ["Gold", "(none)", "Silver", "Gold", "(none)"],
            "city": ["Jakarta", "Bandung", "Jakarta", "Medan", "Jakarta"],
            "marketing_consent": [True, False, True, False, False],
        }
    )


@pytest.fixture
def feedback() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "member_id": [A, A, B, C, D, D, A],
            "submitted_at": [
                _utc(2024, 6, 2, 9),
                _utc(2024, 6, 25, 9),
                _utc(2024, 6, 3),
                _utc(2024, 6, 17),
                _utc(2024, 6, 30, 23, 59),
                _utc(2024, 5, 31, 23, 59),
                _utc(2024, 7, 1, 0, 0),
            ],
            "score": [10, 9, 7, 3, 9, 0, 2],
        }
    )


@pytest.fixture
def ledger() -> pl.DataFrame:
    """Per-member points of June, trailing 12 months, and balances at July 1 (see the integration test)."""
    return pl.DataFrame(
        {
            "member_id": [A, B, C, D],
            "earned": [150, 0, 60, 700],
            "redeemed": [100, 0, 0, 150],
            "returned": [0, 0, 0, 150],
            "expired": [0, 0, 0, 0],
            "trailing_redeemed": [100, 40, 0, 150],
            "trailing_returned": [0, 0, 0, 150],
            "trailing_expired": [0, 0, 0, 30],
            "balance": [100, 0, 85, 760],
        }
    )


def _inputs(purchases, members, feedback, ledger, groups=None, dimension="overall") -> KpiInputs:
    start, end = JUNE
    return KpiInputs(
        start=start,
        end=end,
        purchases=purchases,
        ledger=ledger,
        point_value=0.01,
        members=members,
        feedback=feedback,
        groups=groups,
        dimension=dimension,
    )


EXPECTED_JUNE = {
    "active_members": 3.0,
    "new_members": 2.0,
    "retention_rate": 2 / 3,
    "churn_rate": 1 / 3,
    "repeat_purchase_rate": 1 / 3,
    "average_transaction_value": 410 / 5,
    "purchase_frequency": 5 / 3,
    "revenue_per_member": 410 / 3,
    "historical_clv": (200 + 40 + 60 + 290) / 4,
    "nps": 100 * (3 - 1) / 5,
    "redemption_rate": (100 + 150 - 150) / 910,
    "points_outstanding": 945.0,
    "points_liability": 9.45,
    "breakage_estimate": 30 / (30 + 290 - 150),
}


@pytest.mark.parametrize("metric", list(EXPECTED_JUNE), ids=list(EXPECTED_JUNE))
def test_each_metric_matches_the_hand_count_for_june(metric, purchases, members, feedback, ledger) -> None:
    frame = kpis_from_inputs(_inputs(purchases, members, feedback, ledger), [metric])
    assert frame["value"].to_list() == pytest.approx([EXPECTED_JUNE[metric]], rel=1e-12)


def test_the_kpi_frame_has_one_row_per_metric_in_catalogue_order(purchases, members, feedback, ledger) -> None:
    frame = kpis_from_inputs(_inputs(purchases, members, feedback, ledger), list(EXPECTED_JUNE))
    expected = pl.DataFrame(
        {
            "metric": list(EXPECTED_JUNE),
            "dimension": ["overall"] * len(EXPECTED_JUNE),
            "dimension_value": [""] * len(EXPECTED_JUNE),
            "value": list(EXPECTED_JUNE.values()),
        }
    )
    assert_frame_equal(frame, expected, rel_tol=1e-12)


def test_the_member_table_counts_each_member_by_hand(purchases, members, feedback) -> None:
    table = member_table(purchases, *JUNE, members=members, feedback=feedback).select(
        "member_id",
        "purchases",
        "revenue",
        "purchase_days",
        "active",
        "active_previous",
        "retained",
        "revenue_to_date",
        "customer",
        "joined",
        "answers",
        "promoters",
        "detractors",
        "last_score",
    )
    expected = pl.DataFrame(
        {
            "member_id": [A, B, C, D, E],
            "purchases": [3, 0, 1, 1, 0],
            "revenue": [150.0, 0.0, 60.0, 200.0, 0.0],
            "purchase_days": [2, 0, 1, 1, 0],
            "active": [True, False, True, True, False],
            "active_previous": [True, True, False, True, False],
            "retained": [True, False, False, True, False],
            "revenue_to_date": [200.0, 40.0, 60.0, 290.0, 0.0],
            "customer": [True, True, True, True, False],
            "joined": [False, False, True, False, True],
            "answers": [2, 1, 1, 1, 0],
            "promoters": [2, 0, 0, 1, 0],
            "detractors": [0, 0, 1, 0, 0],
            "last_score": [9, 7, 3, 9, None],
        },
        schema_overrides={
            "purchases": pl.Int64,
            "purchase_days": pl.Int64,
            "answers": pl.Int64,
            "promoters": pl.Int64,
            "detractors": pl.Int64,
            "last_score": pl.Int64,
        },
    )
    assert_frame_equal(table, expected)


def test_kpis_split_by_tier_count_each_tier_alone(purchases, members, feedback, ledger) -> None:
    groups = members.select("member_id", dimension_value="tier")
    frame = kpis_from_inputs(
        _inputs(purchases, members, feedback, ledger, groups, "tier"),
        ["active_members", "retention_rate", "average_transaction_value", "points_outstanding"],
    )
    expected = pl.DataFrame(
        {
            "metric": ["active_members"] * 3 + ["retention_rate"] * 3 + ["average_transaction_value"] * 3 + ["points_outstanding"] * 3,
            "dimension": ["tier"] * 12,
            "dimension_value": ["(none)", "Gold", "Silver"] * 4,
            # (none) = B and E; Gold = A and D; Silver = C.
            "value": [0.0, 2.0, 1.0, 0.0, 1.0, None, None, 350 / 4, 60.0, 0.0, 860.0, 85.0],
        }
    )
    assert_frame_equal(frame, expected)


def test_a_group_without_points_entries_has_zero_points_and_no_redemption_rate(purchases, members, ledger) -> None:
    groups = pl.DataFrame({"member_id": [E], "dimension_value": ["newcomers"]})
    frame = kpis_from_inputs(_inputs(purchases, members, None, ledger, groups, "segment"), ["points_outstanding", "redemption_rate"])
    assert frame["value"].to_list() == [0.0, None]


def test_overlapping_segments_each_count_their_own_members(purchases, members, ledger) -> None:
    groups = pl.DataFrame({"member_id": [A, D, A, C], "dimension_value": ["gold", "gold", "jakarta", "jakarta"]})
    frame = kpis_from_inputs(_inputs(purchases, members, None, ledger, groups, "segment"), ["purchase_frequency"])
    assert frame["dimension_value"].to_list() == ["gold", "jakarta"]
    assert frame["value"].to_list() == pytest.approx([4 / 2, 4 / 2])


def test_undefined_ratios_are_null_not_zero() -> None:
    nobody = pl.DataFrame(schema={"member_id": pl.Int64, "occurred_on": pl.Date, "amount": pl.Float64})
    inputs = KpiInputs(start=JUNE[0], end=JUNE[1], purchases=nobody, ledger=None, point_value=0.01)
    frame = kpis_from_inputs(inputs, ["active_members", "retention_rate", "average_transaction_value"])
    assert frame["value"].to_list() == [0.0, None, None]


@pytest.mark.parametrize(
    ("start", "end", "previous"),
    [
        (date(2024, 2, 1), date(2024, 3, 1), (date(2024, 1, 1), date(2024, 2, 1))),
        (date(2024, 4, 1), date(2024, 7, 1), (date(2024, 1, 1), date(2024, 4, 1))),
        (date(2024, 3, 1), date(2024, 3, 31), (date(2024, 1, 31), date(2024, 3, 1))),
        (date(2024, 1, 1), date(2025, 1, 1), (date(2023, 1, 1), date(2024, 1, 1))),
    ],
    ids=[
        "a month follows the previous calendar month",
        "a quarter follows the previous quarter",
        "a custom range follows the same number of days",
        "a year follows the previous year",
    ],
)
def test_the_previous_period(start: date, end: date, previous: tuple[date, date]) -> None:
    assert previous_period(start, end) == previous


@pytest.mark.parametrize(
    ("period", "bounds"),
    [
        ("week", (date(2024, 5, 13), date(2024, 5, 20))),
        ("month", (date(2024, 5, 1), date(2024, 6, 1))),
        ("quarter", (date(2024, 4, 1), date(2024, 7, 1))),
        ("year", (date(2024, 1, 1), date(2025, 1, 1))),
    ],
    ids=["week", "month", "quarter", "year"],
)
def test_period_bounds_hold_the_day(period: str, bounds: tuple[date, date]) -> None:
    assert period_bounds(period, date(2024, 5, 15)) == bounds


def test_an_empty_period_is_refused_with_a_fix() -> None:
    with pytest.raises(InvalidInput, match="end is exclusive"):
        previous_period(date(2024, 6, 1), date(2024, 6, 1))


def test_every_metric_is_fully_described() -> None:
    for name, metric in METRICS.items():
        assert metric.name == name
        assert metric.label and metric.definition.endswith(".")
        assert metric.direction in ("up", "down")
        assert metric.table in ("members", "points")
        assert metric.unit in ("share", "members", "money", "purchases", "points", "score")
    assert set(KPI_SUMMARY_METRICS) <= set(DEFAULT_METRICS)
    assert "predicted_clv" in METRICS and "predicted_clv" not in DEFAULT_METRICS


@pytest.mark.parametrize(
    ("metric", "value", "shown"),
    [
        ("retention_rate", 0.6667, "66.7%"),
        ("nps", 40.0, "+40"),
        ("points_outstanding", 12345.0, "12,345"),
        ("average_transaction_value", None, "n/a"),
    ],
    ids=["share", "score", "points", "undefined"],
)
def test_metric_values_display_in_their_unit(metric: str, value: float | None, shown: str) -> None:
    assert get_metric(metric).display(value) == shown


@pytest.mark.parametrize(
    "metric,change,shown",
    [
        ("retention_rate", 0.0104, "+1.0 pts"),
        ("average_transaction_value", -1.52, "-EUR 1.52"),
        ("nps", 10.0, "+10"),
        ("nps", -4.0, "-4"),
        ("active_members", 152.0, "+152"),
        ("points_liability", float("nan"), None),
    ],
)
def test_a_change_reads_sign_first_in_its_unit(metric: str, change: float, shown: str | None) -> None:
    # A tile takes its arrow from the first character: "EUR -1.52" would read as a rise.
    assert get_metric(metric).display_change(change, "EUR") == shown


def test_money_displays_with_its_currency_when_given() -> None:
    assert get_metric("points_liability").display(558.48, "EUR") == "EUR 558.48"
    assert get_metric("points_liability").display(558.48) == "558.48"


def test_an_unknown_metric_names_the_known_ones() -> None:
    with pytest.raises(InvalidInput, match="retention_rate"):
        get_metric("retension")


@pytest.mark.parametrize(
    ("metric", "roles"),
    [
        ("retention_rate", {A: "retained", B: "lost", D: "retained"}),
        ("repeat_purchase_rate", {A: "repeat", C: "one visit", D: "one visit"}),
        ("new_members", {C: "new", E: "new"}),
        ("nps", {A: "promoter", B: "passive", C: "detractor", D: "promoter"}),
    ],
    ids=["retention: retained and lost", "repeat purchases", "new members", "nps by latest answer"],
)
def test_the_members_behind_a_number(metric: str, roles: dict[int, str], purchases, members, feedback) -> None:
    table = member_table(purchases, *JUNE, members=members, feedback=feedback)
    behind = table.with_columns(role=METRICS[metric].role()).filter(pl.col("role").is_not_null())
    assert dict(zip(behind["member_id"], behind["role"])) == roles


# --- purchases frames --------------------------------------------------------------------------


def test_timestamps_become_utc_days() -> None:
    frame = pd.DataFrame(
        {"member_id": [1, 1], "occurred_at": pd.to_datetime(["2024-06-30 23:30", "2024-07-01 06:00"]).tz_localize("Asia/Jakarta"), "amount": [1, 2]}
    )
    assert purchases_frame(frame)["occurred_on"].to_list() == [date(2024, 6, 30), date(2024, 6, 30)]


def test_a_purchases_frame_without_dates_says_what_is_missing() -> None:
    with pytest.raises(InvalidInput, match=r"occurred_on \(or occurred_at\)"):
        purchases_frame(pl.DataFrame({"member_id": [1], "amount": [1.0]}))


# --- cohorts -------------------------------------------------------------------------------------


def test_retention_cohorts_follow_each_cohort_to_the_last_purchase_month(purchases) -> None:
    assert retention_cohorts(purchases) == {
        "period": "month",
        "cohorts": [
            {"cohort": "2024-03", "size": 1, "retention": [1.0, 0.0, 1.0, 1.0, 0.0]},
            {"cohort": "2024-05", "size": 2, "retention": [1.0, 0.5, 0.0]},
            {"cohort": "2024-06", "size": 1, "retention": [1.0, 1.0]},
        ],
    }


def test_retention_cohorts_stop_at_as_of_and_ignore_later_purchases(purchases) -> None:
    result = retention_cohorts(purchases, as_of=date(2024, 6, 30))
    assert [c["retention"] for c in result["cohorts"]] == [[1.0, 0.0, 1.0, 1.0], [1.0, 0.5], [1.0]]


def test_quarterly_cohorts(purchases) -> None:
    assert retention_cohorts(purchases, period="quarter") == {
        "period": "quarter",
        "cohorts": [{"cohort": "2024-Q1", "size": 1, "retention": [1.0, 1.0, 0.0]}, {"cohort": "2024-Q2", "size": 3, "retention": [1.0, 1 / 3]}],
    }


def test_no_purchases_means_no_cohorts() -> None:
    empty = pl.DataFrame(schema={"member_id": pl.Int64, "occurred_on": pl.Date})
    assert retention_cohorts(empty) == {"period": "month", "cohorts": []}


def test_the_cohort_table_is_long_with_sizes(purchases) -> None:
    table = cohort_table(purchases, as_of=date(2024, 6, 30))
    expected = pl.DataFrame(
        {
            "cohort": ["2024-03"] * 4 + ["2024-05"] * 2 + ["2024-06"],
            "age": [0, 1, 2, 3, 0, 1, 0],
            "size": [1, 1, 1, 1, 2, 2, 1],
            "active": [1, 0, 1, 1, 2, 1, 1],
            "retention": [1.0, 0.0, 1.0, 1.0, 1.0, 0.5, 1.0],
        },
        schema_overrides={"age": pl.Int32},
    )
    assert_frame_equal(table, expected)


def test_retention_curves_weight_cohorts_by_size_per_channel(purchases, members) -> None:
    curves = retention_curves(purchases, members, as_of=date(2024, 6, 30))
    expected = pl.DataFrame(
        {
            # referral: B (May cohort). store: D (March), A (May). web: C (June).
            "acquisition_channel": ["referral", "referral", "store", "store", "store", "store", "web"],
            "age": [0, 1, 0, 1, 2, 3, 0],
            "cohort_members": [1, 1, 2, 2, 1, 1, 1],
            "active": [1, 0, 2, 1, 1, 1, 1],
            "retention": [1.0, 0.0, 1.0, 0.5, 1.0, 1.0, 1.0],
        },
        schema_overrides={"age": pl.Int32},
    )
    assert_frame_equal(curves, expected)


def test_churn_over_time_compares_each_month_with_the_one_before(purchases) -> None:
    churn = churn_over_time(purchases, as_of=date(2024, 6, 30))
    expected = pl.DataFrame(
        {
            "period": ["2024-04", "2024-05", "2024-06"],
            "active": [0, 3, 3],
            "active_previous": [1, 0, 3],
            "retained": [0, 0, 2],
            "retention_rate": [0.0, None, 2 / 3],
            "churn_rate": [1.0, None, 1 / 3],
        }
    )
    assert_frame_equal(churn, expected)


def test_an_unknown_cohort_period_lists_the_known_ones(purchases) -> None:
    with pytest.raises(InvalidInput, match="month, quarter"):
        retention_cohorts(purchases, period="fortnight")


# --- RFM ---------------------------------------------------------------------------------------------


@pytest.fixture
def five_customers() -> pl.DataFrame:
    """Member m last bought 10 (m - 1) days before June 30, 6 - m times in all, spending less as m grows."""
    rows = []
    for member, (recency, count, spend) in enumerate([(0, 5, 500.0), (10, 4, 400.0), (20, 3, 300.0), (30, 2, 20.0), (40, 1, 10.0)], 1):
        last = date(2024, 6, 30).toordinal() - recency
        for k in range(count):
            rows.append((member, date.fromordinal(last - 50 * k), spend / count))
    return pl.DataFrame(rows, schema={"member_id": pl.Int64, "occurred_on": pl.Date, "amount": pl.Float64}, orient="row")


def test_rfm_scores_are_quintiles_and_name_the_segment(five_customers) -> None:
    table = rfm_table(five_customers, date(2024, 6, 30))
    expected = pl.DataFrame(
        {
            "member_id": [1, 2, 3, 4, 5],
            "recency_days": [0, 10, 20, 30, 40],
            "frequency": [5, 4, 3, 2, 1],
            "monetary": [500.0, 400.0, 300.0, 20.0, 10.0],
            "r_score": [5, 4, 3, 2, 1],
            "f_score": [5, 4, 3, 2, 1],
            "m_score": [5, 4, 3, 2, 1],
            "rfm_score": ["555", "444", "333", "222", "111"],
            "segment": ["Champions", "Loyal", "Need attention", "Hibernating", "Lost"],
        },
        schema_overrides={"r_score": pl.Int8, "f_score": pl.Int8, "m_score": pl.Int8},
    )
    assert_frame_equal(table, expected)


def test_rfm_summary_reports_thresholds_and_every_segment(five_customers) -> None:
    summary = rfm_summary(five_customers, date(2024, 6, 30))
    assert list(summary)[:2] == ["thresholds", "segments"]
    # numpy.quantile of 0, 10, 20, 30, 40 at 20/40/60/80 %.
    assert summary["thresholds"]["recency_days"] == pytest.approx([8.0, 16.0, 24.0, 32.0])
    assert summary["thresholds"]["frequency"] == pytest.approx([1.8, 2.6, 3.4, 4.2])
    assert list(summary["segments"]) == list(RFM_SEGMENTS)
    assert summary["segments"]["Champions"] == {"members": 1, "revenue": 500.0}
    assert summary["segments"]["At risk"] == {"members": 0, "revenue": 0.0}
    assert sum(s["members"] for s in summary["segments"].values()) == summary["members"] == 5


def test_a_value_on_a_threshold_falls_in_the_band_below() -> None:
    # Frequencies 1,1,1,1,2: every threshold is 1 except the 80 % one (1.2).
    frame = pl.DataFrame({"member_id": [1, 2, 3, 4, 5, 5], "occurred_on": [date(2024, 6, 1)] * 5 + [date(2024, 6, 2)], "amount": [1.0] * 6})
    table = rfm_table(frame, date(2024, 6, 30))
    assert table["f_score"].to_list() == [1, 1, 1, 1, 5]


@pytest.mark.parametrize(
    ("r", "f", "segment"),
    [(5, 1, "New"), (1, 5, "Can't lose them"), (2, 4, "At risk"), (4, 2, "Potential loyalists"), (3, 1, "About to sleep")],
    ids=[
        "recent single buyer is new",
        "lapsed frequent buyer can't be lost",
        "lapsed regular is at risk",
        "recent occasional buyer is a potential loyalist",
        "fading single buyer is about to sleep",
    ],
)
def test_the_rfm_grid(r: int, f: int, segment: str) -> None:
    assert rfm_segment_of(r, f) == segment


def test_the_rfm_grid_names_only_catalogued_segments() -> None:
    assert {name for row in RFM_GRID for name in row} == set(RFM_SEGMENTS)


# --- segment rules -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ({}, [A, B, C, D, E]),
        ({"acquisition_channel": ["referral"]}, [B]),
        ({"acquisition_channel": "web"}, [C, E]),
        ({"tier": ["Gold", "Platinum"]}, [A, D]),
        ({"tier": ["(none)"]}, [B, E]),
        ({"city": ["Jakarta"], "marketing_consent": True}, [A, C]),
        ({"marketing_consent": False}, [B, D, E]),
        ({"days_since_last_purchase": {"min": 30}}, [B]),
        ({"days_since_last_purchase": {"max": 10}}, [A, D]),
        ({"purchases": {"min": 3}}, [A, D]),
        ({"purchases": {"max": 0}}, [E]),
        ({"spend": {"min": 100, "max": 250}}, [A]),
        ({"joined_on": {"min": "2024-05-01", "max": "2024-06-10"}}, [B, E]),
        ({"rfm_segment": ["Champions", "Loyal"]}, [A, D]),
    ],
    ids=[
        "no rules select everyone",
        "channel list",
        "a single channel string",
        "tiers",
        "members without a tier",
        "city and consent together",
        "no consent",
        "lapsed 30 days or more",
        "bought within 10 days",
        "three purchases or more",
        "never bought",
        "spend range",
        "joined between",
        "rfm segments",
    ],
)
def test_segment_rules_select_members(rules: dict, expected: list[int], purchases, members) -> None:
    ids = match_members(members, rules, purchases=purchases, as_of=date(2024, 6, 30))
    np.testing.assert_array_equal(ids, np.array(expected, dtype=np.int64))


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({"favourite_colour": ["red"]}, "Unknown segment rule.*Supported: acquisition_channel"),
        ({"tier": []}, "non-empty list of names"),
        ({"marketing_consent": "yes"}, "true or false"),
        ({"days_since_last_purchase": 90}, r'"min": \.\.\.'),
        ({"spend": {"min": 10, "max": 5}}, "min 10 above max 5"),
        ({"joined_on": {"min": "01/02/2024"}}, "YYYY-MM-DD"),
        ({"rfm_segment": ["Whales"]}, "Unknown RFM segment"),
    ],
    ids=["unknown key", "empty list", "consent not boolean", "range not an object", "min above max", "date not ISO", "unknown rfm segment"],
)
def test_bad_segment_rules_say_how_to_fix_them(rules: dict, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        validate_rules(rules)


def test_purchase_rules_need_the_purchases(members) -> None:
    with pytest.raises(InvalidInput, match="need the purchases frame"):
        match_members(members, {"spend": {"min": 1}})


def test_every_rule_key_is_documented() -> None:
    from loyalty.analytics import segments

    for key in RULE_KEYS:
        assert key in (segments.__doc__ or "")


def test_the_holdout_needed_tells_the_observed_difference_apart_with_80_percent_power() -> None:
    import math

    import numpy as np
    from scipy import stats

    from loyalty.insights.campaign_results import holdout_needed

    treated, held = np.tile([42.0, 62.0], 2_500), np.tile([40.0, 60.0], 20)  # means 52 and 50, spread about 10
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    d = treated.mean() - held.mean()
    expected = math.ceil(held.var(ddof=1) / ((d / z) ** 2 - treated.var(ddof=1) / len(treated)))
    # With a large treatment group about s0² / (d / 2.8)² = 100 / 0.51 = 196 for d = 2.
    assert holdout_needed(treated, held) == expected and 190 < expected < 220
    assert holdout_needed(treated, treated) is None, "no difference: nothing to detect"
    assert holdout_needed(treated[:3], held) is None or holdout_needed(treated[:3], held) > 0
    assert holdout_needed(np.array([1.0]), held) is None, "one member: no variance"


def test_docs_metrics_states_every_kpi_as_the_catalogue_defines_it() -> None:
    from pathlib import Path

    from loyalty.analytics.metrics import METRICS, PERIOD_RULE

    text = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()
    assert PERIOD_RULE in text
    for name, metric in METRICS.items():
        assert f"| `{name}` | {metric.label} | {metric.definition} |" in text, f"docs/metrics.md is out of date for {name}"


def test_rfm_segment_revenue_does_not_depend_on_the_order_of_the_members():
    """Each engine hands over the same per-member figures in its own order (Polars' threads,
    Spark's partitions); the segments' revenue must come out the same to the last digit."""
    import json

    import numpy as np
    import polars as pl

    from loyalty.analytics.rfm import RFM_MEASURES_SCHEMA, rfm_summary_of_measures

    rng = np.random.default_rng(7)
    n = 50_000
    measures = pl.DataFrame(
        {
            "member_id": np.arange(1, n + 1),
            "recency_days": rng.integers(0, 700, n),
            "frequency": rng.integers(1, 40, n),
            "monetary": np.round(rng.gamma(2.0, 150.0, n), 2),
        },
        schema=RFM_MEASURES_SCHEMA,
    )
    first = json.dumps(rfm_summary_of_measures(measures, None))
    for seed in range(3):
        shuffled = measures.sample(fraction=1.0, shuffle=True, seed=seed)
        assert json.dumps(rfm_summary_of_measures(shuffled, None)) == first
