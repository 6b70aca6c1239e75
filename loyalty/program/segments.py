"""Segments: named, rule-based groups of members (CRUD, live size, revenue share, export).

The rules and how they are evaluated live in ``loyalty.analytics.segments``; this
module stores segments, checks who may change them and audits the changes.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sqlmodel import Session, col, select

from db.engine import write_transaction
from db.models import Campaign, KpiTarget, Segment, utcnow
from loyalty.access.audit import record_audit
from loyalty.access.roles import Actor, require
from loyalty.analytics.segments import rules_in_words
from loyalty.errors import InvalidInput, NotFound
from loyalty.program.lifecycle import Removal, archive_record, clone_record, count_rows, delete_record, restore_record

__all__ = [
    "REVENUE_WINDOW_DAYS",
    "archive_segment",
    "clone_segment",
    "delete_segment",
    "list_segments",
    "restore_segment",
    "save_segment",
    "segment_id",
    "segment_member_ids",
    "segment_stats",
    "segments_overview",
]

REVENUE_WINDOW_DAYS = 365

if TYPE_CHECKING:
    import polars as pl


def segment_member_ids(session: Session, rules: dict[str, Any], *, now: datetime | None = None) -> np.ndarray:
    """Sorted ids of the members matching ``rules``."""
    from loyalty.analytics.segments import segment_members

    return np.sort(np.asarray(segment_members(session, rules, as_of=(now or utcnow()).date()), dtype=np.int64))


def segment_id(session: Session, name: str) -> int:
    """The id of the saved segment of that name (not archived)."""
    found = session.exec(select(Segment.id).where(Segment.name == name.strip(), col(Segment.archived_at).is_(None))).first()
    if found is None:
        raise NotFound(f"No segment named {name!r}: see the Segments page for their names.")
    return int(found)


def list_segments(session: Session, *, include_archived: bool = False) -> pd.DataFrame:
    """The saved segments by name (``rules_text``: the rules as a sentence); archived ones only with ``include_archived``."""
    query = select(Segment).order_by(Segment.name)
    if not include_archived:
        query = query.where(col(Segment.archived_at).is_(None))
    rows = [
        {
            "id": s.id,
            "name": s.name,
            "description": s.description,
            "rules": s.rules,
            "rules_text": rules_in_words(s.rules),
            "created_by": s.created_by,
            "archived": s.archived_at is not None,
        }
        for s in session.exec(query)
    ]
    return pd.DataFrame(rows, columns=["id", "name", "description", "rules", "rules_text", "created_by", "archived"])


def save_segment(
    *, session: Session, actor: Actor, name: str, rules: dict[str, Any], description: str = "", segment_id: int | None = None
) -> Segment:
    """Create or change a segment after checking its rules evaluate; audited."""
    require(actor, "segments.manage")
    name = name.strip()
    if not name:
        raise InvalidInput("A segment needs a name.")
    if not rules:
        raise InvalidInput("A segment needs at least one rule (otherwise it is simply all members).")
    from loyalty.analytics.segments import validate_rules

    validate_rules(rules)
    with write_transaction(session):
        segment = session.get(Segment, segment_id) if segment_id is not None else None
        if segment_id is not None and segment is None:
            raise NotFound(f"No segment with id {segment_id}.")
        if segment is not None and segment.archived_at is not None:
            raise InvalidInput(f"{segment.name} is archived: restore it before changing it.")
        clash = session.exec(select(Segment.id).where(Segment.name == name)).first()
        if clash is not None and clash != segment_id:
            raise InvalidInput(f"A segment named {name!r} already exists.")
        before = segment.model_dump(mode="json", include={"name", "description", "rules"}) if segment else None
        segment = segment or Segment(name=name, created_by=actor.username)
        segment.name, segment.description, segment.rules = name, description, rules
        session.add(segment)
        session.flush()
        record_audit(
            session,
            actor=actor,
            action="segment.create" if before is None else "segment.update",
            entity="segment",
            entity_id=segment.id,
            before=before,
            after={"name": name, "description": description, "rules": rules},
        )
    return segment


def clone_segment(*, session: Session, actor: Actor, segment_id: int) -> Segment:
    """A copy named ``"<name> (copy)"`` with the same rules and description; audited as created and cloned."""
    return clone_record(
        session=session,
        actor=actor,
        model=Segment,
        record_id=segment_id,
        entity="segment",
        permission="segments.manage",
        name_limit=100,
        create=lambda source, name: save_segment(session=session, actor=actor, name=name, rules=dict(source.rules), description=source.description),
    )


def archive_segment(*, session: Session, actor: Actor, segment_id: int) -> Segment:
    """Hide a segment from lists and pickers; campaigns and KPI targets that use it keep using it."""
    return archive_record(session=session, actor=actor, model=Segment, record_id=segment_id, entity="segment", permission="segments.manage")


def restore_segment(*, session: Session, actor: Actor, segment_id: int) -> Segment:
    return restore_record(session=session, actor=actor, model=Segment, record_id=segment_id, entity="segment", permission="segments.manage")


def _segment_references(session: Session, segment: Segment) -> list[tuple[str, int]]:
    # A campaign names its segment inside its eligibility (JSON): counted here, not in SQL.
    campaigns = sum(1 for eligibility in session.exec(select(Campaign.eligibility)).all() if (eligibility or {}).get("segment_id") == segment.id)
    return [("KPI target", count_rows(session, KpiTarget.segment_id, segment.id)), ("campaign", campaigns)]


def delete_segment(*, session: Session, actor: Actor, segment_id: int) -> Removal:
    """Delete a segment no campaign or KPI target uses; one in use is archived instead."""
    return delete_record(
        session=session,
        actor=actor,
        model=Segment,
        record_id=segment_id,
        entity="segment",
        permission="segments.manage",
        references=_segment_references,
        snapshot=lambda segment: segment.model_dump(mode="json", include={"name", "description", "rules"}),
    )


def _revenue_in_window(purchases: pl.DataFrame, today: date) -> pl.DataFrame:
    """``member_id, revenue`` over the last ``REVENUE_WINDOW_DAYS`` whole days ending today: the one
    window both the overview of every segment and one segment's live figures count."""
    import polars as pl

    return (
        purchases.filter(pl.col("occurred_on") >= today - timedelta(days=REVENUE_WINDOW_DAYS))
        .group_by("member_id")
        .agg(revenue=pl.col("amount").sum())
    )


