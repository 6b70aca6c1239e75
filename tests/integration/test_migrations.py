"""The migrations build exactly the tables the models describe (SQLite, and PostgreSQL under its URL)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from db.engine import get_engine
from db.models import metadata


def _ignorable(diff: tuple) -> bool:
    # APScheduler's job table is made by APScheduler, not by the models.
    kind = diff[0]
    table = getattr(diff[1], "name", None) if kind in ("remove_table", "add_table") else None
    return table == "apscheduler_jobs"


def test_the_migrated_schema_matches_the_models(db_url):
    with get_engine(db_url).connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": False})
        differences = [d for d in compare_metadata(context, metadata) if not (isinstance(d, tuple) and _ignorable(d))]
    assert differences == [], differences


def test_the_head_read_from_the_file_names_is_alembic_s_one_head():
    """``upgrade_to_head`` skips Alembic when the database is at ``head_revision()``: the file
    names must give the head Alembic would (one head, numbered one after the other)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from db.engine import MIGRATIONS, head_revision

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    script = ScriptDirectory.from_config(config)
    assert script.get_heads() == [head_revision()]
    ordered = sorted(script.walk_revisions(), key=lambda r: r.revision)
    assert [r.down_revision for r in ordered] == [None, *[r.revision for r in ordered[:-1]]], "each revision follows the one numbered before it"
