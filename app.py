"""Loyalty Console: `streamlit run app.py`.

Run by `streamlit run`, this file is two things. Imported as a module, it is the web
app (`st.App`): Streamlit's server plus the two routes that set and clear the session
cookie (loyalty/ui/session_routes.py). Run as the app's script (``__main__``, once per
browser rerun), it prepares the database (schema at head, first admin, demo program on
first start), signs the user in, and shows the pages of the user's role.
"""

from pathlib import Path

import streamlit as st

if __name__ != "__main__":
    from loyalty.ui.session_routes import ROUTES

    app = st.App(Path(__file__).resolve(), routes=ROUTES)
else:
    from loyalty.access.roles import PAGES, pages_for
    from loyalty.ui.auth import current_actor, sidebar_user, sign_in_page
    from loyalty.ui.core import engine, ensure_demo_program, run_page

    st.set_page_config(page_title="Loyalty Console", page_icon=":material/loyalty:", layout="wide")

    def url_path(path: str) -> str:
        return Path(path).stem

    def main() -> None:
        engine()
        actor = current_actor()
        if actor is None:
            # Every page's address leads to the sign-in form, and after signing in to that page.
            # Always call st.navigation, so the pages/ folder is never auto-listed.
            sign_in = [st.Page(sign_in_page, title="Sign in", icon=":material/login:", url_path="sign-in", default=True)]
            sign_in += [st.Page(sign_in_page, title="Sign in", url_path=url_path(p.path)) for p in PAGES]
            navigation = st.navigation(sign_in, position="hidden")
        else:
            menu = {
                section: [st.Page(p.path, title=p.title, icon=p.icon, url_path=url_path(p.path), default=(p.title == "Overview")) for p in specs]
                for section, specs in pages_for(actor.role).items()
            }
            navigation = st.navigation(menu, expanded=True)
            sidebar_user(actor)
        # After st.navigation, so the sidebar never lists the pages/ folder while the demo is made.
        ensure_demo_program()
        navigation.run()

    # A database that is down or read-only, a full disk: said in words on the page, never a traceback.
    run_page(main)
