"""The list of companies supported before by a predecessor programme, brought into the store.

A company supported before is not eligible again. The list comes as CSV (UTF-8, with or
without BOM, or CP932) with the columns 法人番号, 名称, 事業名, 年度, and for a business
without a 法人番号 (a sole proprietor) 所在地 and 代表者名, which identify it instead. The
same list imported twice adds nothing (a fingerprint of each normalised row).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from edrtrial.errors import IntakeError
from edrtrial.models import PredecessorRecord
from edrtrial.programme import csvfile
from edrtrial.programme.identity import corporate_number, identity_key, nfkc
from edrtrial.programme.intake import BadRow

_COLUMNS = {
    "法人番号": "number",
    "名称": "name",
    "会社名": "name",
    "事業名": "programme",
    "年度": "year",
    "所在地": "address",
    "代表者名": "representative",
}


@dataclass(frozen=True)
class Predecessor:
    """One earlier participant, normalised."""

    line: int
    corporate_number: str | None
    identity_key: str
    name: str
    programme: str
    year: str

    @property
    def fingerprint(self) -> str:
        """The same entry whatever file or line it comes from."""
        values = [self.corporate_number, self.identity_key, nfkc(self.name)]
        values += [self.programme, self.year]
        return hashlib.sha256(json.dumps(values, ensure_ascii=False).encode()).hexdigest()


def read_predecessors(data: bytes, *, source: str) -> tuple[list[Predecessor], list[BadRow]]:
    """The list's entries and its unreadable rows (each with its line and reason)."""
    text, _ = csvfile.decode(data, source)
    header, records = csvfile.records(text, source)
    keys = {h: csvfile.header_key(h) for h in header}
    fields = {h: _COLUMNS[k] for h, k in keys.items() if k in _COLUMNS}
    if "name" not in fields.values():
        raise IntakeError(f"{source}: no column 名称 in the header (it has: {', '.join(header)})")
    good: list[Predecessor] = []
    bad: list[BadRow] = []
    for record in records:
        if record.problem:
            bad.append(BadRow(record.line, record.problem))
            break
        cells = {fields[h]: v.strip() for h, v in record.cells.items() if h in fields}
        damaged = [h for h, v in record.cells.items() if h in fields and "\x00" in v]
        if damaged:  # PostgreSQL keeps no NUL in text
            bad.append(
                BadRow(record.line, f"{damaged[0]}: a NUL character (the file is damaged here)")
            )
            continue
        read = _entry(record.line, cells)
        if isinstance(read, BadRow):
            bad.append(read)
        else:
            good.append(read)
    return good, bad


def _entry(line: int, cells: dict[str, str]) -> Predecessor | BadRow:
    name = cells.get("name", "")
    if not name:
        return BadRow(line, "名称: empty")
    number = None
    if nfkc(cells.get("number", "")):
        try:
            number = corporate_number(cells["number"])
        except ValueError as err:
            return BadRow(line, f"法人番号: {err}")
    address, representative = cells.get("address", ""), cells.get("representative", "")
    if number is None and not (address and representative):
        return BadRow(line, "法人番号 empty: give 所在地 and 代表者名 to identify the business")
    key = identity_key(name, address, representative) if address and representative else ""
    return Predecessor(
        line, number, key, name, nfkc(cells.get("programme", "")), nfkc(cells.get("year", ""))
    )


def store_predecessors(
    session: Session, entries: list[Predecessor], *, source: str
) -> tuple[int, int]:
    """Add the entries not yet in the store: (added, already there)."""
    added = known = 0
    seen: set[str] = set()
    for entry in entries:
        fingerprint = entry.fingerprint
        exists = session.scalar(
            select(PredecessorRecord.id).where(PredecessorRecord.fingerprint == fingerprint)
        )
        if exists is not None or fingerprint in seen:
            known += 1
            continue
        seen.add(fingerprint)
        session.add(
            PredecessorRecord(
                corporate_number=entry.corporate_number,
                identity_key=entry.identity_key,
                name=entry.name,
                programme=entry.programme,
                year=entry.year,
                source=f"{source} line {entry.line}",
                fingerprint=fingerprint,
            )
        )
        added += 1
    return added, known
