"""Everyday actions in the browser do exactly what was chosen: the redemption queue, settings,
users and the import preview, each done as a person does it, twice in a row."""

from __future__ import annotations

import codecs
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import func
from sqlmodel import select

from db.engine import get_engine, new_session
from db.models import LedgerEntry, Member, Purchase, Redemption, Reward, User
from loyalty.access.roles import SYSTEM_CLI
from loyalty.ledger.redemptions import redeem_reward
from loyalty.settings import get_settings, update_settings
from tests.e2e.conftest import sign_in, wait_for_page
from tests.factories import utc

pytestmark = pytest.mark.e2e

# st.dataframe draws its rows on a canvas: a row is clicked by its place. Rows are 35 px
# high under a 35 px header; the selection checkbox sits in the first 30 px.
ROW_HEIGHT = 35
CHECKBOX_X = 15


def go_to(page, title: str) -> None:
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=title, exact=True).click()
    wait_for_page(page)
    page.get_by_role("heading", name=title).first.wait_for()


def click_row(page, position: int) -> None:
    """Tick the selection checkbox of the table's row at ``position`` (0 = first data row)."""
    box = page.locator('[data-testid="stDataFrame"]').first.bounding_box()
    page.mouse.click(box["x"] + CHECKBOX_X, box["y"] + ROW_HEIGHT * (position + 1) + ROW_HEIGHT / 2)
    wait_for_page(page)


