"""Loyalty Console: `streamlit run app.py`.

Prepares the database (schema at head, first admin, demo program on first start),
signs the user in, and shows the pages of the user's role.
"""

import streamlit as st

from loyalty.access import pages_for
from loyalty.ui.auth import current_actor, sidebar_user, sign_in_page
from loyalty.ui.core import engine, ensure_demo_program

st.set_page_config(page_title="Loyalty Console", page_icon=":material/loyalty:", layout="wide")

engine()
actor = current_actor()
if actor is None:
    # Always call st.navigation, so the pages/ folder is never auto-listed.
    navigation = st.navigation([st.Page(sign_in_page, title="Sign in", icon=":material/login:")], position="hidden")
else:
    menu = {
        section: [st.Page(p.path, title=p.title, icon=p.icon, default=(p.title == "Overview")) for p in specs]
        for section, specs in pages_for(actor.role).items()
    }
    navigation = st.navigation(menu, expanded=True)
    sidebar_user(actor)
# After st.navigation, so the sidebar never lists the pages/ folder while the demo is made.
ensure_demo_program()
navigation.run()
