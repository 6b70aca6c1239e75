"""The head of the Analyse pages: title, caption and the filter bar (date range, segment, tier, acquisition channel)."""

from __future__ import annotations

from collections.abc import Hashable
from datetime import timedelta
from typing import Any

import streamlit as st

from db.models import utcnow
from loyalty.evaluation.views import page_view
from loyalty.insights.analysis import Filters, default_filters
from loyalty.periods import last_complete_month
from loyalty.program.segments import list_segments
from loyalty.program.tiers import list_tiers
from loyalty.ui.core import db_session

CHANNELS = ("store", "web", "app", "referral", "social_ads", "partner", "unknown")


@st.cache_data(ttl=300, show_spinner=False)
def _choices() -> tuple[dict[int, str], list[str]]:
    with db_session() as session:
        segments = list_segments(session)
        return dict(zip(segments["id"], segments["name"])), list_tiers(session)["name"].tolist()


def filter_bar(page: str, *, default_months: int = 12) -> Filters:
    """Draw the filters in the sidebar and return them (keys prefixed with the page's name).

    The date range starts as the last ``default_months`` complete months: a month still
    running would read as a fall (fewer days, fewer purchases).
    """
    segments, tiers = _choices()
    defaults = default_filters(utcnow(), default_months)
    with st.sidebar:
        st.markdown("**Filters**")
        default = (defaults.start, defaults.end - timedelta(days=1))
        chosen = st.date_input("Date range", value=default, key=f"{page}_range")
        start, end = (list(chosen) + [None, None])[:2] if isinstance(chosen, (tuple, list)) else (chosen, None)
        segment = st.selectbox("Segment", [None, *segments], format_func=lambda i: "all members" if i is None else segments[i], key=f"{page}_segment")
        tier = st.selectbox("Tier", [None, *tiers], format_func=lambda t: "all tiers" if t is None else t, key=f"{page}_tier")
        channel = st.selectbox(
            "Acquisition channel", [None, *CHANNELS], format_func=lambda c: "all channels" if c is None else c, key=f"{page}_channel"
        )
    start = start or default[0]
    # While only the first day is chosen, the range runs to the default's last day.
    return Filters(start=start, end=(end or max(start, default[1])) + timedelta(days=1), segment_id=segment, tier=tier, channel=channel)


def analysis_header(page: str, title: str, caption: str | None = None, *, default_months: int = 12) -> Filters:
    """Draw an Analyse page's title, its caption if any and the sidebar filter bar; return the filters chosen.

    ``page`` prefixes the filter widgets' keys, so each page keeps its own choices. A range
    that runs into a month not yet over says so under the title.
    """
    st.title(title)
    if caption:
        st.caption(caption)
    filters = filter_bar(page, default_months=default_months)
    if filters.end > last_complete_month(utcnow())[1]:
        st.caption(
            f":orange-badge[so far] The range runs to {filters.end - timedelta(days=1):%-d %B %Y}, into a month not over yet: "
            "that month's figures are so far, not a full month."
        )
    return filters


@st.cache_data(ttl=600, show_spinner="Computing from the purchases and the ledger…")
def _view(name: str, filters: Filters | None, live: bool) -> dict:
    with db_session() as session:
        return page_view(session, name, filters, live=live)


def analysis_view(page: str, filters: Filters | None = None, *, view: str | None = None, say_which: bool = True) -> dict:
    """The page's view ``view`` (default: the page's name) for ``filters``: what the nightly
    evaluation stored when they are the defaults (one row read), else computed now. With
    ``say_which`` it says which under the title, with a button that recomputes every view of
    the page from today's data."""
    live_key = f"{page}_live"
    result = _view(view or page, filters, bool(st.session_state.get(live_key)))
    stored = result["stored"]
    if not say_which:
        return result
    if stored is not None:
        text, button = st.columns([5, 1], vertical_alignment="center")
        text.caption(
            f":material/schedule: Figures of the nightly evaluation: data to {stored['as_of']:%-d %B %Y}, "
            f"computed {stored['computed_at']:%-d %b %H:%M} UTC. Purchases imported since then are not in them yet."
        )
        if button.button("Recompute now", key=f"{page}_recompute", help="Compute these figures from today's data (takes longer)."):
            st.session_state[live_key] = True
            st.rerun()
    elif st.session_state.get(live_key):
        st.caption(":material/bolt: Computed now from today's data.")
    return result


def listed_on_request(key: str, selection: Hashable, *, label: str = "List these members", where: Any = st) -> bool:
    """Whether the members behind ``selection`` (a cohort and an age, a threshold...) were asked
    for: a drill-down that reads every purchase runs only after its button ``key`` is clicked,
    and again only when asked for another selection. The button is drawn in ``where``."""
    if st.session_state.get(f"{key}_for") == selection:
        return True
    if where.button(label, key=key):
        st.session_state[f"{key}_for"] = selection
        st.rerun()
    return False
