"""Sign in as each role in a real browser, see exactly that role's pages, open each one."""

from __future__ import annotations

import pytest

from loyalty.access.roles import ROLES, pages_for
from tests.e2e.conftest import sign_in, wait_for_page

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("role", ROLES)
def test_each_role_sees_exactly_its_pages_and_each_page_renders(page, app_url, role, screenshots):
    sign_in(page, app_url, role)
    nav = page.locator('[data-testid="stSidebarNav"]')
    expected = [p.title for specs in pages_for(role).values() for p in specs]
    nav.get_by_role("link").first.wait_for()
    # A link reads "<icon name>\n\n<title>": keep the title.
    shown = [t.strip().split("\n")[-1] for t in nav.get_by_role("link").all_inner_texts()]
    assert sorted(shown) == sorted(expected)
    for title in expected:
        nav.get_by_role("link", name=title, exact=True).click()
        wait_for_page(page)
        assert page.locator('[data-testid="stException"]').count() == 0, f"{title} raised an exception for {role}"
        page.get_by_role("heading", name=title).first.wait_for()
        if title != "Settings":
            page.screenshot(path=str(screenshots / f"{role}-{title.lower()}.png"), full_page=True)


def test_the_sign_in_page_is_all_a_visitor_sees(page, app_url, screenshots):
    page.goto(app_url)
    page.get_by_role("button", name="Sign in").wait_for()
    page.get_by_label("Username").wait_for()
    page.wait_for_timeout(500)
    assert page.locator('[data-testid="stSidebarNav"]').count() == 0
    page.screenshot(path=str(screenshots / "sign-in.png"))
    page.get_by_label("Username").fill("e2e-analyst")
    page.get_by_label("Password", exact=True).fill("wrong-password")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("Wrong username or password.").wait_for()


def test_signing_out_returns_to_the_sign_in_page(page, app_url):
    sign_in(page, app_url, "manager")
    page.get_by_role("button", name="Sign out").click()
    page.get_by_label("Username").wait_for()
    assert page.locator('[data-testid="stSidebarNav"]').count() == 0
