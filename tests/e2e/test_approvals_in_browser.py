"""End to end in the browser: operations ask for large adjustments, a second person (an admin) decides."""

from __future__ import annotations

import pytest
from sqlmodel import select

from db.engine import get_engine, new_session
from db.models import Member, PendingAdjustment
from loyalty.ledger.entries import member_balance
from tests.e2e.conftest import sign_in, wait_for_page
from tests.e2e.test_members_in_browser import open_profile

pytestmark = pytest.mark.e2e


def _balance(e2e_database: str, member: str) -> int:
    with new_session(get_engine(e2e_database)) as session:
        member_id = session.exec(select(Member.id).where(Member.external_id == member)).one()
        return member_balance(session, member_id).points


def _status(e2e_database: str, points: int, reason: str) -> str:
    with new_session(get_engine(e2e_database)) as session:
        return session.exec(select(PendingAdjustment.status).where(PendingAdjustment.points == points, PendingAdjustment.reason == reason)).one()


def test_a_large_adjustment_waits_until_a_second_admin_approves_or_rejects_it(browser, app_url, e2e_database, screenshots):
    with new_session(get_engine(e2e_database)) as session:
        member = session.exec(select(Member.external_id).order_by(Member.id.desc())).first()
    before = _balance(e2e_database, member)
    requests = [(25_000, "approved", "e2e lost card credit"), (12_345, "rejected", "e2e duplicate claim")]

    ops = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    open_profile(ops, app_url, member)
    for points, _, reason in requests:
        ops.get_by_label("Points (negative to remove)").fill(str(points))
        ops.get_by_label("Reason (required, shown to auditors)").fill(reason)
        ops.get_by_role("button", name="Apply adjustment").click()
        ops.get_by_text(f"+{points:,} points is above the approval limit of 10,000").wait_for()
        ops.get_by_text(f"Waiting for approval: +{points:,} points ({reason})").wait_for()
        assert _balance(e2e_database, member) == before
    ops.screenshot(path=str(screenshots / "approvals-members-waiting.png"), full_page=True)
    ops.context.close()

    admin = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    sign_in(admin, app_url, "admin")
    admin.locator('[data-testid="stSidebarNav"]').get_by_role("link", name="Approvals").click()
    wait_for_page(admin)
    admin.get_by_label("Adjustment", exact=True).wait_for()
    admin.locator('[data-testid="stDataFrame"]').first.wait_for()
    admin.wait_for_timeout(1000)  # the table draws its canvas after it appears
    admin.screenshot(path=str(screenshots / "approvals-waiting.png"), full_page=True)
    for points, decision, reason in requests:
        admin.get_by_label("Adjustment", exact=True).click()
        admin.get_by_role("option").filter(has_text=f"+{points:,} points for {member}").click()
        admin.get_by_label("Note (kept in the audit trail)").fill(f"{decision} in the e2e test")
        admin.get_by_role("button", name="Approve and post" if decision == "approved" else "Reject").click()
        admin.get_by_text(f"{decision.capitalize()} #").wait_for()
        wait_for_page(admin)
        assert _status(e2e_database, points, reason) == decision
        admin.get_by_role("button", name="Dismiss").click()
        wait_for_page(admin)
    assert _balance(e2e_database, member) == before + 25_000  # approved once, the rejected one never posted
    admin.get_by_text("No adjustment waits for approval.").wait_for()
    admin.screenshot(path=str(screenshots / "approvals-decided.png"), full_page=True)
    admin.context.close()
