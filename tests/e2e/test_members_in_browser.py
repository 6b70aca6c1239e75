"""End to end in the browser: operations staff refund, return part of a purchase and redeem
a reward from a member's profile, each twice in a row, and the page shows the result at once."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func
from sqlmodel import Session, select

from db.engine import get_engine, new_session
from db.models import LedgerEntry, Member, Purchase, Redemption, Reward
from loyalty.ledger.entries import member_balance
from tests.e2e.conftest import scroll_to, sign_in, wait_for_page

pytestmark = pytest.mark.e2e


def members_with_open_purchases(session: Session, count: int, min_amount: float, since: datetime | None = None) -> list[str]:
    """Members with at least ``count`` purchases of ``min_amount`` or more (since ``since``) not returned at all."""
    rows = session.exec(
        select(Member.external_id)
        .join(Purchase, Purchase.member_id == Member.id)
        .where(
            Purchase.refunded_at.is_(None),
            Purchase.returned_cents == 0,
            Purchase.amount >= min_amount,
            Purchase.occurred_at >= (since or datetime(1970, 1, 1, tzinfo=UTC)),
        )
        .group_by(Member.external_id)
        .having(func.count() >= count)
        .order_by(Member.external_id)
    ).all()
    return list(rows)


def purchases_of(session: Session, member: str) -> dict[str, tuple[int, object]]:
    """Each purchase of the member: (cents returned, refunded at)."""
    session.rollback()
    return {
        ref: (cents, at)
        for ref, cents, at in session.exec(
            select(Purchase.external_id, Purchase.returned_cents, Purchase.refunded_at)
            .join(Member, Member.id == Purchase.member_id)
            .where(Member.external_id == member)
        )
    }


def shown_balance(page) -> str:
    return balance_tile(page).inner_text()


def balance_tile(page):
    return page.locator('[data-testid="stMetric"]').filter(has_text="Balance").locator('[data-testid="stMetricValue"]')


def eventually(check, timeout: float = 30.0) -> None:
    """Run ``check`` (assertions) until it passes or ``timeout`` seconds have gone.

    The notice of the first of two actions in a row is still on screen when the second is
    clicked, so waiting for its text does not prove the second one was written yet.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            check()
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.25)


def assert_equal(actual, expected) -> None:
    assert actual == expected


def expect_balance(page, session: Session, member: str) -> None:
    """The Balance tile comes to show what the member can spend now (it redraws after the write)."""
    from playwright.sync_api import expect

    expect(balance_tile(page)).to_have_text(spendable(session, member), timeout=30_000)


def spendable(session: Session, member: str) -> str:
    session.rollback()
    member_id = session.exec(select(Member.id).where(Member.external_id == member)).one()
    return f"{member_balance(session, member_id).points:,} pts"


def open_profile(page, app_url: str, member: str) -> None:
    sign_in(page, app_url, "operations")
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name="Members").click()
    wait_for_page(page)
    page.get_by_label("Search by member id, name or e-mail").fill(member)
    page.keyboard.press("Enter")
    wait_for_page(page)
    page.get_by_role("heading", name=member).wait_for()


def choose(page, label: str, option_starts: str) -> None:
    """Open the select box, type to narrow a long list (as a person would), pick the option."""
    page.get_by_label(label, exact=True).click()
    page.keyboard.type(option_starts)
    page.get_by_role("option").filter(has_text=option_starts).first.click()


def test_refunding_two_chosen_purchases_in_a_row_touches_only_those_and_updates_the_balance(page, app_url, e2e_database, screenshots):
    with new_session(get_engine(e2e_database)) as session:
        member = members_with_open_purchases(session, 4, 1.0)[0]
        before = purchases_of(session, member)
        open_refs = sorted(ref for ref, (cents, at) in before.items() if at is None and cents == 0)
        targets = [open_refs[-1], open_refs[1]]  # not the first offered: a row position would pick that one
        open_profile(page, app_url, member)
        page.get_by_role("tab", name="Purchases").click()
        for n, target in enumerate(targets, start=1):
            choose(page, "Purchase", target)
            page.get_by_role("button", name="Refund", exact=True).click()
            page.get_by_text(f"Refunded purchase {target} in full").wait_for()
            wait_for_page(page)

            def refunded_so_far(n: int = n) -> None:
                after = purchases_of(session, member)
                changed = sorted(ref for ref in after if after[ref] != before[ref])
                assert changed == sorted(targets[:n]), f"refund {n} changed {changed}, chose {targets[:n]}"

            eventually(refunded_so_far)
            expect_balance(page, session, member)
            page.screenshot(path=str(screenshots / f"members-refund-{n}.png"), full_page=True)
        # The Purchases tab stays open and no longer offers what was refunded.
        page.get_by_label("Purchase", exact=True).click()
        page.keyboard.type("P")  # every purchase id starts with it: opens the list unfiltered
        page.get_by_role("option").first.wait_for()
        offered = page.get_by_role("option").all_inner_texts()
        assert offered and not [o for o in offered if o.split(" · ")[0] in targets]
        page.keyboard.press("Escape")
        wait_for_page(page)
        page.get_by_role("tab", name="Points ledger").click()
        wait_for_page(page)
        page.locator(".js-plotly-plot").first.wait_for()
        scroll_to(page, '[data-testid="stDataFrame"]:visible')  # the table is drawn on a canvas
        page.wait_for_timeout(500)
        page.screenshot(path=str(screenshots / "members-ledger.png"), full_page=True)


