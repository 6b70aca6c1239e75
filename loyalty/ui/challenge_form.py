"""The Challenges page's form: define a challenge, or preview what it would find among members now."""

from __future__ import annotations

from typing import Any

import streamlit as st

from loyalty.access.roles import Actor
from loyalty.engagement.results import preview_challenge
from loyalty.errors import LoyaltyError
from loyalty.ledger.challenges import define_challenge
from loyalty.program.segments import list_segments
from loyalty.ui.core import db_session
from loyalty.ui.notices import run_and_reload

GOALS = {"purchases": "purchases", "spend": "min_spend", "streak of months": "streak_months"}


def challenge_form(actor: Actor) -> None:
    with db_session() as session:
        segments = list_segments(session)
    segment_names = dict(zip(segments["name"], segments["id"]))
    with st.form("challenges_form"):
        left, right = st.columns(2)
        name = left.text_input("Name", key="challenges_name", max_chars=100)
        goal = left.radio("Goal", list(GOALS), key="challenges_goal", horizontal=True, help="What the member has to do.")
        amount = left.number_input(
            "Target", min_value=0.0, value=3.0, step=1.0, key="challenges_target", help="Purchases, an amount spent, or months in a row."
        )
        within = left.number_input("Within days (0: anywhere in the dates)", min_value=0, value=30, step=1, key="challenges_within")
        category = left.text_input("Only purchases of category (empty: any)", key="challenges_category")
        segment = left.selectbox("Eligible members", ["everyone", *segment_names], key="challenges_segment")
        holdout = left.number_input(
            "Holdout (share left out, to measure the effect)", min_value=0.0, max_value=0.5, value=0.0, step=0.05, key="challenges_holdout"
        )
        points = right.number_input("Points paid", min_value=0, value=200, step=50, key="challenges_points")
        badge = right.text_input("Badge (optional)", key="challenges_badge", max_chars=100)
        starts = right.date_input("Starts", key="challenges_starts")
        ends = right.date_input("Ends (optional, exclusive)", value=None, key="challenges_ends")
        most = right.number_input("Completions per member", min_value=1, value=1, step=1, key="challenges_max")
        preview = st.form_submit_button("Preview", key="challenges_preview", help="How many members it would find now; nothing is saved.")
        submitted = st.form_submit_button("Save challenge", type="primary", key="challenges_save")
    fields: dict[str, Any] = {
        "name": name,
        GOALS[goal]: float(amount),
        "within_days": None if goal == "streak of months" or not within else int(within),
        "category": category,
        "points": int(points),
        "badge": badge,
        "starts": starts,
        "ends": ends,
        "segment_id": None if segment == "everyone" else int(segment_names[segment]),
        "max_completions": int(most),
        "holdout_pct": float(holdout),
    }
    if preview:
        try:
            with db_session() as session:
                found = preview_challenge(session, **fields)
        except LoyaltyError as error:
            st.error(str(error))
        else:
            st.info(
                f"{found['goal'].capitalize()}: {found['participants']:,} members have a purchase that counts so far; "
                f"{found['would_complete']:,} already meet it (paid with their next purchase) and {found['close']:,} are half way or more."
            )
    if submitted:
        run_and_reload(
            "challenges",
            lambda s: define_challenge(s, actor=actor, **fields),
            lambda made: f"Challenge {made['name']} saved (audited): it counts purchases from {made['starts_at']:%Y-%m-%d}.",
        )
