"""Exports to a CSV file: members, purchases, the ledger, or the members of a segment.

Written a chunk at a time (memory does not grow with the program), into a temporary file
renamed at the end (a failed export leaves no half file), every text cell made inert for
spreadsheets (:func:`loyalty.formatting.csv_text`), masked as the asking role may see it,
and audited once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Select, select
from sqlmodel import Session, col
from sqlmodel import select as sqlmodel_select

from db.models import LedgerEntry, Member, Purchase, Segment, table_of
from loyalty.access.audit import record_audit
from loyalty.access.privacy import mask_contacts
from loyalty.access.roles import Actor, require
from loyalty.errors import InvalidInput, NotFound
from loyalty.formatting import csv_text
from loyalty.ledger.members import member_export_rows
from loyalty.program.segments import segment_member_ids

__all__ = ["EXPORTS", "export_csv"]

EXPORTS = ("members", "purchases", "ledger", "segment")
ProgressFn = Callable[[int, int], None]
CHUNK_ROWS = 100_000


def export_csv(
    session: Session,
    what: str,
    out: str | Path,
    *,
    actor: Actor,
    segment: str | None = None,
    purpose: str = "analysis",
    chunk_rows: int = CHUNK_ROWS,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Write ``what`` to ``out`` as CSV; returns ``{"export", "file", "rows", "columns"}`` (and ``"segment"``).

    Raises :class:`InvalidInput` for an unknown export or a missing segment name,
    :class:`NotFound` for an unknown segment, :class:`PermissionDenied` for a role that
    may not export member data.
    """
    require(actor, "members.export")
    if what not in EXPORTS:
        raise InvalidInput(f"Unknown export {what!r}: choose {', '.join(EXPORTS)}.")
    if (what == "segment") != (segment is not None):
        raise InvalidInput("Name the segment to export: export segment NAME." if what == "segment" else "Only a segment export takes a name.")
    chunks = _chunks(session, what, actor=actor, segment=segment, purpose=purpose, chunk_rows=chunk_rows)
    path = Path(out)
    partial = path.with_name(f".{path.name}.partial")
    rows, columns = 0, list[str]()
    try:
        try:
            file = open(partial, "w", encoding="utf-8", newline="")  # noqa: SIM115  # closed by the with below
        except OSError as error:  # name the file asked for, not the temporary one
            raise OSError(error.errno, error.strerror, str(path)) from None
        with file:
            for chunk in chunks:
                file.write(csv_text(chunk, header=not rows and not columns))
                rows, columns = rows + len(chunk), list(chunk.columns)
                if progress:
                    progress(rows, 0)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    record_audit(
        session, actor=actor, action="data.export", entity=what, entity_id=segment, after={"rows": rows, "file": path.name, "purpose": purpose}
    )
    session.commit()
    result: dict[str, Any] = {"export": what, "file": str(path), "rows": rows, "columns": columns}
    if segment is not None:
        result["segment"] = segment
    return result


def _chunks(session: Session, what: str, *, actor: Actor, segment: str | None, purpose: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
    if what == "members":
        yield from _members(session, _all_member_ids(session), actor=actor, purpose=purpose, chunk_rows=chunk_rows)
    elif what == "segment":
        assert segment is not None
        yield from _members(session, _segment_ids(session, segment), actor=actor, purpose=purpose, chunk_rows=chunk_rows)
    elif what == "purchases":
        yield from _keyset(session, _purchases_query(), table_of(Purchase).c.id, chunk_rows, empty=PURCHASE_COLUMNS)
    else:
        for chunk in _keyset(session, _ledger_query(), table_of(LedgerEntry).c.id, chunk_rows, empty=LEDGER_COLUMNS):
            # Staff type reasons; roles without personal data see contact details in them masked.
            yield chunk if actor.can("members.view_pii") else chunk.assign(reason=mask_contacts(chunk["reason"].astype("str")))


def _members(session: Session, ids: np.ndarray, *, actor: Actor, purpose: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
    if not len(ids):
        yield member_export_rows(session, actor=actor, purpose=purpose, member_ids=[])
    for start in range(0, len(ids), chunk_rows):
        yield member_export_rows(session, actor=actor, purpose=purpose, member_ids=ids[start : start + chunk_rows].tolist())


def _all_member_ids(session: Session) -> np.ndarray:
    member_id = table_of(Member).c.id
    return np.asarray(session.execute(select(member_id).order_by(member_id)).scalars().all(), dtype=np.int64)


def _segment_ids(session: Session, name: str) -> np.ndarray:
    found = session.exec(sqlmodel_select(Segment).where(Segment.name == name, col(Segment.archived_at).is_(None))).first()
    if found is None:
        names = session.exec(sqlmodel_select(Segment.name).where(col(Segment.archived_at).is_(None)).order_by(Segment.name)).all()
        raise NotFound(f"No segment named {name!r}; the segments are: {', '.join(names) or 'none yet'}.")
    return np.sort(segment_member_ids(session, found.rules))


PURCHASE_COLUMNS = ["purchase_id", "member_id", "occurred_at", "amount", "returned", "refunded_at", "channel", "store", "category"]
LEDGER_COLUMNS = ["entry", "member_id", "kind", "points", "occurred_at", "expires_at", "purchase_id", "campaign_id", "reason", "actor"]


def _purchases_query() -> Select[Any]:
    p, m = table_of(Purchase), table_of(Member)
    return select(
        p.c.id,
        p.c.external_id.label("purchase_id"),
        m.c.external_id.label("member_id"),
        p.c.occurred_at,
        p.c.amount,
        (p.c.returned_cents / 100.0).label("returned"),
        p.c.refunded_at,
        p.c.channel,
        p.c.store,
        p.c.category,
    ).select_from(p.join(m, m.c.id == p.c.member_id))


def _ledger_query() -> Select[Any]:
    entry, m, p = table_of(LedgerEntry), table_of(Member), table_of(Purchase)
    return select(
        entry.c.id,
        entry.c.id.label("entry"),
        m.c.external_id.label("member_id"),
        entry.c.kind,
        entry.c.points,
        entry.c.occurred_at,
        entry.c.expires_at,
        p.c.external_id.label("purchase_id"),
        entry.c.campaign_id,
        entry.c.reason,
        entry.c.actor,
    ).select_from(entry.join(m, m.c.id == entry.c.member_id).outerjoin(p, p.c.id == entry.c.purchase_id))


def _keyset(session: Session, query: Select[Any], key: Any, chunk_rows: int, *, empty: list[str]) -> Iterator[pd.DataFrame]:
    """``query`` a chunk at a time in ``key`` order (keyset paging: each chunk starts after the last key seen)."""
    after = None
    while True:
        page = query.order_by(key).limit(chunk_rows)
        if after is not None:
            page = page.where(key > after)
        result = session.execute(page)
        frame = pd.DataFrame(result.all(), columns=list(result.keys()))
        if frame.empty:
            if after is None:
                yield pd.DataFrame(columns=empty)
            return
        after = int(frame["id"].iloc[-1])
        yield frame.drop(columns=["id"])
        if len(frame) < chunk_rows:
            return
