"""The analytics engine on the real database (SQLite, or PostgreSQL under LOYALTY_TEST_DATABASE_URL).

The programme is the one of ``tests/unit/test_metrics.py``, now written through the
real paths (purchases earn their points through ``add_purchases``; a refund through
``reverse_purchase``) plus ledger, redemption and feedback rows placed at known times.
The period is June 2024; the previous period May 2024.

Points before 2024-07-01, by member (purchases earn 1 point per unit of money):

* A: earns 50 (May) + 100 + 20 + 30 (June); redeems 100 on June 10          -> 100
* B: earns 40 (May); redeems 40 on May 26                                    ->   0
* C: earns 60 (June); an adjustment of +25 on June 20 (July's 999 is later)  ->  85
* D: earns 80 (March), 10 (May), 200 + 500 (June; the 500 purchase is refunded
  later, so it is no sale, but its points stood until then); 30 expire on April 1;
  redeems 150 on June 12, cancelled on June 14 (+150 back)                   -> 760

June: earned 910; redeemed 250, returned 150. Trailing 12 months: expired 30,
redeemed 290, returned 150.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from sqlmodel import Session

from db.bulk import allocate_ids, insert_frame
from db.engine import write_transaction
from db.models import Feedback, LedgerEntry, Member, Redemption, Segment
from loyalty.access.roles import SYSTEM_CLI
from loyalty.analytics.clv import clv_analysis, clv_members
from loyalty.analytics.cohorts import retention_analysis, retention_by_channel
from loyalty.analytics.data import ledger_totals, load_feedback, load_members, load_purchases
from loyalty.analytics.metrics import DEFAULT_METRICS, compute_kpis, kpi_summary, kpis_for_periods, members_behind
from loyalty.analytics.rfm import RFM_SEGMENTS, rfm_analysis, rfm_members
from loyalty.analytics.segments import segment_members
from loyalty.errors import InvalidInput
from loyalty.ledger.entries import reverse_purchase
from loyalty.ledger.purchases import add_purchases
from loyalty.settings import update_settings
from tests.factories import make_member, make_purchase, make_reward, make_tier, utc

JUNE = (date(2024, 6, 1), date(2024, 7, 1))
READERS = pytest.mark.parametrize("reader", ["adbc", "dbapi"], ids=["through ADBC", "through the session's driver"])


@pytest.fixture(autouse=True)
def _adbc_driver(request: pytest.FixtureRequest, session: Session) -> None:
    """Tests through ADBC need the driver of the database under test (requirements.txt)."""
    if getattr(request.node, "callspec", None) and request.node.callspec.params.get("reader") == "adbc":
        dialect = session.get_bind().dialect.name
        pytest.importorskip(f"adbc_driver_{dialect}", reason=f"pip install adbc-driver-{dialect} (requirements.txt)")


@pytest.fixture
def programme(session: Session) -> dict[str, Member]:
    gold, silver = make_tier(session, name="Gold"), make_tier(session, name="Silver")
    a = make_member(
        session, external_id="A", joined_at=utc(2024, 1, 10), acquisition_channel="store", city="Jakarta", marketing_consent=True, tier_id=gold.id
    )
    b = make_member(session, external_id="B", joined_at=utc(2024, 5, 20), acquisition_channel="referral", city="Bandung", marketing_consent=False)
    c = make_member(
        session, external_id="C", joined_at=utc(2024, 6, 15), acquisition_channel="web", city="Jakarta", marketing_consent=True, tier_id=silver.id
    )
    d = make_member(
        session, external_id="D", joined_at=utc(2024, 2, 1), acquisition_channel="store", city="Medan", marketing_consent=False, tier_id=gold.id
    )
    e = make_member(session, external_id="E", joined_at=utc(2024, 6, 3), acquisition_channel="web", city="Jakarta")
    for member, amount, moment in [
        (a, 50.0, utc(2024, 5, 10, 12)),
        (a, 100.0, utc(2024, 6, 5, 9)),
        (a, 20.0, utc(2024, 6, 5, 18)),
        (a, 30.0, utc(2024, 6, 20, 23, 59, 59)),
        (b, 40.0, utc(2024, 5, 25)),
        (c, 60.0, utc(2024, 6, 16)),
        (c, 999.0, utc(2024, 7, 2)),
        (d, 80.0, utc(2024, 3, 1)),
        (d, 10.0, utc(2024, 5, 2)),
        (d, 200.0, utc(2024, 6, 28)),
    ]:
        make_purchase(session, member, amount, occurred_at=moment)
    refunded = make_purchase(session, d, 500.0, occurred_at=utc(2024, 6, 29))
    reverse_purchase(session=session, purchase_id=refunded, actor=SYSTEM_CLI)

    reward = make_reward(session, points_cost=100)
    kept = Redemption(member_id=a.id, reward_id=reward.id, points=100, status="fulfilled", requested_at=utc(2024, 6, 10))
    cancelled = Redemption(
        member_id=d.id, reward_id=reward.id, points=150, status="cancelled", requested_at=utc(2024, 6, 12), cancelled_at=utc(2024, 6, 14)
    )
    may = Redemption(member_id=b.id, reward_id=reward.id, points=40, status="fulfilled", requested_at=utc(2024, 5, 26))
    session.add_all([kept, cancelled, may])
    session.flush()
    session.add_all(
        [
            LedgerEntry(member_id=a.id, kind="redeem", points=-100, occurred_at=utc(2024, 6, 10), redemption_id=kept.id),
            LedgerEntry(member_id=d.id, kind="redeem", points=-150, occurred_at=utc(2024, 6, 12), redemption_id=cancelled.id),
            LedgerEntry(member_id=d.id, kind="reverse", points=150, occurred_at=utc(2024, 6, 14), redemption_id=cancelled.id),
            LedgerEntry(member_id=b.id, kind="redeem", points=-40, occurred_at=utc(2024, 5, 26), redemption_id=may.id),
            LedgerEntry(member_id=d.id, kind="expire", points=-30, occurred_at=utc(2024, 4, 1)),
            LedgerEntry(member_id=c.id, kind="adjust", points=25, occurred_at=utc(2024, 6, 20), reason="goodwill"),
        ]
    )
    for member, moment, score in [
        (a, utc(2024, 6, 2, 9), 10),
        (a, utc(2024, 6, 25, 9), 9),
        (b, utc(2024, 6, 3), 7),
        (c, utc(2024, 6, 17), 3),
        (d, utc(2024, 6, 30, 23, 59), 9),
        (d, utc(2024, 5, 31, 23, 59), 0),
        (a, utc(2024, 7, 1), 2),
    ]:
        session.add(Feedback(member_id=member.id, submitted_at=moment, score=score))
    session.add_all(
        [
            Segment(name="Referrals", rules={"acquisition_channel": ["referral"]}),
            Segment(name="Gold and up", rules={"tier": ["Gold", "Platinum"]}),
            Segment(name="Lapsed", rules={"days_since_last_purchase": {"min": 30}}),
            Segment(name="Jakarta, reachable", rules={"city": ["Jakarta"], "marketing_consent": True}),
        ]
    )
    session.commit()
    return {"A": a, "B": b, "C": c, "D": d, "E": e}


EXPECTED_JUNE = {
    "active_members": 3,
    "new_members": 2,
    "retention_rate": 2 / 3,
    "churn_rate": 1 / 3,
    "repeat_purchase_rate": 1 / 3,
    "average_transaction_value": 410 / 5,
    "purchase_frequency": 5 / 3,
    "revenue_per_member": 410 / 3,
    "historical_clv": (200 + 40 + 60 + 290) / 4,
    "nps": 40.0,
    "redemption_rate": 100 / 910,
    "points_outstanding": 945,
    "points_liability": 9.45,
    "breakage_estimate": 30 / 170,
    # Nobody joined with a referral code: no referral, no conversion to speak of, every active member is "not referred".
    "referrals": 0,
    "referral_conversion": float("nan"),
    "referral_bonus_cost": 0.0,
    "referred_revenue_per_member": float("nan"),
    "unreferred_revenue_per_member": 410 / 3,
}


def test_kpi_summary_prints_the_contract_shape_with_hand_counted_values(session: Session, programme) -> None:
    summary = kpi_summary(session, *JUNE)
    assert list(summary["kpis"])[:8] == [
        "retention_rate",
        "repeat_purchase_rate",
        "active_members",
        "average_transaction_value",
        "purchase_frequency",
        "nps",
        "redemption_rate",
        "points_outstanding",
    ]
    expected = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in EXPECTED_JUNE.items() if k in summary["kpis"]}
    assert summary["kpis"] == pytest.approx(expected, rel=1e-12)
    assert isinstance(summary["kpis"]["active_members"], int) and isinstance(summary["kpis"]["points_outstanding"], int)
    assert summary["period"] == {"from": "2024-06-01", "to": "2024-07-01", "complete": True}


@READERS
def test_every_default_metric_matches_the_hand_count(session: Session, programme, reader: str) -> None:
    frame = compute_kpis(session, *JUNE, reader=reader)
    assert list(frame.columns) == ["metric", "dimension", "dimension_value", "value"]
    assert list(frame["metric"]) == list(DEFAULT_METRICS)
    assert set(frame["dimension"]) == {"overall"} and set(frame["dimension_value"]) == {""}
    assert dict(zip(frame["metric"], frame["value"])) == pytest.approx(EXPECTED_JUNE, rel=1e-12, nan_ok=True)


def test_the_value_of_a_point_comes_from_the_settings(session: Session, programme) -> None:
    update_settings(session=session, actor=SYSTEM_CLI, point_value=0.02)
    frame = compute_kpis(session, *JUNE, metrics=["points_liability"])
    assert frame["value"].tolist() == pytest.approx([945 * 0.02])


def test_kpis_by_tier(session: Session, programme) -> None:
    frame = compute_kpis(session, *JUNE, by="tier", metrics=["active_members", "retention_rate", "redemption_rate"])
    expected = pd.DataFrame(
        {
            "metric": ["active_members"] * 3 + ["retention_rate"] * 3 + ["redemption_rate"] * 3,
            "dimension": ["tier"] * 9,
            "dimension_value": ["(none)", "Gold", "Silver"] * 3,
            # (none): B, E. Gold: A, D (earned 150 + 700, redeemed 100 + 150 - 150). Silver: C.
            "value": [0.0, 2.0, 1.0, 0.0, 1.0, np.nan, np.nan, 100 / 850, 0.0],
        }
    )
    pd.testing.assert_frame_equal(frame, expected)


def test_kpis_by_acquisition_channel(session: Session, programme) -> None:
    frame = compute_kpis(session, *JUNE, by="channel", metrics=["new_members", "average_transaction_value"])
    values = {(m, v): x for m, v, x in zip(frame["metric"], frame["dimension_value"], frame["value"])}
    assert values[("new_members", "web")] == 2
    assert values[("average_transaction_value", "store")] == pytest.approx(350 / 4)
    assert math.isnan(values[("average_transaction_value", "referral")])


def test_kpis_by_saved_segment(session: Session, programme) -> None:
    frame = compute_kpis(session, *JUNE, by="segment", metrics=["active_members", "retention_rate", "nps"])
    values = {(m, v): x for m, v, x in zip(frame["metric"], frame["dimension_value"], frame["value"])}
    assert sorted(set(frame["dimension_value"])) == ["Gold and up", "Jakarta, reachable", "Lapsed", "Referrals"]
    assert values[("active_members", "Gold and up")] == 2
    assert values[("retention_rate", "Referrals")] == 0.0  # B bought in May, not in June
    assert values[("active_members", "Lapsed")] == 0  # B: last purchase May 25, 36 days before June 30
    assert values[("nps", "Jakarta, reachable")] == pytest.approx(100 * (2 - 1) / 3)  # A: 10, 9; C: 3


@READERS
def test_several_periods_from_one_read_match_each_period_computed_alone(session: Session, programme, reader: str) -> None:
    periods = [JUNE, (date(2024, 7, 1), date(2024, 7, 3)), (date(2024, 4, 1), date(2024, 7, 1))]
    together = kpis_for_periods(session, periods, reader=reader)
    for (start, end), frame in zip(periods, together):
        alone = pd.concat([compute_kpis(session, start, end, by=by, reader=reader) for by in (None, "segment", "tier", "channel")], ignore_index=True)
        alone["dimension"] = alone["dimension"].fillna("overall")
        pd.testing.assert_frame_equal(frame.reset_index(drop=True), alone.reset_index(drop=True), check_dtype=False)
    june = together[0].query("dimension == 'overall'").set_index("metric")["value"]
    assert june["points_outstanding"] == EXPECTED_JUNE["points_outstanding"]
    assert june["breakage_estimate"] == pytest.approx(EXPECTED_JUNE["breakage_estimate"])


def test_the_members_behind_retention_are_the_retained_and_the_lost(session: Session, programme) -> None:
    behind = members_behind(session, "retention_rate", *JUNE)
    expected = pd.DataFrame(
        {
            "member_id": [programme["B"].id, programme["A"].id, programme["D"].id],
            "external_id": ["B", "A", "D"],
            "role": ["lost", "retained", "retained"],
            "purchases": [0, 3, 1],
            "revenue": [0.0, 150.0, 200.0],
            "purchase_days": [0, 2, 1],
        }
    )
    pd.testing.assert_frame_equal(behind, expected)


def test_the_members_behind_a_tier_s_redemption_rate(session: Session, programme) -> None:
    behind = members_behind(session, "redemption_rate", *JUNE, dimension="tier", value="Gold")
    assert behind[["external_id", "role", "earned", "redeemed", "returned"]].to_dict("records") == [
        {"external_id": "D", "role": "earned only", "earned": 700, "redeemed": 150, "returned": 150},
        {"external_id": "A", "role": "redeemed", "earned": 150, "redeemed": 100, "returned": 0},
    ]


def test_drilling_down_needs_both_the_dimension_and_its_value(session: Session, programme) -> None:
    with pytest.raises(InvalidInput, match="both a dimension and its value"):
        members_behind(session, "nps", *JUNE, dimension="tier")


def test_predicted_clv_is_undefined_not_an_error_when_too_few_members_bought(session: Session, programme) -> None:
    frame = compute_kpis(session, *JUNE, metrics=["predicted_clv"])
    assert frame["metric"].tolist() == ["predicted_clv"] and math.isnan(frame["value"].iloc[0])


@READERS
def test_refunded_purchases_are_left_out_of_every_read(session: Session, programme, reader: str) -> None:
    purchases = load_purchases(session, start=date(2024, 6, 1), end=date(2024, 7, 1), reader=reader)
    assert 500.0 not in purchases["amount"].to_list()
    assert sorted(purchases["amount"].to_list()) == [20.0, 30.0, 60.0, 100.0, 200.0]
    everything = load_purchases(session, include_refunded=True, columns=("amount",), reader=reader)
    assert 500.0 in everything["amount"].to_list()


@READERS
def test_both_readers_return_the_same_frames(session: Session, programme, reader: str) -> None:
    columns = ("purchase_id", "member_id", "occurred_at", "occurred_on", "amount", "category", "channel", "store")
    purchases = load_purchases(session, columns=columns, reader=reader).sort("purchase_id")
    assert purchases.schema["occurred_at"] == pl.Datetime("us", "UTC")
    first = purchases.filter(pl.col("amount") == 30.0).row(0, named=True)
    assert first["occurred_at"] == datetime(2024, 6, 20, 23, 59, 59, tzinfo=UTC)
    assert first["occurred_on"] == date(2024, 6, 20)
    assert (first["category"], first["channel"], first["store"]) == ("grocery", "store", "S1")
    assert_frame_equal(purchases, load_purchases(session, columns=columns, reader="dbapi").sort("purchase_id"))
    members = load_members(session, reader=reader).sort("member_id")
    assert members.filter(pl.col("external_id") == "A").select("joined_on", "tier", "marketing_consent").row(0) == (date(2024, 1, 10), "Gold", True)
    assert members.filter(pl.col("external_id") == "B")["tier"].item() == "(none)"
    assert_frame_equal(members, load_members(session, reader="dbapi").sort("member_id"))
    feedback = load_feedback(session, start=date(2024, 6, 1), end=date(2024, 7, 1), reader=reader)
    assert sorted(feedback["score"].to_list()) == [3, 7, 9, 9, 10]


@READERS
def test_ledger_totals_per_member_add_up_to_the_overall_totals(session: Session, programme, reader: str) -> None:
    trailing = date(2023, 7, 1)
    overall = ledger_totals(session, *JUNE, trailing_start=trailing, reader=reader)
    assert overall.row(0, named=True) == {
        "earned": 910,
        "redeemed": 250,
        "returned": 150,
        "expired": 0,
        "trailing_redeemed": 290,
        "trailing_returned": 150,
        "trailing_expired": 30,
        "balance": 945,
    }
    per_member = ledger_totals(session, *JUNE, trailing_start=trailing, by_member=True, reader=reader)
    assert per_member.drop("member_id").sum().row(0) == overall.row(0)
    assert dict(zip(per_member["member_id"], per_member["balance"])) == {
        programme["A"].id: 100,
        programme["B"].id: 0,
        programme["C"].id: 85,
        programme["D"].id: 760,
    }


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ({"acquisition_channel": ["referral"]}, ["B"]),
        ({"tier": ["Gold", "Platinum"]}, ["A", "D"]),
        ({"tier": ["(none)"]}, ["B", "E"]),
        ({"city": ["Jakarta"], "marketing_consent": True}, ["A", "C"]),
        ({"days_since_last_purchase": {"min": 30}}, ["B"]),
        ({"purchases": {"min": 3}}, ["A", "D"]),
        ({"spend": {"min": 250}}, ["D"]),
        ({"rfm_segment": ["Champions", "Loyal"]}, ["A", "D"]),
    ],
    ids=[
        "referrals",
        "gold and up",
        "no tier",
        "reachable in Jakarta",
        "lapsed 30 days",
        "three purchases",
        "big spenders (the refund does not count)",
        "rfm champions and loyal",
    ],
)
def test_segment_members_from_the_database(session: Session, programme, rules: dict, expected: list[str]) -> None:
    ids = segment_members(session, rules, as_of=date(2024, 6, 30))
    assert isinstance(ids, np.ndarray)
    assert sorted(ids.tolist()) == sorted(programme[name].id for name in expected)


def test_retention_cohorts_from_the_database(session: Session, programme) -> None:
    assert retention_analysis(session) == {
        "period": "month",
        "cohorts": [
            {"cohort": "2024-03", "size": 1, "retention": [1.0, 0.0, 1.0, 1.0, 0.0]},
            {"cohort": "2024-05", "size": 2, "retention": [1.0, 0.5, 0.0]},
            {"cohort": "2024-06", "size": 1, "retention": [1.0, 1.0]},
        ],
    }
    assert retention_analysis(session, as_of=date(2024, 5, 31))["cohorts"] == [
        {"cohort": "2024-03", "size": 1, "retention": [1.0, 0.0, 1.0]},
        {"cohort": "2024-05", "size": 2, "retention": [1.0]},
    ]


def test_retention_curves_by_channel_from_the_database(session: Session, programme) -> None:
    curves = retention_by_channel(session, as_of=date(2024, 6, 30))
    store = curves[curves["acquisition_channel"] == "store"]
    assert store["retention"].tolist() == [1.0, 0.5, 1.0, 1.0]
    assert store["cohort_members"].tolist() == [2, 2, 1, 1]


def test_rfm_from_the_database(session: Session, programme) -> None:
    summary = rfm_analysis(session, as_of=date(2024, 6, 30))
    assert list(summary["segments"]) == list(RFM_SEGMENTS)
    assert summary["members"] == 4 and summary["as_of"] == "2024-06-30"
    assert summary["segments"]["Champions"] == {"members": 1, "revenue": 290.0}  # D
    assert summary["segments"]["Loyal"] == {"members": 1, "revenue": 200.0}  # A
    assert sum(s["revenue"] for s in summary["segments"].values()) == 590.0
    members = rfm_members(session, as_of=date(2024, 6, 30))
    assert dict(zip(members["member_id"], members["segment"])) == {
        programme["A"].id: "Loyal",
        programme["B"].id: "Lost",
        programme["C"].id: "Hibernating",
        programme["D"].id: "Champions",
    }


# --- CLV on the database, with the paper's data -------------------------------------------------------------


def _load_cdnow(session: Session) -> None:
    lifetimes = pytest.importorskip("lifetimes", reason="the CDNOW data ship with lifetimes==0.11.3 (pip install -r tests/requirements.txt)")
    raw = pd.read_csv(
        Path(lifetimes.__file__).parent / "datasets" / "CDNOW_sample.txt",
        sep=r"\s+",
        header=None,
        names=["master_id", "customer", "day", "cds", "amount"],
        dtype={"day": str},
    )
    customers = np.sort(raw["customer"].unique())
    with write_transaction(session):
        ids = allocate_ids(session, "member", len(customers))
        moment = pd.Timestamp("1997-01-01", tz="UTC")
        insert_frame(
            session,
            "member",
            pd.DataFrame(
                {
                    "id": ids,
                    "external_id": [f"CD{c:05d}" for c in customers],
                    "name": "",
                    "email": "",
                    "phone": "",
                    "joined_at": moment,
                    "acquisition_channel": "cdnow",
                    "city": "",
                    "marketing_consent": False,
                    "created_at": moment,
                }
            ),
        )
        member_of = dict(zip(customers, ids))
        purchases = pd.DataFrame(
            {
                "external_id": [f"CDP{i:05d}" for i in range(len(raw))],
                "member_id": raw["customer"].map(member_of).astype("int64"),
                "occurred_at": pd.to_datetime(raw["day"], format="%Y%m%d").dt.tz_localize("UTC"),
                "amount": raw["amount"].astype(float),
                "channel": "mail",
                "store": "cdnow",
                "category": "music",
            }
        )
        add_purchases(session, purchases, actor=SYSTEM_CLI)


def test_clv_analysis_on_the_cdnow_purchases_reproduces_the_published_parameters(session: Session) -> None:
    _load_cdnow(session)
    result = clv_analysis(session, date(1997, 9, 30), "week")
    assert list(result) == ["bgnbd", "gamma_gamma", "members"]
    assert result["members"] == 2357

    def three(values: dict[str, float]) -> dict[str, float]:
        return {k: float(f"{v:.3g}") for k, v in values.items()}

    assert three(result["bgnbd"]) == three({"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426})
    assert three(result["gamma_gamma"]) == three({"p": 6.25, "q": 3.74, "v": 15.44})

    members = clv_members(session, date(1997, 9, 30), "week", horizon_months=12)
    assert len(members) == 2357
    assert members["probability_alive"].between(0, 1).all()
    assert (members["predicted_clv"] >= 0).all() and members["expected_purchases"].gt(0).all()
    kpis = compute_kpis(session, date(1997, 9, 1), date(1997, 10, 1), metrics=["predicted_clv", "historical_clv"])
    assert kpis["value"].tolist() == pytest.approx([members["predicted_clv"].mean(), members["historical_clv"].mean()])


def test_clv_with_too_few_buyers_says_what_to_do(session: Session, programme) -> None:
    with pytest.raises(InvalidInput, match="later calibration end or import more purchases"):
        clv_analysis(session, date(2024, 6, 30), "week")


def test_reading_through_adbc_leaves_this_process_s_sqlite_connections_working(session: Session, programme, db_url: str) -> None:
    """Two copies of SQLite in one process delete each other's WAL (:mod:`loyalty.analytics.reader`)."""
    if session.get_bind().dialect.name != "sqlite":
        pytest.skip("a SQLite hazard")
    pytest.importorskip("adbc_driver_sqlite", reason="pip install adbc-driver-sqlite (requirements.txt)")
    from sqlalchemy import create_engine, text

    load_purchases(session, reader="adbc")
    load_members(session, reader="adbc")
    make_member(session, external_id="after the read")  # a write through the session's connection
    fresh = create_engine(db_url)
    try:
        with fresh.connect() as connection:
            assert connection.execute(text("SELECT COUNT(*) FROM member")).scalar_one() == 6
    finally:
        fresh.dispose()
    assert load_members(session, columns=("external_id",), reader="adbc").height == 6


