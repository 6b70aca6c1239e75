"""The head of the Analyse pages: title, caption and the filter bar (date range, segment, tier, acquisition channel)."""

from __future__ import annotations

from datetime import date, timedelta

import streamlit as st

from loyalty.insights.analysis import Filters
from loyalty.program.segments import list_segments
from loyalty.program.tiers import list_tiers
from loyalty.ui.core import db_session

CHANNELS = ("store", "web", "app", "referral", "social_ads", "partner", "unknown")


@st.cache_data(ttl=300, show_spinner=False)
def _choices() -> tuple[dict[int, str], list[str]]:
    with db_session() as session:
        segments = list_segments(session)
        return dict(zip(segments["id"], segments["name"])), list_tiers(session)["name"].tolist()


def filter_bar(page: str, *, default_days: int = 365) -> Filters:
    """Draw the filters in the sidebar and return them (keys prefixed with the page's name)."""
    segments, tiers = _choices()
    today = date.today()
    with st.sidebar:
        st.markdown("**Filters**")
        chosen = st.date_input("Date range", value=(today - timedelta(days=default_days), today), key=f"{page}_range")
        start, end = (list(chosen) + [None, None])[:2] if isinstance(chosen, (tuple, list)) else (chosen, None)
        segment = st.selectbox("Segment", [None, *segments], format_func=lambda i: "all members" if i is None else segments[i], key=f"{page}_segment")
        tier = st.selectbox("Tier", [None, *tiers], format_func=lambda t: "all tiers" if t is None else t, key=f"{page}_tier")
        channel = st.selectbox(
            "Acquisition channel", [None, *CHANNELS], format_func=lambda c: "all channels" if c is None else c, key=f"{page}_channel"
        )
    start = start or today - timedelta(days=default_days)
    return Filters(start=start, end=(end or today) + timedelta(days=1), segment_id=segment, tier=tier, channel=channel)


def analysis_header(page: str, title: str, caption: str | None = None, *, default_days: int = 365) -> Filters:
    """Draw an Analyse page's title, its caption if any and the sidebar filter bar; return the filters chosen.

    ``page`` prefixes the filter widgets' keys, so each page keeps its own choices.
    """
    st.title(title)
    if caption:
        st.caption(caption)
    return filter_bar(page, default_days=default_days)
