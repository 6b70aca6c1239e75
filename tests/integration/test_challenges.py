"""Challenges: met the moment the qualifying purchase arrives, paid once, taken back by a full refund in the window."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from sqlmodel import col, select

from db.engine import write_transaction
from db.models import ChallengeCompletion, LedgerEntry
from loyalty.access.roles import SYSTEM_CLI, Actor
from loyalty.errors import InvalidInput, PermissionDenied
from loyalty.ledger.challenges import define_challenge, list_challenges, member_badges, member_challenges
from loyalty.ledger.entries import member_balance, return_purchase
from loyalty.ledger.purchases import add_purchases
from tests.factories import make_member, make_purchase, utc

MANAGER = Actor("maria", "manager")
OPERATIONS = Actor("olaf", "operations")


def challenge_points(session, member_id: int) -> list[int]:
    session.expire_all()
    return [
        e.points
        for e in session.exec(
            select(LedgerEntry).where(LedgerEntry.member_id == member_id, col(LedgerEntry.reason).like("challenge%")).order_by(col(LedgerEntry.id))
        )
    ]


def test_three_purchases_within_thirty_days_pay_once_at_the_third(session):
    define_challenge(
        session, name="Three in a month", purchases=3, within_days=30, points=500, badge="Regular", starts=utc(2025, 1, 1), actor=MANAGER
    )
    member = make_member(session)
    make_purchase(session, member, 10, utc(2025, 1, 2))
    make_purchase(session, member, 10, utc(2025, 2, 10))  # 39 days later: the window starts again
    make_purchase(session, member, 10, utc(2025, 2, 20))
    assert challenge_points(session, member.id) == []
    third = make_purchase(session, member, 10, utc(2025, 3, 1))
    assert challenge_points(session, member.id) == [500]
    (completion,) = session.exec(select(ChallengeCompletion)).all()
    assert completion.purchase_id == third and completion.completed_at == utc(2025, 3, 1)
    make_purchase(session, member, 10, utc(2025, 3, 2))
    make_purchase(session, member, 10, utc(2025, 3, 3))
    make_purchase(session, member, 10, utc(2025, 3, 4))
    assert challenge_points(session, member.id) == [500], "one completion per member by default"
    assert [b["name"] for b in member_badges(session, member.id)] == ["Regular"]
    assert list_challenges(session)[0]["members_completed"] == 1


def test_purchases_arriving_together_and_out_of_order_complete_at_the_purchase_that_met_it(session):
    define_challenge(session, name="Two eco buys", purchases=2, category="eco", points=200, starts=utc(2025, 1, 1), max_completions=2, actor=MANAGER)
    member = make_member(session)
    rows = pd.DataFrame(
        [
            {
                "external_id": f"X{i}",
                "member_id": member.id,
                "occurred_at": pd.Timestamp(at),
                "amount": 5.0,
                "channel": "",
                "store": "",
                "category": c,
            }
            for i, (at, c) in enumerate(
                [(utc(2025, 5, 9), "eco"), (utc(2025, 5, 1), "eco"), (utc(2025, 5, 3), "food"), (utc(2025, 5, 5), "eco"), (utc(2025, 5, 7), "eco")]
            )
        ]
    )
    with write_transaction(session):
        add_purchases(session, rows, actor=SYSTEM_CLI)
    completions = session.exec(select(ChallengeCompletion).order_by(col(ChallengeCompletion.sequence))).all()
    assert [(c.sequence, c.completed_at) for c in completions] == [(1, utc(2025, 5, 5)), (2, utc(2025, 5, 9))]
    assert challenge_points(session, member.id) == [200, 200]


def test_spend_within_days_counts_the_window_ending_at_each_purchase(session):
    define_challenge(session, name="Spend 100 in a week", min_spend=100, within_days=7, points=300, starts=utc(2025, 1, 1), actor=MANAGER)
    member = make_member(session)
    make_purchase(session, member, 60, utc(2025, 4, 1))
    make_purchase(session, member, 30, utc(2025, 4, 9))  # the 60 is 8 days old: 30 in the window
    assert challenge_points(session, member.id) == []
    assert member_challenges(session, member.id, now=utc(2025, 4, 10))[0] == {
        "name": "Spend 100 in a week",
        "progress": 30.0,
        "target": 100.0,
        "completed_at": None,
        "completions": 0,
        "share": 0.3,
    }
    make_purchase(session, member, 70, utc(2025, 4, 12))
    assert challenge_points(session, member.id) == [300]


def test_a_streak_of_three_months_completes_in_the_third_month_and_starts_again_with_the_next(session):
    define_challenge(
        session, name="Three months running", streak_months=3, points=0, badge="Streaker", starts=utc(2025, 1, 1), max_completions=2, actor=MANAGER
    )
    member = make_member(session)
    for at in (utc(2025, 1, 5), utc(2025, 2, 5), utc(2025, 4, 5), utc(2025, 5, 5)):  # March missed
        make_purchase(session, member, 10, at)
    assert session.exec(select(ChallengeCompletion)).all() == []
    assert member_challenges(session, member.id, now=utc(2025, 5, 20))[0]["progress"] == 2
    make_purchase(session, member, 10, utc(2025, 6, 1))
    make_purchase(session, member, 10, utc(2025, 6, 20))  # same month: no new streak from it
    make_purchase(session, member, 10, utc(2025, 7, 2))
    make_purchase(session, member, 10, utc(2025, 8, 2))
    assert [c.completed_at for c in session.exec(select(ChallengeCompletion)).all()] == [utc(2025, 6, 1)]
    make_purchase(session, member, 10, utc(2025, 9, 2))
    assert [c.completed_at for c in session.exec(select(ChallengeCompletion).order_by(col(ChallengeCompletion.id))).all()] == [
        utc(2025, 6, 1),
        utc(2025, 9, 2),
    ]
    assert member_badges(session, member.id) == [{"name": "Streaker", "earned_at": utc(2025, 6, 1)}]
    assert challenge_points(session, member.id) == [], "a badge-only challenge writes no ledger row"


def test_outside_the_challenge_dates_nothing_counts(session):
    define_challenge(session, name="Spring", purchases=2, points=100, starts=utc(2025, 3, 1), ends=utc(2025, 6, 1), actor=MANAGER)
    member = make_member(session)
    make_purchase(session, member, 10, utc(2025, 2, 28))
    make_purchase(session, member, 10, utc(2025, 3, 2))
    make_purchase(session, member, 10, utc(2025, 6, 2))
    assert challenge_points(session, member.id) == []
    make_purchase(session, member, 10, utc(2025, 5, 30))
    assert challenge_points(session, member.id) == [100]


def test_a_full_refund_within_the_return_window_takes_the_reward_back_and_a_partial_one_does_not(session):
    define_challenge(session, name="Two buys", purchases=2, points=400, badge="Duo", starts=utc(2025, 1, 1), actor=MANAGER)
    member = make_member(session)
    make_purchase(session, member, 20, utc(2025, 6, 1))
    second = make_purchase(session, member, 20, utc(2025, 6, 2))
    before = member_balance(session, member.id, as_of=utc(2025, 6, 3)).points
    return_purchase(session=session, purchase_id=second, amount="5", actor=OPERATIONS, now=utc(2025, 6, 3))
    assert challenge_points(session, member.id) == [400], "a partial return leaves the challenge paid"
    return_purchase(session=session, purchase_id=second, actor=OPERATIONS, now=utc(2025, 6, 20))
    assert challenge_points(session, member.id) == [400, -400]
    assert member_badges(session, member.id) == []
    assert member_balance(session, member.id, as_of=utc(2025, 6, 21)).points == before - 20 - 400
    make_purchase(session, member, 20, utc(2025, 6, 25))  # met again by the next purchase
    assert challenge_points(session, member.id) == [400, -400, 400]


def test_a_full_refund_after_the_return_window_keeps_the_reward(session):
    define_challenge(session, name="Two buys late", purchases=2, points=400, starts=utc(2025, 1, 1), actor=MANAGER)
    member = make_member(session)
    make_purchase(session, member, 20, utc(2025, 6, 1))
    second = make_purchase(session, member, 20, utc(2025, 6, 2))
    return_purchase(session=session, purchase_id=second, actor=OPERATIONS, now=utc(2025, 6, 2) + timedelta(days=31))
    assert challenge_points(session, member.id) == [400]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"purchases": 3, "min_spend": 50.0}, "exactly one of purchases, min_spend or streak_months"),
        ({"purchases": 0}, "purchases: a whole number from 1"),
        ({"streak_months": 3, "within_days": 30}, "within_days: a streak counts calendar months"),
        ({"purchases": 2, "points": 0}, "reward: give points, a badge, or both"),
        ({"purchases": 2, "starts": utc(2025, 5, 1), "ends": utc(2025, 4, 1)}, "ends: after the start (2025-05-01)"),
        ({"min_spend": -5.0}, "min_spend: an amount above 0"),
    ],
)
def test_a_challenge_with_a_bad_field_is_refused_naming_it(session, fields, message):
    values = {"points": 100, **fields}
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        define_challenge(session, name="Bad", actor=MANAGER, **values)
    assert list_challenges(session) == []


def test_only_managers_and_admins_define_challenges_and_names_are_unique(session):
    with pytest.raises(PermissionDenied):
        define_challenge(session, name="Mine", purchases=2, points=10, actor=OPERATIONS)
    define_challenge(session, name="Mine", purchases=2, points=10, actor=MANAGER)
    with pytest.raises(InvalidInput, match="already exists"):
        define_challenge(session, name="Mine", purchases=3, points=10, actor=MANAGER)


def test_challenges_on_the_command_line(db_url, session, capsys):
    import json

    from loyalty.cli import main

    args = ["challenges", "add", "--name", "Eco five", "--purchases", "5", "--within-days", "60", "--category", "eco", "--points", "250"]
    assert main([*args, "--badge", "Eco friend", "--starts", "2026-01-01", "--json"]) == 0
    made = json.loads(capsys.readouterr().out)
    assert {k: made[k] for k in ("name", "kind", "target", "within_days", "category", "points", "badge")} == {
        "name": "Eco five",
        "kind": "purchases",
        "target": 5,
        "within_days": 60,
        "category": "eco",
        "points": 250,
        "badge": "Eco friend",
    }
    assert main(["challenges", "add", "--name", "Bad", "--streak-months", "1", "--points", "0", "--json"]) == 2
    assert "streak_months: a whole number of months from 2 to 120 (you entered 1)" in json.loads(capsys.readouterr().out)["error"]
    assert main(["challenges", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(c["name"], c["members_completed"]) for c in listed] == [("Eco five", 0)]
    assert main(["challenges", "add", "--name", "Web only", "--purchases", "2", "--points", "50", "--segment", "Nobody", "--json"]) == 4
    assert "No segment named 'Nobody'" in json.loads(capsys.readouterr().out)["error"]


def test_members_show_gives_the_members_badges_challenges_and_streak(db_url, session, capsys):
    import json

    from loyalty.cli import main

    define_challenge(session, name="Two buys", purchases=2, points=150, badge="Duo", starts=utc(2026, 1, 1), actor=MANAGER)
    define_challenge(session, name="Spend 500", min_spend=500, points=1000, starts=utc(2026, 1, 1), actor=MANAGER)
    member = make_member(session, external_id="M77")
    for at in (utc(2026, 9, 3), utc(2026, 10, 3), utc(2026, 11, 2)):  # the tests' clock stands in November 2026
        make_purchase(session, member, 40, at)
    assert main(["members", "show", "M77", "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["member_id"] == "M77" and card["streak_months"] == 3
    assert card["badges"] == [{"name": "Duo", "earned_at": "2026-10-03 00:00:00+00:00"}]
    assert card["challenges"] == [
        {"name": "Two buys", "progress": 2, "target": 2, "completed_at": "2026-10-03 00:00:00+00:00"},
        {"name": "Spend 500", "progress": 120.0, "target": 500.0, "completed_at": None},
    ]
    assert card["balance"] == 120 + 150


def test_results_count_members_close_to_a_streak(session):
    from loyalty.engagement.results import challenge_results

    define_challenge(session, name="Four months", streak_months=4, points=100, starts=utc(2025, 10, 1), actor=MANAGER)
    running, lapsed, started = (make_member(session) for _ in range(3))
    for at in (utc(2026, 1, 10), utc(2026, 2, 10)):  # this month (March) not over yet: the run ends in February
        make_purchase(session, running, 10, at)
    make_purchase(session, lapsed, 10, utc(2025, 12, 10))
    make_purchase(session, started, 10, utc(2026, 3, 2))
    row = challenge_results(session, now=utc(2026, 3, 20)).table.iloc[0]
    assert (row["participants"], row["close"], row["members_completed"]) == (3, 1, 0)


def test_a_holdout_never_completes_nor_sees_the_challenge_and_its_effect_is_measured(session):
    from db.models import Challenge
    from loyalty.engagement.results import challenge_effect
    from loyalty.ledger.challenges import in_holdout

    define_challenge(session, name="Held", purchases=2, points=50, starts=utc(2026, 1, 1), holdout_pct=0.5, actor=MANAGER)
    challenge = session.exec(select(Challenge)).one()
    members = [make_member(session, joined_at=utc(2025, 6, 1)) for _ in range(30)]
    held = in_holdout(challenge, np.array([m.id for m in members]))
    assert 5 < held.sum() < 25, "about half"
    for member, out in zip(members, held):
        for day in (1, 2) if out else (1, 2, 3, 4):  # the treated buy more
            make_purchase(session, member, 20.0, utc(2026, 2, day))
    completed = {c.member_id for c in session.exec(select(ChallengeCompletion)).all()}
    assert completed == {m.id for m, out in zip(members, held) if not out}, "only members outside the holdout complete it"
    shown = {m.id: [c["name"] for c in member_challenges(session, m.id, now=utc(2026, 3, 1))] for m in members}
    assert all(shown[m.id] == ([] if out else ["Held"]) for m, out in zip(members, held))
    effect = challenge_effect(session, challenge.id, now=utc(2026, 3, 1))
    assert (effect["treatment_members"], effect["holdout_members"]) == (int((~held).sum()), int(held.sum()))
    assert effect["purchases"]["treatment_per_member"] == 4 and effect["purchases"]["holdout_per_member"] == 2
    assert effect["revenue"]["difference"] == pytest.approx(40.0) and effect["verdict"] == "more purchases than the holdout"
    with pytest.raises(InvalidInput, match="holdout: a share from 0 to 0.5"):
        define_challenge(session, name="Too held", purchases=2, points=50, holdout_pct=0.7, actor=MANAGER)


def test_a_full_refund_of_a_purchase_the_spend_needed_takes_the_reward_back(session):
    define_challenge(session, name="Spend 100", min_spend=100, points=1000, starts=utc(2025, 1, 1), actor=MANAGER)
    member = make_member(session)
    big = make_purchase(session, member, 95, utc(2025, 6, 1))
    make_purchase(session, member, 6, utc(2025, 6, 2))  # meets it: 101
    assert challenge_points(session, member.id) == [1000]
    return_purchase(session=session, purchase_id=big, actor=OPERATIONS, now=utc(2025, 6, 10))
    assert challenge_points(session, member.id) == [1000, -1000], "without the 95 the spend is 6"
    make_purchase(session, member, 94, utc(2025, 6, 12))  # 100 again
    assert challenge_points(session, member.id) == [1000, -1000, 1000]


def test_a_full_refund_of_a_purchase_the_completion_did_not_need_keeps_it(session):
    define_challenge(session, name="Two buys kept", purchases=2, points=300, starts=utc(2025, 1, 1), actor=MANAGER)
    member = make_member(session)
    make_purchase(session, member, 10, utc(2025, 6, 1))
    make_purchase(session, member, 10, utc(2025, 6, 2))  # meets it
    later = make_purchase(session, member, 10, utc(2025, 6, 3))  # after the completion: it counted for nothing
    return_purchase(session=session, purchase_id=later, actor=OPERATIONS, now=utc(2025, 6, 10))
    assert challenge_points(session, member.id) == [300]
