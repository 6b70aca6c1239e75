"""Challenges and member messages in the browser, as a manager uses them: two challenges defined in a
row (a fraction of a purchase refused by name), a message worded twice in a row, and the queued
messages handed over as a CSV after confirming."""

from __future__ import annotations

import uuid

import pytest
from sqlmodel import select

from db.engine import get_engine, new_session
from db.models import Challenge, MemberMessage
from tests.e2e.conftest import scroll_to, sign_in, wait_for_page

pytestmark = pytest.mark.e2e


def go_to(page, title: str) -> None:
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=title, exact=True).click()
    wait_for_page(page)
    page.get_by_role("heading", name=title).first.wait_for()


def define(page, name: str, target: str) -> None:
    """Fill the form and save it. Each field is left with Tab (as a person moves on), and its value
    read back before saving: on a loaded machine the rerun that showed the previous refusal can
    still be redrawing the form and put its old Target back over what was typed."""
    wait_for_page(page)
    fields = [
        (page.get_by_label("Name", exact=True), name, str),
        (page.get_by_role("spinbutton", name="Target"), target, float),
        (page.get_by_label("Badge (optional)"), f"{name} badge", str),
    ]
    for field, value, _ in fields:
        field.fill(value)
        field.press("Tab")
    wait_for_page(page)
    for field, value, kind in fields:
        shown = field.input_value()
        assert kind(shown) == kind(value), f"the form shows {shown!r} where {value!r} was typed"
    page.get_by_role("button", name="Save challenge").click()
    wait_for_page(page)


def downloaded(page, button) -> str:
    """The text of the file the button downloads. A click that lands while the page is still being
    redrawn (seen under a loaded CI machine) starts no download: the button is clicked once more."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in range(2):
        try:
            with page.expect_download(timeout=30_000) as download:
                button.click()
            return download.value.path().read_text()
        except PlaywrightTimeout:
            if attempt:
                raise
            wait_for_page(page)
    raise AssertionError("unreachable")


def test_a_manager_defines_two_challenges_in_a_row(page, app_url, e2e_database, screenshots):
    tag = uuid.uuid4().hex[:5]
    sign_in(page, app_url, "manager")
    go_to(page, "Challenges")
    define(page, f"Half a visit {tag}", "2.5")
    page.get_by_text("purchases: a whole number from 1 to 1,000 (you entered 2.5)").wait_for()
    for n in (1, 2):
        define(page, f"Visits {tag}-{n}", str(2 + n))
        page.get_by_text(f"Challenge Visits {tag}-{n} saved (audited)").wait_for()
    with new_session(get_engine(e2e_database)) as session:
        saved = session.exec(select(Challenge.name, Challenge.target).where(Challenge.name.like(f"%{tag}%")).order_by(Challenge.id)).all()
    assert saved == [(f"Visits {tag}-1", 3), (f"Visits {tag}-2", 4)]
    page.screenshot(path=str(screenshots / "challenges-two-defined.png"), full_page=True)
    assert page.locator('[data-testid="stException"]').count() == 0


def test_a_manager_words_a_message_twice_and_hands_the_csv_over(page, app_url, e2e_database, screenshots):
    sign_in(page, app_url, "manager")
    go_to(page, "Member messages")
    scroll_to(page, 'text="Wording"')
    for n in (1, 2):
        body = page.get_by_label("Body")
        body.fill(f"Hello {{name}}, {{points}} points expire on {{expires_on}} (version {n}).")
        body.press("Control+Enter")
        wait_for_page(page)
        page.get_by_text(f"Hello Alex Example, 1,250 points expire on 2027-01-31 (version {n}).").wait_for()
        page.get_by_role("button", name="Save template").click()
        page.get_by_text("The points expiring template is saved (audited)").wait_for()
        wait_for_page(page)
    engine = get_engine(e2e_database)
    with new_session(engine) as session:
        queued = len(session.exec(select(MemberMessage.id).where(MemberMessage.status == "queued", MemberMessage.channel == "csv")).all())
    assert queued > 0, "the evaluation queued messages on the demo program"
    prepare = page.get_by_role("button", name="Prepare the CSV")
    assert prepare.is_disabled(), "nothing is marked sent before confirming"
    page.get_by_text(f"I will upload these {queued:,} messages").click()
    wait_for_page(page)
    page.get_by_role("button", name="Prepare the CSV").click()
    wait_for_page(page)
    button = page.get_by_role("button", name=f"Download the CSV ({queued:,} message")
    button.wait_for()
    lines = downloaded(page, button).splitlines()
    assert lines[0] == "member_id,email,name,kind,subject,body,created_at" and len(lines) > queued
    with new_session(engine) as session:
        assert session.exec(select(MemberMessage.id).where(MemberMessage.status == "queued")).all() == []
    page.screenshot(path=str(screenshots / "messages-after-csv.png"), full_page=True)
    assert page.locator('[data-testid="stException"]').count() == 0


def test_an_analyst_reads_the_referrals_and_a_member_shows_badges_and_code(page, app_url, e2e_database, screenshots):
    from db.models import ChallengeCompletion, Member, Referral

    with new_session(get_engine(e2e_database)) as session:
        referrals = len(session.exec(select(Referral.id)).all())
        member = session.exec(
            select(Member.external_id)
            .join(ChallengeCompletion, ChallengeCompletion.member_id == Member.id)
            .where(ChallengeCompletion.reversed_at.is_(None))
        ).first()
    assert referrals > 0 and member is not None, "the demo program has referrals and completed challenges"
    sign_in(page, app_url, "analyst")
    go_to(page, "Referrals")
    page.get_by_text("Members who referred most").wait_for()
    page.get_by_text("Referral conversion").first.wait_for()
    page.screenshot(path=str(screenshots / "referrals.png"), full_page=True)
    go_to(page, "Members")
    page.get_by_label("Search by member id, name or e-mail").fill(member)
    page.get_by_label("Search by member id, name or e-mail").press("Enter")
    wait_for_page(page)
    page.get_by_role("tab", name="Challenges").click()
    page.get_by_text("Referral code").wait_for()
    page.get_by_text("Badges: ").first.wait_for()
    assert page.get_by_text("none yet").count() == 0, "this member holds a badge"
    page.screenshot(path=str(screenshots / "member-challenges.png"), full_page=True)
    assert page.locator('[data-testid="stException"]').count() == 0
