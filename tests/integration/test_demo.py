"""The demo program: deterministic, realistic, and keeping every ledger invariant.

Most tests read one demo program built once for this module in a database of its own
(SQLite, or a PostgreSQL schema under ``LOYALTY_TEST_DATABASE_URL``); tests that write
use the ``session`` fixture's fresh database and a smaller program.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from db.models import (
    AuditLog,
    Campaign,
    CampaignAssignment,
    Feedback,
    Goal,
    KpiTarget,
    LedgerEntry,
    Member,
    Purchase,
    Redemption,
    Reward,
    Segment,
    Tier,
    TierMovement,
)
from loyalty.access.roles import Actor
from loyalty.demo.simulation import ACQUISITION_CHANNELS, create_demo
from loyalty.errors import InvalidInput, PermissionDenied
from loyalty.ledger.entries import expire_points, fifo_lots
from loyalty.program.campaigns import stable_uniform
from tests.conftest import demo_database
from tests.factories import make_member, utc

MANAGER = Actor("max", "manager")
NOW = utc(2026, 11, 20, 15, 30)
# Big enough for the holdout comparison: a 10 % control group of a few hundred members
# measures the +20 % uplift to within about +-7 %.
DEMO_MEMBERS, DEMO_MONTHS, DEMO_SEED = 3_000, 24, 7
SMALL_MEMBERS, SMALL_MONTHS = 300, 12


# --- the shared demo program ---------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, dict]]:
    """One demo program for the read-only tests, in a database of its own."""
    with demo_database(sqlite_template, tmp_path_factory, members=DEMO_MEMBERS, months=DEMO_MONTHS, seed=DEMO_SEED, now=NOW) as built:
        yield built


@pytest.fixture
def demo_session(demo: tuple[Engine, dict]) -> Iterator[Session]:
    from db.engine import new_session

    with new_session(demo[0]) as session:
        yield session


def _frame(session: Session, query: Any, columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(session.exec(query).all(), columns=columns)


def _utc(column: pd.Series) -> pd.Series:
    return pd.to_datetime(column, utc=True)


@pytest.fixture(scope="module")
def ledger(demo: tuple[Engine, dict]) -> pd.DataFrame:
    from db.engine import new_session

    with new_session(demo[0]) as session:
        frame = _frame(
            session,
            select(
                LedgerEntry.id,
                LedgerEntry.member_id,
                LedgerEntry.kind,
                LedgerEntry.points,
                LedgerEntry.occurred_at,
                LedgerEntry.expires_at,
                LedgerEntry.purchase_id,
                LedgerEntry.redemption_id,
                LedgerEntry.campaign_id,
                LedgerEntry.reason,
            ),
            ["id", "member_id", "kind", "points", "occurred_at", "expires_at", "purchase_id", "redemption_id", "campaign_id", "reason"],
        )
    frame["occurred_at"], frame["expires_at"] = _utc(frame["occurred_at"]), _utc(frame["expires_at"])
    return frame


@pytest.fixture(scope="module")
def purchases(demo: tuple[Engine, dict]) -> pd.DataFrame:
    from db.engine import new_session

    with new_session(demo[0]) as session:
        frame = _frame(
            session,
            select(Purchase.id, Purchase.member_id, Purchase.occurred_at, Purchase.amount, Purchase.category, Purchase.refunded_at),
            ["id", "member_id", "occurred_at", "amount", "category", "refunded_at"],
        )
    frame["occurred_at"], frame["refunded_at"] = _utc(frame["occurred_at"]), _utc(frame["refunded_at"])
    return frame


# --- determinism -------------------------------------------------------------------------------


def _checksum(session: Session) -> dict[str, str]:
    """A digest per table of everything the demo wrote, by content (never by row id)."""
    member = dict(session.exec(select(Member.id, Member.external_id)).all())
    tables = {
        "members": _frame(
            session,
            select(
                Member.external_id,
                Member.name,
                Member.email,
                Member.joined_at,
                Member.city,
                Member.acquisition_channel,
                Member.birth_date,
                Member.marketing_consent,
                Member.tier_id,
            ),
            ["external_id", "name", "email", "joined_at", "city", "channel", "birth", "consent", "tier"],
        ),
        "purchases": _frame(
            session,
            select(
                Purchase.external_id,
                Purchase.member_id,
                Purchase.occurred_at,
                Purchase.amount,
                Purchase.category,
                Purchase.channel,
                Purchase.store,
                Purchase.refunded_at,
            ),
            ["external_id", "member", "at", "amount", "category", "channel", "store", "refunded"],
        ),
        "ledger": _frame(
            session,
            select(
                LedgerEntry.member_id, LedgerEntry.kind, LedgerEntry.points, LedgerEntry.occurred_at, LedgerEntry.expires_at, LedgerEntry.campaign_id
            ),
            ["member", "kind", "points", "at", "expires", "campaign"],
        ),
        "redemptions": _frame(
            session,
            select(Redemption.member_id, Redemption.reward_id, Redemption.points, Redemption.status, Redemption.requested_at),
            ["member", "reward", "points", "status", "at"],
        ),
        "feedback": _frame(
            session, select(Feedback.member_id, Feedback.submitted_at, Feedback.score, Feedback.comment), ["member", "at", "score", "comment"]
        ),
        "assignments": _frame(
            session, select(CampaignAssignment.campaign_id, CampaignAssignment.member_id, CampaignAssignment.group), ["campaign", "member", "group"]
        ),
        "stock": _frame(session, select(Reward.name, Reward.stock), ["name", "stock"]),
    }
    digests = {}
    for name, frame in tables.items():
        if "member" in frame:
            frame["member"] = frame["member"].map(member)
        for column in frame.columns:
            if column in ("at", "joined_at", "expires", "refunded"):
                frame[column] = _utc(frame[column]).dt.strftime("%Y-%m-%dT%H:%M:%S")
        frame = frame.astype(str).sort_values(list(frame.columns)).reset_index(drop=True)
        digests[name] = hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()
    return digests


def test_the_same_seed_gives_the_same_program(session: Session, sqlite_template: Path, tmp_path: Path) -> None:
    from db.engine import get_engine, new_session

    first = create_demo(session, members=SMALL_MEMBERS, months=SMALL_MONTHS, seed=3, actor=MANAGER, now=NOW)
    # The second run goes to a fresh SQLite database: under PostgreSQL this also shows
    # that the program does not depend on the database it is written to.
    path = tmp_path / "second.db"
    shutil.copy(sqlite_template, path)
    engine = get_engine(f"sqlite:///{path}")
    with new_session(engine) as other:
        second = create_demo(other, members=SMALL_MEMBERS, months=SMALL_MONTHS, seed=3, actor=MANAGER, now=NOW)
        second_digest = _checksum(other)
    engine.dispose()
    first.pop("seconds"), second.pop("seconds")
    assert first == second
    assert _checksum(session) == second_digest
    assert first["purchases"] > SMALL_MEMBERS


# --- the ledger invariants ---------------------------------------------------------------------


def test_a_balance_never_goes_below_zero_at_any_moment(ledger: pd.DataFrame) -> None:
    # Entries at the same moment count together: a point in time, not an insert order.
    per_moment = ledger.groupby(["member_id", "occurred_at"])["points"].sum()
    running = per_moment.groupby(level="member_id").cumsum()
    assert running.min() >= 0
    assert len(running) > 10_000


def test_a_redemption_never_spends_more_than_the_balance_at_its_time(ledger: pd.DataFrame, demo_session: Session) -> None:
    per_moment = ledger.groupby(["member_id", "occurred_at"])["points"].sum()
    before = (per_moment.groupby(level="member_id").cumsum() - per_moment).rename("before")
    redeemed = ledger[ledger["kind"] == "redeem"].join(before, on=["member_id", "occurred_at"])
    assert len(redeemed) > 200
    assert (redeemed["before"] >= -redeemed["points"]).all()
    rows = _frame(demo_session, select(Redemption.id, Redemption.points), ["redemption_id", "points"])
    linked = redeemed.merge(rows, on="redemption_id", suffixes=("", "_redemption"))
    assert len(linked) == len(rows) == len(redeemed)
    assert (linked["points_redemption"] == -linked["points"]).all()


def test_expiry_at_each_month_boundary_follows_the_fifo_rule(ledger: pd.DataFrame) -> None:
    # At a boundary t the unconsumed part of the lots due by t is max(0, P(t) - D(t)),
    # D(t) being every debit before t (loyalty.ledger.entries's rule).
    expired = ledger[ledger["kind"] == "expire"]
    lots, debits = ledger[ledger["points"] > 0], ledger[ledger["points"] < 0]
    boundaries = sorted(expired["occurred_at"].unique())
    assert len(boundaries) >= 10
    assert boundaries[-1] == pd.Timestamp(NOW)
    for moment in boundaries:
        due = lots[lots["expires_at"] <= moment].groupby("member_id")["points"].sum()
        spent = -debits[debits["occurred_at"] < moment].groupby("member_id")["points"].sum()
        expected = due.sub(spent, fill_value=0).clip(lower=0)
        expected = expected[expected > 0].astype("int64").sort_index()
        actual = -expired[expired["occurred_at"] == moment].set_index("member_id")["points"].sort_index()
        pd.testing.assert_series_equal(actual, expected, check_names=False, check_index_type=False)


def test_expire_points_right_after_the_demo_finds_nothing_left_to_expire(demo_session: Session, ledger: pd.DataFrame) -> None:
    assert expire_points(session=demo_session, as_of=NOW, actor=MANAGER) == 0
    # The same through the FIFO allocation a member's page shows: no lot past its date
    # keeps any points.
    for _, entries in list(ledger.groupby("member_id"))[:300]:
        rows = [
            (at.to_pydatetime(), None if pd.isna(expires) else expires.to_pydatetime(), int(points))
            for at, expires, points in zip(entries["occurred_at"], entries["expires_at"], entries["points"])
        ]
        for lot in fifo_lots(rows):
            if lot.expires_at is not None and lot.expires_at <= NOW:
                assert lot.remaining == 0


def test_a_refunded_purchase_nets_to_zero_points(ledger: pd.DataFrame, purchases: pd.DataFrame) -> None:
    refunded = purchases.loc[purchases["refunded_at"].notna(), "id"]
    assert len(refunded) > 50
    net = ledger[ledger["purchase_id"].isin(refunded)].groupby("purchase_id")["points"].sum()
    assert (net == 0).all()
    reversed_once = ledger[(ledger["kind"] == "reverse") & ledger["purchase_id"].notna()].groupby("purchase_id").size()
    assert reversed_once.max() == 1
    assert set(reversed_once.index) <= set(refunded)
    # A refund comes after its purchase.
    refund_rows = purchases[purchases["refunded_at"].notna()]
    assert (refund_rows["refunded_at"] > refund_rows["occurred_at"]).all()


def test_purchases_earn_with_the_members_tier_multiplier_at_the_time(demo_session: Session, ledger: pd.DataFrame, purchases: pd.DataFrame) -> None:
    tiers = _frame(demo_session, select(Tier.id, Tier.name, Tier.multiplier).order_by(Tier.rank), ["tier_id", "name", "multiplier"])
    moves = _frame(demo_session, select(TierMovement.member_id, TierMovement.moved_at, TierMovement.to_tier_id), ["member_id", "moved_at", "tier_id"])
    moves["moved_at"] = _utc(moves["moved_at"])
    assert set(moves["tier_id"]) == set(tiers["tier_id"])  # every tier is reached by someone
    earn = ledger[ledger["kind"] == "earn"].merge(purchases[["id", "amount"]], left_on="purchase_id", right_on="id")
    earn = pd.merge_asof(
        earn.sort_values("occurred_at"),
        moves.sort_values("moved_at"),
        left_on="occurred_at",
        right_on="moved_at",
        by="member_id",
        allow_exact_matches=True,
    )
    multiplier = earn["tier_id"].map(tiers.set_index("tier_id")["multiplier"]).fillna(1.0)
    expected = np.floor(earn["amount"] * multiplier + 1e-9).astype("int64")
    assert (earn["points"] == expected).all()
    assert (multiplier > 1).sum() > 100


def test_reward_stock_never_goes_below_zero_and_matches_the_redemptions(demo_session: Session) -> None:
    stock = _frame(demo_session, select(Reward.id, Reward.name, Reward.stock), ["id", "name", "stock"])
    created = {row.entity_id: row.after["stock"] for row in demo_session.exec(select(AuditLog).where(AuditLog.action == "reward.create"))}
    taken = _frame(
        demo_session,
        select(Redemption.reward_id, func.count()).where(Redemption.status != "cancelled").group_by(Redemption.reward_id),
        ["id", "taken"],
    ).set_index("id")["taken"]
    limited = stock[stock["stock"].notna()]
    assert len(limited) >= 5
    assert (limited["stock"] >= 0).all()
    assert (limited["stock"] == 0).any()  # something sold out
    for row in limited.itertuples():
        assert row.stock == created[str(row.id)] - taken.get(row.id, 0), row.name


def test_tier_restricted_rewards_go_only_to_members_of_that_tier_or_above(demo_session: Session) -> None:
    rows = demo_session.exec(
        select(Redemption.requested_at, Redemption.member_id, Tier.rank)
        .join(Reward, Reward.id == Redemption.reward_id)
        .join(Tier, Tier.id == Reward.min_tier_id)
    ).all()
    assert rows
    for requested_at, member_id, required_rank in rows:
        moved = demo_session.exec(
            select(Tier.rank)
            .join(TierMovement, TierMovement.to_tier_id == Tier.id)
            .where(TierMovement.member_id == member_id, TierMovement.moved_at <= requested_at)
            .order_by(TierMovement.moved_at.desc())
        ).first()
        assert moved is not None and moved >= required_rank


# --- realism -------------------------------------------------------------------------------------


def test_every_acquisition_channel_is_present_and_retention_differs_by_channel(demo_session: Session, purchases: pd.DataFrame) -> None:
    members = _frame(demo_session, select(Member.id, Member.acquisition_channel), ["member_id", "channel"])
    assert set(members["channel"]) == set(ACQUISITION_CHANNELS)
    first = purchases.groupby("member_id")["occurred_at"].min().rename("first")
    bought = purchases.join(first, on="member_id")
    # Still buying three months or more after their first purchase, among members whose
    # first purchase is old enough to tell.
    old_enough = first[first <= pd.Timestamp(NOW) - pd.DateOffset(months=6)].index
    kept = bought[bought["occurred_at"] >= bought["first"] + pd.DateOffset(months=3)]["member_id"].unique()
    cohort = members[members["member_id"].isin(old_enough)].assign(kept=lambda f: f["member_id"].isin(kept))
    retention = cohort.groupby("channel")["kept"].mean()
    assert retention["referral"] > retention["social_ads"] + 0.15
    assert retention["store"] > retention["social_ads"]
    # Social-ads recruits also often never buy at all.
    never = members.assign(bought=members["member_id"].isin(first.index)).groupby("channel")["bought"].mean()
    assert never["social_ads"] < never["store"] - 0.15


def test_purchases_peak_in_december(purchases: pd.DataFrame) -> None:
    per_month = purchases.groupby(purchases["occurred_at"].dt.strftime("%Y-%m")).size()
    assert per_month["2025-12"] > 1.15 * max(per_month["2025-11"], per_month["2026-01"])


def test_the_holdout_of_each_campaign_is_its_stable_share_of_the_eligible(demo_session: Session) -> None:
    campaigns = {c.id: c for c in demo_session.exec(select(Campaign))}
    assigned = _frame(
        demo_session,
        select(CampaignAssignment.campaign_id, CampaignAssignment.member_id, CampaignAssignment.group),
        ["campaign_id", "member_id", "group"],
    )
    expected_holdout = variance = 0.0
    for campaign_id, group in assigned.groupby("campaign_id"):
        pct = campaigns[campaign_id].holdout_pct
        stable = np.where(stable_uniform(campaign_id, group["member_id"].to_numpy()) < pct, "holdout", "treatment")
        assert (group["group"].to_numpy() == stable).all()
        expected_holdout += len(group) * pct
        variance += len(group) * pct * (1 - pct)
    observed = (assigned["group"] == "holdout").sum()
    assert abs(observed - expected_holdout) <= 4 * variance**0.5
    assert observed > 100


def test_treated_members_buy_more_during_a_campaign_than_the_holdout(demo_session: Session, purchases: pd.DataFrame) -> None:
    assigned = _frame(
        demo_session,
        select(CampaignAssignment.campaign_id, CampaignAssignment.member_id, CampaignAssignment.group),
        ["campaign_id", "member_id", "group"],
    )
    treated = held = 0.0
    # The birthday campaign lifts purchases only in each member's birthday week, so its
    # whole window would mostly measure noise; the others lift their whole window.
    campaigns = demo_session.exec(
        select(Campaign).where(Campaign.status.in_(["ended", "active"]), Campaign.holdout_pct > 0, Campaign.kind != "birthday")
    ).all()
    assert len(campaigns) >= 5
    for campaign in campaigns:
        start, end = pd.Timestamp(campaign.starts_at), min(pd.Timestamp(campaign.ends_at), pd.Timestamp(NOW))
        during = purchases[(purchases["occurred_at"] >= start) & (purchases["occurred_at"] < end)]
        group = assigned[assigned["campaign_id"] == campaign.id]
        counts = during[during["member_id"].isin(group["member_id"])].groupby("member_id").size()
        per_member = group.assign(bought=group["member_id"].map(counts).fillna(0)).groupby("group")["bought"].mean()
        # Each campaign's comparison counts as much as its control group is big.
        weight = (group["group"] == "holdout").sum()
        treated += weight * per_member["treatment"]
        held += weight * per_member["holdout"]
    assert treated > held


def test_campaign_bonuses_go_to_treatment_members_only(demo_session: Session, ledger: pd.DataFrame) -> None:
    assigned = _frame(
        demo_session,
        select(CampaignAssignment.campaign_id, CampaignAssignment.member_id, CampaignAssignment.group),
        ["campaign_id", "member_id", "group"],
    )
    bonuses = ledger[ledger["kind"] == "bonus"]
    others = bonuses[bonuses["campaign_id"].isna()]  # challenges' and referrals' bonuses: no campaign, no purchase
    assert others["reason"].str.match(r"^(challenge: |referral bonus: )").all() and others["purchase_id"].isna().all()
    bonus = bonuses[bonuses["campaign_id"].notna()].merge(assigned, on=["campaign_id", "member_id"], how="left")
    assert len(bonus) > 200
    assert (bonus["group"] == "treatment").all()
    assert (bonus["points"] > 0).all() and bonus["purchase_id"].notna().all()
    assert bonus["campaign_id"].nunique() >= 5


def test_the_program_has_what_the_later_features_read(demo: tuple[Engine, dict], demo_session: Session) -> None:
    from loyalty.analytics.metrics import METRICS
    from loyalty.program.rewards import REWARD_KINDS

    summary = demo[1]
    assert summary["members"] == DEMO_MEMBERS
    assert summary["tiers"] == 4 and summary["goals"] == 5 and summary["segments"] >= 3
    tiers = demo_session.exec(select(Tier).order_by(Tier.rank)).all()
    assert [t.multiplier for t in tiers] == [1.0, 1.25, 1.5, 2.0]
    assert all(t.benefits for t in tiers)
    rewards = demo_session.exec(select(Reward)).all()
    assert {r.kind for r in rewards} == set(REWARD_KINDS)
    assert [r.min_tier_id for r in rewards if r.min_tier_id] == [tiers[2].id]
    assert sum(not r.active for r in rewards) == 1
    assert min(r.points_cost for r in rewards) >= 200 and max(r.points_cost for r in rewards) == 10_000
    statuses = {c.status for c in demo_session.exec(select(Campaign))}
    assert {"ended", "active", "scheduled", "draft"} <= statuses
    assert {t.metric for t in demo_session.exec(select(KpiTarget))} <= set(METRICS)
    assert demo_session.exec(select(func.count()).select_from(KpiTarget).where(KpiTarget.segment_id.is_not(None))).one() >= 1
    assert demo_session.exec(select(func.count()).select_from(Goal)).one() == 5
    assert {"acquisition_channel", "days_since_last_purchase", "tier"} <= {k for s in demo_session.exec(select(Segment)) for k in s.rules}
    categories = set(demo_session.exec(select(Purchase.category).distinct()).all())
    assert "eco-friendly" in categories and len(categories) >= 6
    statuses = set(demo_session.exec(select(Redemption.status).distinct()).all())
    assert statuses == {"fulfilled", "requested", "cancelled"}
    first = demo_session.exec(select(Member).order_by(Member.id)).first()
    assert first.external_id == "M0000001" and first.email.endswith("@example.com") and first.birth_date is not None
    scores = demo_session.exec(select(Feedback.score, Feedback.comment)).all()
    assert {s for s, _ in scores} <= set(range(11)) and sum(bool(c) for _, c in scores) > 0.2 * len(scores)
    # Several purchases by one member on one day happen, but rarely.
    days = pd.DataFrame(demo_session.exec(select(Purchase.member_id, Purchase.occurred_at)).all(), columns=["member", "at"])
    repeats = days.assign(day=_utc(days["at"]).dt.date).duplicated(["member", "day"]).mean()
    assert 0 < repeats < 0.05


def test_nps_answers_are_higher_from_members_who_keep_buying(demo_session: Session, purchases: pd.DataFrame) -> None:
    answers = _frame(demo_session, select(Feedback.member_id, Feedback.submitted_at, Feedback.score), ["member_id", "at", "score"])
    answers["at"] = _utc(answers["at"])
    last = purchases.groupby("member_id")["occurred_at"].max()
    recent = answers["member_id"].map(last) >= answers["at"] - timedelta(days=60)
    assert answers.loc[recent, "score"].mean() > answers.loc[~recent, "score"].mean() + 0.5


# --- refusals and atomicity ---------------------------------------------------------------------


def test_a_database_that_already_has_members_is_refused(session: Session) -> None:
    make_member(session)
    with pytest.raises(InvalidInput, match="already has 1 members"):
        create_demo(session, members=SMALL_MEMBERS, actor=MANAGER, now=NOW)
    assert session.exec(select(func.count()).select_from(Tier)).one() == 0


@pytest.mark.parametrize(
    ("arguments", "message"),
    [({"members": 5}, "between 10 and"), ({"months": 2}, "3 to 120 months"), ({"now": NOW.replace(tzinfo=None)}, "time zone")],
    ids=["too few members", "too short a history", "a time without a zone"],
)
def test_arguments_out_of_range_are_refused(session: Session, arguments: dict, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        create_demo(session, actor=MANAGER, **{"now": NOW, **arguments})


def test_an_analyst_may_not_create_the_demo_program(session: Session) -> None:
    with pytest.raises(PermissionDenied):
        create_demo(session, members=SMALL_MEMBERS, actor=Actor("ann", "analyst"), now=NOW)


def test_a_failure_half_way_leaves_nothing_behind(session: Session) -> None:
    def fail_in_month_five(done: int, total: int) -> None:
        if done == 6:
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        create_demo(session, members=SMALL_MEMBERS, months=SMALL_MONTHS, actor=MANAGER, now=NOW, progress=fail_in_month_five)
    for table in (Member, Purchase, LedgerEntry, Tier, Reward, Campaign, AuditLog):
        assert session.exec(select(func.count()).select_from(table)).one() == 0, table.__name__


def test_expire_points_later_expires_only_the_lots_due_since_the_demo(session: Session) -> None:
    create_demo(session, members=SMALL_MEMBERS, months=SMALL_MONTHS + 6, seed=5, actor=MANAGER, now=NOW)
    entries = pd.DataFrame(
        session.exec(select(LedgerEntry.member_id, LedgerEntry.points, LedgerEntry.expires_at)).all(), columns=["member_id", "points", "expires_at"]
    )
    entries["expires_at"] = _utc(entries["expires_at"])
    later = NOW + timedelta(days=45)
    newly_due = entries[(entries["expires_at"] > pd.Timestamp(NOW)) & (entries["expires_at"] <= pd.Timestamp(later))]
    newly_due = newly_due.groupby("member_id")["points"].sum()

    assert expire_points(session=session, as_of=later, actor=MANAGER) > 0
    expired = pd.DataFrame(
        session.exec(select(LedgerEntry.member_id, LedgerEntry.points).where(LedgerEntry.kind == "expire", LedgerEntry.occurred_at == later)).all(),
        columns=["member_id", "points"],
    ).set_index("member_id")["points"]
    assert (-expired <= newly_due.reindex(expired.index)).all()
    assert expire_points(session=session, as_of=later, actor=MANAGER) == 0


def test_progress_is_reported_up_to_the_total(session: Session) -> None:
    calls: list[tuple[int, int]] = []
    create_demo(session, members=SMALL_MEMBERS, months=SMALL_MONTHS, actor=MANAGER, now=NOW, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1][0] == calls[-1][1] and len(calls) > SMALL_MONTHS
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_without_redemptions_members_only_earn_and_expire(session: Session) -> None:
    # Longer than the 12-month expiry period, so that some lots have expired by now.
    summary = create_demo(session, members=SMALL_MEMBERS, months=SMALL_MONTHS + 6, actor=MANAGER, now=NOW, redemptions=False)
    assert summary["redemptions"] == 0
    assert session.exec(select(func.count()).select_from(Redemption)).one() == 0
    kinds = set(session.exec(select(LedgerEntry.kind).distinct()).all())
    assert kinds == {"earn", "bonus", "reverse", "expire"}


def test_an_admin_also_gets_one_demo_user_per_role_each_with_its_own_random_password(session: Session) -> None:
    from loyalty.access.roles import SYSTEM_DEMO
    from loyalty.access.users import DEMO_USERS, authenticate

    summary = create_demo(session, members=SMALL_MEMBERS, months=SMALL_MONTHS, actor=SYSTEM_DEMO, now=NOW)
    assert {(u["username"], u["role"]) for u in summary["users"]} == set(DEMO_USERS.items())
    first = summary["users"][0]
    assert authenticate(session, first["username"], first["password"]).role == first["role"]
    passwords = [u["password"] for u in summary["users"]]
    assert len(set(passwords)) == len(passwords) and all(len(p) >= 12 and u not in p for p, u in zip(passwords, DEMO_USERS))


def test_the_demo_engages_members_with_challenges_referrals_and_a_month_of_messages(demo: tuple[Engine, dict], demo_session: Session) -> None:
    from db.models import ChallengeCompletion, MemberMessage, Referral

    summary = demo[1]
    completions = demo_session.exec(select(ChallengeCompletion.challenge_id)).all()
    assert summary["challenges"] == 2 and len(set(completions)) == 2 and len(completions) == summary["challenge_completions"] > 0
    referrals = demo_session.exec(select(Referral.status)).all()
    assert len(referrals) == summary["referrals"] and 0.05 * summary["members"] <= len(referrals) <= 0.1 * summary["members"]
    assert referrals.count("rewarded") == summary["referrals_paid"] > 0
    messages = demo_session.exec(select(MemberMessage.created_at, MemberMessage.status)).all()
    days = {pd.Timestamp(at).date() for at, _ in messages}
    assert len(days) >= 25 and max(days) == NOW.date() and min(days) >= (NOW - timedelta(days=31)).date()
    assert {status for _, status in messages} == {"sent", "queued", "suppressed"}
