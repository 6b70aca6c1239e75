"""A sign-in survives a reload and a new tab, leads to the page asked for, and ends at sign-out."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import PASSWORDS, session_cookie, sign_in, wait_for_cookie, wait_for_page

pytestmark = pytest.mark.e2e


def _title(page) -> str:
    wait_for_page(page)
    return page.locator("h1").first.inner_text()


def test_a_reload_and_a_new_tab_keep_the_person_signed_in_on_the_same_page(page, app_url, screenshots):
    sign_in(page, app_url, "operations")
    cookie = wait_for_cookie(page)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert "loyalty_session" not in page.evaluate("document.cookie")  # out of reach of scripts

    page.goto(f"{app_url}/members")
    assert _title(page) == "Members"
    for _ in range(2):
        page.reload()
        assert _title(page) == "Members"
        assert page.get_by_role("button", name="Sign out").is_visible()
    page.screenshot(path=str(screenshots / "session-after-reload.png"), full_page=True)

    tab = page.context.new_page()
    tab.goto(f"{app_url}/redemptions")
    assert _title(tab) == "Redemptions"
    assert tab.get_by_role("button", name="Sign out").is_visible()
    tab.close()


def test_a_page_address_opened_before_signing_in_is_where_the_sign_in_leads(page, app_url, screenshots):
    page.goto(f"{app_url}/members")
    page.get_by_label("Username").wait_for()
    page.screenshot(path=str(screenshots / "session-sign-in-for-members.png"), full_page=True)
    page.get_by_label("Username").fill("e2e-operations")
    page.get_by_label("Password", exact=True).fill(PASSWORDS["operations"])
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Sign out").wait_for()
    assert _title(page) == "Members"
    assert page.url.rstrip("/").endswith("/members")


def test_sign_out_ends_the_session_for_every_tab_and_a_reload(page, app_url):
    sign_in(page, app_url, "manager")
    wait_for_cookie(page)
    other_tab = page.context.new_page()
    other_tab.goto(app_url)
    other_tab.get_by_role("button", name="Sign out").wait_for()

    page.get_by_role("button", name="Sign out").click()
    page.get_by_label("Username").wait_for()
    for _ in range(50):  # the sign-in page asks the server to delete the cookie
        if session_cookie(page.context) is None:
            break
        page.wait_for_timeout(100)
    assert session_cookie(page.context) is None
    page.reload()
    page.get_by_label("Username").wait_for()
    assert not page.get_by_role("button", name="Sign out").is_visible()

    # The other tab's next action finds its session ended.
    other_tab.reload()
    other_tab.get_by_label("Username").wait_for()
