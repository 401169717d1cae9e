"""CSV files as a secretariat gets them: Excel's on Japanese Windows, or UTF-8 from the web.

Excel's "CSV" on Japanese Windows is CP932 (decoded with `cp932`: the `shift_jis` codec fails
on ① and maps ～ elsewhere); its "CSV UTF-8" starts with a byte-order mark; a web form's
export is usually plain UTF-8. Each record keeps the line of the file it starts on, since a
quoted cell may span lines and a person fixes a row by its line in their editor.
"""

from __future__ import annotations

import codecs
import csv
import io
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from edrtrial.errors import IntakeError


@dataclass(frozen=True)
class Record:
    """One data row: the line it starts on, and its cells by header (as the file wrote them)."""

    line: int
    cells: dict[str, str]
    extra: int = 0  # cells beyond the header's columns (a stray comma)
    problem: str = ""  # the file stops being CSV here: this and what follows are unread


def decode(data: bytes, source: str) -> tuple[str, str]:
    """The file's text and the encoding it was read in: UTF-8 with or without BOM, else CP932."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise IntakeError(
            f"{source}: UTF-16 (Excel's 'Unicode text') is not read; save it as CSV or CSV UTF-8"
        )
    if data.startswith(codecs.BOM_UTF8):
        try:
            return data[len(codecs.BOM_UTF8) :].decode("utf-8"), "utf-8-sig"
        except UnicodeDecodeError as err:
            raise _undecodable(source, data, err.start + len(codecs.BOM_UTF8), "UTF-8") from err
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as err:
        utf8_fails_at = err.start
    try:
        return data.decode("cp932"), "cp932"
    except UnicodeDecodeError as err:
        # The line to look at is where the encoding that read further stopped.
        at = max(err.start, utf8_fails_at)
        raise _undecodable(source, data, at, "UTF-8 nor CP932 (Shift_JIS)") from err


def _undecodable(source: str, data: bytes, at: int, tried: str) -> IntakeError:
    line = data[:at].count(b"\n") + 1
    return IntakeError(f"{source}: line {line}: the file is neither {tried}; save it as CSV again")


def header_key(text: str) -> str:
    """A header as compared: NFKC, without spaces (｢ 会社名 ｣ and ｢会社名｣ are one column)."""
    return "".join(unicodedata.normalize("NFKC", text).split())


def records(text: str, source: str) -> tuple[list[str], Iterator[Record]]:
    """The header (first non-empty row) and the data rows after it; blank rows are skipped.

    A file that stops being CSV (a NUL byte) gives a last record with its `problem`: nothing
    after it can be read reliably, and the rows before it stand.
    """
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] = []
    read_so_far = 0
    try:
        for row in reader:
            read_so_far = reader.line_num
            if any(cell.strip() for cell in row):
                header = [cell.strip() for cell in row]
                break
    except csv.Error as err:
        raise IntakeError(f"{source}: line {read_so_far + 1}: not CSV: {err}") from err
    if not header:
        raise IntakeError(f"{source}: the file is empty (no header row)")
    return header, _rows(reader, header, read_so_far)


def _rows(reader: Any, header: list[str], after: int) -> Iterator[Record]:
    line_num = after
    while True:
        starts = line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            yield Record(starts, {}, problem=f"not CSV from here on ({err}); nothing after it read")
            return
        line_num = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        cells = dict(zip(header, row, strict=False))
        for name in header[len(row) :]:
            cells[name] = ""
        # Empty cells past the header are Excel's trailing columns, not a stray comma.
        extra = len(row[len(header) :]) - _trailing_empty(row[len(header) :])
        yield Record(starts, cells, extra=extra)


def _trailing_empty(cells: list[str]) -> int:
    """How many of the cells, counted from the end, are empty."""
    count = 0
    for cell in reversed(cells):
        if cell.strip():
            break
        count += 1
    return count
