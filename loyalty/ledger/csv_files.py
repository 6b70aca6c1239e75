"""Reading a CSV file someone hands the program: every value as text, every row with the line it starts on.

What a careless or hostile file can hold, and what becomes of it here:

* **Not UTF-8** (Latin-1, UTF-16, binary): refused, naming the first line that is not
  UTF-8. A UTF-8 byte-order mark (Excel's "CSV UTF-8") is fine.
* **A row with more or fewer values than the header**: that row alone is a problem,
  ``"has 7 values where the header has 6 columns"``; its values are never shifted onto
  other columns and the rows around it are read as usual.
* **Line breaks inside quoted values, blank lines**: each row keeps the line it starts
  on, so every message points at the line a person sees in an editor.

The separator is read off the header line (see :func:`separator_of`). Parsing is done by
Arrow's CSV reader, single-threaded so that it can say which record a bad row is.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

__all__ = [
    "SEPARATORS",
    "CsvHeader",
    "CsvTable",
    "UnreadableFile",
    "first_bad_utf8_line",
    "read_csv_chunks",
    "read_csv_table",
    "read_header",
    "separator_of",
]

# The separators a file may use, as people call them.
SEPARATORS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "vertical bar"}
BLOCK_BYTES = 16 << 20


class UnreadableFile(Exception):
    """The file as a whole cannot be read (empty, not UTF-8, no header): ``line`` and ``reason``."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(reason)
        self.line = line
        self.reason = reason


@dataclass
class CsvTable:
    """A CSV file read as text.

    ``raw`` has the file's own (stripped) column names and one row per record, blank ones
    included; ``lines[i]`` is the line row ``i`` starts on. ``width_problems`` maps the
    position of each row whose number of values differs from the header's to the reason;
    such a row's values are those it has, cut or padded with empty values to the header.
    """

    raw: pd.DataFrame
    lines: np.ndarray
    separator: str = ","
    bom: bool = False
    width_problems: dict[int, str] = field(default_factory=dict)


def first_bad_utf8_line(data: bytes) -> int | None:
    """The line of the first byte that is not UTF-8, or None when all of ``data`` is UTF-8."""
    return _scan(_blocks(data)).bad_line


@dataclass(frozen=True)
class _Scan:
    """What one read of the whole file tells: the first line that is not UTF-8, its line breaks, whether a quote stays open."""

    bad_line: int | None
    line_breaks: int
    odd_quotes: bool


def _scan(blocks: Iterable[bytes]) -> _Scan:
    """Read the file once, a block at a time (see :class:`_Scan`); it stops at the first byte that is not UTF-8."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    lines, quotes = 0, 0
    for block in blocks:
        held = len(decoder.getstate()[0])  # the start of a character cut by the previous block (never a line break)
        try:
            decoder.decode(block)
        except UnicodeDecodeError as error:
            position = error.start - held  # in this block; below 0: in the bytes the previous block ended with
            return _Scan(lines + (block[:position].count(b"\n") if position > 0 else 0) + 1, lines, False)
        lines += block.count(b"\n")
        quotes += block.count(b'"')
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return _Scan(lines + 1, lines, False)
    return _Scan(None, lines, quotes % 2 == 1)


def separator_of(data: bytes) -> str:
    """The separator of a CSV file, read off its header line.

    The candidate that splits the header into the most columns wins (a comma on a tie).
    The header decides, not the data rows: a ``;`` file's data rows often hold decimal
    commas ("42,50"), which makes ``csv.Sniffer`` guess a comma.
    """
    header = _first_line(data)
    columns = {separator: len(_values(header, separator)) for separator in SEPARATORS}
    return max(SEPARATORS, key=columns.__getitem__)


def _first_line(data: bytes) -> str:
    """The header line as text (a line ends at LF, CR LF or a lone CR, as the parser reads it)."""
    end = re.search(rb"[\r\n]", data)
    return data[: end.start() if end else len(data)].removeprefix(codecs.BOM_UTF8).decode("utf-8")


def _values(line: str, separator: str) -> list[str]:
    try:
        return next(csv.reader([line], delimiter=separator), [])
    except csv.Error:  # e.g. a quote left open on the header line
        return line.split(separator)


def _header(data: bytes, separator: str) -> list[str]:
    return [name.strip() for name in _values(_first_line(data), separator)]


def _split(text: str, separator: str, width: int) -> list[str]:
    """A bad row's own values (as the csv module reads them), cut or padded to ``width``."""
    values = next(csv.reader(io.StringIO(text, newline=""), delimiter=separator), [])
    return (values + [""] * width)[:width]


