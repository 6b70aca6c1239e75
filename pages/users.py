"""Users: who may use the console, and with which role (admin)."""

import streamlit as st

from loyalty.access.roles import ROLES
from loyalty.access.users import create_user, disable_user, enable_user, list_users, reset_password, set_role
from loyalty.ui.auth import page_actor
from loyalty.ui.core import db_session
from loyalty.ui.notices import run_and_reload, show_notice

actor = page_actor("users.manage")
st.title("Users")
show_notice("users")

with db_session() as session:
    users = list_users(session)
st.dataframe(users, hide_index=True, width="stretch", column_config={"active": st.column_config.CheckboxColumn("enabled")})

add, change = st.columns(2)
with add, st.form("users_add", clear_on_submit=True):
    st.markdown("**Add a user**")
    username = st.text_input("New username", key="users_add_username")
    role = st.selectbox("Role", ROLES, index=ROLES.index("analyst"), key="users_add_role")
    email = st.text_input("E-mail (for company sign-in)", key="users_add_email")
    if st.form_submit_button("Add user", key="users_add_submit"):
        run_and_reload(
            "users",
            lambda s: create_user(session=s, username=username, role=role, email=email, actor=actor),
            lambda created: f"{created.username} added. Their password, shown once: `{created.password}`",
        )

with change:
    enabled = {user["username"]: user["active"] for user in users}
    target = st.selectbox("User", list(enabled), key="users_target")
    st.caption(f"{target} is {'enabled' if enabled[target] else 'disabled: they cannot sign in'}.")
    new_role = st.selectbox("New role", ROLES, key="users_new_role")
    b1, b2, b3 = st.columns(3)
    if b1.button("Change role", key="users_change_role"):
        run_and_reload("users", lambda s: set_role(session=s, username=target, role=new_role, actor=actor), f"{target} is now {new_role}.")
    if b2.button("Reset password", key="users_reset_password"):
        run_and_reload(
            "users",
            lambda s: reset_password(session=s, username=target, actor=actor),
            lambda password: f"New password for {target}, shown once: `{password}`",
        )
    if enabled[target] and b3.button("Disable", key="users_disable"):
        run_and_reload("users", lambda s: disable_user(session=s, username=target, actor=actor), f"{target} is disabled: they can no longer sign in.")
    if not enabled[target] and b3.button("Enable", key="users_enable"):
        run_and_reload("users", lambda s: enable_user(session=s, username=target, actor=actor), f"{target} is enabled: they can sign in again.")
