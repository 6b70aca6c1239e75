"""SQL expressions that differ between SQLite and PostgreSQL, written once."""

from __future__ import annotations

from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import String


class month_key(FunctionElement):  # noqa: N801  (reads like a SQL function)
    """``'YYYY-MM'`` of a UTC timestamp column."""

    type = String()
    inherit_cache = True


@compiles(month_key, "sqlite")
def _month_key_sqlite(element, compiler, **kw) -> str:  # noqa: ANN001
    # SQLite stores UTC timestamps as 'YYYY-MM-DD HH:MM:SS.ffffff' text.
    return f"substr({compiler.process(element.clauses, **kw)}, 1, 7)"


@compiles(month_key, "postgresql")
def _month_key_postgresql(element, compiler, **kw) -> str:  # noqa: ANN001
    return f"to_char({compiler.process(element.clauses, **kw)} AT TIME ZONE 'UTC', 'YYYY-MM')"


class day_key(FunctionElement):  # noqa: N801  (reads like a SQL function)
    """``'YYYY-MM-DD'`` of a UTC timestamp column."""

    type = String()
    inherit_cache = True


@compiles(day_key, "sqlite")
def _day_key_sqlite(element, compiler, **kw) -> str:  # noqa: ANN001
    return f"substr({compiler.process(element.clauses, **kw)}, 1, 10)"


@compiles(day_key, "postgresql")
def _day_key_postgresql(element, compiler, **kw) -> str:  # noqa: ANN001
    return f"to_char({compiler.process(element.clauses, **kw)} AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
