"""A message that outlives the rerun that caused it, until the person dismisses it.

``st.success`` after an action vanishes at the next rerun (``st.rerun()`` to reload a
table, or any click). A notice is kept in ``st.session_state`` under the page's prefix
and drawn by :func:`show_notice` on every run, with a button to dismiss it.
"""

from __future__ import annotations

from typing import Literal

import streamlit as st

__all__ = ["keep_notice", "show_notice"]

NoticeKind = Literal["success", "error", "info"]


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
