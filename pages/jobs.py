"""Jobs: the scheduled evaluations, their history, run now, pause, resume and reschedule."""

import pandas as pd
import streamlit as st

from loyalty.errors import LoyaltyError
from loyalty.evaluation.jobs import job_runs, mark_interrupted_runs, run_job
from loyalty.evaluation.worker import list_schedules, pause_job, preview_schedule, reschedule_job, resume_job, worker_status
from loyalty.formatting import csv_text
from loyalty.ui.auth import page_actor
from loyalty.ui.core import db_session

actor = page_actor("evaluations.run")
st.title("Jobs")

status = worker_status()
if status["running"]:
    st.success(f"The worker is running (pid {status['pid']} on {status['host']}); lease renewed {status['renewed_at']}.")
else:
    st.warning("No worker holds the lease: schedules will not run. Start one with `python -m loyalty worker`.")

schedules = pd.DataFrame(list_schedules())
st.subheader("Schedules")
st.dataframe(
    schedules[["title", "schedule", "cron", "next_run_time", "paused"]],
    hide_index=True,
    width="stretch",
    column_config={"next_run_time": st.column_config.DatetimeColumn("next run (UTC)", format="YYYY-MM-DD HH:mm")},
)

job_id = st.selectbox("Job", schedules["id"].tolist(), format_func=dict(zip(schedules["id"], schedules["title"])).get, key="jobs_choice")
row = schedules.set_index("id").loc[job_id]
cols = st.columns(3)
if cols[0].button("Run now", type="primary", key="jobs_run_now"):
    bar = st.progress(0.0, text=f"Running {row['title']}…")
    result = run_job(job_id, actor=actor, progress=lambda fraction, message: bar.progress(min(max(fraction, 0.0), 1.0), text=message))
    (st.success if result["status"] == "succeeded" else st.error)(
        f"{row['title']}: {result['status']}, {result['rows']:,} rows. {result.get('error') or ''}"
    )
    st.cache_data.clear()
if row["paused"]:
    if cols[1].button("Resume", key="jobs_resume"):
        resume_job(job_id, actor=actor)
        st.rerun()
elif cols[1].button("Pause", key="jobs_pause"):
    pause_job(job_id, actor=actor)
    st.rerun()

with st.form("jobs_reschedule"):
    cron = st.text_input("Schedule (cron: minute hour day month weekday, UTC)", value=row["cron"], key=f"jobs_cron_{job_id}")
    try:
        preview = preview_schedule(cron)
        st.caption(f"{preview['description']}. Next runs: {', '.join(preview['next_runs_text'])}.")
    except LoyaltyError as error:
        st.error(str(error))
    if st.form_submit_button("Save schedule", key="jobs_save_schedule"):
        try:
            reschedule_job(job_id, cron, actor=actor)
            st.rerun()
        except LoyaltyError as error:
            st.error(str(error))

st.subheader("History")
mark_interrupted_runs()  # a run whose process died reads as failed, not running for hours
with db_session() as session:
    runs = pd.DataFrame(job_runs(session, 200))
if runs.empty:
    st.info("No job has run yet.")
else:
    st.dataframe(runs, hide_index=True, width="stretch")
    st.download_button("History (CSV)", csv_text(runs), "job_runs.csv", "text/csv", key="jobs_download_history")
