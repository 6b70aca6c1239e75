"""Every protected use case checks the acting user's role itself (the whole role x action matrix).

The expectations are written out here from the issue's role descriptions, not derived
from ``loyalty.access.roles.PERMISSIONS``, so a wrong entry in that table fails a test.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlmodel import Session

from loyalty.access.audit import audit_entries
from loyalty.access.roles import ROLES, Actor, pages_for
from loyalty.access.users import create_user, disable_user, reset_password, set_role
from loyalty.errors import LoyaltyError, PermissionDenied
from loyalty.ledger.entries import adjust_points, expire_points, reverse_purchase
from loyalty.ledger.erasure import erase_member
from loyalty.ledger.members import member_profile, search_members
from loyalty.ledger.purchases import record_purchase
from loyalty.ledger.redemptions import cancel_redemption, fulfil_redemption, redeem_reward
from loyalty.settings import update_settings
from tests.factories import make_member, make_purchase, make_reward, utc

ALL = set(ROLES)
# use case -> roles that may run it (admin: everything).
EXPECTED: dict[str, set[str]] = {
    "adjust points": {"admin", "operations"},
    "refund a purchase": {"admin", "operations"},
    "request a redemption": {"admin", "manager", "operations"},
    "fulfil a redemption": {"admin", "operations"},
    "cancel a redemption": {"admin", "operations"},
    "run points expiry": {"admin", "manager"},
    "record a purchase": {"admin", "manager"},
    "change settings": {"admin"},
    "add a user": {"admin"},
    "change a role": {"admin"},
    "disable a user": {"admin"},
    "reset a password": {"admin"},
    "erase a member": {"admin"},
    "search members": {"admin", "manager", "analyst", "operations"},
    "open a member profile": {"admin", "manager", "analyst", "operations"},
    "read the audit trail": {"admin", "manager"},
}


def _use_cases(session: Session) -> dict[str, Callable[[Actor], object]]:
    member = make_member(session)
    make_purchase(session, member, 500.0, occurred_at=utc(2026, 11, 1))
    purchase_id = make_purchase(session, member, 50.0, occurred_at=utc(2026, 11, 2))
    reward = make_reward(session, points_cost=10)
    from loyalty.access.roles import SYSTEM_CLI

    pending = redeem_reward(session=session, member_id=member.id, reward_id=reward.id, actor=SYSTEM_CLI).redemption_id
    create_user(session=session, username="target", role="analyst", password="target-password-1", actor=SYSTEM_CLI)
    return {
        "adjust points": lambda a: adjust_points(session=session, member_id=member.id, points=5, reason="goodwill", actor=a),
        "refund a purchase": lambda a: reverse_purchase(session=session, purchase_id=purchase_id, actor=a),
        "request a redemption": lambda a: redeem_reward(session=session, member_id=member.id, reward_id=reward.id, actor=a),
        "fulfil a redemption": lambda a: fulfil_redemption(session=session, redemption_id=pending, actor=a),
        "cancel a redemption": lambda a: cancel_redemption(session=session, redemption_id=pending, actor=a, reason="test"),
        "run points expiry": lambda a: expire_points(session=session, actor=a),
        "record a purchase": lambda a: record_purchase(session=session, member_id=member.id, amount=10.0, occurred_at=utc(2026, 11, 3), actor=a),
        "change settings": lambda a: update_settings(session=session, actor=a, point_value=0.02),
        "add a user": lambda a: create_user(session=session, username=f"new-{a.role}", role="analyst", password="long-enough-pw", actor=a),
        "change a role": lambda a: set_role(session=session, username="target", role="manager", actor=a),
        "disable a user": lambda a: disable_user(session=session, username="target", actor=a),
        "reset a password": lambda a: reset_password(session=session, username="target", actor=a),
        "erase a member": lambda a: erase_member(session=session, external_id=member.external_id, actor=a),
        "search members": lambda a: search_members(session, "", actor=a),
        "open a member profile": lambda a: member_profile(session, member.external_id, actor=a),
        "read the audit trail": lambda a: audit_entries(session, actor=a),
    }


@pytest.mark.parametrize("role", ROLES)
def test_each_use_case_accepts_exactly_the_roles_allowed_to_run_it(session, role):
    use_cases = _use_cases(session)
    assert set(use_cases) == set(EXPECTED)
    actor = Actor(f"someone-{role}", role)
    for name, call in use_cases.items():
        allowed = role in EXPECTED[name]
        try:
            call(actor)
        except PermissionDenied:
            assert not allowed, f"{role} should be allowed to {name}"
            session.rollback()
            continue
        except LoyaltyError:
            session.rollback()  # allowed, refused for a domain reason (already done, say)
        assert allowed, f"{role} must not be able to {name}"


EXPECTED_PAGES = {
    "admin": {
        "Overview",
        "Reports",
        "Jobs",
        "Goals and KPIs",
        "Campaigns",
        "Segments",
        "Retention",
        "Lifetime value",
        "Redemptions and liability",
        "Purchase cycle",
        "Feedback",
        "Tiers",
        "Rewards",
        "Challenges",
        "Referrals",
        "Member messages",
        "What-if",
        "Win-back",
        "Members",
        "Redemptions",
        "Import",
        "Audit",
        "Users",
        "Settings",
        "Approvals",
        "Integrations",
    },
    "manager": {
        "Overview",
        "Reports",
        "Jobs",
        "Goals and KPIs",
        "Campaigns",
        "Segments",
        "Retention",
        "Lifetime value",
        "Redemptions and liability",
        "Purchase cycle",
        "Feedback",
        "Tiers",
        "Rewards",
        "Challenges",
        "Referrals",
        "Member messages",
        "What-if",
        "Win-back",
        "Members",
        "Import",
        "Audit",
    },
    "analyst": {
        "Overview",
        "Reports",
        "Goals and KPIs",
        "Campaigns",
        "Segments",
        "Retention",
        "Lifetime value",
        "Redemptions and liability",
        "Purchase cycle",
        "Feedback",
        "Tiers",
        "Rewards",
        "Challenges",
        "Referrals",
        "Member messages",
        "What-if",
        "Win-back",
        "Members",
    },
    "operations": {"Overview", "Members", "Redemptions"},
    "executive": {"Overview", "Reports", "Goals and KPIs"},
}


@pytest.mark.parametrize("role", ROLES)
def test_the_navigation_lists_exactly_the_pages_of_the_role(role):
    titles = {p.title for pages in pages_for(role).values() for p in pages}
    assert titles == EXPECTED_PAGES[role]


def test_a_forged_call_from_a_hidden_page_is_refused_and_writes_nothing(session):
    member = make_member(session)
    with pytest.raises(PermissionDenied, match="executive"):
        adjust_points(session=session, member_id=member.id, points=1000, reason="forged", actor=Actor("eve", "executive"))
    from loyalty.ledger.entries import balance

    assert balance(session, member.id) == 0
