"""A message that outlives the rerun that caused it, until the person dismisses it.

``st.success`` after an action vanishes at the next rerun (``st.rerun()`` to reload a
table, or any click). A notice is kept in ``st.session_state`` under the page's prefix
and drawn by :func:`show_notice` on every run, with a button to dismiss it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NoReturn, TypeVar

import streamlit as st
from sqlmodel import Session

from loyalty.errors import LoyaltyError
from loyalty.ui.core import db_session, fault_words

__all__ = ["keep_notice", "run_and_reload", "show_notice"]

NoticeKind = Literal["success", "error", "info"]
T = TypeVar("T")


def _key(page: str) -> str:
    return f"{page}_notice"


def keep_notice(page: str, message: str, kind: NoticeKind = "success") -> None:
    """Show ``message`` on ``page`` from the next run on, replacing its previous notice."""
    st.session_state[_key(page)] = (kind, message)


def show_notice(page: str) -> None:
    """Draw the page's kept notice, if any, with a Dismiss button."""
    kept = st.session_state.get(_key(page))
    if not kept:
        return
    kind, message = kept
    text, dismiss = st.columns([10, 1], vertical_alignment="center")
    getattr(text, kind)(message)
    dismiss.button("Dismiss", key=f"{page}_notice_dismiss", on_click=st.session_state.pop, args=(_key(page), None))


def run_and_reload(
    page: str, action: Callable[[Session], T], success: str | Callable[[T], str], *, on_success: Callable[[T], None] | None = None
) -> NoReturn:
    """Run a use case, keep its outcome (done, or the refusal in the user's words) as the
    page's notice, and rerun, so every table and widget is drawn from the database again."""
    try:
        with db_session() as session:
            result = action(session)
    except LoyaltyError as error:
        keep_notice(page, str(error), "error")
    except Exception as error:  # a fault of the environment (read-only database, full disk): said, and kept
        keep_notice(page, fault_words(error), "error")
    else:
        st.cache_data.clear()
        keep_notice(page, success(result) if callable(success) else success)
        if on_success is not None:
            on_success(result)
    st.rerun()
