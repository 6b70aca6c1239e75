"""Integrations page: an admin makes a key (shown once) and revokes it after confirming; adds a
webhook (its secret shown once), sees it and its delivery log; others do not get the page."""

from __future__ import annotations

import pytest
from sqlmodel import select

from db.models import ApiKey, WebhookEndpoint
from loyalty.integrations.apikeys import authenticate
from tests.pages.conftest import open_page


def click(at, label: str):
    next(b for b in at.button if b.label == label).click().run()
    assert not at.exception, at.exception
    return at


def test_an_admin_makes_a_key_sees_it_once_and_revokes_it_after_confirming(app, session):
    at = open_page(app, "admin", "pages/integrations.py")
    assert "No API key yet" in at.info[0].value
    at.text_input(key="integrations_key_name").input("till-0042")
    at.multiselect(key="integrations_key_scopes").select("purchases:write").select("members:read")
    click(at, "Make key")
    notice = at.success[0].value
    assert "Key till-0042 made" in notice and "`lk_" in notice
    key = notice.split("`")[1]
    assert authenticate(session, key).scopes == {"purchases:write", "members:read"}
    assert at.dataframe[0].value["name"].tolist() == ["till-0042"]
    revoke = next(b for b in at.button if b.label == "Revoke")
    assert revoke.disabled, "revoking waits for the confirmation"
    at.checkbox(key="integrations_revoke_sure_till-0042").check().run()
    click(at, "Revoke")
    assert "till-0042 revoked" in at.success[0].value
    session.rollback()  # a new snapshot: the page wrote through its own connection
    assert session.exec(select(ApiKey)).one().revoked_at is not None and authenticate(session, key) is None


def test_an_admin_adds_a_webhook_with_its_secret_shown_once_and_a_bad_address_is_refused(app, session):
    at = open_page(app, "admin", "pages/integrations.py")
    at.text_input(key="integrations_webhook_url").input("ftp://example.com/hook")
    at.multiselect(key="integrations_webhook_events").select("points.changed")
    click(at, "Add webhook")
    assert at.error and "http" in at.error[0].value.lower()
    at.text_input(key="integrations_webhook_url").input("https://shop.example.com/loyalty-events")
    at.multiselect(key="integrations_webhook_events").select("points.changed").select("tier.changed")
    click(at, "Add webhook")
    assert "Its signing secret, shown once" in at.success[0].value
    endpoint = session.exec(select(WebhookEndpoint)).one()
    assert endpoint.events == ["points.changed", "tier.changed"] and endpoint.secret in at.success[0].value
    assert "Nothing delivered yet." in [c.value for c in at.caption]


def test_the_page_is_for_admins_only(app):
    from loyalty.access.roles import PAGES

    assert any(p.path == "pages/integrations.py" and p.permission == "settings.manage" for p in PAGES)
    with pytest.raises(ValueError, match="Could not find a navigation page"):  # not in a manager's menu
        open_page(app, "manager", "pages/integrations.py")
