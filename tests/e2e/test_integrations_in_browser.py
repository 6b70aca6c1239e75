"""The Integrations page in the browser: an admin makes two keys in a row, each shown once and
working, then revokes one only after ticking the confirmation."""

from __future__ import annotations

import uuid

import pytest
from sqlmodel import select

from db.engine import get_engine, new_session
from db.models import ApiKey
from loyalty.integrations.apikeys import authenticate
from tests.e2e.conftest import sign_in, wait_for_page

pytestmark = pytest.mark.e2e


def go_to(page, title: str) -> None:
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=title, exact=True).click()
    wait_for_page(page)
    page.get_by_role("heading", name=title).first.wait_for()


def make_key(page, name: str, scope: str) -> str:
    page.get_by_label("Name (e.g. till-0042, web shop)").fill(name)
    page.locator('[data-testid="stMultiSelect"]').first.click()
    page.get_by_role("option", name=f"{scope}:").first.click()
    page.get_by_text("Make a key", exact=True).click()  # closes the list of scopes
    page.get_by_role("button", name="Make key").click()
    notice = page.get_by_text(f"Key {name} made")
    notice.wait_for()
    wait_for_page(page)
    text = notice.inner_text()
    return next(word for word in text.split() if word.startswith("lk_"))


def test_an_admin_makes_two_keys_in_a_row_and_revokes_one_after_confirming(page, app_url, e2e_database, screenshots):
    tag = uuid.uuid4().hex[:6]
    sign_in(page, app_url, "admin")
    go_to(page, "Integrations")
    keys = [make_key(page, f"till-{tag}-{n}", "purchases:write") for n in (1, 2)]
    engine = get_engine(e2e_database)
    with new_session(engine) as session:
        assert all(authenticate(session, key) is not None for key in keys), "both keys work"
    page.screenshot(path=str(screenshots / "integrations-two-keys.png"), full_page=True)

    page.get_by_label("Key", exact=True).click()
    page.get_by_role("option", name=f"till-{tag}-1", exact=True).click()
    wait_for_page(page)
    assert page.get_by_role("button", name="Revoke").is_disabled(), "nothing is revoked before confirming"
    page.get_by_text(f"Yes, revoke till-{tag}-1").click()
    wait_for_page(page)
    page.get_by_role("button", name="Revoke").click()
    page.get_by_text(f"Key till-{tag}-1 revoked").wait_for()
    wait_for_page(page)
    with new_session(engine) as session:
        revoked = {k.name: k.revoked_at is not None for k in session.exec(select(ApiKey).where(ApiKey.name.like(f"till-{tag}-%")))}
        assert revoked == {f"till-{tag}-1": True, f"till-{tag}-2": False}
        assert authenticate(session, keys[0]) is None and authenticate(session, keys[1]) is not None
    assert not page.get_by_text(f"Yes, revoke till-{tag}-2").is_checked(), "the next key needs its own confirmation"
    assert page.get_by_role("button", name="Revoke").is_disabled()
    page.screenshot(path=str(screenshots / "integrations-after-revoke.png"), full_page=True)
    assert page.locator('[data-testid="stException"]').count() == 0
