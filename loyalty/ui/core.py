"""Engine, sessions and error display for pages."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import streamlit as st
from sqlalchemy import Engine
from sqlmodel import Session

from db.engine import database_url, get_engine, new_session
from loyalty.errors import LoyaltyError, describe_fault

T = TypeVar("T")
DEMO_MEMBERS = 5000
# Appended to a KPI's help text: where every definition is (the Goals and KPIs page draws
# the catalogue; docs/metrics.md says the same). A relative link, so a base URL path works.
METRICS_DOC = "\n\nEvery KPI's definition and period rule: [Goals and KPIs › KPI definitions](goals#kpi-definitions)."


@st.cache_resource(show_spinner="Preparing the database…")
def _prepared_engine(url: str) -> Engine:
    from loyalty.bootstrap import prepare_database

    prepare_database()
    if os.environ.get("LOYALTY_WORKER", "1") != "0":
        # The one-machine default: start the scheduler beside the app unless a worker
        # already holds the lease (an extra one would only wait as standby).
        from loyalty.evaluation.worker import start_worker_process

        start_worker_process()
    return get_engine(url)


def engine() -> Engine:
    """The engine of LOYALTY_DATABASE_URL, migrated and with a first admin, once per process."""
    return _prepared_engine(database_url())


@contextmanager
def db_session() -> Iterator[Session]:
    with new_session(engine()) as session:
        yield session


def run_action(action: Callable[[Session], T], *, success: str | None = None) -> T | None:
    """Run a use case; show a domain refusal as ``st.error`` in the user's words."""
    try:
        with db_session() as session:
            result = action(session)
    except LoyaltyError as error:
        st.error(str(error))
        return None
    except Exception as error:  # a fault of the environment (database down, read-only, disk full): said, not a traceback
        st.error(fault_words(error))
        return None
    if success:
        st.success(success)
    st.cache_data.clear()
    return result


def fault_words(error: Exception) -> str:
    """The words a page shows for a fault of the environment (:func:`describe_fault`); anything else is raised again."""
    if (fault := describe_fault(error)) is None:
        raise error
    return fault[0]


def run_page(page: Callable[[], None]) -> None:
    """Run the app's script; a fault of the environment anywhere in it is shown in words and stays on screen."""
    try:
        page()
    except Exception as error:
        st.error(fault_words(error), icon=":material/error:")
        st.caption("Reload the page once the cause is fixed; what was on the page was not changed.")


def announce_users(users: list[dict]) -> None:
    """The demo users' passwords, printed once to the terminal beside the admin's (never stored in clear, never on a page)."""
    if users:
        lines = "\n".join(f"***   {u['username']:<12} ({u['role']}): {u['password']}" for u in users)
        print(f"\n*** Loyalty Console: demo users, one per role (shown only this once):\n{lines}\n", file=sys.stderr, flush=True)


def ensure_demo_program() -> None:
    """On an empty database, fill the demo program (unless LOYALTY_DEMO=0), saying so on screen."""
    if os.environ.get("LOYALTY_DEMO", "1") == "0" or st.session_state.get("demo_checked"):
        return
    from loyalty.bootstrap import has_members

    with db_session() as session:
        empty = not has_members(session)
    if empty:
        from loyalty.access.roles import SYSTEM_DEMO
        from loyalty.demo.simulation import create_demo

        with st.status(f"First start: creating a demo program of {DEMO_MEMBERS:,} members…", expanded=True) as status:
            bar = st.progress(0.0)

            def progress(done: int, total: int) -> None:
                bar.progress(min(done / max(total, 1), 1.0))

            try:
                with db_session() as session:
                    summary = create_demo(session, members=DEMO_MEMBERS, actor=SYSTEM_DEMO, progress=progress)
                status.update(label="Demo program created: running the first evaluation (KPIs, tiers, campaigns, alerts, report)…")
                from loyalty.evaluation.jobs import run_all

                def show_progress(fraction: float, _message: str) -> None:
                    bar.progress(min(max(fraction, 0.0), 1.0))

                run_all(actor=SYSTEM_DEMO, progress=show_progress)
                announce_users(summary.get("users", []))
                status.update(
                    label=f"Demo program ready: {summary['members']:,} members, {summary['purchases']:,} purchases.", state="complete", expanded=False
                )
            except LoyaltyError:
                # Another browser session created it at the same moment.
                status.update(label="Demo program ready.", state="complete", expanded=False)
        st.cache_data.clear()
    st.session_state["demo_checked"] = True
