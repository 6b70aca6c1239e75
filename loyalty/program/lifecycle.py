"""Archive, restore, delete and clone names for the program's configuration records.

Rewards, campaigns, goals, KPI targets and segments share one lifecycle:

* **archive**: the record stays (redemptions, ledger entries, targets and reports that
  refer to it keep their meaning) but is hidden from pickers and lists by default;
* **restore**: an archived record comes back;
* **delete**: a record nothing refers to goes; one that something refers to is archived
  instead, and the result says what refers to it;
* **clone**: a copy named ``"<name> (copy)"`` (``"(copy 2)"``, ... when taken).

Every change is audited as ``<entity>.archive``, ``<entity>.restore`` or
``<entity>.delete`` with the before and after, in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar, cast

from sqlalchemy import func
from sqlmodel import Session, col, select

from db.engine import write_transaction
from db.models import utcnow
from loyalty.access.audit import record_audit
from loyalty.access.roles import Actor, require
from loyalty.errors import InvalidInput, NotFound
from loyalty.records import locked

__all__ = ["Removal", "archive_record", "clone_record", "copy_name", "count_rows", "delete_record", "restore_record"]


class _Archivable(Protocol):
    """A configuration record: a reward, campaign, goal, KPI target or segment."""

    id: int | None
    archived_at: datetime | None


class _Named(Protocol):
    name: str


Record = TypeVar("Record", bound=_Archivable)
# What refers to a record, in the team's words: ("redemption", 3) reads "3 redemptions".
References = Callable[[Session, Any], list[tuple[str, int]]]


@dataclass(frozen=True)
class Removal:
    """What :func:`delete_record` did: ``deleted``, or ``archived`` because of ``references``."""

    outcome: str
    name: str
    references: tuple[tuple[str, int], ...] = ()

    @property
    def message(self) -> str:
        if self.outcome == "deleted":
            return f"{self.name} deleted (audited)."
        return f"{self.name} is referred to by {_describe(self.references)}, so it was archived instead of deleted (audited)."


def _describe(references: tuple[tuple[str, int], ...] | list[tuple[str, int]]) -> str:
    return ", ".join(f"{count:,} {what}{'' if count == 1 else 's'}" for what, count in references)


def count_rows(session: Session, column: Any, value: Any) -> int:
    """How many rows have ``column == value`` (a reference count)."""
    return int(session.exec(select(func.count()).where(column == value)).one())


def _get(session: Session, model: type[Record], record_id: int, entity: str) -> Record:
    # Every _Archivable model is an SQLModel table; the protocol cannot say so, hence the cast.
    return cast(Record, locked(session, cast(Any, model), record_id, entity.replace("_", " ")))


def _label(record: Any) -> str:
    return getattr(record, "name", None) or f"{type(record).__name__} {record.id}"


def _set_archived(session: Session, *, actor: Actor, record: Any, entity: str, archived: bool, why: dict[str, Any] | None = None) -> None:
    before = record.archived_at.isoformat() if record.archived_at else None
    record.archived_at = utcnow() if archived else None
    session.add(record)
    session.flush()
    record_audit(
        session,
        actor=actor,
        action=f"{entity}.{'archive' if archived else 'restore'}",
        entity=entity,
        entity_id=record.id,
        before={"name": _label(record), "archived_at": before},
        after={"name": _label(record), "archived_at": record.archived_at.isoformat() if record.archived_at else None, **(why or {})},
    )


def archive_record(
    *,
    session: Session,
    actor: Actor,
    model: type[Record],
    record_id: int,
    entity: str,
    permission: str,
    check: Callable[[Record], None] | None = None,
) -> Record:
    """Hide a record from pickers and lists; ``check`` may refuse (raise) first."""
    require(actor, permission)
    with write_transaction(session):
        record = _get(session, model, record_id, entity)
        if record.archived_at is not None:
            raise InvalidInput(f"{_label(record)} is already archived.")
        if check is not None:
            check(record)
        _set_archived(session, actor=actor, record=record, entity=entity, archived=True)
    return record


def restore_record(*, session: Session, actor: Actor, model: type[Record], record_id: int, entity: str, permission: str) -> Record:
    """Bring an archived record back into pickers and lists."""
    require(actor, permission)
    with write_transaction(session):
        record = _get(session, model, record_id, entity)
        if record.archived_at is None:
            raise InvalidInput(f"{_label(record)} is not archived.")
        _set_archived(session, actor=actor, record=record, entity=entity, archived=False)
    return record


def delete_record(
    *,
    session: Session,
    actor: Actor,
    model: type[Record],
    record_id: int,
    entity: str,
    permission: str,
    references: References,
    snapshot: Callable[[Record], dict[str, Any]],
    check: Callable[[Record], None] | None = None,
) -> Removal:
    """Delete a record nothing refers to; archive it instead when something does."""
    require(actor, permission)
    with write_transaction(session):
        record = _get(session, model, record_id, entity)
        if check is not None:
            check(record)
        name = _label(record)
        found = tuple((what, n) for what, n in references(session, record) if n)
        if found:
            if record.archived_at is None:
                _set_archived(
                    session, actor=actor, record=record, entity=entity, archived=True, why={"instead_of_delete": f"referred to by {_describe(found)}"}
                )
            return Removal("archived", name, found)
        record_audit(session, actor=actor, action=f"{entity}.delete", entity=entity, entity_id=record.id, before=snapshot(record))
        session.delete(record)
    return Removal("deleted", name)


def clone_record(
    *,
    session: Session,
    actor: Actor,
    model: type[Record],
    record_id: int,
    entity: str,
    permission: str,
    create: Callable[[Record, str], Record],
    name_limit: int | None = None,
) -> Record:
    """A copy made by ``create(source, name)`` (the kind's own save, audited as created), audited as ``<entity>.clone``.

    ``name`` is :func:`copy_name` of the source's name (``None`` for a record without a
    name, a KPI target).
    """
    require(actor, permission)
    with write_transaction(session):
        source = session.get(model, record_id)
        if source is None:
            raise NotFound(f"No {entity.replace('_', ' ')} with id {record_id}.")
        # Only kinds with a name pass name_limit (a KPI target has none).
        name = copy_name(session, model, source.name, limit=name_limit) if name_limit else None  # type: ignore[arg-type, attr-defined]
        clone = create(source, name)  # type: ignore[arg-type]  # None only for a KPI target, whose create ignores it
        record_audit(
            session,
            actor=actor,
            action=f"{entity}.clone",
            entity=entity,
            entity_id=clone.id,
            before={"from": _label(source), "from_id": source.id},
            after={"name": _label(clone)},
        )
    return clone


def copy_name(session: Session, model: type[_Named], name: str, *, limit: int) -> str:
    """``"<name> (copy)"``, or ``"(copy 2)"``, ``"(copy 3)"``... when that name is taken; cut to ``limit`` characters."""
    taken = set(session.exec(select(model.name).where(col(model.name).like(f"{name[: limit - 12]}%"))).all())
    for n in range(1, 1000):
        suffix = " (copy)" if n == 1 else f" (copy {n})"
        candidate = name[: limit - len(suffix)] + suffix
        if candidate not in taken:
            return candidate
    raise InvalidInput(f"{name} has too many copies already; rename some first.")
