"""CSV files for the secretariat's Excel: UTF-8 with a BOM, CRLF, no formula in a cell.

Excel on Japanese Windows opens a UTF-8 CSV as such only when it starts with a BOM (without
it, 企業名 turns to mojibake), and runs a cell that starts with = + - or @ as a formula: a
company or device name typed by someone else must stay text. Dates are written YYYY-MM-DD.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import date

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
"""What Excel (and LibreOffice) take as the start of a formula."""


def cell(value: object) -> str:
    """One cell as text: a date as YYYY-MM-DD, None empty, a would-be formula quoted with '.

    A number is written as is (a negative count, such as days since an end, is a number
    Excel may compute with, not a formula); only text is guarded.
    """
    if value is None:
        return ""
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    text = str(value)
    return f"'{text}" if text.startswith(FORMULA_START) else text


def excel_csv(header: Sequence[str], rows: Iterable[Sequence[object]]) -> bytes:
    """The whole file: BOM, the header, one line per row, CRLF line ends (csv's own)."""
    out = io.StringIO(newline="")
    writer = csv.writer(out)  # the excel dialect: CRLF, quotes where needed
    writer.writerow([cell(h) for h in header])
    for row in rows:
        writer.writerow([cell(v) for v in row])
    return out.getvalue().encode("utf-8-sig")
