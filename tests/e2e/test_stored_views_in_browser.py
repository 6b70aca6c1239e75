"""The Analyse pages after the nightly evaluation, as an analyst uses them: Retention opens on the
stored figures and says so, recomputes them when asked, and lists the members behind two cells in
a row."""

from __future__ import annotations

import pytest

from db.engine import get_engine
from loyalty.evaluation.jobs import run_job
from tests.e2e.conftest import choose, scroll_to, sign_in, wait_for_page

pytestmark = pytest.mark.e2e


def test_retention_opens_on_the_nightly_figures_and_lists_two_cells_in_a_row(page, app_url, e2e_database, screenshots):
    result = run_job("page-views", engine=get_engine(e2e_database))
    assert result["status"] == "succeeded", result["error"]
    sign_in(page, app_url, "analyst")
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name="Retention", exact=True).click()
    wait_for_page(page)
    page.get_by_text("Figures of the nightly evaluation").wait_for()
    page.screenshot(path=str(screenshots / "retention-stored.png"), full_page=True)

    page.get_by_role("button", name="Recompute now").click()
    wait_for_page(page)
    page.get_by_text("Computed now from today's data.").wait_for()
    assert page.get_by_text("Figures of the nightly evaluation").count() == 0

    for age in ("1", "2"):
        scroll_to(page, 'text="The members behind a cell"')
        choose(page, "Months after the first purchase", age)
        wait_for_page(page)
        page.get_by_role("button", name="List these members").click()
        wait_for_page(page)
        page.get_by_text(f"bought in month +{age}; the others are listed first.").wait_for()
    page.screenshot(path=str(screenshots / "retention-members-listed.png"), full_page=True)
    assert page.locator('[data-testid="stException"]').count() == 0
