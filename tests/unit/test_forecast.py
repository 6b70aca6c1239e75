"""The liability forecast's arithmetic on hand-made ledgers: FIFO lots by expiry month, the
monthly roll-forward, and a whole forecast whose only lot expires in exactly its month."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import pytest

from loyalty.decisions.forecast import forecast_from_entries, open_lots_by_month, project_liability


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def _entries(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["member_id", "kind", "points", "occurred_at", "expires_at"])


def test_open_lots_are_what_fifo_leaves_bucketed_by_the_month_they_expire_in():
    ledger = _entries(
        [
            # Member 1: 100 (expire Jan 2027) and 50 (Mar 2027); 120 redeemed takes the first lot and 20 of the second.
            (1, "earn", 100, utc(2026, 1, 10), utc(2027, 1, 10)),
            (1, "earn", 50, utc(2026, 3, 5), utc(2027, 3, 5)),
            (1, "redeem", -120, utc(2026, 4, 1), None),
            # Member 2: a never-expiring adjustment.
            (2, "adjust", 40, utc(2026, 5, 1), None),
            # Member 3: a lot past its date that no expiry run has taken yet, and one expiring on the cutoff's month.
            (3, "earn", 70, utc(2025, 10, 1), utc(2026, 10, 1)),
            (3, "earn", 10, utc(2025, 12, 20), utc(2026, 12, 20)),
        ]
    )
    lots = open_lots_by_month(ledger, utc(2026, 12, 1), horizon=12).set_index("member_id")
    assert lots.loc[1, "balance"] == 30
    assert lots.loc[1, "m2"] == 0, "January 2027's lot was redeemed first"
    assert lots.loc[1, "m4"] == 30, "30 of March's 50 are left"
    assert lots.loc[2, "later"] == 40 and lots.loc[2, ["due", *[f"m{k}" for k in range(1, 13)]]].sum() == 0
    assert (lots.loc[3, "due"], lots.loc[3, "m1"]) == (70, 10)


def _one_row(lots: list[float], months: int = 3) -> np.ndarray:
    return np.array([lots + [0.0] * (months + 2 - len(lots))])


def test_a_lot_nobody_redeems_expires_whole_in_its_month():
    out = project_liability(_one_row([0, 0, 100]), np.zeros((1, 3)), np.zeros((1, 3)), np.zeros((2, 1)), np.array([]), expiry_months=12)
    assert out["expired"][0].tolist() == [0, 100, 0]
    assert out["outstanding"][0].tolist() == [100, 0, 0]


def test_redemptions_take_the_soonest_expiring_points_before_expiry_takes_the_rest():
    # 10 % a month of an idle member's points: month 1 redeems 10 of 100 (90 left, due in month 2);
    # month 2 redeems 9 of them and the other 81 expire.
    hazard = np.array([[0.0], [0.1]])
    out = project_liability(_one_row([0, 0, 100]), np.zeros((1, 3)), np.zeros((1, 3)), hazard, np.array([]), 12)
    assert out["redeemed"][0] == pytest.approx([10, 9, 0])
    assert out["expired"][0] == pytest.approx([0, 81, 0])
    assert out["outstanding"][0] == pytest.approx([90, 0, 0])


def test_points_earned_in_the_forecast_expire_the_expiry_period_later():
    earned = np.array([[50.0, 0.0, 0.0]])
    out = project_liability(_one_row([]), earned, np.ones((1, 3)), np.zeros((2, 1)), np.array([]), expiry_months=1)
    assert out["earned"][0].tolist() == [50, 0, 0]
    assert out["expired"][0].tolist() == [0, 50, 0]


def test_members_below_the_cheapest_reward_stop_redeeming():
    # Hazard 0 below 200 available points, 20 % above: 300 -> 240 -> 192, then nothing.
    hazard = np.array([[0.0, 0.2], [0.0, 0.2]])
    out = project_liability(_one_row([0, 0, 0, 0, 300]), np.zeros((1, 3)), np.zeros((1, 3)), hazard, np.array([200.0]), 12)
    assert out["outstanding"][0] == pytest.approx([240, 192, 192])


def test_rows_stand_for_as_many_members_as_their_weight():
    lots = np.vstack([_one_row([0, 10])[0], _one_row([0, 0, 0, 0, 5])[0]])
    out = project_liability(lots, np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((2, 1)), np.array([]), 12, weights=[3, 2])
    assert out["expired"][0].tolist() == [30, 0, 0] and out["outstanding"][0].tolist() == [10, 10, 10]


def test_a_whole_forecast_expires_a_quiet_members_lot_in_exactly_its_month():
    ledger = _entries([(1, "earn", 100, utc(2026, 2, 15, 10), utc(2027, 2, 15, 10))])
    result = forecast_from_entries(ledger, date(2026, 11, 30), expiry_months=12, paths=50)
    forecast = result.frame[result.frame["kind"] == "forecast"].pivot(index="month", columns="measure", values="points")
    assert list(forecast.index[:4]) == [date(2026, 12, 1), date(2027, 1, 1), date(2027, 2, 1), date(2027, 3, 1)]
    assert forecast["expired"].tolist() == [0, 0, 100] + [0] * 9, "February 2027, the lot's month"
    assert forecast["outstanding"].tolist() == [100, 100] + [0] * 10
    assert forecast["earned"].sum() == 0 and forecast["redeemed"].sum() == 0
    assert forecast.loc[date(2027, 2, 1), "breakage"] == 1.0
    band = result.frame[(result.frame["kind"] == "forecast") & (result.frame["measure"] == "expired")]
    assert band["points_low"].tolist() == band["points"].tolist() == band["points_high"].tolist(), "nothing uncertain here"
    history = result.frame[(result.frame["kind"] == "actual") & (result.frame["measure"] == "outstanding")]
    assert history["points"].iloc[-1] == 100 and len(history) == 12
