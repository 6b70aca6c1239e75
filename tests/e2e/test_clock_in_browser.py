"""The app server the browser tests start runs on the tests' frozen clock (tests/clock), not
on the machine's: the Audit page's period ends on the tests' date."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from tests.e2e.conftest import sign_in, wait_for_page

pytestmark = pytest.mark.e2e


def test_the_app_server_reads_the_tests_clock(page, app_url):
    sign_in(page, app_url, "manager")
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name="Audit").click()
    wait_for_page(page)
    today = date.today()  # the session's frozen date: a browser test keeps the server's clock
    assert _shown_date(page, "Period start date") == today - timedelta(days=30)
    assert _shown_date(page, "Period end date") == today


def _shown_date(page, label: str) -> date:
    """A date field's year, month and day spin buttons, as a date."""
    part = {
        name: int(page.get_by_role("spinbutton", name=f"{name}, {label}", exact=True).get_attribute("aria-valuenow"))
        for name in ("year", "month", "day")
    }
    return date(part["year"], part["month"], part["day"])
