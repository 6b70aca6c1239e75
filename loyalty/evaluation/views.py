"""Stored views: what an Analyse page shows for its default filters, computed once by the nightly
``page-views`` job and read back from one row of ``stored_view`` (issue 20).

At a million members a page that computes on load scans ten million purchases (10-16 s on
SQLite). The job runs the page's own view function with the page's default filters and
stores the result; the page asks :func:`page_view`, which returns the stored result when the
filters are the defaults and computes live otherwise (another range, a segment, a tier), or
when the person asks for today's data.

The payload is a zip: ``view.json`` holds the numbers, texts and the layout of each frame;
each frame is one Parquet file (its index and column labels restored on reading). No pickle:
what is read back is data, never code.
"""

from __future__ import annotations

import io
import json
import math
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import delete
from sqlmodel import Session, col, select

from db.models import StoredView, utcnow
from loyalty.analytics.data import shared_reads
from loyalty.errors import InvalidInput, LoyaltyError
from loyalty.insights.analysis import Filters, clv_view, default_filters, purchase_cycle_view, redemptions_view, retention_view, rfm_grid

__all__ = ["VIEWS", "ViewSpec", "compute_page_views", "pack", "page_view", "params_key", "save_page_views", "unpack"]

ProgressFn = Callable[[float, str], None]


@dataclass(frozen=True)
class ViewSpec:
    """A page's view: its function, and the months an Analyse page's date range covers by default
    (None: a view without filters, such as the RFM grid). ``current`` says whether a stored view
    still describes what the page would show (the Segments overview: the same segments and
    rules); without it a stored view is current until the next night."""

    compute: Callable[[Session, Any], dict[str, Any]]  # (session, Filters), or (session, None) without filters
    default_months: int | None = 12
    current: Callable[[Session, dict[str, Any]], bool] | None = None


def _segments(session: Session, _filters: Filters | None) -> dict[str, Any]:
    """The Segments page's list with each segment's size and revenue share, as stored: each
    segment's name, rules and description as one JSON key (what :func:`_same_segments` compares)
    in place of the rules themselves (mappings, not columns)."""
    from loyalty.program.segments import segments_overview

    overview = segments_overview(session)
    return {"overview": overview.assign(segment_key=_segment_keys(overview)).drop(columns="rules")}


def _segment_keys(segments: pd.DataFrame) -> list[str]:
    return [json.dumps([n, r, d], sort_keys=True) for n, r, d in zip(segments["name"], segments["rules"], segments["description"])]


def _same_segments(session: Session, view: dict[str, Any]) -> bool:
    """The stored overview counted the segments saved now, with the same rules and descriptions."""
    from loyalty.program.segments import list_segments

    return _segment_keys(list_segments(session)) == list(view["overview"]["segment_key"])


def _barrier(session: Session, _filters: Filters | None) -> dict[str, Any]:
    from loyalty.decisions.barrier import barrier_inputs, entry_barrier

    return {**entry_barrier(session), "inputs": barrier_inputs(session)}


def _winback(session: Session, _filters: Filters | None) -> dict[str, Any]:
    from loyalty.decisions.winback import winback_view

    return winback_view(session, None)


def _same_program(session: Session, view: dict[str, Any]) -> bool:
    """The stored reach was computed for the tiers, rewards and expiry of now."""
    from loyalty.decisions.barrier import barrier_inputs

    return bool(view["inputs"] == barrier_inputs(session))


# Keyed as the pages' filter keys (``analysis_header(page, ...)``) for the Analyse pages.
VIEWS: dict[str, ViewSpec] = {
    "retention": ViewSpec(retention_view),
    "clv": ViewSpec(clv_view, default_months=24),
    "purchase_cycle": ViewSpec(purchase_cycle_view),
    "redemption_analysis": ViewSpec(redemptions_view),
    "rfm": ViewSpec(lambda session, _filters: rfm_grid(session), default_months=None),
    "segments": ViewSpec(_segments, default_months=None, current=_same_segments),
    # The Tiers and Rewards pages: the share of active members who can reach each (loyalty.decisions.barrier).
    "barrier": ViewSpec(_barrier, default_months=None, current=_same_program),
    # The Win-back list of the default thresholds, without contacts (the page adds what its reader may see).
    "winback": ViewSpec(_winback, default_months=None),
}


def params_key(filters: Filters | None) -> str:
    """The stored row's key for these filters: their JSON, keys sorted (``{}``: no filters)."""
    if filters is None:
        return "{}"
    return json.dumps(
        {
            "start": filters.start.isoformat(),
            "end": filters.end.isoformat(),
            "segment_id": filters.segment_id,
            "tier": filters.tier,
            "channel": filters.channel,
        },
        sort_keys=True,
    )


def page_view(session: Session, name: str, filters: Filters | None = None, *, live: bool = False) -> dict[str, Any]:
    """The view ``name`` for ``filters``: the stored one when there is one for exactly these
    filters (and ``live`` is false), else computed now. ``view["stored"]`` says which:
    ``{"computed_at", "as_of", "seconds"}`` of the stored row, or None when computed now."""
    spec = VIEWS[name]
    if not live:
        row = session.exec(select(StoredView).where(StoredView.name == name, StoredView.params == params_key(filters))).first()
        if row is not None:
            view = unpack(row.payload)
            if "refused" in view:
                raise InvalidInput(view["refused"])
            if spec.current is None or spec.current(session, view):
                view["stored"] = {"computed_at": row.computed_at, "as_of": row.as_of, "seconds": row.seconds}
                return view
    view = spec.compute(session, filters)
    view["stored"] = None
    return view


