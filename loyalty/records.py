"""One record read for a change: locked until the transaction ends, read afresh, or NotFound."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlmodel import Session, SQLModel, col, select

from loyalty.errors import NotFound

__all__ = ["locked"]

Record = TypeVar("Record", bound=SQLModel)


def locked(session: Session, model: type[Record], record_id: Any, entity: str) -> Record:
    """The ``model`` row with id ``record_id``, locked (``SELECT ... FOR UPDATE`` on PostgreSQL;
    SQLite's write transaction already holds the database) and read afresh: an object this
    session loaded earlier may be out of date. Raises :class:`NotFound` naming ``entity``.
    """
    record = session.exec(
        select(model).where(col(model.id) == record_id).with_for_update().execution_options(populate_existing=True)  # type: ignore[attr-defined]
    ).one_or_none()
    if record is None:
        raise NotFound(f"No {entity} with id {record_id}.")
    return record
