"""Who is acting, and what each role may do.

Every write in ``loyalty/`` calls :func:`require` with the acting user, so a page that
is merely hidden cannot be bypassed. The command line and the scheduler act as named
system users.
"""

from __future__ import annotations

from dataclasses import dataclass

from loyalty.errors import PermissionDenied

ROLES = ("admin", "manager", "analyst", "operations", "executive")

# permission -> roles allowed. admin may do everything. "integration" is no user's role: it is
# the company's systems calling the HTTP API with a key, whose scopes narrow it further.
PERMISSIONS: dict[str, frozenset[str]] = {
    "members.view": frozenset({"admin", "manager", "analyst", "operations", "integration"}),
    "members.view_pii": frozenset({"admin", "manager", "operations", "integration"}),
    "members.export": frozenset({"admin", "manager", "analyst"}),
    "members.erase": frozenset({"admin"}),
    "data.import": frozenset({"admin", "manager", "integration"}),
    "points.adjust": frozenset({"admin", "operations"}),
    "points.approve": frozenset({"admin"}),  # a second person decides on adjustments above the limit
    "purchases.refund": frozenset({"admin", "operations", "integration"}),
    "redemptions.request": frozenset({"admin", "manager", "operations", "integration"}),
    "redemptions.fulfil": frozenset({"admin", "operations"}),
    "program.configure": frozenset({"admin", "manager"}),
    "segments.manage": frozenset({"admin", "manager", "analyst"}),
    "evaluations.run": frozenset({"admin", "manager"}),
    "analysis.view": frozenset({"admin", "manager", "analyst"}),
    "kpis.view": frozenset({"admin", "manager", "analyst", "executive"}),
    "reports.view": frozenset({"admin", "manager", "analyst", "executive"}),
    "audit.view": frozenset({"admin", "manager"}),
    "users.manage": frozenset({"admin"}),
    "settings.manage": frozenset({"admin"}),
}


@dataclass(frozen=True)
class Actor:
    """The user on whose behalf a use case runs."""

    username: str
    role: str

    def can(self, permission: str) -> bool:
        return can(self.role, permission)


SYSTEM_CLI = Actor("system:cli", "admin")
SYSTEM_SCHEDULER = Actor("system:scheduler", "admin")
SYSTEM_DEMO = Actor("system:demo", "admin")


def can(role: str, permission: str) -> bool:
    if permission not in PERMISSIONS:
        raise KeyError(f"unknown permission {permission!r}")
    return role == "admin" or role in PERMISSIONS[permission]


def require(actor: Actor, permission: str) -> None:
    """Raise :class:`PermissionDenied` unless ``actor`` holds ``permission``."""
    if not can(actor.role, permission):
        raise PermissionDenied(f"{actor.username} ({actor.role}) is not allowed to {permission.replace('.', ': ')}.")


@dataclass(frozen=True)
class PageSpec:
    section: str
    path: str
    title: str
    icon: str
    permission: str | None  # None: every signed-in user


# The app's navigation: a page a role cannot use is not in that role's menu.
PAGES: tuple[PageSpec, ...] = (
    PageSpec("Overview", "pages/overview.py", "Overview", ":material/dashboard:", None),
    PageSpec("Plan", "pages/goals.py", "Goals and KPIs", ":material/flag:", "kpis.view"),
    PageSpec("Plan", "pages/campaigns.py", "Campaigns", ":material/campaign:", "analysis.view"),
    PageSpec("Plan", "pages/segments.py", "Segments", ":material/groups:", "analysis.view"),
    PageSpec("Plan", "pages/tiers.py", "Tiers", ":material/military_tech:", "analysis.view"),
    PageSpec("Plan", "pages/rewards.py", "Rewards", ":material/card_giftcard:", "analysis.view"),
    PageSpec("Plan", "pages/challenges.py", "Challenges", ":material/emoji_events:", "analysis.view"),
    PageSpec("Plan", "pages/whatif.py", "What-if", ":material/science:", "analysis.view"),
    PageSpec("Plan", "pages/winback.py", "Win-back", ":material/person_search:", "analysis.view"),
    PageSpec("Analyse", "pages/retention.py", "Retention", ":material/autorenew:", "analysis.view"),
    PageSpec("Analyse", "pages/clv.py", "Lifetime value", ":material/savings:", "analysis.view"),
    PageSpec("Analyse", "pages/redemptions_analysis.py", "Redemptions and liability", ":material/account_balance_wallet:", "analysis.view"),
    PageSpec("Analyse", "pages/purchase_cycle.py", "Purchase cycle", ":material/event_repeat:", "analysis.view"),
    PageSpec("Analyse", "pages/feedback.py", "Feedback", ":material/reviews:", "analysis.view"),
    PageSpec("Analyse", "pages/referrals.py", "Referrals", ":material/share:", "analysis.view"),
    PageSpec("Operate", "pages/members.py", "Members", ":material/group:", "members.view"),
    PageSpec("Operate", "pages/redemptions.py", "Redemptions", ":material/redeem:", "redemptions.fulfil"),
    PageSpec("Operate", "pages/import_data.py", "Import", ":material/upload_file:", "data.import"),
    PageSpec("Operate", "pages/messages.py", "Member messages", ":material/mail:", "analysis.view"),
    PageSpec("Overview", "pages/reports.py", "Reports", ":material/summarize:", "reports.view"),
    PageSpec("Admin", "pages/approvals.py", "Approvals", ":material/approval:", "points.approve"),
    PageSpec("Admin", "pages/jobs.py", "Jobs", ":material/schedule:", "evaluations.run"),
    PageSpec("Admin", "pages/audit.py", "Audit", ":material/policy:", "audit.view"),
    PageSpec("Admin", "pages/users.py", "Users", ":material/manage_accounts:", "users.manage"),
    PageSpec("Admin", "pages/settings.py", "Settings", ":material/settings:", "settings.manage"),
    PageSpec("Admin", "pages/integrations.py", "Integrations", ":material/hub:", "settings.manage"),
)
SECTIONS = ("Overview", "Plan", "Analyse", "Operate", "Admin")


def pages_for(role: str) -> dict[str, list[PageSpec]]:
    """The navigation of ``role``: sections in order, each with the pages it may use."""
    menu: dict[str, list[PageSpec]] = {}
    for section in SECTIONS:
        allowed = [p for p in PAGES if p.section == section and (p.permission is None or can(role, p.permission))]
        if allowed:
            menu[section] = allowed
    return menu
