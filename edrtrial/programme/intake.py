"""Applications as the web form exports them: its CSV read, each row normalised and checked.

The columns are the form's Japanese headers (README, "Applications CSV"); a file may carry
them in any order and more besides (kept in `raw`, not read). Values are read as people
write them: full-width digits, 資本金 "3億円" / "3,000万円" / "¥50,000,000", 従業員数 "45名",
yes/no as "はい" / "有" / "○" / "1". A row that cannot be read is a `BadRow` naming its
line and every column that is wrong; the good rows go on. `raw` keeps each cell exactly as
received (for display), and so does the company's name: only identity compares normal forms.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TypeVar

from edrtrial.audit import width_of
from edrtrial.config import ProgrammeConfig
from edrtrial.errors import IntakeError
from edrtrial.models import Application, Company
from edrtrial.programme import csvfile
from edrtrial.programme.eligibility import LETTERS, Facts
from edrtrial.programme.identity import (
    corporate_number,
    identity_key,
    is_valid_corporate_number,
    nfkc,
)
from edrtrial.programme.written import (
    CORPORATION,
    SOLE_PROPRIETOR,
    CellError,
    email,
    parse_count,
    parse_course,
    parse_kind,
    parse_language,
    parse_received,
    parse_yen,
    parse_yes,
    prefecture_of,
)
from edrtrial.timeutil import as_utc

T = TypeVar("T")


@dataclass(frozen=True)
class Column:
    """A column of the form's export: its header, and other spellings it is known by."""

    header: str
    aliases: tuple[str, ...] = ()
    required: bool = False


RECEIVED = Column("受付日時", ("申込日時", "タイムスタンプ", "送信日時"), required=True)
KIND = Column("事業者区分", ("法人/個人", "法人・個人の別"))
NUMBER = Column("法人番号")
NAME = Column("会社名", ("事業者名", "法人名", "名称", "屋号"), required=True)
REPRESENTATIVE = Column("代表者名", ("代表者", "代表者氏名"), required=True)
ADDRESS = Column("所在地", ("本店所在地", "主たる事業所の所在地", "住所"), required=True)
INDUSTRY = Column("業種", required=True)
CAPITAL = Column("資本金", ("資本金(円)", "資本金の額"))
EMPLOYEES = Column("従業員数", ("従業員数(人)", "常時使用する従業員数"))
CONTACT_NAME = Column("担当者名", ("ご担当者名", "担当者氏名"))
CONTACT_EMAIL = Column("担当者メール", ("メールアドレス", "担当者メールアドレス"), required=True)
CONTACT_PHONE = Column("担当者電話", ("電話番号", "担当者電話番号"))
LANGUAGE = Column("言語", ("連絡言語",))
COURSE = Column("希望コース", ("コース", "申込コース"))
SEATS = Column("予定利用者数", ("利用予定者数", "予定ユーザー数", "予定台数"))
EXISTING_EDR = Column("既存EDR", ("EDR導入済み", "既存EDRの有無"))
EXISTING_EDR_NAME = Column("既存EDR製品名", ("EDR製品名",))
PRIOR_SUPPORT = Column("過去の支援事業参加", ("過去の参加",))
TOKYO_SUBSIDY = Column("都の同等補助事業利用", ("都の補助事業利用",))

COLUMNS: tuple[Column, ...] = (
    RECEIVED,
    KIND,
    NUMBER,
    NAME,
    REPRESENTATIVE,
    ADDRESS,
    INDUSTRY,
    CAPITAL,
    EMPLOYEES,
    CONTACT_NAME,
    CONTACT_EMAIL,
    CONTACT_PHONE,
    LANGUAGE,
    COURSE,
    SEATS,
    EXISTING_EDR,
    EXISTING_EDR_NAME,
    PRIOR_SUPPORT,
    TOKYO_SUBSIDY,
)


def attestation_column(index: int) -> Column:
    """The column of the config's `index`-th attestation: 宣誓ア, 宣誓イ, … (or 誓約ア)."""
    letter = LETTERS[index]
    return Column(f"宣誓{letter}", (f"誓約{letter}", f"宣誓事項{letter}", letter))


