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
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

__all__ = ["SEPARATORS", "CsvTable", "UnreadableFile", "first_bad_utf8_line", "read_csv_table", "separator_of"]

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
    decoder = codecs.getincrementaldecoder("utf-8")()
    for start in range(0, len(data), BLOCK_BYTES):
        held = len(decoder.getstate()[0])  # the start of a character cut by the previous block
        try:
            decoder.decode(data[start : start + BLOCK_BYTES], final=start + BLOCK_BYTES >= len(data))
        except UnicodeDecodeError as error:
            return data[: start - held + error.start].count(b"\n") + 1
    return None


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


def read_csv_table(data: bytes) -> CsvTable:
    """Read ``data`` (the bytes of a CSV file) with every value kept as text.

    Raises :class:`UnreadableFile` for an empty file, one that is not UTF-8, or one whose
    header names no column.
    """
    if not data.strip():
        raise UnreadableFile(1, "the file is empty: it needs a header line with the column names")
    if (line := first_bad_utf8_line(data)) is not None:
        raise UnreadableFile(line, "the file is not UTF-8 text: save it as 'CSV UTF-8'")
    separator = separator_of(data)
    names = _header(data, separator)
    if not any(names):
        raise UnreadableFile(1, "the first line holds no column names")
    width = len(names)
    placeholders = [f"c{i}" for i in range(width)]
    invalid: list[tuple[int, int, str]] = []  # (record number, values, text)

    def on_invalid(row: pacsv.InvalidRow) -> str:
        invalid.append((int(row.number), int(row.actual_columns), row.text))
        return "skip"

    try:
        reader = pacsv.open_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(use_threads=False, block_size=BLOCK_BYTES, skip_rows=1, column_names=placeholders),
            parse_options=pacsv.ParseOptions(delimiter=separator, invalid_row_handler=on_invalid, ignore_empty_lines=False, newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(placeholders, pa.string()), strings_can_be_null=False, quoted_strings_can_be_null=False
            ),
        )
        table = reader.read_all()
    except pa.ArrowInvalid as error:
        raise UnreadableFile(1, f"the file is not valid CSV: {str(error).strip()}") from None
    raw = table.to_pandas(types_mapper={pa.string(): pd.StringDtype("pyarrow", na_value=np.nan)}.get) if table.num_rows else None
    if raw is None:
        raw = pd.DataFrame({c: pd.Series([], dtype="str") for c in placeholders})
    raw = raw.astype("str")
    records = _record_numbers(len(raw), [number for number, _, _ in invalid])
    breaks = _breaks(raw)
    width_problems: dict[int, str] = {}
    if invalid:
        bad = pd.DataFrame([_split(text, separator, width) for _, _, text in invalid], columns=placeholders, dtype="str")
        bad_records = np.array([number for number, _, _ in invalid], dtype=np.int64)
        order = np.argsort(np.concatenate([records, bad_records]), kind="stable")
        raw = pd.concat([raw, bad], ignore_index=True).iloc[order].reset_index(drop=True)
        breaks = np.concatenate([breaks, [text.count("\n") for _, _, text in invalid]]).astype(np.int64)[order]
        records = np.concatenate([records, bad_records])[order]
        position = {int(number): i for i, number in enumerate(records)}
        width_problems = {
            position[number]: f"has {count} value{'s' if count != 1 else ''} where the header has {width} columns" for number, count, _ in invalid
        }
    raw.columns = names
    if len(raw) and data.count(b'"') % 2 and raw.iloc[-1].str.contains("\n", regex=False).any():
        raise UnreadableFile(int(records[-1] + breaks[:-1].sum()), 'a quote (") opened on this line is never closed')
    # A record starts on its number plus the line breaks inside quoted values before it.
    lines = records + np.concatenate([[0], np.cumsum(breaks)[:-1]]).astype(np.int64) if len(raw) else records
    return CsvTable(raw=raw, lines=lines, separator=separator, bom=data.startswith(codecs.BOM_UTF8), width_problems=width_problems)


def _record_numbers(valid: int, invalid: list[int]) -> np.ndarray:
    """The record numbers (the header is record 1) of the ``valid`` rows Arrow kept, in order, around the ``invalid`` ones."""
    total = valid + len(invalid)
    numbers = np.arange(2, total + 2, dtype=np.int64)
    if invalid:
        numbers = numbers[~np.isin(numbers, np.asarray(invalid, dtype=np.int64))]
    return numbers


def _breaks(raw: pd.DataFrame) -> np.ndarray:
    """The line breaks inside each row's values."""
    breaks = np.zeros(len(raw), dtype=np.int64)
    for column in range(raw.shape[1]):
        values = raw.iloc[:, column]
        if values.str.contains("\n", regex=False).any():
            breaks += values.str.count("\n").to_numpy(dtype=np.int64)
    return breaks
