"""Settings: the program-wide rules (admin)."""

from datetime import date

import streamlit as st

from loyalty.settings import SETTING_LABELS, describe_settings, get_settings, stored_settings, update_settings
from loyalty.ui.auth import page_actor
from loyalty.ui.core import db_session
from loyalty.ui.notices import run_and_reload, show_notice

actor = page_actor("settings.manage")
st.title("Program settings")
show_notice("settings")

with db_session() as session:
    current = get_settings(session)
    stored = stored_settings(session)

# The form's widgets are keyed and filled from the database on the first visit and after
# each save, so they always start from what is stored (never from a stale earlier value).
if st.session_state.pop("settings_reload", False) or "settings_currency" not in st.session_state:
    for name in SETTING_LABELS:
        st.session_state[f"settings_{name}"] = getattr(current, name)

with st.form("settings_form"):
    left, right = st.columns(2)
    left.text_input(SETTING_LABELS["currency"], max_chars=3, key="settings_currency")
    left.number_input(SETTING_LABELS["points_per_currency_unit"], step=0.5, key="settings_points_per_currency_unit")
    left.number_input(SETTING_LABELS["expiry_months"], step=1, key="settings_expiry_months")
    left.number_input(SETTING_LABELS["point_value"], step=0.001, format="%.4f", key="settings_point_value")
    right.number_input(SETTING_LABELS["idle_timeout_minutes"], step=5, key="settings_idle_timeout_minutes")
    right.number_input(
        SETTING_LABELS["adjustment_approval_limit"],
        step=1000,
        key="settings_adjustment_approval_limit",
        help="A point adjustment above this many points waits for a second admin's approval.",
    )
    left.number_input(
        SETTING_LABELS["max_purchase_amount"],
        step=1000.0,
        format="%.2f",
        key="settings_max_purchase_amount",
        help="A purchase above this amount is refused wherever it comes in (import, page, command line).",
    )
    left.date_input(
        SETTING_LABELS["program_start"],
        key="settings_program_start",
        help="A purchase or a member dated before this day is refused as a typing error.",
        min_value=date(1900, 1, 1),
    )
    right.number_input(SETTING_LABELS["max_import_megabytes"], step=100, key="settings_max_import_megabytes")
    right.number_input(
        SETTING_LABELS["gross_margin"],
        step=0.05,
        format="%.2f",
        key="settings_gross_margin",
        help="What a campaign's extra sales earn the company: its ROI is (extra revenue x margin - cost) / cost.",
    )
    right.number_input(
        SETTING_LABELS["return_window_days"],
        step=1,
        key="settings_return_window_days",
        help="A purchase refunded in full within this many days also gives back the challenge rewards it paid.",
    )
    left.number_input(SETTING_LABELS["referral_referrer_points"], min_value=0, step=50, key="settings_referral_referrer_points")
    left.number_input(SETTING_LABELS["referral_referee_points"], min_value=0, step=50, key="settings_referral_referee_points")
    right.number_input(
        SETTING_LABELS["referral_min_purchase"],
        min_value=0.0,
        step=5.0,
        format="%.2f",
        key="settings_referral_min_purchase",
        help="A referred member's first purchase of at least this amount pays both bonuses, once.",
    )
    right.number_input(
        SETTING_LABELS["messages_per_member_per_month"],
        min_value=0,
        step=1,
        key="settings_messages_per_member_per_month",
        help="More messages to one member in a calendar month are suppressed, the most useful kept (expiry reminders first).",
    )
    right.checkbox(SETTING_LABELS["weekly_report"], key="settings_weekly_report", help="Also render an executive report every Monday.")
    submitted = st.form_submit_button("Save settings", type="primary", key="settings_save")

if submitted:
    changes = {
        name: st.session_state[f"settings_{name}"] for name in SETTING_LABELS if st.session_state[f"settings_{name}"] != getattr(current, name)
    }
    if not changes:
        st.info("Nothing changed: the form holds what is stored.")
    else:
        run_and_reload(
            "settings",
            lambda s: update_settings(session=s, actor=actor, **changes),
            lambda saved: f"Settings saved (audited): {describe_settings(saved, changes)}. New rules apply from now on.",
            on_success=lambda _: st.session_state.update(settings_reload=True),
        )

st.subheader("Stored now")
st.dataframe(
    stored,
    hide_index=True,
    width="stretch",
    column_config={"changed_at": st.column_config.DatetimeColumn("changed at", format="YYYY-MM-DD HH:mm"), "changed_by": "changed by"},
)
