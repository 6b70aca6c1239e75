"""Record forms on the configuration pages: a fresh form per record, the archive toggle and the lifecycle buttons.

Why a key per record: Streamlit keeps a widget's value under an id made from its key,
or, without one, from its label and arguments. Two forms that draw the same widgets
(a new reward after the last one saved, or after editing another) then share the
values a person typed before. :func:`form_key` names the form and its widgets after
the record and a generation that :func:`form_saved` moves on after each save, so a new
record's form always starts blank and an edited one from what is stored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from loyalty.ui.core import run_action

__all__ = ["archive_toggle", "choice_box", "form_key", "form_saved", "lifecycle_buttons", "show_flash"]


def form_key(page: str, record_id: Any | None) -> str:
    """The key of ``page``'s form for one record (``None``: a new one); prefix its widgets' keys with it."""
    generation = st.session_state.get(f"{page}_form_generation", 0)
    return f"{page}_form_{'new' if record_id is None else record_id}_{generation}"


def form_saved(page: str, message: str, *, choice: str | None = None) -> None:
    """After a save: the next form starts afresh, ``message`` shows after the rerun, ``choice`` (a selectbox key's value) is kept."""
    st.session_state[f"{page}_form_generation"] = st.session_state.get(f"{page}_form_generation", 0) + 1
    st.session_state[f"{page}_flash"] = message
    if choice is not None:  # the selectbox is drawn already this run: set it at the start of the next
        st.session_state[f"{page}_pending_choice"] = choice
    st.rerun()


def choice_box(page: str, label: str, options: list[str]) -> str:
    """The page's "new or which record" selectbox, on the choice :func:`form_saved` asked for when there is one."""
    key = f"{page}_choice"
    pending = st.session_state.pop(f"{page}_pending_choice", None)
    if pending in options:
        st.session_state[key] = pending
    elif st.session_state.get(key) not in options:
        st.session_state.pop(key, None)  # archived or deleted meanwhile
    return st.selectbox(label, options, key=key)


def show_flash(page: str) -> None:
    """The message :func:`form_saved` left for this run, once."""
    if message := st.session_state.pop(f"{page}_flash", None):
        st.success(message)


def archive_toggle(page: str, what: str) -> bool:
    return st.toggle(f"Show archived {what}", key=f"{page}_show_archived", help="Archived items are hidden from lists and pickers until restored.")


def lifecycle_buttons(
    page: str,
    *,
    name: str,
    archived: bool,
    clone: Callable[[Any], Any],
    archive: Callable[[Any], Any],
    restore: Callable[[Any], Any],
    delete: Callable[[Any], Any],
    new_choice: str,
) -> None:
    """Clone, Archive (or Restore) and Delete for the chosen record; each runs a use case, then the page starts afresh.

    ``delete`` returns a :class:`loyalty.program.lifecycle.Removal` (archived instead when something refers to the record).
    """
    cols = st.columns(3)
    if cols[0].button("Clone", key=f"{page}_clone", help=f'A copy named "{name} (copy)".'):
        copy = run_action(clone)
        if copy is not None:
            form_saved(
                page, f"{copy.name if hasattr(copy, 'name') else 'A copy'} created from {name} (audited).", choice=getattr(copy, "name", new_choice)
            )
    if archived:
        if cols[1].button("Restore", key=f"{page}_restore", type="primary") and run_action(restore) is not None:
            form_saved(page, f"{name} restored (audited).", choice=name)
    elif cols[1].button("Archive", key=f"{page}_archive", help="Hidden from lists and pickers; restorable.") and run_action(archive) is not None:
        form_saved(page, f"{name} archived (audited). Turn on 'Show archived' to see or restore it.", choice=new_choice)
    if cols[2].button("Delete", key=f"{page}_delete", help="Archived instead when something refers to it."):
        removal = run_action(delete)
        if removal is not None:
            form_saved(page, removal.message, choice=new_choice)
