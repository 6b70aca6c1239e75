"""Settings page: two edits in a row are both stored and shown; a bad value is refused naming the field."""

from __future__ import annotations

from loyalty.settings import get_settings
from tests.pages.conftest import open_page


def save(at):
    at.button(key="settings_save").click().run()
    assert not at.exception, at.exception
    return at


def stored_value(at, label: str) -> str:
    table = at.dataframe[0].value.set_index("setting")
    return table.loc[label, "value"]


def test_two_edits_in_a_row_are_both_stored_and_the_form_shows_what_is_stored(app, session):
    at = open_page(app, "admin", "pages/settings.py")
    at.number_input(key="settings_point_value").set_value(0.02)
    save(at)
    assert "Money value of one point is now 0.02" in at.success[0].value
    at.number_input(key="settings_expiry_months").set_value(18)
    save(at)
    session.expire_all()
    stored = get_settings(session)
    assert (stored.point_value, stored.expiry_months) == (0.02, 18)
    assert at.number_input(key="settings_point_value").value == 0.02
    assert at.number_input(key="settings_expiry_months").value == 18
    assert stored_value(at, "Money value of one point") == "0.02"
    assert stored_value(at, "Points expire after (months, 0 = never)") == "18"


def test_a_point_value_of_zero_is_refused_naming_the_field_and_nothing_is_stored(app, session):
    at = open_page(app, "admin", "pages/settings.py")
    at.number_input(key="settings_point_value").set_value(0.0)
    at.number_input(key="settings_expiry_months").set_value(6)
    save(at)
    assert "Money value of one point: must be greater than 0" in at.error[0].value
    assert not at.success
    session.expire_all()
    assert (get_settings(session).point_value, get_settings(session).expiry_months) == (0.01, 12)
    assert at.number_input(key="settings_point_value").value == 0.0, "the form keeps what was typed, to correct it"
    assert stored_value(at, "Money value of one point") == "0.01"


def test_the_saved_message_stays_until_dismissed(app, session):
    at = open_page(app, "admin", "pages/settings.py")
    at.number_input(key="settings_adjustment_approval_limit").set_value(5000)
    save(at)
    at.run()
    assert "Adjustment approval limit (points) is now 5,000" in at.success[0].value
    next(b for b in at.button if b.label == "Dismiss").click().run()
    assert not at.success
    assert get_settings(session).adjustment_approval_limit == 5000


def test_saving_an_unchanged_form_says_nothing_changed(app, session):
    at = open_page(app, "admin", "pages/settings.py")
    save(at)
    assert "Nothing changed" in at.info[0].value


def test_the_return_window_is_a_setting_with_its_rule(app, session):
    at = open_page(app, "admin", "pages/settings.py")
    assert at.number_input(key="settings_return_window_days").value == 30
    at.number_input(key="settings_return_window_days").set_value(5000)
    at.button(key="settings_save").click().run()
    assert "between 0 and 3,650 days" in at.error[0].value
    at.number_input(key="settings_return_window_days").set_value(14)
    at.button(key="settings_save").click().run()
    assert "Return window (days)" in at.success[0].value and "is now 14" in at.success[0].value
