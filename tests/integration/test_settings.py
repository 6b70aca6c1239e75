"""Settings: every edit saved or refused naming the field; what is stored is what is shown."""

from __future__ import annotations

import pytest
from sqlalchemy import func
from sqlmodel import select

from db.models import AuditLog, ProgramSetting
from loyalty.access.roles import SYSTEM_CLI, Actor
from loyalty.errors import InvalidInput, PermissionDenied
from loyalty.settings import InvalidSetting, get_settings, stored_settings, update_settings

MANAGER = Actor("mia", "manager")


def test_two_edits_in_a_row_are_both_stored(session):
    update_settings(session=session, actor=SYSTEM_CLI, point_value=0.02)
    update_settings(session=session, actor=SYSTEM_CLI, expiry_months=18)
    stored = get_settings(session)
    assert (stored.point_value, stored.expiry_months) == (0.02, 18)


@pytest.mark.parametrize(
    "field,value,words",
    [
        ("point_value", 0, "Money value of one point: must be greater than 0"),
        ("point_value", -0.01, "Money value of one point: must be greater than 0"),
        ("points_per_currency_unit", 0, "Points per currency unit spent: must be greater than 0"),
        ("idle_timeout_minutes", 0, "Sign users out after idle minutes: must be at least 1 minute"),
        ("expiry_months", -1, "Points expire after (months, 0 = never): cannot be negative"),
        ("adjustment_approval_limit", -5, "Adjustment approval limit (points): cannot be negative"),
        ("expiry_months", 1.5, "Points expire after (months, 0 = never): must be a whole number"),
        ("point_value", "cheap", "Money value of one point: must be a number"),
        ("currency", "EURO", "Currency: must be a three-letter code"),
        ("weekly_report", 1, "Weekly executive report: must be yes or no"),
    ],
    ids=[
        "point-value-0",
        "point-value-negative",
        "earn-rate-0",
        "idle-0",
        "expiry-negative",
        "approval-limit-negative",
        "expiry-fraction",
        "point-value-text",
        "currency-4-letters",
        "weekly-report-number",
    ],
)
def test_a_value_breaking_its_rule_is_refused_naming_the_field_and_nothing_is_written(session, field, value, words):
    with pytest.raises(InvalidSetting, match=words.replace("(", r"\(").replace(")", r"\)")) as refused:
        update_settings(session=session, actor=SYSTEM_CLI, **{field: value})
    assert refused.value.refused.keys() == {field}
    session.rollback()
    assert session.exec(select(func.count()).select_from(ProgramSetting)).one() == 0
    assert session.exec(select(func.count()).select_from(AuditLog)).one() == 0


def test_one_refused_field_refuses_the_whole_edit_and_names_each_refused_field(session):
    with pytest.raises(InvalidSetting) as refused:
        update_settings(session=session, actor=SYSTEM_CLI, expiry_months=6, point_value=0, idle_timeout_minutes=0)
    assert refused.value.refused.keys() == {"point_value", "idle_timeout_minutes"}
    assert "Nothing was saved" in str(refused.value)
    assert get_settings(session).expiry_months == 12


def test_zero_is_allowed_where_it_means_something(session):
    update_settings(session=session, actor=SYSTEM_CLI, expiry_months=0, adjustment_approval_limit=0)
    assert (get_settings(session).expiry_months, get_settings(session).adjustment_approval_limit) == (0, 0)


def test_the_adjustment_approval_limit_defaults_to_ten_thousand_points_and_can_be_changed(session):
    assert get_settings(session).adjustment_approval_limit == 10_000
    update_settings(session=session, actor=SYSTEM_CLI, adjustment_approval_limit=2_500)
    assert get_settings(session).adjustment_approval_limit == 2_500


def test_a_currency_is_stored_in_capitals_and_a_whole_point_value_stays_a_number_of_money(session):
    update_settings(session=session, actor=SYSTEM_CLI, currency=" usd ", point_value=1)
    stored = get_settings(session)
    assert stored.currency == "USD"
    assert stored.point_value == 1.0 and isinstance(stored.point_value, float)


def test_an_old_bad_value_in_the_database_does_not_block_another_edit(session):
    session.add(ProgramSetting(key="point_value", value=0))
    session.commit()
    update_settings(session=session, actor=SYSTEM_CLI, expiry_months=24)
    assert get_settings(session).expiry_months == 24


def test_an_unknown_setting_is_refused(session):
    with pytest.raises(InvalidInput, match="Unknown setting"):
        update_settings(session=session, actor=SYSTEM_CLI, bonus_everything=True)


def test_only_an_admin_changes_settings(session):
    with pytest.raises(PermissionDenied):
        update_settings(session=session, actor=MANAGER, point_value=0.02)


def test_the_stored_settings_show_each_value_and_who_changed_it(session):
    update_settings(session=session, actor=Actor("ada", "admin"), point_value=0.025, adjustment_approval_limit=5000)
    stored = stored_settings(session).set_index("setting")
    assert stored.loc["Money value of one point", "value"] == "0.025"
    assert stored.loc["Adjustment approval limit (points)", "value"] == "5,000"
    assert stored.loc["Money value of one point", "changed_by"] == "ada"
    assert stored.loc["Currency", "value"] == "EUR"
    assert stored.loc["Currency", "changed_by"] == "(default)"


def test_a_settings_change_is_audited_with_before_and_after(session):
    update_settings(session=session, actor=SYSTEM_CLI, point_value=0.02)
    entry = session.exec(select(AuditLog).where(AuditLog.action == "settings.update")).one()
    assert "0.01" in str(entry.before) and "0.02" in str(entry.after)
