"""Users page: disable and enable again, self-disable refused, the list refreshed after each change."""

from __future__ import annotations

from loyalty.access.roles import SYSTEM_CLI
from loyalty.access.users import create_user
from tests.pages.conftest import open_page


def enabled_in_list(at, username: str) -> bool:
    table = at.dataframe[0].value.set_index("username")
    return bool(table.loc[username, "active"])


def click(at, label: str):
    next(b for b in at.button if b.label == label).click().run()
    assert not at.exception, at.exception
    return at


def test_an_admin_disables_a_user_then_enables_them_again_and_the_list_follows(app, session):
    create_user(session=session, username="olga", role="operations", password="olga-password-1", actor=SYSTEM_CLI)
    at = open_page(app, "admin", "pages/users.py")
    at.selectbox(key="users_target").set_value("olga").run()
    click(at, "Disable")
    assert "olga is disabled" in at.success[0].value
    assert not enabled_in_list(at, "olga"), "the list is read again after the change"
    assert [b.label for b in at.button if b.label in ("Disable", "Enable")] == ["Enable"]
    click(at, "Enable")
    assert "olga is enabled" in at.success[0].value
    assert enabled_in_list(at, "olga")


def test_an_admin_cannot_disable_themself(app, session):
    at = open_page(app, "admin", "pages/users.py")
    at.selectbox(key="users_target").set_value("test-admin").run()
    click(at, "Disable")
    assert "You cannot disable your own account" in at.error[0].value
    assert enabled_in_list(at, "test-admin")


def test_a_new_user_appears_in_the_list_at_once_with_the_password_shown_until_dismissed(app, session):
    at = open_page(app, "admin", "pages/users.py")
    at.text_input(key="users_add_username").input("new.analyst")
    click(at, "Add user")
    assert "new.analyst added" in at.success[0].value
    assert enabled_in_list(at, "new.analyst")
    at.run()
    assert "new.analyst added" in at.success[0].value
    click(at, "Dismiss")
    assert not at.success