def test_the_segments_overview_gives_each_segment_s_size_and_revenue_share_as_counted_one_by_one(session: Session, programme) -> None:
    from loyalty.program.segments import segment_stats, segments_overview

    now = datetime(2024, 7, 1, tzinfo=UTC)
    overview = segments_overview(session, now=now).set_index("name")
    assert sorted(overview.index) == ["Gold and up", "Jakarta, reachable", "Lapsed", "Referrals"]
    for name, rules in zip(overview.index, overview["rules"]):
        alone = segment_stats(session, rules, now=now)
        assert overview.loc[name, "members"] == alone["members"], name
        assert overview.loc[name, "revenue_share"] == pytest.approx(alone["revenue_share"]), name
    assert overview.loc["Referrals", "members"] == 1  # B


def test_tiers_are_listed_by_rank_and_lost_members_apart_from_those_at_risk(session, now):
    from loyalty.access.roles import Actor
    from loyalty.demo.simulation import create_demo
    from loyalty.insights.analysis import AT_RISK_ALIVE, LOST_ALIVE, Filters, clv_view, feedback_view
    from loyalty.program.tiers import list_tiers

    create_demo(session, members=300, months=12, seed=3, actor=Actor("max", "manager"), now=now)
    ranked = list_tiers(session)["name"].tolist()
    assert ranked != sorted(ranked), "the demo's tiers are not in alphabetical order"
    filters = Filters(start=now.date().replace(day=1, month=1), end=now.date())
    for by_tier in (clv_view(session, filters)["by_tier"], feedback_view(session, filters, actor=Actor("ann", "analyst"))["by_tier"]):
        shown = [t for t in by_tier["group"] if t in ranked]
        assert shown == [t for t in ranked if t in shown] and len(shown) >= 2
    view = clv_view(session, filters)
    assert (view["lost"]["probability_alive"] < LOST_ALIVE).all()
    assert view["at_risk"]["probability_alive"].between(LOST_ALIVE, AT_RISK_ALIVE, inclusive="left").all()
