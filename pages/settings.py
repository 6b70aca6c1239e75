"""Settings: the program-wide rules (admin)."""

import streamlit as st

from loyalty.settings import get_settings, update_settings
from loyalty.ui.auth import page_actor
from loyalty.ui.core import db_session, run_action

actor = page_actor("settings.manage")
st.title("Program settings")

with db_session() as session:
    current = get_settings(session)

with st.form("settings_form"):
    currency = st.text_input("Currency", value=current.currency, max_chars=3)
    rate = st.number_input("Points per currency unit spent", min_value=0.0, value=float(current.points_per_currency_unit), step=0.5)
    expiry = st.number_input("Points expire after (months, 0 = never)", min_value=0, value=int(current.expiry_months), step=1)
    value = st.number_input("Money value of one point (for liability)", min_value=0.0, value=float(current.point_value), step=0.001, format="%.4f")
    idle = st.number_input("Sign users out after idle minutes", min_value=1, value=int(current.idle_timeout_minutes), step=5)
    if st.form_submit_button("Save settings", type="primary"):
        changes = {
            k: v for k, v in {"currency": currency.strip().upper(), "points_per_currency_unit": float(rate), "expiry_months": int(expiry),
                              "point_value": float(value), "idle_timeout_minutes": int(idle)}.items()
            if getattr(current, k) != v
        }
        if not changes:
            st.info("Nothing changed.")
        else:
            run_action(lambda s: update_settings(session=s, actor=actor, **changes), success="Settings saved (audited). New rules apply to purchases from now on.")
