"""No value is formatted into SQL text: every f-string that reads as SQL formats only identifier helpers.

Values (ids, moments, days, texts from a file or a user) travel as bound parameters
(``:name`` with a params dict, or SQLAlchemy Core). What an f-string may still format
into a statement is a piece of SQL written in code and checked by one of the helpers
below; anything else (a variable, an ``int()``, a ``join``) fails this test.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(path for folder in ("loyalty", "db") for path in (ROOT / folder).rglob("*.py"))
SQL_KEYWORDS = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|WHERE)\b")

# The only calls an SQL f-string may format, each returning SQL written in code:
ALLOWED_HELPERS = {
    # loyalty/analytics/data.py: the dialect's epoch-seconds expression of a column
    # checked against a fixed set of timestamp columns.
    "epoch_sql",
    # loyalty/analytics/data.py: a checked timestamp column as UTC text (to_char on PostgreSQL).
    "moment_text_sql",
    # loyalty/analytics/data.py: `expression AS name` pairs from fixed dicts; names checked.
    "_select_list",
    # loyalty/analytics/data.py: WHERE + conditions written in code, values as :name.
    "where_clause",
    # db/bulk.py: a table name checked against the schema's tables (SQLModel.metadata).
    "table_name",
    # db/bulk.py: quoted column names checked against that table's columns.
    "_column_list",
    # db/bulk.py: numbered placeholders (?N) and the SQLite datetime expression around them.
    "_placeholders",
}


def _helper_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Call):
        if isinstance(node.func, ast.Name):
            return node.func.id
        if isinstance(node.func, ast.Attribute):
            return node.func.attr
    return None


def _sql_fstrings(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, SQL text, formatted expressions not allowed) of each SQL f-string in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if not isinstance(node, ast.JoinedStr):
            continue
        constant = "".join(part.value for part in node.values if isinstance(part, ast.Constant) and isinstance(part.value, str))
        if not SQL_KEYWORDS.search(constant):
            continue
        formatted = [part.value for part in node.values if isinstance(part, ast.FormattedValue)]
        refused = [ast.unparse(value) for value in formatted if _helper_name(value) not in ALLOWED_HELPERS]
        found.append((node.lineno, constant, refused))
    return found


def test_the_scan_sees_the_source() -> None:
    assert any(path.name == "data.py" for path in SOURCES) and any(path.parent.name == "db" for path in SOURCES)


@pytest.mark.parametrize("path", SOURCES, ids=[str(path.relative_to(ROOT)) for path in SOURCES])
def test_sql_text_formats_no_value(path: Path) -> None:
    offenders = [f"{path.relative_to(ROOT)}:{line}: {', '.join(refused)} in {text[:60]!r}" for line, text, refused in _sql_fstrings(path) if refused]
    assert not offenders, "bind these as parameters (:name) instead:\n" + "\n".join(offenders)


def test_a_value_spliced_into_sql_is_caught(tmp_path: Path) -> None:
    source = tmp_path / "example.py"
    source.write_text(
        "campaign_id = 7\n"
        'bad = f"SELECT member_id FROM campaign_assignment WHERE campaign_id = {campaign_id}"\n'
        "good = f\"SELECT {epoch_sql(dialect, 'occurred_at')} FROM purchase {where_clause(conditions)}\"\n"
        'prose = f"Imported {campaign_id} rows"\n'
    )
    found = _sql_fstrings(source)
    assert [(line, refused) for line, _, refused in found] == [(2, ["campaign_id"]), (3, [])]
