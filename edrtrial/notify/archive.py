"""The report archive: each report sent, kept as the file its mail attaches.

A report (a company's weekly or monthly report, an incident report, the secretariat's seat
report) is written to `reports.archive_dir` and recorded (`ReportArchive`: company, period,
language, recipients, who sent it, the file's digest) before its mail is queued; the mail
names the record and attaches that very file (`mail.build_message`). So what a company was
sent can be listed and shown later, and a re-send sends the same thing again, deliberately.

One report per kind, company and period (and ticket): the first send is `sequence` 0, and
asking for it again returns that record unless a re-send is asked for, which adds
sequence 1, 2... (each audited by the caller as its own mail).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from edrtrial import files
from edrtrial.access.scope import EVERYTHING, Scope
from edrtrial.config import Config
from edrtrial.errors import ArchiveError
from edrtrial.models import Company, OutboxMessage, ReportArchive

PDF = "application/pdf"
CSV = "text/csv"
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True, slots=True)
class ReportFile:
    """A rendered report file: its name as the recipient sees it, its type and bytes."""

    filename: str
    content_type: str
    content: bytes


def report_key(kind: str, owner: str, start: date, end: date, ticket_id: int | None = None) -> str:
    """The key shared by every send of one report (the archive adds the sequence)."""
    ticket = f":ticket:{ticket_id}" if ticket_id is not None else ""
    return f"report:{kind}:{owner}:{start.isoformat()}:{end.isoformat()}{ticket}"


def sends_of(session: Session, key: str) -> list[ReportArchive]:
    """Every archived send of the report with this key, first send first.

    Only `key` followed by a sequence number: a key that merely starts the same (a
    ticket's report under the same period) is another report.
    """
    found = session.scalars(
        select(ReportArchive)
        .where(ReportArchive.dedupe_key.startswith(f"{key}:", autoescape=True))
        .order_by(ReportArchive.sequence)
    )
    return [r for r in found if r.dedupe_key[len(key) + 1 :].isdigit()]


def archive_dir_of(config: Config) -> Path:
    """Where reports are archived: `reports.archive_dir`, relative to the config's folder."""
    return config.resolve(config.settings.reports.archive_dir)


def archived(session: Session, report_id: int) -> ReportArchive:
    """One archived report by its number, or an ArchiveError naming the number."""
    record = session.get(ReportArchive, report_id)
    if record is None:
        raise ArchiveError(f"there is no archived report {report_id}")
    return record


def archived_reports(
    session: Session,
    *,
    company_id: int | None = None,
    kind: str | None = None,
    scope: Scope = EVERYTHING,
) -> list[ReportArchive]:
    """The archive, oldest first (optionally one company's, or one kind); only the reports
    of companies `scope` sees (the secretariat's own, of every company, only for everything)."""
    query = select(ReportArchive).order_by(ReportArchive.id)
    if not scope.everything:
        query = query.where(ReportArchive.company_id.in_(scope.company_ids()))
    if company_id is not None:
        query = query.where(ReportArchive.company_id == company_id)
    if kind:
        query = query.where(ReportArchive.kind == kind)
    return list(session.scalars(query))


KNOWN_KINDS = ("weekly", "monthly", "period", "incident", "seats")
"""The kinds of report the service archives (a company's weekly and monthly reports, the
report of any other period, its incident reports, the secretariat's seat report)."""


def archived_kinds(session: Session) -> list[str]:
    """Every kind the archive could list: those known and those it holds, sorted."""
    held = session.scalars(select(ReportArchive.kind).distinct())
    return sorted({*KNOWN_KINDS, *held})


def archive_report(
    session: Session,
    archive_dir: Path,
    *,
    key: str,
    kind: str,
    owner: str,
    file: ReportFile,
    period: tuple[date, date],
    recipients: Sequence[str],
    subject: str,
    actor: str,
    now: datetime,
    language: str = "ja",
    company_id: int | None = None,
    tenant_id: int | None = None,
    ticket_id: int | None = None,
    resend: bool = False,
) -> tuple[ReportArchive, bool]:
    """Write the report's file and its record; returns (record, whether it is new).

    Without `resend`, a report already archived is returned as it was (nothing written):
    the caller tells the operator when and to whom it went. With `resend`, a new send is
    archived as the next sequence. `owner` (a company key, "secretariat") names the folder.
    Does not commit; the file is written first, whole, so a record never names a missing
    or half-written file (a rolled-back record leaves a file the next send overwrites).
    """
    earlier = sends_of(session, key)
    if earlier and not resend:
        return earlier[0], False
    sequence = earlier[-1].sequence + 1 if earlier else 0
    start, end = period
    suffix = f"_{sequence}" if sequence else ""
    stem, _, extension = file.filename.rpartition(".")
    name = f"{kind}_{start.isoformat()}_{end.isoformat()}"
    if ticket_id is not None:
        name += f"_ticket{ticket_id}"
    folder = archive_dir / _SAFE.sub("_", owner)
    path = (folder / f"{name}{suffix}.{_SAFE.sub('_', extension or 'bin')}").resolve()
    files.write_private_bytes(path, file.content)
    record = ReportArchive(
        dedupe_key=f"{key}:{sequence}",
        kind=kind,
        company_id=company_id,
        tenant_id=tenant_id,
        ticket_id=ticket_id,
        period_start=start,
        period_end=end,
        language=language,
        sequence=sequence,
        path=str(path),
        filename=file.filename,
        content_type=file.content_type,
        sha256=hashlib.sha256(file.content).hexdigest(),
        size=len(file.content),
        recipients=list(recipients),
        subject=subject,
        actor=actor,
        created_at=now,
    )
    session.add(record)
    session.flush()
    return record, True


def read_archived(record: ReportArchive) -> bytes:
    """The archived file's bytes, checked against the digest recorded when it was sent.

    Raises `ArchiveError` naming the file when it is gone or is no longer what was sent.
    """
    if not record.path:
        raise ArchiveError(
            f"archived report {record.id} was purged with its company: there is no file to send"
        )
    path = Path(record.path)
    try:
        content = path.read_bytes()
    except OSError as err:
        raise ArchiveError(
            f"archived report {record.id} ({record.filename}) cannot be read at {path}: "
            f"{err.strerror or err}"
        ) from err
    if hashlib.sha256(content).hexdigest() != record.sha256:
        raise ArchiveError(
            f"archived report {record.id} at {path} is not the file that was sent "
            "(its digest differs)"
        )
    return content


@dataclass(frozen=True, slots=True)
class ArchivedSend:
    """One archived report with its mail, as `reports list` shows it."""

    record: ReportArchive
    owner: str  # the company's key (its code once purged), or "secretariat"
    mail_status: str  # the outbox state of its mail ("" when it has none)
    sent_at: datetime | None
    mail_error: str
    purged: bool = False
    """The company's details are purged: `owner` is its anonymous code, and it has no page."""


def archive_listing(
    session: Session,
    *,
    company_id: int | None = None,
    kind: str | None = None,
    scope: Scope = EVERYTHING,
) -> list[ArchivedSend]:
    """The archive, oldest first, each report with its owner and how its mail went (only
    what `scope` sees)."""
    rows = []
    for record in archived_reports(session, company_id=company_id, kind=kind, scope=scope):
        company = session.get(Company, record.company_id) if record.company_id else None
        owner = (company.anon_code or company.key) if company else "secretariat"
        mail = session.scalar(
            select(OutboxMessage)
            .where(OutboxMessage.report_id == record.id)
            .order_by(OutboxMessage.id)
            .limit(1)
        )
        rows.append(
            ArchivedSend(
                record,
                owner,
                str(mail.status) if mail else "",
                mail.sent_at if mail else None,
                mail.last_error if mail else "",
                purged=company is not None and company.purged_at is not None,
            )
        )
    return rows