Source = bytes | Path


def _blocks(source: Source, size: int = BLOCK_BYTES) -> Iterator[bytes]:
    if isinstance(source, bytes):
        for start in range(0, len(source), size):
            yield source[start : start + size]
        return
    with open(source, "rb") as file:
        while block := file.read(size):
            yield block


def _head(source: Source, size: int = 1 << 20) -> bytes:
    """The start of the file (enough for its header line)."""
    return source[:size] if isinstance(source, bytes) else next(_blocks(source, size), b"")


@dataclass(frozen=True)
class CsvHeader:
    """What the first line says (the separator, the stripped column names, a byte-order mark), and
    what the one read of the whole file found: its line breaks (an estimate of its rows, for
    progress) and whether a quote stays open."""

    separator: str
    names: list[str]
    bom: bool
    line_breaks: int = 0
    odd_quotes: bool = False


def read_header(source: Source) -> CsvHeader:
    """Check the file as a whole (not empty, UTF-8 throughout, a header) without holding it in memory.

    Raises :class:`UnreadableFile` naming the line.
    """
    scan = _scan(_blocks(source))
    if scan.bad_line is not None:
        raise UnreadableFile(scan.bad_line, "the file is not UTF-8 text: save it as 'CSV UTF-8'")
    head = _head(source)
    if not head.strip():
        raise UnreadableFile(1, "the file is empty: it needs a header line with the column names")
    separator = separator_of(head)
    names = _header(head, separator)
    if not any(names):
        raise UnreadableFile(1, "the first line holds no column names")
    return CsvHeader(separator=separator, names=names, bom=head.startswith(codecs.BOM_UTF8), line_breaks=scan.line_breaks, odd_quotes=scan.odd_quotes)


def read_csv_chunks(source: Source, header: CsvHeader | None = None, *, block_bytes: int = BLOCK_BYTES) -> Iterator[CsvTable]:
    """The file's rows a chunk at a time (about ``block_bytes`` of text each), every value as text,
    every row with the line it starts on; memory does not grow with the file.

    The first chunk's frame has the file's column names; so do the others. Raises
    :class:`UnreadableFile` as :func:`read_header` does, and for a quote never closed.
    """
    header = header or read_header(source)
    width = len(header.names)
    placeholders = [f"c{i}" for i in range(width)]
    invalid: list[tuple[int, int, str]] = []  # (record number, values, text) since the last chunk

    def on_invalid(row: pacsv.InvalidRow) -> str:
        invalid.append((int(row.number), int(row.actual_columns), row.text))
        return "skip"

    try:
        reader = pacsv.open_csv(
            io.BytesIO(source) if isinstance(source, bytes) else str(source),
            read_options=pacsv.ReadOptions(use_threads=False, block_size=block_bytes, skip_rows=1, column_names=placeholders),
            parse_options=pacsv.ParseOptions(
                delimiter=header.separator, invalid_row_handler=on_invalid, ignore_empty_lines=False, newlines_in_values=True
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(placeholders, pa.string()), strings_can_be_null=False, quoted_strings_can_be_null=False
            ),
        )
    except pa.ArrowInvalid as error:
        raise UnreadableFile(1, f"the file is not valid CSV: {str(error).strip()}") from None
    next_record, line_offset = 2, 0  # the header is record 1
    batches = iter(reader)
    batch = _next_batch(batches)
    while batch is not None or invalid:
        following = _next_batch(batches) if batch is not None else None  # Arrow reads a block ahead: misfits may be of the next chunk
        raw = _frame(batch, placeholders)
        mine = _misfits_of(invalid, next_record, len(raw), everything=following is None)
        invalid = invalid[len(mine) :]
        chunk, next_record, line_offset = _chunk(raw, mine, next_record, line_offset, header, width)
        if following is None and not invalid and header.odd_quotes and len(chunk.raw) and chunk.raw.iloc[-1].str.contains("\n", regex=False).any():
            raise UnreadableFile(int(chunk.lines[-1]), 'a quote (") opened on this line is never closed')
        yield chunk
        batch = following


