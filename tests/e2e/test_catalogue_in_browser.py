"""In the browser, as a loyalty manager: new-reward forms start blank; a reward is edited, cloned and archived;
a win-back draft previews a cost above 0. Each flow runs twice in a row."""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import expect
from sqlmodel import select

from db.engine import get_engine, new_session
from db.models import Campaign, Reward
from tests.e2e.conftest import sign_in, wait_for_page

pytestmark = pytest.mark.e2e


def _open(page, title: str) -> None:
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=title).click()
    wait_for_page(page)


def _selectbox(page, label: str):
    return page.get_by_role("combobox", name=label)


def _choose(page, label: str, option: str) -> None:
    box = _selectbox(page, label)
    box.click()
    box.fill(option)
    page.get_by_role("option", name=option, exact=True).click()
    wait_for_page(page)


def _reward_form(page) -> dict:
    return {
        "name": page.get_by_label("Name", exact=True).input_value(),
        "stock": page.get_by_label("Stock", exact=True).input_value(),
        "cost": page.get_by_label("Points cost").input_value(),
        "limited": page.get_by_role("checkbox", name="Limited stock").is_checked(),
        "tier": _selectbox(page, "Only for tier and above").input_value(),
    }


def _add_reward(page, name: str, stock: int) -> None:
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Points cost").fill("900")
    page.get_by_text("Limited stock").click()
    page.get_by_label("Stock", exact=True).fill(str(stock))
    _choose(page, "Only for tier and above", "Gold")
    page.get_by_role("button", name="Save reward").click()
    page.get_by_text(f"{name} saved (audited).").wait_for()
    wait_for_page(page)


def test_two_new_rewards_in_a_row_each_start_from_a_blank_form(page, app_url, e2e_database, screenshots):
    sign_in(page, app_url, "manager")
    _open(page, "Rewards")
    blank = _reward_form(page)
    assert blank["name"] == "" and blank["stock"] == "0" and not blank["limited"] and blank["tier"] == "everyone"
    tag = uuid.uuid4().hex[:6]
    for n, stock in ((1, 7), (2, 3)):
        _add_reward(page, f"E2E lounge {tag} {n}", stock)
        expect(page.get_by_label("Name", exact=True)).to_have_value("")
        assert _reward_form(page) == blank, f"the form after reward {n} kept its values"
    page.screenshot(path=str(screenshots / "rewards-blank-after-two.png"), full_page=True)
    with new_session(get_engine(e2e_database)) as session:
        saved = session.exec(select(Reward.name, Reward.stock).where(Reward.name.like(f"E2E lounge {tag}%")).order_by(Reward.id)).all()
    assert saved == [(f"E2E lounge {tag} 1", 7), (f"E2E lounge {tag} 2", 3)]


def test_a_reward_is_edited_cloned_and_archived(page, app_url, e2e_database, screenshots):
    sign_in(page, app_url, "manager")
    _open(page, "Rewards")
    tag = uuid.uuid4().hex[:6]
    for n in (1, 2):
        name = f"E2E mug {tag} {n}"
        _add_reward(page, name, 5)
        _choose(page, "Add or edit", name)
        expect(page.get_by_label("Stock", exact=True)).to_have_count(1)  # the form of the chosen reward alone, redrawn
        page.screenshot(path=str(screenshots / f"rewards-edit-{n}.png"), full_page=True)
        expect(page.get_by_label("Stock", exact=True)).to_have_value("5")
        page.get_by_label("Stock", exact=True).fill("12")
        page.get_by_role("button", name="Save reward").click()
        page.get_by_text(f"{name} saved (audited).").wait_for()
        wait_for_page(page)
        expect(page.get_by_label("Stock", exact=True)).to_have_value("12")
        page.get_by_role("button", name="Clone", exact=True).click()
        page.get_by_text(f"{name} (copy) created from {name} (audited).").wait_for()
        wait_for_page(page)
        expect(page.get_by_label("Name", exact=True)).to_have_value(f"{name} (copy)")
        page.screenshot(path=str(screenshots / f"rewards-cloned-{n}.png"), full_page=True)
        page.get_by_role("button", name="Archive", exact=True).click()
        page.get_by_text(f"{name} (copy) archived (audited).").wait_for()
        wait_for_page(page)
    page.screenshot(path=str(screenshots / "rewards-after-archive.png"), full_page=True)
    _selectbox(page, "Add or edit").click()
    page.keyboard.type(f"E2E mug {tag}")  # narrow the list as a person would (long lists draw only what is in view)
    page.get_by_role("option").filter(has_text=f"E2E mug {tag} 1").first.wait_for()
    options = page.get_by_role("option").all_inner_texts()
    page.keyboard.press("Escape")
    assert f"E2E mug {tag} 1" in options and not any("(copy)" in o and tag in o for o in options)
    with new_session(get_engine(e2e_database)) as session:
        rows = session.exec(
            select(Reward.name, Reward.stock, Reward.archived_at).where(Reward.name.like(f"E2E mug {tag}%")).order_by(Reward.id)
        ).all()
    assert [(name, stock, archived is not None) for name, stock, archived in rows] == [
        (f"E2E mug {tag} 1", 12, False),
        (f"E2E mug {tag} 1 (copy)", 12, True),
        (f"E2E mug {tag} 2", 12, False),
        (f"E2E mug {tag} 2 (copy)", 12, True),
    ]


def test_a_win_back_draft_previews_a_cost_above_zero(page, app_url, e2e_database, screenshots):
    sign_in(page, app_url, "manager")
    for n in (1, 2):
        _open(page, "Win-back")
        name = f"E2E win-back {uuid.uuid4().hex[:6]} {n}"
        page.get_by_label("Campaign name").fill(name)
        page.get_by_role("button", name="Create draft win-back campaign").click()
        page.get_by_text(f"{name} saved as a draft").wait_for()
        _open(page, "Campaigns")
        cost = page.locator('[data-testid="stMetric"]').filter(has_text="Estimated points cost")
        cost.wait_for()
        cost.scroll_into_view_if_needed()
        value = cost.locator('[data-testid="stMetricValue"]').inner_text()
        page.screenshot(path=str(screenshots / f"campaign-winback-preview-{n}.png"), full_page=True)
        assert re.fullmatch(r"[\d,]+", value) and int(value.replace(",", "")) > 0, value
        with new_session(get_engine(e2e_database)) as session:
            assert session.exec(select(Campaign.kind, Campaign.status).where(Campaign.name == name)).one() == ("win_back", "draft")