def test_returning_part_of_a_purchase_twice_takes_back_its_share_each_time(page, app_url, e2e_database, screenshots):
    with new_session(get_engine(e2e_database)) as session:
        member = members_with_open_purchases(session, 2, 40.0, since=datetime.now(UTC) - timedelta(days=300))[1]
        target, amount_cents = session.exec(
            select(Purchase.external_id, func.round(Purchase.amount * 100))
            .join(Member, Member.id == Purchase.member_id)
            .where(
                Member.external_id == member,
                Purchase.refunded_at.is_(None),
                Purchase.returned_cents == 0,
                Purchase.amount >= 40,
                Purchase.occurred_at >= datetime.now(UTC) - timedelta(days=300),
            )  # its points have not expired
            .order_by(Purchase.occurred_at.desc())
        ).first()
        earned = (
            session.exec(
                select(func.sum(LedgerEntry.points))
                .join(Purchase, Purchase.id == LedgerEntry.purchase_id)
                .where(Purchase.external_id == target, LedgerEntry.kind.in_(["earn", "bonus"]))
            ).one()
            or 0
        )
        open_profile(page, app_url, member)
        page.get_by_role("tab", name="Purchases").click()
        for n in (1, 2):
            choose(page, "Purchase", target)
            page.get_by_label("Amount returned (EUR); empty refunds all that is left").fill("12.50")
            page.get_by_role("button", name="Refund", exact=True).click()
            page.get_by_text(f"Returned EUR 12.50 of purchase {target}").wait_for()
            wait_for_page(page)
            eventually(lambda n=n: assert_equal(purchases_of(session, member)[target], (1250 * n, None)))
            # In all, round half up of earned x returned / amount (nothing of it has expired).
            taken = -session.exec(
                select(func.sum(LedgerEntry.points))
                .join(Purchase, Purchase.id == LedgerEntry.purchase_id)
                .where(Purchase.external_id == target, LedgerEntry.kind == "reverse")
            ).one()
            assert taken == (2 * earned * 1250 * n + int(amount_cents)) // (2 * int(amount_cents))
            expect_balance(page, session, member)
            page.screenshot(path=str(screenshots / f"members-return-{n}.png"), full_page=True)
        # More than is left of it is refused in words, and nothing changes.
        choose(page, "Purchase", target)
        page.get_by_label("Amount returned (EUR); empty refunds all that is left").fill(f"{int(amount_cents) / 100:.2f}")
        page.get_by_role("button", name="Refund", exact=True).click()
        page.get_by_text("can be returned now, not EUR").wait_for()
        assert purchases_of(session, member)[target] == (2500, None)
        page.screenshot(path=str(screenshots / "members-return-refused.png"), full_page=True)


def test_operations_redeem_a_reward_for_a_member_at_the_counter_twice(page, app_url, e2e_database, screenshots):
    with new_session(get_engine(e2e_database)) as session:
        reward = Reward(name="E2E counter voucher", kind="voucher", points_cost=10, stock=5)
        session.add(reward)
        session.commit()
        member = next(m for m in members_with_open_purchases(session, 1, 1.0)[5:] if int(spendable(session, m).split()[0].replace(",", "")) >= 30)
        start = spendable(session, member)
        open_profile(page, app_url, member)
        page.get_by_role("tab", name="Redemptions").click()
        for n in (1, 2):
            choose(page, "Reward", "E2E counter voucher")
            page.get_by_role("button", name="Redeem", exact=True).click()
            page.get_by_text("Redeemed E2E counter voucher").wait_for()
            wait_for_page(page)

            def redeemed_so_far(n: int = n) -> None:
                session.rollback()
                assert session.get(Reward, reward.id).stock == 5 - n
                assert session.exec(select(func.count()).select_from(Redemption).where(Redemption.reward_id == reward.id)).one() == n

            eventually(redeemed_so_far)
            expect_balance(page, session, member)
            page.screenshot(path=str(screenshots / f"members-redeem-{n}.png"), full_page=True)
        assert int(shown_balance(page).split()[0].replace(",", "")) <= int(start.split()[0].replace(",", "")) - 20