def no_exception(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0


# --- the redemption queue ---------------------------------------------------------------------


@pytest.fixture
def oldest_requests(e2e_database) -> list[int]:
    """Five requested redemptions of a new reward, older than any other request: the queue's first five rows."""
    tag = uuid.uuid4().hex[:6]
    with new_session(get_engine(e2e_database)) as session:
        reward = Reward(name=f"E2E mug {tag}", kind="product", points_cost=1, stock=10)
        session.add(reward)
        session.commit()
        members = session.exec(
            select(LedgerEntry.member_id)
            .group_by(LedgerEntry.member_id)
            .having(func.sum(LedgerEntry.points) > 10)
            .order_by(LedgerEntry.member_id)
            .limit(5)
        ).all()
        first = session.exec(select(func.min(Redemption.requested_at))).one()
        start = min(first, utc(2000, 1, 1)) if first else utc(2000, 1, 1)
        return [
            redeem_reward(
                session=session, member_id=member_id, reward_id=reward.id, actor=SYSTEM_CLI, now=start.replace(year=start.year - 1, hour=n)
            ).redemption_id
            for n, member_id in enumerate(members)
        ]


def statuses(e2e_database, ids: list[int]) -> list[str]:
    with new_session(get_engine(e2e_database)) as session:
        found = dict(session.exec(select(Redemption.id, Redemption.status).where(Redemption.id.in_(ids))).all())
    return [found[i] for i in ids]


def test_two_redemptions_fulfilled_one_after_the_other_then_two_cancelled_with_confirmation(
    page, app_url, e2e_database, oldest_requests, screenshots
):
    r1, r2, r3, r4, _ = oldest_requests
    sign_in(page, app_url, "operations")
    go_to(page, "Redemptions")

    click_row(page, 0)
    page.get_by_role("button", name="Mark 1 fulfilled").click()
    page.get_by_text(f"Fulfilled 1 redemption: #{r1} ").wait_for()
    wait_for_page(page)
    assert statuses(e2e_database, oldest_requests) == ["fulfilled", "requested", "requested", "requested", "requested"]
    assert page.get_by_role("button", name="Mark 0 fulfilled").is_disabled(), "the selection is cleared"

    click_row(page, 0)  # the table was read again: its first row is now the second request
    assert page.get_by_text(f"Fulfilled 1 redemption: #{r1} ").is_visible(), "the message stays until dismissed"
    page.get_by_role("button", name="Mark 1 fulfilled").click()
    page.get_by_text(f"Fulfilled 1 redemption: #{r2} ").wait_for()
    wait_for_page(page)
    assert statuses(e2e_database, oldest_requests) == ["fulfilled", "fulfilled", "requested", "requested", "requested"]
    page.screenshot(path=str(screenshots / "redemptions-after-two-fulfilments.png"), full_page=True)

    click_row(page, 0)
    click_row(page, 1)
    page.get_by_label("Note or cancellation reason").fill("E2E: reward withdrawn")
    page.get_by_label("Note or cancellation reason").press("Enter")
    wait_for_page(page)
    page.get_by_role("button", name="Cancel 2 and return the points").click()
    page.get_by_text(f"Cancel these 2 redemptions: #{r3}, #{r4}?").wait_for()
    page.screenshot(path=str(screenshots / "redemptions-bulk-confirmation.png"), full_page=True)
    assert statuses(e2e_database, oldest_requests)[2:] == ["requested"] * 3, "nothing happens before the confirmation"
    page.get_by_role("button", name="Yes, cancel 2 redemptions").click()
    page.get_by_text("Cancelled 2 redemptions and returned 2 points").wait_for()
    wait_for_page(page)
    assert statuses(e2e_database, oldest_requests) == ["fulfilled", "fulfilled", "cancelled", "cancelled", "requested"]
    page.get_by_role("button", name="Dismiss").click()
    wait_for_page(page)
    assert page.get_by_text("Cancelled 2 redemptions").count() == 0
    no_exception(page)
    page.screenshot(path=str(screenshots / "redemptions-after-bulk-cancel.png"), full_page=True)


# --- settings ---------------------------------------------------------------------------------


@pytest.fixture
def settings_restored(e2e_database) -> Iterator[None]:
    """Put the settings back afterwards: other browser tests share the database."""
    with new_session(get_engine(e2e_database)) as session:
        before = get_settings(session)
    yield
    with new_session(get_engine(e2e_database)) as session:
        update_settings(session=session, actor=SYSTEM_CLI, point_value=before.point_value, expiry_months=before.expiry_months)


def stored_settings(e2e_database):
    with new_session(get_engine(e2e_database)) as session:
        return get_settings(session)


@pytest.mark.usefixtures("settings_restored")
def test_two_settings_edits_in_a_row_are_both_stored_and_a_point_value_of_zero_is_refused(page, app_url, e2e_database, screenshots):
    sign_in(page, app_url, "admin")
    go_to(page, "Settings")
    point_value = page.get_by_label("Money value of one point")
    expiry = page.get_by_label("Points expire after (months, 0 = never)")

    point_value.fill("0.0200")
    page.get_by_role("button", name="Save settings").click()
    page.get_by_text("Money value of one point is now 0.02").wait_for()
    wait_for_page(page)
    expiry.fill("18")
    page.get_by_role("button", name="Save settings").click()
    page.get_by_text("Points expire after (months, 0 = never) is now 18").wait_for()
    wait_for_page(page)
    stored = stored_settings(e2e_database)
    assert (stored.point_value, stored.expiry_months) == (0.02, 18), "both edits are stored"
    assert (point_value.input_value(), expiry.input_value()) == ("0.0200", "18"), "the form shows what is stored"
    page.screenshot(path=str(screenshots / "settings-after-two-edits.png"), full_page=True)

    point_value.fill("0")
    page.get_by_role("button", name="Save settings").click()
    page.get_by_text("Money value of one point: must be greater than 0").wait_for()
    wait_for_page(page)
    assert stored_settings(e2e_database).point_value == 0.02, "nothing was saved"
    page.screenshot(path=str(screenshots / "settings-point-value-0-refused.png"), full_page=True)
    no_exception(page)


# --- users ------------------------------------------------------------------------------------


def choose_user(page, username: str) -> None:
    page.get_by_label("User", exact=True).click()
    page.keyboard.type(username)
    page.keyboard.press("Enter")
    wait_for_page(page)


def is_enabled(e2e_database, username: str) -> bool:
    with new_session(get_engine(e2e_database)) as session:
        return session.exec(select(User.active).where(User.username == username)).one()


def test_an_admin_adds_a_user_disables_and_enables_them_twice_and_cannot_disable_themself(page, app_url, e2e_database, screenshots):
    username = f"e2e-temp-{uuid.uuid4().hex[:6]}"
    sign_in(page, app_url, "admin")
    go_to(page, "Users")
    page.get_by_label("New username").fill(username)
    page.get_by_role("button", name="Add user").click()
    page.get_by_text(f"{username} added").wait_for()
    wait_for_page(page)

    choose_user(page, username)
    for round_ in range(2):
        page.get_by_role("button", name="Disable").click()
        page.get_by_text(f"{username} is disabled: they can no longer sign in.").wait_for()
        wait_for_page(page)
        assert not is_enabled(e2e_database, username)
        if round_ == 0:
            page.screenshot(path=str(screenshots / "users-after-disable.png"), full_page=True)
        page.get_by_role("button", name="Enable").click()
        page.get_by_text(f"{username} is enabled: they can sign in again.").wait_for()
        wait_for_page(page)
        assert is_enabled(e2e_database, username)

    choose_user(page, "e2e-admin")
    page.get_by_role("button", name="Disable").click()
    page.get_by_text("You cannot disable your own account").wait_for()
    wait_for_page(page)
    assert is_enabled(e2e_database, "e2e-admin")
    page.screenshot(path=str(screenshots / "users-self-disable-refused.png"), full_page=True)
    no_exception(page)


# --- import -----------------------------------------------------------------------------------


def test_a_semicolon_file_with_a_byte_order_mark_is_previewed_then_imported_and_a_second_import_changes_nothing(
    page, app_url, e2e_database, screenshots, tmp_path
):
    tag = uuid.uuid4().hex[:6]
    with new_session(get_engine(e2e_database)) as session:
        member = session.exec(select(Member.external_id).order_by(Member.id).limit(1)).one()
    csv = tmp_path / f"till-{tag}.csv"
    csv.write_bytes(
        codecs.BOM_UTF8
        + (
            "purchase_id;member_id;occurred_at;amount;channel;store;category;till\n"
            f"E2E-{tag}-1;{member};2026-10-01T10:00:00Z;12.50;store;S1;grocery;T4\n"
            f"E2E-{tag}-2;{member};2026-10-02T10:00:00Z;7;store;S1;grocery;T4\n"
        ).encode()
    )
    sign_in(page, app_url, "manager")
    go_to(page, "Import")
    for attempt in range(2):
        page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(csv))
        page.get_by_text("2 rows of data, semicolon-separated, UTF-8 with a byte-order mark").wait_for()
        wait_for_page(page)
        page.get_by_text("Column mapping").wait_for()
        page.locator('[data-testid="stDataFrame"] canvas').nth(1).wait_for()  # the mapping and the first rows drawn
        page.wait_for_timeout(500)
        if attempt == 0:
            page.screenshot(path=str(screenshots / "import-preview-semicolon-bom.png"), full_page=True)
        page.get_by_role("button", name="Import", exact=True).click()
        page.get_by_text("Imported 2 rows, skipped 0" if attempt == 0 else "Imported 0 rows, skipped 2 already present").wait_for()
        wait_for_page(page)
    with new_session(get_engine(e2e_database)) as session:
        imported = session.exec(select(Purchase.external_id).where(Purchase.external_id.like(f"E2E-{tag}-%"))).all()
    assert sorted(imported) == [f"E2E-{tag}-1", f"E2E-{tag}-2"]
    page.screenshot(path=str(screenshots / "import-done-twice.png"), full_page=True)
    no_exception(page)
