"""Alembic environment: the app passes its own connection; the alembic CLI uses the URL."""

from __future__ import annotations

from alembic import context

import db.models  # noqa: F401  (registers every table on SQLModel.metadata)
from db.engine import get_engine
from db.models import metadata

config = context.config
target_metadata = metadata


def _run(connection) -> None:  # noqa: ANN001
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
        # APScheduler creates and owns its job table; autogenerate must not drop it.
        include_name=lambda name, type_, parents: not (type_ == "table" and name == "apscheduler_jobs"),
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    with get_engine(config.get_main_option("sqlalchemy.url") or None).connect() as conn:
        _run(conn)
        conn.commit()
