"""``export parquet``: members, purchases and the ledger as Parquet, partitioned by month.

The layout is Hive's, what Spark, DuckDB, Polars and pyarrow read as one table with a
``month`` column::

    DIR/members/month=YYYY-MM/part-0.parquet     (the month the member joined)
    DIR/purchases/month=YYYY-MM/part-0.parquet   (the UTC month of the purchase; refunds left out)
    DIR/ledger/month=YYYY-MM/part-0.parquet      (the UTC month of the entry)
    DIR/_manifest.json

The rows are those the analytics engine reads (:mod:`loyalty.analytics.data`), with no
names, e-mail addresses or phone numbers. An export is incremental: ``_manifest.json``
keeps each month's row count, largest id and SHA-256 of its rows, and a later export
rewrites only the months that are new or changed since (a refund, an erasure, a
late-arriving purchase), plus the running month and any later, which are always
rewritten. Each file is written beside its place and renamed into it, so a crash leaves
the previous file whole; the manifest is written last the same way.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
from sqlmodel import Session

from db.models import utcnow
from loyalty.access.audit import record_audit
from loyalty.access.roles import Actor, require
from loyalty.analytics.data import MEMBER_COLUMNS, PURCHASE_COLUMNS, dialect_of, epoch_sql, fetch_frame, load_members, load_purchases

__all__ = ["MANIFEST", "PARQUET_TABLES", "export_parquet"]

MANIFEST = "_manifest.json"
PARQUET_TABLES = ("members", "purchases", "ledger")
_FILE = "part-0.parquet"


def _ledger(session: Session) -> pl.DataFrame:
    """Every ledger entry: ``entry_id, member_id, kind, points, occurred_at, purchase_id, redemption_id, campaign_id``."""
    sql = (
        f"SELECT id, member_id, kind, points, {epoch_sql(dialect_of(session), 'occurred_at')} AS occurred_seconds, "
        "purchase_id, redemption_id, campaign_id FROM ledger_entry"
    )
    ids = ("entry_id", "member_id", "kind", "points", "occurred_seconds", "purchase_id", "redemption_id", "campaign_id")
    schema = {name: pl.String if name == "kind" else pl.Int64 for name in ids}
    frame = fetch_frame(session, sql, schema)
    return frame.with_columns(occurred_at=pl.from_epoch("occurred_seconds", time_unit="s").dt.replace_time_zone("UTC")).select(
        "entry_id", "member_id", "kind", "points", "occurred_at", "purchase_id", "redemption_id", "campaign_id"
    )


def _table(session: Session, name: str) -> tuple[pl.DataFrame, str]:
    """The table's rows with their ``month`` (``YYYYMM``), in no particular order, and the id's column."""
    if name == "members":
        frame, day, key = load_members(session, columns=MEMBER_COLUMNS), pl.col("joined_on"), "member_id"
    elif name == "purchases":
        frame, day, key = load_purchases(session, columns=PURCHASE_COLUMNS), pl.col("occurred_on"), "purchase_id"
    else:
        frame, day, key = _ledger(session), pl.col("occurred_at"), "entry_id"
    return frame.with_columns(month=(day.dt.year() * 100 + day.dt.month()).cast(pl.Int32)), key  # 202611: a string per row took 15 bytes


def _fingerprint(rows: pl.DataFrame, key: str) -> dict[str, Any]:
    """What tells a month changed: its rows, largest id and the SHA-256 of its rows in Arrow's format."""
    arrow = io.BytesIO()
    rows.write_ipc(arrow, compression="uncompressed")
    return {"rows": rows.height, "max_id": rows[key].max() if rows.height else None, "sha256": hashlib.sha256(arrow.getvalue()).hexdigest()}


def _replace(path: Path, write: Any) -> None:
    """Write through ``write(temporary path)`` and rename over ``path``: never a half file."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        write(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _export_table(session: Session, out: Path, name: str, known: dict[str, Any], running: str) -> tuple[dict[str, Any], dict[str, Any]]:
    frame, key = _table(session, name)
    total = frame.height
    # Split first and sort each month on its own, letting go of the whole table and of each month once
    # written: the table is held about twice at the peak, not three times (2.7 GB at 1M members).
    parts = frame.partition_by("month", as_dict=True, include_key=False)
    del frame
    months: dict[str, Any] = {}
    written, kept = [], []
    for (number,) in sorted(parts):
        rows, month = parts.pop((number,)).sort(key), f"{number // 100:04d}-{number % 100:02d}"
        months[month] = _fingerprint(rows, key)
        folder = out / name / f"month={month}"
        if month < running and known.get(month) == months[month] and (folder / _FILE).exists():
            kept.append(month)
            continue
        folder.mkdir(parents=True, exist_ok=True)
        table = rows.to_arrow()
        _replace(folder / _FILE, lambda path, table=table: pq.write_table(table, path))
        written.append(month)
    removed = sorted(set(known) - set(months))
    for month in removed:  # every row of the month gone (all its purchases refunded, say)
        shutil.rmtree(out / name / f"month={month}", ignore_errors=True)
    return months, {"months_written": written, "months_kept": kept, "months_removed": removed, "rows": total}


def export_parquet(session: Session, out: str | Path, *, actor: Actor) -> dict[str, Any]:
    """Export members, purchases and the ledger to ``out`` as Parquet by month (see the module docstring).

    Returns
    -------
    dict
        ``{"out": DIR, "tables": {"members" | "purchases" | "ledger": {"months_written": [...],
        "months_kept": [...], "months_removed": [...], "rows": N}}}``.

    Raises :class:`~loyalty.errors.PermissionDenied` for a role that may not export member data.
    """
    require(actor, "members.export")
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    manifest_path = folder / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    running = f"{utcnow():%Y-%m}"
    fingerprints, tables = {}, {}
    for name in PARQUET_TABLES:
        fingerprints[name], tables[name] = _export_table(session, folder, name, manifest.get("tables", {}).get(name, {}), running)
    text = json.dumps({"version": 1, "exported_at": utcnow().isoformat(), "tables": fingerprints}, indent=1)
    _replace(manifest_path, lambda path: path.write_text(text))
    record_audit(
        session,
        actor=actor,
        action="data.export",
        entity="parquet",
        entity_id=None,
        after={name: {"rows": t["rows"], "months_written": len(t["months_written"])} for name, t in tables.items()},
    )
    session.commit()
    return {"out": str(folder), "tables": tables}
