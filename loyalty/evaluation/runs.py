"""What every evaluation step shares: the progress callback and the lock that serialises a job's writes."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import text
from sqlmodel import Session

__all__ = ["ProgressFn", "hold_job_lock"]

# progress(fraction done in [0, 1], what is being done now)
ProgressFn = Callable[[float, str], None]

_JOB_LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtext(current_schema()), hashtext(:name))"


def hold_job_lock(session: Session, name: str) -> None:
    """Serialise the writes of job ``name`` across processes, until the transaction ends.

    SQLite's ``BEGIN IMMEDIATE`` (``write_transaction``) already admits one writer at a
    time; PostgreSQL takes a transaction-scoped advisory lock per job and schema.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(_JOB_LOCK_SQL), {"name": f"loyalty-job:{name}"})