def segment_stats(session: Session, rules: dict[str, Any], *, now: datetime | None = None) -> dict[str, Any]:
    """Live size of a segment (saved or a draft's rules) and its share of the last 12 months' revenue,
    counted as :func:`segments_overview` counts every saved segment."""
    import polars as pl

    from loyalty.analytics.data import load_purchases

    now = now or utcnow()
    today = now.date()
    ids = segment_member_ids(session, rules, now=now)
    revenue = _revenue_in_window(load_purchases(session, end=today + timedelta(days=1)), today)
    total = float(revenue["revenue"].sum())
    inside = float(revenue.filter(pl.col("member_id").is_in(ids.tolist()))["revenue"].sum())
    return {"members": len(ids), "revenue": inside, "revenue_share": inside / total if total else 0.0, "member_ids": ids}


def segments_overview(session: Session, *, now: datetime | None = None, include_archived: bool = False) -> pd.DataFrame:
    """Every saved segment with its live size and share of the last 12 months' revenue.

    Members and purchases are read once for all the segments (:func:`segment_stats`
    per segment would read them once each); the revenue window is counted in whole
    days, ending today.
    """
    import polars as pl

    from loyalty.analytics.data import load_members, load_purchases
    from loyalty.analytics.segments import segment_memberships

    now = now or utcnow()
    segments = list_segments(session, include_archived=include_archived)
    if segments.empty:
        return segments.assign(members=pd.Series(dtype="int64"), revenue=pd.Series(dtype=float), revenue_share=pd.Series(dtype=float))
    today = now.date()
    purchases = load_purchases(session, end=today + timedelta(days=1))
    memberships = segment_memberships(session, as_of=today, members=load_members(session), purchases=purchases)
    revenue = _revenue_in_window(purchases, today)
    total = float(revenue["revenue"].sum())
    per_segment = (
        memberships.join(revenue, on="member_id", how="left")
        .group_by("segment")
        .agg(members=pl.len(), revenue=pl.col("revenue").fill_null(0.0).sum())
        .to_pandas()
    )
    frame = segments.merge(per_segment, left_on="name", right_on="segment", how="left").drop(columns="segment")
    frame["members"] = frame["members"].fillna(0).astype("int64")
    frame["revenue"] = frame["revenue"].fillna(0.0)
    frame["revenue_share"] = frame["revenue"] / total if total else 0.0
    return frame
