"""Import: members, purchases and NPS answers from the company's systems (CSV)."""

import io
import time

import streamlit as st

from loyalty.formatting import progress_words
from loyalty.ledger.imports import REQUIRED_COLUMNS, ImportRefused, import_csv, preview_csv
from loyalty.ui.auth import page_actor
from loyalty.ui.core import db_session

actor = page_actor("data.import")
st.title("Import")
st.caption("Load CSV exports from the company's systems. A file is imported whole or not at all; importing the same file twice changes nothing.")

kind = st.segmented_control("What are you importing?", ["members", "purchases", "feedback"], default="purchases", key="import_kind") or "purchases"
st.markdown(
    f"Required columns: `{', '.join(REQUIRED_COLUMNS[kind])}`. Separated by commas, semicolons or tabs; "
    "dates in ISO 8601 (e.g. 2025-03-01 or 2025-03-01T14:30:00Z)."
)
upload = st.file_uploader("CSV file", type=["csv", "txt", "tsv"], key="import_file")
if upload is None:
    st.info("Choose a file to see a preview before anything is written.")
    st.stop()

data = upload.getvalue()
preview = preview_csv(io.BytesIO(data), kind)
if preview["problems"]:
    st.error("This file cannot be read, so nothing can be imported from it.")
    st.dataframe([vars(p) for p in preview["problems"]], hide_index=True, width="stretch")
    st.stop()

mapping: dict[str, str] = {}
if preview["missing"]:
    st.warning(f"Missing column(s): {', '.join(preview['missing'])}. Choose which of the file's columns gives each.")
    for target in preview["missing"]:
        source = st.selectbox(f"File column for `{target}`", [""] + preview["columns"], key=f"import_map_{target}")
        if source:
            mapping[source] = target
    if mapping:
        preview = preview_csv(io.BytesIO(data), kind, mapping=mapping)

rows = f"{preview['rows']:,} row{'' if preview['rows'] == 1 else 's'}"
st.markdown(
    f"**Preview** of {upload.name}: {rows} of data, {preview['separator']}-separated, UTF-8"
    + (" with a byte-order mark (BOM, ignored)." if preview["bom"] else ".")
    + " Nothing is written until you press Import."
)
st.markdown("**Column mapping**: where each column of the file goes")
st.dataframe(preview["mapping"], hide_index=True, width="stretch", column_config={"file_column": "file column", "field": "imported as"})
st.markdown(f"**First {len(preview['sample']):,} rows**")
st.dataframe(preview["sample"], hide_index=True, width="stretch")

options = st.columns(2)
create_members = options[0].checkbox("Create members first seen in this file", disabled=kind != "purchases", key="import_create_members")
skip_invalid = options[1].checkbox("Import the valid rows and set invalid ones aside", key="import_skip_invalid")

if cancelled := st.session_state.pop("import_running", None):  # the last run stopped half-way: its transaction was rolled back
    st.warning(f"The import of {cancelled} was stopped before it finished: nothing of it was written.")
if st.button("Import", type="primary", disabled=bool(preview["missing"]), help=f"Write the file's {rows} to the database", key="import_run"):
    st.session_state["import_running"] = upload.name
    bar = st.progress(0.0, text="Importing…")
    # Clicking it starts a new run of the page, which stops this one: its one transaction is rolled back.
    cancel = st.empty()
    cancel.button("Cancel the import", key="import_cancel", help="Stops the import; nothing of the file is written.")
    started = time.monotonic()

    def progress(done: int, total: int) -> None:
        bar.progress(min(done / max(total, 1), 1.0), text="Importing… " + progress_words(done, total, time.monotonic() - started))

    try:
        buffer = io.BytesIO(data)
        buffer.name = upload.name  # the audit trail records the file's name
        with db_session() as session:
            result = import_csv(
                session, kind, buffer, actor=actor, mapping=mapping, create_members=create_members, skip_invalid=skip_invalid, progress=progress
            )
    except ImportRefused as refused:
        st.session_state.pop("import_running", None)
        bar.empty()
        cancel.empty()
        st.error(f"Nothing was imported: {refused.count:,} problem(s) found. Fix the file, or tick “Import the valid rows”.")
        st.dataframe([vars(p) for p in refused.problems], hide_index=True, width="stretch")
        st.stop()
    except Exception:  # not a stop: said as it is (run_page), not as a cancellation
        st.session_state.pop("import_running", None)
        raise
    st.session_state.pop("import_running", None)
    cancel.empty()  # nothing left to cancel
    bar.progress(1.0, text="Done")
    st.cache_data.clear()
    st.success(
        f"Imported {result.imported:,} rows, skipped {result.skipped:,} already present, rejected {result.rejected:,} "
        f"({result.rows_per_second:,.0f} rows/s)."
    )
    if result.problems:
        st.dataframe([vars(p) for p in result.problems], hide_index=True, width="stretch")
    if result.rejected_csv:
        st.download_button(
            "Download the rejected rows with reasons", result.rejected_csv, f"{kind}.rejected.csv", "text/csv", key="import_download_rejected"
        )