def compute_page_views(session: Session, *, now: datetime, as_of: date, progress: ProgressFn | None = None) -> list[StoredView]:
    """Every page's default view as the pages would compute it on ``now``, as rows to store
    (:func:`save_page_views`). A view the data refuses (too few buyers for the CLV model) is
    stored as that refusal, which the page then shows as it would have computed it."""
    rows: list[StoredView] = []
    with shared_reads():  # the views read the same purchases and members: each read once
        for i, (name, spec) in enumerate(VIEWS.items()):
            if progress is not None:
                progress(i / len(VIEWS), f"computing the {name.replace('_', ' ')} page")
            filters = None if spec.default_months is None else default_filters(now, spec.default_months)
            t0 = time.perf_counter()
            try:
                payload = pack(spec.compute(session, filters))
            except LoyaltyError as refusal:
                payload = pack({"refused": str(refusal)})
            seconds = round(time.perf_counter() - t0, 3)
            rows.append(StoredView(name=name, params=params_key(filters), as_of=as_of, computed_at=utcnow(), seconds=seconds, payload=payload))
    return rows


def save_page_views(session: Session, rows: list[StoredView]) -> dict[str, Any]:
    """Replace the stored rows of these views (those of other filters too); the caller commits."""
    session.exec(delete(StoredView).where(col(StoredView.name).in_([row.name for row in rows])))
    session.add_all(rows)
    return {
        "rows": len(rows),
        "views": {row.name: {"seconds": row.seconds, "bytes": len(row.payload), "params": json.loads(row.params)} for row in rows},
    }


# --- the payload -------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A JSON value for a view's number, text, day or mapping (numpy scalars made Python's)."""
    if isinstance(value, dict):
        return {"dict": {str(k): _plain(v) for k, v in value.items()}}
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, datetime):
        return {"datetime": value.isoformat()}
    if isinstance(value, date):
        return {"date": value.isoformat()}
    if isinstance(value, float) and math.isnan(value):
        return {"nan": True}
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"value": value}
    raise TypeError(f"a stored view cannot hold {type(value).__name__}")


def _unplain(value: dict[str, Any]) -> Any:
    if "dict" in value:
        return {k: _unplain(v) for k, v in value["dict"].items()}
    if "datetime" in value:
        return datetime.fromisoformat(value["datetime"])
    if "date" in value:
        return date.fromisoformat(value["date"])
    if "nan" in value:
        return math.nan
    return value["value"]


def _label(label: Any) -> Any:
    return label.item() if isinstance(label, np.generic) else label


def _frame_layout(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``frame`` flattened for Parquet (positional string column names, its index as columns
    unless it is the default 0..n-1) and what restores it."""
    default_index = isinstance(frame.index, pd.RangeIndex) and frame.index.start == 0 and frame.index.step == 1 and frame.index.name is None
    layout = {
        "columns": [_label(c) for c in frame.columns],
        "columns_name": _label(frame.columns.name),
        "columns_dtype": str(frame.columns.dtype) if frame.columns.dtype.kind in "iuf" else None,
        "index": None if default_index else [_label(n) for n in frame.index.names],
    }
    index_columns = [] if default_index else [f"i{i}" for i in range(frame.index.nlevels)]
    flat = frame if default_index else frame.reset_index(names=index_columns)
    return flat.set_axis([*index_columns, *[f"c{i}" for i in range(frame.shape[1])]], axis=1), layout


def _frame_from(flat: pd.DataFrame, layout: dict[str, Any]) -> pd.DataFrame:
    index = layout["index"]
    if index is not None:
        flat = flat.set_index([f"i{i}" for i in range(len(index))])
        flat.index = flat.index.set_names(index)
    return flat.set_axis(pd.Index(layout["columns"], dtype=layout["columns_dtype"], name=layout["columns_name"]), axis=1)


def pack(view: dict[str, Any]) -> bytes:
    """The view as a zip of ``view.json`` and one Parquet file per frame or series."""
    manifest: dict[str, Any] = {}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for key, value in view.items():
            if isinstance(value, (pd.DataFrame, pd.Series)):
                is_series = isinstance(value, pd.Series)
                frame = value.to_frame(name="value") if is_series else value
                flat, layout = _frame_layout(frame)
                if is_series:
                    layout["series_name"] = _label(value.name)
                file = f"{len(manifest)}.parquet"
                data = io.BytesIO()
                flat.to_parquet(data, index=False, compression="zstd")
                archive.writestr(file, data.getvalue())
                manifest[key] = {"frame": file, "layout": layout, "series": is_series}
            else:
                manifest[key] = _plain(value)
        archive.writestr("view.json", json.dumps(manifest))
    return buffer.getvalue()


def unpack(payload: bytes) -> dict[str, Any]:
    """The view :func:`pack` stored."""
    view: dict[str, Any] = {}
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        manifest = json.loads(archive.read("view.json"))
        for key, entry in manifest.items():
            if "frame" not in entry:
                view[key] = _unplain(entry)
                continue
            frame = _frame_from(pd.read_parquet(io.BytesIO(archive.read(entry["frame"]))), entry["layout"])
            view[key] = frame["value"].rename(entry["layout"]["series_name"]) if entry["series"] else frame
    return view