@dataclass(frozen=True)
class ApplicationRow:
    """One application, normalised; `raw` is every cell as received, by header."""

    line: int
    raw: dict[str, str]
    received_at: datetime
    kind: str
    corporate_number: str | None
    name: str
    representative: str
    address: str
    prefecture: str
    industry: str
    capital_yen: int | None
    employees: int | None
    contact_name: str
    contact_email: str
    contact_phone: str
    language: str
    course: str
    planned_seats: int
    existing_edr: bool
    existing_edr_name: str
    prior_support: bool
    tokyo_subsidy: bool
    attestations: tuple[str, ...] = field(default=())

    @property
    def identity_key(self) -> str:
        """Who it is without its 法人番号 (`identity.identity_key`)."""
        return identity_key(self.name, self.address, self.representative)

    @property
    def fingerprint(self) -> str:
        """The same application whatever its file's encoding, column order or line: a digest
        of the normalised values (not `raw`, not the line)."""
        values = asdict(self)
        del values["line"], values["raw"]
        values["received_at"] = as_utc(self.received_at).isoformat()
        values["name"] = nfkc(self.name)
        values["address"] = nfkc(self.address)
        text = json.dumps(values, ensure_ascii=False, sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def facts(self) -> Facts:
        """What the eligibility rules read of it."""
        return Facts(
            kind=self.kind,
            prefecture=self.prefecture,
            industry=self.industry,
            capital_yen=self.capital_yen,
            employees=self.employees,
            attestations=frozenset(self.attestations),
            existing_edr=self.existing_edr,
            existing_edr_name=self.existing_edr_name,
            prior_support=self.prior_support,
            tokyo_subsidy=self.tokyo_subsidy,
            planned_seats=self.planned_seats,
            course=self.course,
            corporate_number=self.corporate_number,
            corporate_number_valid=(
                None
                if self.corporate_number is None
                else is_valid_corporate_number(self.corporate_number)
            ),
        )


@dataclass(frozen=True)
class BadRow:
    """A row that could not be read: the line it starts on and why."""

    line: int
    reason: str


@dataclass(frozen=True)
class ReadFile:
    """A file of applications read: its encoding, the good rows and the bad ones."""

    encoding: str
    rows: list[ApplicationRow]
    bad: list[BadRow]


# Rows.


def column_map(header: Sequence[str], programme: ProgrammeConfig) -> dict[Column, str]:
    """Which header of the file each known column is, or an IntakeError naming each required
    column the file lacks."""
    by_key = {csvfile.header_key(h): h for h in header}
    found: dict[Column, str] = {}
    missing: list[str] = []
    for column in (*COLUMNS, *_attestation_columns(programme)):
        names = (column.header, *column.aliases)
        match = next((by_key[k] for k in map(csvfile.header_key, names) if k in by_key), None)
        if match is not None:
            _once(header, match)
            found[column] = match
        elif column.required:
            missing.append(column.header)
    if missing:
        raise IntakeError(
            f"no column {', '.join(missing)} in the header (it has: {', '.join(header)})"
        )
    return found


def _once(header: Sequence[str], name: str) -> None:
    """A column that is read must be in the header once: which of two would be meant?"""
    key = csvfile.header_key(name)
    at = [i for i, h in enumerate(header, start=1) if csvfile.header_key(h) == key]
    if len(at) > 1:
        raise IntakeError(
            f"the header has {name} twice (columns {', '.join(map(str, at))}): keep one"
        )


def _attestation_columns(programme: ProgrammeConfig) -> list[Column]:
    return [attestation_column(i) for i in range(len(programme.eligibility.attestations))]


def application_from_cells(
    cells: Mapping[str, str],
    line: int,
    programme: ProgrammeConfig,
    columns: Mapping[Column, str] | None = None,
) -> ApplicationRow | BadRow:
    """One row read (cells by header), or a BadRow naming each wrong column."""
    if columns is None:
        columns = column_map(list(cells), programme)
    raw = dict(cells)
    # PostgreSQL keeps no NUL in text: stored, it would fail the row's transaction there.
    problems = [
        f"{header}: a NUL character (the file is damaged here)"
        for header, value in raw.items()
        if "\x00" in value
    ]
    if problems:
        return BadRow(line, "; ".join(problems))

    def cell(column: Column) -> str:
        header = columns.get(column)
        return "" if header is None else raw.get(header, "")

    def read(column: Column, parse: Callable[[str], T], default: T) -> T:
        try:
            return parse(cell(column))
        except CellError as err:
            problems.append(f"{column.header}: {err}")
            return default

    def text(column: Column) -> str:
        value = cell(column).strip()
        if column.required and not value:
            problems.append(f"{column.header}: empty")
        return value

    number_text = cell(NUMBER)
    kind = read(KIND, lambda t: parse_kind(t, number_text), CORPORATION)
    number = _number(number_text, kind, problems)
    address = text(ADDRESS)
    attested = tuple(
        a.key
        for i, a in enumerate(programme.eligibility.attestations)
        if read(attestation_column(i), parse_yes, False)
    )
    row = ApplicationRow(
        line=line,
        raw=raw,
        received_at=read(RECEIVED, parse_received, datetime.min),
        kind=kind,
        corporate_number=number,
        name=text(NAME),
        representative=text(REPRESENTATIVE),
        address=address,
        prefecture=prefecture_of(address),
        industry=nfkc(text(INDUSTRY)),
        capital_yen=read(CAPITAL, parse_yen, None),
        employees=read(EMPLOYEES, parse_count, None),
        contact_name=text(CONTACT_NAME),
        contact_email=read(CONTACT_EMAIL, email, ""),
        contact_phone=nfkc(text(CONTACT_PHONE)),
        language=read(LANGUAGE, parse_language, "ja"),
        course=read(COURSE, lambda t: parse_course(t, programme), ""),
        planned_seats=read(SEATS, parse_count, None) or 0,
        existing_edr=read(EXISTING_EDR, parse_yes, False),
        existing_edr_name=text(EXISTING_EDR_NAME),
        prior_support=read(PRIOR_SUPPORT, parse_yes, False),
        tokyo_subsidy=read(TOKYO_SUBSIDY, parse_yes, False),
        attestations=attested,
    )
    problems.extend(_too_long(row))
    if problems:
        return BadRow(line, "; ".join(problems))
    return row


def _widths() -> dict[str, tuple[Column, int]]:
    """The stored text fields with a width, by field: the column they come from, the width."""
    return {
        "name": (NAME, width_of(Company.name)),
        "representative": (REPRESENTATIVE, width_of(Company.representative)),
        "industry": (INDUSTRY, width_of(Company.industry)),
        "contact_name": (CONTACT_NAME, width_of(Company.contact_name)),
        "contact_email": (CONTACT_EMAIL, width_of(Company.contact_email)),
        "contact_phone": (CONTACT_PHONE, width_of(Company.contact_phone)),
        "existing_edr_name": (EXISTING_EDR_NAME, width_of(Application.existing_edr_name)),
    }


def _too_long(row: ApplicationRow) -> list[str]:
    """Each value longer than the store keeps: refused with its row, before PostgreSQL
    refuses the whole transaction."""
    problems = []
    for field_name, (column, width) in _widths().items():
        value: str = getattr(row, field_name)
        if len(value) > width:
            problems.append(f"{column.header}: {len(value)} characters; at most {width}")
    return problems


def _number(text: str, kind: str, problems: list[str]) -> str | None:
    """The 法人番号's 13 digits; a corporation must give one, a sole proprietor has none."""
    if kind == SOLE_PROPRIETOR:
        if nfkc(text):
            problems.append("法人番号: a 個人事業主 has none (leave it empty, or say 法人)")
        return None
    if not nfkc(text):
        problems.append("法人番号: empty (a 法人 gives its 13 digits)")
        return None
    try:
        return corporate_number(text)
    except ValueError as err:
        problems.append(f"法人番号: {err}")
        return None


def read_applications(data: bytes, programme: ProgrammeConfig, *, source: str) -> ReadFile:
    """Every row of the form's export: the good ones normalised, the bad ones with their line.

    An IntakeError when the file as a whole cannot be read (its encoding, no header, a
    required column missing).
    """
    text, encoding = csvfile.decode(data, source)
    header, records = csvfile.records(text, source)
    try:
        columns = column_map(header, programme)
    except IntakeError as err:
        raise IntakeError(f"{source}: {err}") from err
    rows: list[ApplicationRow] = []
    bad: list[BadRow] = []
    for record in records:
        if record.problem:
            bad.append(BadRow(record.line, record.problem))
            break
        if record.extra:
            bad.append(BadRow(record.line, f"{record.extra} cell(s) more than the header has"))
            continue
        read = application_from_cells(record.cells, record.line, programme, columns)
        if isinstance(read, BadRow):
            bad.append(read)
        else:
            rows.append(read)
    return ReadFile(encoding, rows, bad)
