"""Reading a CSV file (loyalty.ledger.csv_files): each row keeps its line, a row that does not
fit the header is that row's problem, and no file at all makes the reader fail otherwise than
with :class:`UnreadableFile`."""

from __future__ import annotations

import codecs

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loyalty.ledger.csv_files import UnreadableFile, first_bad_utf8_line, read_csv_table


def test_each_row_keeps_the_line_it_starts_on_across_blank_lines_and_line_breaks_in_values():
    table = read_csv_table(b'a,b,c\n1,2,3\n\n4,"two\nlines",6\n7,8,9\n')
    assert table.lines.tolist() == [2, 3, 4, 6]
    assert table.raw["b"].tolist() == ["2", "", "two\nlines", "8"]
    assert table.width_problems == {}


def test_a_row_with_a_value_too_many_or_too_few_is_its_own_problem_and_never_shifts_onto_other_columns():
    table = read_csv_table(b"member_id,amount,store\nM1,10,S1\nM2,20,S2,extra\nM3,30\nM4,40,S4\n")
    assert table.lines.tolist() == [2, 3, 4, 5]
    assert table.width_problems == {1: "has 4 values where the header has 3 columns", 2: "has 2 values where the header has 3 columns"}
    assert table.raw["member_id"].tolist() == ["M1", "M2", "M3", "M4"]
    assert table.raw.loc[3].tolist() == ["M4", "40", "S4"]


def test_a_byte_order_mark_is_fine_and_other_encodings_are_refused_naming_the_first_bad_line():
    assert read_csv_table(codecs.BOM_UTF8 + b"a,b\n1,2\n").bom
    with pytest.raises(UnreadableFile) as refused:
        read_csv_table("a,b\n1,2\n3,caf\xe9\n".encode("latin-1"))
    assert (refused.value.line, refused.value.reason) == (3, "the file is not UTF-8 text: save it as 'CSV UTF-8'")
    with pytest.raises(UnreadableFile):
        read_csv_table("a,b\n1,2\n".encode("utf-16"))


def test_the_first_bad_utf8_line_is_found_across_the_reading_blocks(monkeypatch):
    from loyalty.ledger import csv_files

    monkeypatch.setattr(csv_files, "BLOCK_BYTES", 7)
    data = "a\nééé\nb\n".encode() + b"\xff\n"
    assert first_bad_utf8_line(data) == 4
    assert first_bad_utf8_line("ééééé\n".encode()) is None  # characters cut by a block are fine


def test_an_unclosed_quote_is_refused_at_its_line():
    with pytest.raises(UnreadableFile) as refused:
        read_csv_table(b'a,b\n1,2\n3,"never closed\n4,5\n')
    assert refused.value.line == 3


@pytest.mark.parametrize("separator", [",", ";", "\t", "|"])
def test_the_separator_is_read_off_the_header(separator):
    table = read_csv_table(f'a{separator}b\n1{separator}"2,5"\n'.encode())
    assert table.separator == separator and table.raw.loc[0, "b"] == "2,5"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=400))
def test_any_bytes_are_read_or_refused_as_unreadable(data):
    try:
        table = read_csv_table(data)
    except UnreadableFile as refused:
        assert refused.line >= 1 and refused.reason
        return
    assert len(table.lines) == len(table.raw)
    assert all(0 <= row < len(table.raw) for row in table.width_problems)


csv_text = st.lists(
    st.lists(st.text(alphabet=st.sampled_from(list('ab1,;"\n\r\t é\x00')), max_size=6), min_size=0, max_size=5), min_size=1, max_size=8
).map(lambda rows: "\n".join(",".join(row) for row in rows))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=csv_text)
def test_any_text_is_read_with_rows_in_order_or_refused_as_unreadable(text):
    try:
        table = read_csv_table(text.encode())
    except UnreadableFile:
        return
    assert list(table.lines) == sorted(table.lines)
    assert table.raw.shape[1] == len(table.raw.columns)


def test_small_chunks_give_the_same_rows_lines_and_problems_as_one_read():
    from loyalty.ledger.csv_files import read_csv_chunks

    data = b'a,b,c\n1,2,3\n4,5\n\n6,"x\ny",7\n8,9,10,11\n' + b"".join(f"{i},{i},{i}\n".encode() for i in range(12, 60)) + b"60,61\n"
    whole = read_csv_table(data)
    chunks = list(read_csv_chunks(data, block_bytes=64))
    assert len(chunks) > 3
    assert [line for c in chunks for line in c.lines] == whole.lines.tolist()
    assert [tuple(r) for c in chunks for r in c.raw.itertuples(index=False)] == [tuple(r) for r in whole.raw.itertuples(index=False)]
    misfits = [(int(c.lines[row]), reason) for c in chunks for row, reason in c.width_problems.items()]
    assert misfits == [(int(whole.lines[row]), reason) for row, reason in sorted(whole.width_problems.items())]
    assert [line for line, _ in misfits] == [3, 7, 56]


def test_a_file_on_disk_is_read_a_block_at_a_time(tmp_path):
    from loyalty.ledger.csv_files import read_csv_chunks, read_header

    path = tmp_path / "big.csv"
    path.write_bytes(b"a,b\n" + b"".join(f"{i},x\n".encode() for i in range(1000)))
    header = read_header(path)
    assert (header.names, header.separator, header.line_breaks) == (["a", "b"], ",", 1001)
    chunks = list(read_csv_chunks(path, header, block_bytes=512))
    assert len(chunks) > 5 and sum(len(c.raw) for c in chunks) == 1000 and chunks[-1].lines[-1] == 1001
