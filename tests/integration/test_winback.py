"""Win-back: high-value members whose probability of being alive fell, and the draft campaign for them.

The program (``winback_program``), 51 members observed for 358 days up to ``as_of``:

* 24 steady members buy every 14 days from day 0 to day 350 (26 purchases of
  10, 11, ..., 33 each: 260 to 858 spent), the last 8 days before ``as_of``;
* 4 lapsed high-value members (Gold) bought every 7 days from day 0 to day 259 (38
  purchases of 100, 110, 120, 130: 3,800 to 4,940 spent), then stopped: their last
  purchase was 99 days before ``as_of``, 9 days before the reference date 90 days
  earlier. The 130 one is erased;
* 3 lapsed low-value members, the same rhythm at 2 a purchase (76 spent);
* 5 members with a single purchase of 50 (BG/NBD keeps P(alive) = 1 for them);
* 5 long-gone members bought 5 times of 20 in the first 4 weeks, 10 quitters twice
  of 20 in the first week (without them everyone drops out alike and the fit runs off
  to the edge of the parameter space).

The value line at the 0.8 quantile of 51 spends is the 41st smallest (index 0.8 x 50 =
40): 10 quitters (40), 5 singles (50), 3 low (76) and 5 long-gone (100) come first, so
it is the 18th steady member's 26 x 27 = 702.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import numpy as np
import pandas as pd
import pytest
from sqlmodel import Session, select

from db.engine import write_transaction
from db.models import AuditLog, Campaign, CampaignAssignment, Member
from loyalty.access.roles import SYSTEM_CLI, Actor
from loyalty.decisions.planner import preview_campaign
from loyalty.decisions.winback import create_winback_campaign, winback_candidates
from loyalty.errors import InvalidInput, PermissionDenied
from loyalty.ledger.erasure import erase_member
from loyalty.ledger.purchases import add_purchases
from loyalty.program.campaigns import MAX_LISTED_MEMBERS, activate_campaign, eligible_members, save_campaign
from tests.factories import make_member, make_purchase, make_tier, utc

AS_OF = date(2026, 6, 30)
MANAGER, ANALYST = Actor("mia", "manager"), Actor("ana", "analyst")
LAPSED_AMOUNTS = (100.0, 110.0, 120.0, 130.0)


def winback_program(session: Session, as_of: date) -> dict[str, list[Member]]:
    """The program of the module docstring, its last day ``as_of``."""
    first = datetime.combine(as_of - timedelta(days=358), time(12), tzinfo=UTC)
    gold = make_tier(session, name="Gold")
    groups: dict[str, list[Member]] = {
        "steady": [make_member(session) for _ in range(24)],
        "lapsed": [make_member(session, tier_id=gold.id) for _ in LAPSED_AMOUNTS],
        "low": [make_member(session) for _ in range(3)],
        "single": [make_member(session) for _ in range(5)],
        "gone": [make_member(session) for _ in range(5)],
        "quitters": [make_member(session) for _ in range(10)],
    }
    rows = [(m, first + timedelta(days=14 * k), 10.0 + i) for i, m in enumerate(groups["steady"]) for k in range(26)]
    rows += [(m, first + timedelta(days=7 * k), amount) for m, amount in zip(groups["lapsed"], LAPSED_AMOUNTS) for k in range(38)]
    rows += [(m, first + timedelta(days=7 * k), 2.0) for m in groups["low"] for k in range(38)]
    rows += [(m, first + timedelta(days=100), 50.0) for m in groups["single"]]
    rows += [(m, first + timedelta(days=7 * k), 20.0) for m in groups["gone"] for k in range(5)]
    rows += [(m, first + timedelta(days=7 * k), 20.0) for m in groups["quitters"] for k in range(2)]
    frame = pd.DataFrame(
        {
            "external_id": [f"WB{n:05d}" for n in range(len(rows))],
            "member_id": [m.id for m, _, _ in rows],
            "occurred_at": pd.to_datetime([at for _, at, _ in rows], utc=True),
            "amount": [a for _, _, a in rows],
            "channel": "store",
            "store": "S1",
            "category": "grocery",
        }
    )
    with write_transaction(session):
        add_purchases(session, frame, actor=SYSTEM_CLI)
    erase_member(session=session, external_id=groups["lapsed"][-1].external_id, actor=SYSTEM_CLI)
    return groups


@pytest.fixture
def program(session: Session) -> dict[str, list[Member]]:
    return winback_program(session, AS_OF)


def _alive(bgnbd: dict[str, float], x: float, t_x: float, T: float) -> float:
    """BG/NBD P(alive) by hand: 1 / (1 + a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x))."""
    r, alpha, a, b = bgnbd["r"], bgnbd["alpha"], bgnbd["a"], bgnbd["b"]
    return 1 / (1 + a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x))


def test_high_value_members_who_stopped_buying_are_listed_most_valuable_first(session, program):
    listed = winback_candidates(session, as_of=AS_OF)
    lapsed = program["lapsed"][:3]  # the fourth is erased
    assert listed["member"].tolist() == [m.external_id for m in reversed(lapsed)]
    assert listed["member_id"].tolist() == [m.id for m in reversed(lapsed)]
    assert listed["historical_spend"].tolist() == pytest.approx([38 * 120.0, 38 * 110.0, 38 * 100.0])
    assert listed["tier"].tolist() == ["Gold"] * 3
    assert listed["purchase_days"].tolist() == [38] * 3
    assert listed["last_purchase"].tolist() == [pd.Timestamp(2026, 3, 23)] * 3
    assert listed["days_since_last_purchase"].tolist() == [99] * 3
    criteria = listed.attrs["criteria"]
    assert criteria["historical_line"] == pytest.approx(26 * 27.0)
    assert (criteria["reference"], criteria["members_scored"], criteria["matched"]) == ("2026-04-01", 51, 3)
    # Weekly buyers, 37 repeats in 37 weeks: then 268 days (38.29 weeks) into the
    # observation, now 358 days (51.14 weeks), with the same fitted parameters.
    then, now = _alive(criteria["bgnbd"], 37, 37, 268 / 7), _alive(criteria["bgnbd"], 37, 37, 358 / 7)
    assert listed["p_alive_then"].tolist() == pytest.approx([then] * 3)
    assert listed["p_alive_now"].tolist() == pytest.approx([now] * 3)
    assert listed["drop"].tolist() == pytest.approx([then - now] * 3)
    assert then > 0.9 and now < 0.01


def test_still_active_high_value_members_and_lapsed_low_value_ones_are_not_listed(session, program):
    everyone = winback_candidates(session, as_of=AS_OF, min_value_quantile=0.0)
    # With every member counted as high value, the low-value lapsed ones join the list;
    # the steady, single, long-gone and quitting ones never do.
    assert set(everyone["member"]) == {m.external_id for m in program["lapsed"][:3] + program["low"]}
    top_steady = program["steady"][-7:]  # 26 x 27 ... 33: at or above the 702 line, still buying
    listed = winback_candidates(session, as_of=AS_OF)
    assert not set(listed["member"]) & {m.external_id for m in top_steady + program["low"]}


def test_the_list_is_cut_at_the_limit_and_says_how_many_matched(session, program):
    listed = winback_candidates(session, as_of=AS_OF, limit=2)
    assert listed["historical_spend"].tolist() == pytest.approx([4560.0, 4180.0])
    assert (listed.attrs["criteria"]["matched"], listed.attrs["criteria"]["listed"]) == (3, 2)


def test_a_higher_minimum_fall_than_anyone_s_leaves_the_list_empty(session, program):
    listed = winback_candidates(session, as_of=AS_OF)
    empty = winback_candidates(session, as_of=AS_OF, min_drop=min(1.0, float(listed["drop"].max()) + 0.001))
    assert empty.empty and empty.attrs["criteria"]["matched"] == 0


def test_names_are_masked_for_analysts_and_shown_to_managers(session, program):
    member = program["lapsed"][2]
    for actor, name, email in ((ANALYST, "T***", "m***@example.com"), (MANAGER, member.name, member.email)):
        listed = winback_candidates(session, actor=actor, as_of=AS_OF)
        assert (listed["name"].iloc[0], listed["email"].iloc[0]) == (name, email)


def test_too_few_buyers_for_the_model_is_said_in_words(session):
    member = make_member(session)
    make_purchase(session, member, 20.0, occurred_at=utc(2026, 6, 1))
    with pytest.raises(InvalidInput, match="Only 1 members bought on or before 2026-06-30; the CLV model needs at least 20"):
        winback_candidates(session, as_of=AS_OF)


def test_a_draft_campaign_targets_exactly_the_listed_members_and_is_audited(session, program):
    listed = winback_candidates(session, actor=MANAGER, as_of=AS_OF)
    now = utc(2026, 7, 1, 9)
    campaign = create_winback_campaign(
        session=session, actor=MANAGER, member_ids=listed["member_id"].tolist(), name="Win back Gold", criteria=listed.attrs["criteria"], now=now
    )
    ids = sorted(m.id for m in program["lapsed"][:3])
    assert (campaign.status, campaign.kind, campaign.eligibility) == ("draft", "win_back", {"member_ids": ids})
    assert (campaign.starts_at, campaign.ends_at) == (utc(2026, 7, 8), utc(2026, 8, 7))
    assert campaign.holdout_pct == 0.1
    # 2026-03-23 to 2026-07-01 is 100 days; one less keeps them eligible at any time of day.
    assert campaign.rule == {"inactive_days": 99, "points": 300}
    predicted_line = listed.attrs["criteria"]["predicted_line"]
    assert campaign.description == (
        "Win-back of 3 listed members: high-value members (top 20% by historical spend, at least EUR 702.00, or by predicted "
        f"12-month CLV, at least EUR {predicted_line:,.2f}) whose probability of being alive (BG/NBD) fell by at least 20 points "
        "between 2026-04-01 and 2026-06-30 to below 50%. Members who buy again before the campaign is activated drop out "
        "(they came back by themselves)."
    )
    assert eligible_members(session, campaign.eligibility, kind=campaign.kind, rule=campaign.rule, as_of=campaign.starts_at).tolist() == ids
    assert preview_campaign(session, campaign.id, now=now)["eligible"] == 3
    assert session.exec(select(CampaignAssignment)).all() == []  # a draft: nobody assigned, nothing awarded
    audit = session.exec(select(AuditLog).where(AuditLog.action == "campaign.create")).one()
    assert (audit.actor, audit.entity_id, audit.after["eligibility"]) == ("mia", str(campaign.id), {"member_ids": ids})


def test_a_listed_member_who_buys_again_before_activation_drops_out(session, program):
    lapsed = program["lapsed"][:3]
    campaign = create_winback_campaign(session=session, actor=MANAGER, member_ids=[m.id for m in lapsed], name="Back", now=utc(2026, 7, 1))
    make_purchase(session, lapsed[0], 30.0, occurred_at=utc(2026, 7, 3, 15))
    activate_campaign(session=session, campaign_id=campaign.id, actor=MANAGER, now=utc(2026, 7, 5))
    assigned = session.exec(select(CampaignAssignment.member_id)).all()
    assert sorted(assigned) == sorted(m.id for m in lapsed[1:])


def test_an_analyst_may_not_create_the_campaign(session, program):
    with pytest.raises(PermissionDenied):
        create_winback_campaign(session=session, actor=ANALYST, member_ids=[program["lapsed"][0].id], name="Nope")
    assert session.exec(select(Campaign)).all() == []


@pytest.mark.parametrize(
    ("member_ids", "message"),
    [
        ([], "needs at least one member"),
        ("abc", "must be a list of member ids"),
        ([1.5], "member ids \\(whole numbers\\) only"),
        (list(range(1, MAX_LISTED_MEMBERS + 2)), "at most 10,000 members \\(this list has 10,001\\)"),
        ([10**9, 10**9 + 1], "2 of the listed members do not exist \\(member ids 1000000000, 1000000001\\)"),
    ],
    ids=["empty", "not-a-list", "not-whole-numbers", "too-many", "unknown"],
)
def test_a_member_list_that_cannot_be_targeted_is_refused_in_words(session, program, member_ids, message):
    with pytest.raises(InvalidInput, match=message):
        create_winback_campaign(session=session, actor=MANAGER, member_ids=member_ids, name="Bad list")
    assert session.exec(select(Campaign)).all() == []


def test_an_erased_member_cannot_be_listed(session, program):
    erased = program["lapsed"][-1]
    with pytest.raises(InvalidInput, match=f"1 of the listed members were erased and cannot be targeted \\(member ids {erased.id}\\)"):
        save_campaign(
            session=session,
            actor=MANAGER,
            name="Listed",
            kind="fixed_bonus",
            rule={"points": 50},
            starts_at=utc(2026, 7, 8),
            ends_at=utc(2026, 8, 7),
            eligibility={"member_ids": [erased.id]},
        )


def test_a_member_list_combines_with_other_eligibility_and_repeats_count_once(session, program):
    gold_and_low = [m.id for m in program["lapsed"][:2] + program["low"][:1]]
    campaign = save_campaign(
        session=session,
        actor=MANAGER,
        name="Gold listed",
        kind="fixed_bonus",
        rule={"points": 50},
        starts_at=utc(2026, 7, 8),
        ends_at=utc(2026, 8, 7),
        eligibility={"member_ids": gold_and_low + gold_and_low[:1], "tiers": ["Gold"]},
    )
    assert campaign.eligibility["member_ids"] == sorted(gold_and_low)
    eligible = eligible_members(session, campaign.eligibility, kind="fixed_bonus", rule=campaign.rule, as_of=utc(2026, 7, 8))
    assert eligible.tolist() == sorted(gold_and_low[:2]) and eligible.dtype == np.int64


def test_a_listed_campaign_can_still_be_renamed_after_one_of_its_members_is_erased(session, program):
    lapsed = program["lapsed"][:3]
    campaign = create_winback_campaign(session=session, actor=MANAGER, member_ids=[m.id for m in lapsed], name="Back", now=utc(2026, 7, 1))
    erase_member(session=session, external_id=lapsed[0].external_id, actor=SYSTEM_CLI)
    renamed = save_campaign(session=session, actor=MANAGER, campaign_id=campaign.id, name="Come back")
    assert (renamed.name, renamed.eligibility) == ("Come back", {"member_ids": sorted(m.id for m in lapsed)})
    # The erased member is left out when members are assigned.
    assert eligible_members(session, renamed.eligibility, kind="win_back", rule=renamed.rule, as_of=utc(2026, 7, 8)).tolist() == sorted(
        m.id for m in lapsed[1:]
    )
