"""Users: who may use the console, and with which role (admin)."""

import pandas as pd
import streamlit as st

from loyalty.access import ROLES
from loyalty.users import create_user, disable_user, list_users, reset_password, set_role
from loyalty.ui.auth import page_actor
from loyalty.ui.core import db_session, run_action

actor = page_actor("users.manage")
st.title("Users")

with db_session() as session:
    users = pd.DataFrame(list_users(session))
st.dataframe(users, hide_index=True, width="stretch")

add, change = st.columns(2)
with add, st.form("users_add", clear_on_submit=True):
    st.markdown("**Add a user**")
    username = st.text_input("New username")
    role = st.selectbox("Role", ROLES, index=ROLES.index("analyst"))
    email = st.text_input("E-mail (for company sign-in)")
    if st.form_submit_button("Add user"):
        created = run_action(lambda s: create_user(session=s, username=username, role=role, email=email, actor=actor))
        if created:
            st.success(f"{created.username} added. Their password, shown once: `{created.password}`")

with change:
    target = st.selectbox("User", users["username"].tolist(), key="users_target")
    new_role = st.selectbox("New role", ROLES, key="users_new_role")
    b1, b2, b3 = st.columns(3)
    if b1.button("Change role"):
        run_action(lambda s: set_role(session=s, username=target, role=new_role, actor=actor), success=f"{target} is now {new_role}.")
    if b2.button("Reset password"):
        password = run_action(lambda s: reset_password(session=s, username=target, actor=actor))
        if password:
            st.success(f"New password for {target}, shown once: `{password}`")
    if b3.button("Disable"):
        run_action(lambda s: disable_user(session=s, username=target, actor=actor), success=f"{target} can no longer sign in.")
