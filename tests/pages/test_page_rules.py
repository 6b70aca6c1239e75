"""House rules for pages and their tests, read from the source: short pages that only draw, widgets found by key."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted((ROOT / "pages").glob("*.py"))
PAGE_TESTS = sorted(Path(__file__).parent.glob("*.py"))
MAX_PAGE_LINES = 150
FORBIDDEN_IMPORTS = {"db", "sqlmodel", "sqlalchemy", "pandas", "polars"}
# Pages that still build a frame themselves; move that into loyalty/ and empty this.
PANDAS_STILL_ALLOWED = {"jobs.py"}
WIDGETS = (
    "audio_input|button|button_group|camera_input|chat_input|checkbox|color_picker|data_editor|date_input|datetime_input|"
    "download_button|feedback|file_uploader|form_submit_button|menu_button|multiselect|number_input|pagination|pills|radio|"
    "segmented_control|select_slider|selectbox|slider|text_area|text_input|time_input|toggle"
)
# at.button[2], at.sidebar.text_input[0], at.get("selectbox")[-1], list(at.button)[0]...
POSITIONAL_LOOKUP = re.compile(rf"\.(?:{WIDGETS})\s*\[|\.get\(\s*[\"'](?:{WIDGETS})[\"']\s*\)\s*\[|\((?:\w+\.)+(?:{WIDGETS})\)\s*\[")


def _imported_roots(source: str) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("path", PAGE_TESTS, ids=lambda p: p.name)
def test_page_tests_find_widgets_by_key_never_by_position(path: Path):
    found = [
        f"{path.name}:{number}: {line.strip()}"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if POSITIONAL_LOOKUP.search(line) and path.name != Path(__file__).name
    ]
    assert not found, "Find these widgets by key, e.g. at.button(key=...):\n" + "\n".join(found)


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_a_page_is_at_most_150_lines(path: Path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_PAGE_LINES, f"{path.name} has {lines} lines: move drawing helpers to loyalty/ui/ or logic to loyalty/"


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_a_page_only_draws_and_imports_no_database_or_dataframe_library(path: Path):
    forbidden = FORBIDDEN_IMPORTS - ({"pandas"} if path.name in PANDAS_STILL_ALLOWED else set())
    imported = _imported_roots(path.read_text()) & forbidden
    assert not imported, f"{path.name} imports {sorted(imported)}: call a function of loyalty/ instead"


@pytest.mark.parametrize(
    "line", ["at.button[2].click()", "at.sidebar.text_input[0]", 'at.get("selectbox")[-1]', "list(at.radio)[0]", "at.form_submit_button[1]"]
)
def test_the_positional_lookup_rule_catches(line: str):
    assert POSITIONAL_LOOKUP.search(line)


@pytest.mark.parametrize("line", ['at.button(key="users_add_submit")', "at.dataframe[0].value", "at.success[-1].value", 'at.get("plotly_chart")[0]'])
def test_the_positional_lookup_rule_lets_through(line: str):
    assert not POSITIONAL_LOOKUP.search(line)


PRODUCT_CODE = sorted([*PAGES, ROOT / "app.py", *(ROOT / "loyalty").rglob("*.py")])
# Files that write CSV for machines, not for a person's spreadsheet (the bench's generated feeds).
CSV_FOR_MACHINES = {"bench.py", "analytics_bench.py", "formatting.py"}


@pytest.mark.parametrize("path", [p for p in PRODUCT_CODE if p.name not in CSV_FOR_MACHINES], ids=lambda p: str(p.relative_to(ROOT)))
def test_every_csv_a_person_downloads_goes_through_csv_text(path: Path):
    """``loyalty.formatting.csv_text`` makes formula-like cells inert (OWASP CSV injection); ``to_csv`` would not."""
    found = [f"{path.name}:{n}: {line.strip()}" for n, line in enumerate(path.read_text().splitlines(), 1) if ".to_csv(" in line]
    assert not found, "Write CSV with loyalty.formatting.csv_text:\n" + "\n".join(found)
