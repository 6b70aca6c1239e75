"""Imports of files as spreadsheets write them: `;` or tab separators, a UTF-8 byte-order mark;
and the preview that says how a file was read and where each of its columns goes."""

from __future__ import annotations

import codecs
import io

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal
from sqlmodel import select

from db.models import Purchase
from loyalty.ledger.imports import ImportRefused, column_mapping, preview_csv
from tests.integration.test_imports import (
    PURCHASES_CSV,
    counts,
    import_file,
    members,  # noqa: F401 (the fixture, for usefixtures)
    write_csv,
)


def as_written(text: str, separator: str, bom: bool) -> bytes:
    """``text`` (a comma file without quoted commas) written with another separator, maybe with a BOM."""
    data = text.replace(",", separator).encode("utf-8")
    return codecs.BOM_UTF8 + data if bom else data


FORMATS = [(",", False), (",", True), (";", False), (";", True), ("\t", False), ("\t", True), ("|", False)]
FORMAT_IDS = ["comma", "comma-bom", "semicolon", "semicolon-bom", "tab", "tab-bom", "vertical-bar"]


@pytest.mark.parametrize("separator,bom", FORMATS, ids=FORMAT_IDS)
@pytest.mark.usefixtures("members")
def test_a_file_imports_the_same_whatever_its_separator_and_byte_order_mark(session, tmp_path, separator, bom):
    path = tmp_path / "purchases.csv"
    path.write_bytes(as_written(PURCHASES_CSV, separator, bom))
    result = import_file(session, "purchases", path)
    assert (result.imported, result.rejected) == (3, 0)
    stored = session.exec(select(Purchase.external_id, Purchase.amount).order_by(Purchase.external_id)).all()
    assert [(pid, float(amount)) for pid, amount in stored] == [("P1", 19.99), ("P2", 10.0), ("P3", 0.39)]


@pytest.mark.parametrize("separator,bom", FORMATS, ids=FORMAT_IDS)
def test_the_preview_names_the_separator_and_the_byte_order_mark(separator, bom):
    preview = preview_csv(io.BytesIO(as_written(PURCHASES_CSV, separator, bom)), "purchases")
    named = {",": "comma", ";": "semicolon", "\t": "tab", "|": "vertical bar"}[separator]
    assert (preview["separator"], preview["bom"], preview["rows"], preview["missing"]) == (named, bom, 3, [])
    assert preview["columns"][0] == "purchase_id", "the byte-order mark is not part of the first column's name"
    assert list(preview["sample"]["amount"]) == ["19.99", "10.00", "0.39"]


@pytest.mark.usefixtures("members")
def test_a_semicolon_file_with_decimal_commas_is_read_by_its_header_and_the_comma_is_explained(session, tmp_path):
    text = (
        "purchase_id;member_id;occurred_at;amount;channel;store;category\n"
        "P1;C001;2024-06-01T10:00:00Z;19,99;store;S1;grocery\n"
        "P2;C002;2024-06-02T10:00:00Z;10;store;S1;grocery\n"
    )
    path = tmp_path / "purchases.csv"
    path.write_bytes(codecs.BOM_UTF8 + text.encode())
    before = counts(session)
    with pytest.raises(ImportRefused) as refused:
        import_file(session, "purchases", path)
    [problem] = refused.value.problems
    assert (problem.line, problem.column) == (2, "amount")
    assert problem.reason == "'19,99' is not a number (write decimals with a point, e.g. 42.50)"
    assert counts(session) == before, "nothing half-written"


@pytest.mark.usefixtures("members")
def test_bad_rows_of_a_tab_file_are_named_by_line_column_and_reason(session, tmp_path):
    text = (
        "purchase_id\tmember_id\toccurred_at\tamount\tchannel\tstore\tcategory\n"
        "P1\tC001\t2024-06-01\t5\tstore\tS1\tgrocery\n"
        "\n"
        "P2\tGHOST\tsoon\t5\tstore\tS1\tgrocery\n"
    )
    before = counts(session)
    with pytest.raises(ImportRefused) as refused:
        import_file(session, "purchases", write_csv(tmp_path, text))
    assert {(p.line, p.column) for p in refused.value.problems} == {(4, "member_id"), (4, "occurred_at")}
    assert counts(session) == before


def test_the_column_mapping_says_where_each_file_column_goes_and_which_fields_are_missing():
    mapping = column_mapping(
        ["Order", "member_id", "Customer", "occurred_at", "amount", "Till", "member_id "],
        "purchases",
        {"Order": "purchase_id", "Customer": "member_id"},
    )
    expected = pd.DataFrame(
        [
            ("Order", "purchase_id", "optional, mapped"),
            ("member_id", "member_id", "required"),
            ("Customer", "member_id", "duplicate: column member_id already gives member_id"),
            ("occurred_at", "occurred_at", "required"),
            ("amount", "amount", "required"),
            ("Till", "", "unknown: not imported"),
            ("member_id ", "", "unknown: not imported"),
            ("", "channel", "missing: required"),
            ("", "store", "missing: required"),
            ("", "category", "missing: required"),
        ],
        columns=["file_column", "field", "status"],
    )
    assert_frame_equal(mapping, expected)


def test_the_preview_mapping_follows_the_chosen_mapping():
    text = "Customer;occurred_at;amount;channel;store;category;Note\nC1;2024-06-01;5;store;S1;grocery;hi\n"
    plain = preview_csv(io.BytesIO(text.encode()), "purchases")["mapping"].set_index("file_column")
    mapped = preview_csv(io.BytesIO(text.encode()), "purchases", mapping={"Customer": "member_id"})["mapping"]
    assert plain.loc["Customer", "status"] == "unknown: not imported"
    assert list(plain.loc["", "field"]) == ["member_id", "purchase_id"]
    assert mapped.set_index("file_column").loc["Customer", "status"] == "required, mapped"
    assert mapped.set_index("file_column").loc["Note", "status"] == "unknown: not imported"
    assert list(mapped.loc[mapped["file_column"] == "", "status"]) == ["absent: optional"]
