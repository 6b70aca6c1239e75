"""Challenges: goals members reach by buying (purchases, spend, a streak of months), paid the moment they are met."""

import streamlit as st

from loyalty.engagement.results import CLOSE_SHARE, challenge_effect, challenge_results, effect_table
from loyalty.ui.auth import page_actor
from loyalty.ui.challenge_form import challenge_form
from loyalty.ui.charts import challenge_completions
from loyalty.ui.core import db_session
from loyalty.ui.notices import show_notice

actor = page_actor("analysis.view")
st.title("Challenges")
st.caption(
    "A challenge is met the moment the purchase that meets it arrives (import, page or API) and paid once; "
    "a full refund of that purchase within the return window (Settings) takes the reward back."
)
show_notice("challenges")

with db_session() as session:
    results = challenge_results(session)
table = results.table

if table.empty:
    st.info("No challenge yet." + (" Define the first one below." if actor.can("program.configure") else ""))
else:
    cols = st.columns(4)
    cols[0].metric("Challenges", f"{len(table):,}")
    cols[1].metric("Members who completed one or more", f"{int(table['members_completed'].sum()):,}", help="Summed over challenges.")
    cols[2].metric(
        "Close to completing", f"{int(table['close'].sum()):,}", help=f"Members not completed yet, at {CLOSE_SHARE:.0%} of a target or more now."
    )
    cols[3].metric(
        "Cost of rewards paid", f"{results.currency} {table['cost'].sum():,.2f}", help="Points paid and not taken back, times the value of a point."
    )
    st.dataframe(
        table.drop(columns=["id"]),
        hide_index=True,
        width="stretch",
        column_config={
            "starts_at": st.column_config.DatetimeColumn("starts", format="YYYY-MM-DD"),
            "ends_at": st.column_config.DatetimeColumn("ends", format="YYYY-MM-DD"),
            "members_completed": st.column_config.NumberColumn("members completed"),
            "completion_rate": st.column_config.NumberColumn("completion rate", format="percent", help="Members completed / participants."),
            "close": st.column_config.NumberColumn("close", help=f"Not completed, at {CLOSE_SHARE:.0%} of the target or more now."),
            "taken_back": st.column_config.NumberColumn("taken back", help="Completions whose purchase was refunded in full within the window."),
            "points_paid": st.column_config.NumberColumn("points paid", format="%d"),
            "cost": st.column_config.NumberColumn(f"cost ({results.currency})", format="%.2f"),
            "holdout_pct": st.column_config.NumberColumn("holdout", format="percent"),
        },
    )
    if results.weekly.empty:
        st.caption("No completion yet: the chart of completions per week appears with the first.")
    else:
        st.plotly_chart(challenge_completions(results.weekly), width="stretch")

held = table[table["holdout_pct"] > 0] if not table.empty else table
if not held.empty:
    st.subheader("Measured effect")
    st.caption("Members of the holdout never see the challenge: the difference per eligible member since its start is its effect.")
    chosen = st.selectbox("Challenge with a holdout", held["name"].tolist(), key="challenges_effect_name")
    if st.button("Measure the effect", key="challenges_measure"):
        with st.spinner("Reading the purchases since the challenge started…"), db_session() as session:
            effect = challenge_effect(session, int(held.loc[held["name"] == chosen, "id"].iloc[0]))
        st.dataframe(effect_table(effect), hide_index=True, width="stretch")
        st.markdown(
            f"**{effect['verdict'].capitalize()}** ({effect['treatment_members']:,} members against a holdout of {effect['holdout_members']:,})."
        )

if actor.can("program.configure"):
    st.subheader("Define a challenge")
    challenge_form(actor)