def _misfits_of(invalid: list[tuple[int, int, str]], start: int, valid: int, *, everything: bool) -> list[tuple[int, int, str]]:
    """The misfit rows (sorted by record) that fall among the ``valid`` rows of a chunk starting at record ``start``."""
    if everything:
        return list(invalid)
    taken = 0
    while taken < len(invalid) and invalid[taken][0] < start + valid + taken:
        taken += 1
    return invalid[:taken]


def _next_batch(batches: Iterator[pa.RecordBatch]) -> pa.RecordBatch | None:
    try:
        return next(batches)
    except StopIteration:
        return None
    except pa.ArrowInvalid as error:
        raise UnreadableFile(1, f"the file is not valid CSV: {str(error).strip()}") from None


def _frame(batch: pa.RecordBatch | None, placeholders: list[str]) -> pd.DataFrame:
    if batch is None or batch.num_rows == 0:
        return pd.DataFrame({c: pd.Series([], dtype="str") for c in placeholders})
    return batch.to_pandas(types_mapper={pa.string(): pd.StringDtype("pyarrow", na_value=np.nan)}.get).astype("str")


def _chunk(
    raw: pd.DataFrame, invalid: list[tuple[int, int, str]], first_record: int, line_offset: int, header: CsvHeader, width: int
) -> tuple[CsvTable, int, int]:
    """One chunk: Arrow's rows and the misfit rows of the same stretch, in file order, each with its line."""
    bad_records = np.array([number for number, _, _ in invalid], dtype=np.int64)
    total = len(raw) + len(invalid)
    numbers = np.arange(first_record, first_record + total, dtype=np.int64)
    records = numbers[~np.isin(numbers, bad_records)] if len(invalid) else numbers
    breaks = _breaks(raw)
    width_problems: dict[int, str] = {}
    if invalid:
        bad = pd.DataFrame([_split(text, header.separator, width) for _, _, text in invalid], columns=raw.columns, dtype="str")
        order = np.argsort(np.concatenate([records, bad_records]), kind="stable")
        raw = pd.concat([raw, bad], ignore_index=True).iloc[order].reset_index(drop=True)
        breaks = np.concatenate([breaks, [text.count("\n") for _, _, text in invalid]]).astype(np.int64)[order]
        records = np.concatenate([records, bad_records])[order]
        position = {int(number): i for i, number in enumerate(records)}
        width_problems = {
            position[number]: f"has {count} value{'s' if count != 1 else ''} where the header has {width} columns" for number, count, _ in invalid
        }
    raw.columns = header.names
    # A record starts on its number plus the line breaks inside quoted values before it (in this chunk and the ones before).
    before = np.concatenate([[0], np.cumsum(breaks)[:-1]]).astype(np.int64) if len(raw) else np.zeros(0, dtype=np.int64)
    lines = records + line_offset + before
    chunk = CsvTable(raw=raw, lines=lines, separator=header.separator, bom=header.bom, width_problems=width_problems)
    return chunk, first_record + total, line_offset + int(breaks.sum())


def read_csv_table(data: bytes) -> CsvTable:
    """Read ``data`` (the bytes of a CSV file) whole, with every value kept as text (:func:`read_csv_chunks`, joined)."""
    header = read_header(data)
    chunks = list(read_csv_chunks(data, header))
    if not chunks:
        empty = pd.DataFrame({name: pd.Series([], dtype="str") for name in header.names})
        return CsvTable(raw=empty, lines=np.zeros(0, dtype=np.int64), separator=header.separator, bom=header.bom)
    offsets = np.cumsum([0] + [len(c.raw) for c in chunks[:-1]])
    return CsvTable(
        raw=pd.concat([c.raw for c in chunks], ignore_index=True),
        lines=np.concatenate([c.lines for c in chunks]),
        separator=header.separator,
        bom=header.bom,
        width_problems={int(offset + row): reason for offset, c in zip(offsets, chunks) for row, reason in c.width_problems.items()},
    )


def _breaks(raw: pd.DataFrame) -> np.ndarray:
    """The line breaks inside each row's values."""
    breaks = np.zeros(len(raw), dtype=np.int64)
    for column in range(raw.shape[1]):
        values = raw.iloc[:, column]
        if values.str.contains("\n", regex=False).any():
            breaks += values.str.count("\n").to_numpy(dtype=np.int64)
    return breaks
