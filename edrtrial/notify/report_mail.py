"""Queueing a company's detection report so a re-run of the schedule never mails it twice.

The report goes as a mail with its PDF attached; the PDF is archived first
(`notify.archive`), and the mail attaches that very file, so what a company was sent can
be listed, shown and re-sent as it was (`resend_archived`).

Every report mail queued (this detection report, and the desk's incident report) is
audited once, when it is first queued: a report tells a company what happened on its PCs,
so who sent which company which period, to whom, must be answerable later.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from edrtrial import audit
from edrtrial.config import Settings
from edrtrial.errors import ArchiveError
from edrtrial.ingest.queries import period_alerts, tenant_devices
from edrtrial.models import Alert, Company, Device, OutboxMessage, ReportArchive, ResponseAction
from edrtrial.notify.archive import (
    PDF,
    ReportFile,
    archive_report,
    archived,
    read_archived,
    report_key,
    sends_of,
)
from edrtrial.notify.outbox import enqueue
from edrtrial.programme.companies import tenant_of_company
from edrtrial.programme.trials import trial_of_company
from edrtrial.reports.detection import (
    DetectionReport,
    build_detection_report,
    comparable,
    previous_period,
)
from edrtrial.reports.render import detection_report_mail, detection_report_pdf
from edrtrial.timeutil import jst_day_bounds
from edrtrial.untrusted import one_line

REPORT_KIND = "detection_report"
REPORT_QUEUED = "report.queued"


@dataclass(frozen=True, slots=True)
class QueuedReport:
    """The report's mail HTML, the outbox row that carries it, the archived PDF it attaches,
    and whether this call queued it (False: it had been, and nothing was sent again).

    `record` is None only for a report mailed before the archive kept its files (see
    `legacy_mailings`): that mail had no PDF, and there is no file to hand back.
    """

    html: str
    message: OutboxMessage
    record: ReportArchive | None
    new: bool = True


def report_filename(company_key: str, start: date, end: date, language: str) -> str:
    """The PDF's name as the company sees it in the mail: in its own language, with the
    company and the period, so a folder of them sorts by company and date."""
    stem = "EDR-report" if language == "en" else "EDR検知レポート"
    safe = _UNSAFE_NAME.sub("_", company_key)
    return f"{stem}_{safe}_{start.isoformat()}_{end.isoformat()}.pdf"


_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_ADDRESS = re.compile(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+")


def detection_report_for(
    session: Session,
    company_id: int,
    start: date,
    end: date,
    *,
    now: datetime,
    settings: Settings,
    kind: str = "weekly",
) -> DetectionReport:
    """The company's `kind` ("weekly", "monthly", "period") detection report for the period,
    from its own tenant's rows only.

    The change is counted against the period before only when that period is wholly in the
    trial (`comparable`): the store holds nothing earlier, and a comparison with it would be
    an invented increase.
    """
    company = session.get(Company, company_id)
    if company is None:
        raise LookupError(f"no company with id {company_id}")
    tenant = tenant_of_company(session, company.id)
    alerts: list[Alert] = []
    devices: list[Device] = []
    actions: list[ResponseAction] = []
    previous: int | None = None
    trial = trial_of_company(session, company.id)
    if tenant is not None:
        alerts = period_alerts(session, tenant.id, start, end)
        devices = tenant_devices(session, tenant.id)
        before = previous_period(start, end, kind)
        if comparable(before, trial):
            lower, upper = jst_day_bounds(*before)
            previous = (
                session.scalar(
                    select(func.count(Alert.id)).where(
                        Alert.tenant_id == tenant.id,
                        Alert.created_at >= lower,
                        Alert.created_at < upper,
                    )
                )
                or 0
            )
        lower, upper = jst_day_bounds(start, end)
        actions = list(
            session.scalars(
                select(ResponseAction)
                .where(
                    ResponseAction.tenant_id == tenant.id,
                    ResponseAction.created_at >= lower,
                    ResponseAction.created_at < upper,
                )
                .options(selectinload(ResponseAction.device))
                .order_by(ResponseAction.created_at, ResponseAction.id)
            )
        )
    return build_detection_report(
        company,
        tenant.id if tenant else None,
        alerts,
        devices,
        trial,
        start,
        end,
        now=now,
        desk=settings.desk,
        programme=settings.programme,
        sla=settings.sla,
        kind=kind,
        previous_total=previous,
        actions=actions,
    )


def report_sends(
    session: Session, company_key: str, start: date, end: date, kind: str = "weekly"
) -> list[ReportArchive]:
    """Every archived send of the company's `kind` report for the period, first send first."""
    return sends_of(session, report_key(kind, company_key, start, end))


def report_mailings(
    session: Session, company_key: str, start: date, end: date, kind: str = "weekly"
) -> list[OutboxMessage]:
    """Every mail of the company's report for the period (the first and each re-send, also
    those mailed before the archive), oldest first: what `report` tells an operator before
    mailing it again."""
    sends = report_sends(session, company_key, start, end, kind)
    archived_mails: list[OutboxMessage] = []
    if sends:
        archived_mails = list(
            session.scalars(
                select(OutboxMessage).where(OutboxMessage.report_id.in_([r.id for r in sends]))
            )
        )
    found = {m.id: m for m in [*legacy_mailings(session, company_key, start, end), *archived_mails]}
    return [found[key] for key in sorted(found)]


LEGACY_RESEND = ":resend:"


def legacy_key(company_key: str, start: date, end: date) -> str:
    """The outbox key of a company's report mail before reports were archived: one per
    company and period whatever its form, each re-send `<key>:resend:<n>`."""
    return f"report:detection:{company_key}:{start.isoformat()}:{end.isoformat()}"


def legacy_mailings(
    session: Session, company_key: str, start: date, end: date
) -> list[OutboxMessage]:
    """The company's report mails for the period queued before the archive existed, oldest
    first. A store upgraded from then holds them: the period was mailed, and mailing it again
    without being asked would send the company the same report twice."""
    key = legacy_key(company_key, start, end)
    return list(
        session.scalars(
            select(OutboxMessage)
            .where(
                (OutboxMessage.dedupe_key == key)
                | OutboxMessage.dedupe_key.startswith(f"{key}{LEGACY_RESEND}", autoescape=True)
            )
            .order_by(OutboxMessage.id)
        )
    )


def already_queued(session: Session, dedupe_key: str) -> bool:
    """Whether a message with this key is in the outbox (queued again, it is not new)."""
    found = session.scalar(select(OutboxMessage.id).where(OutboxMessage.dedupe_key == dedupe_key))
    return found is not None


def audit_report_mail(
    session: Session,
    message: OutboxMessage,
    *,
    company_key: str,
    period: tuple[date | datetime, date | datetime],
    actor: str,
    at: datetime,
    extra: dict[str, object] | None = None,
) -> None:
    """Audit one report mail: which company, which period, to whom, which kind."""
    audit.record(
        session,
        at=at,
        actor=actor,
        action=REPORT_QUEUED,
        tenant_id=message.tenant_id,
        target=f"company:{company_key}",
        detail={
            "kind": message.kind,
            "company": company_key,
            "period": {"from": period[0].isoformat(), "to": period[1].isoformat()},
            "recipients": [message.recipient],
            "subject": message.subject,
            "outbox_id": message.id,
            **(extra or {}),
        },
    )


def queue_detection_report(
    session: Session,
    company_id: int,
    start: date,
    end: date,
    *,
    now: datetime,
    settings: Settings,
    archive_dir: Path,
    kind: str = "weekly",
    actor: str = "weekly-reports",
    resend: bool = False,
) -> QueuedReport:
    """Assemble and render the report, archive its PDF under `archive_dir`, and queue the
    mail that attaches it to the company contact; does not commit.

    The first send is audited as `actor`'s (the job, or who ran the command). Asked again,
    the period's report is not mailed twice (the first send is handed back, `new` False),
    unless `resend`: then today's report is archived as the next sequence and mailed,
    audited the same way (`resend` in its detail). The mail's dedupe key is the archive
    record's, so the outbox and the archive count the sends alike. A mail of the period
    queued before the archive existed (`legacy_mailings`) is its first send too: handed
    back with no record, and counted by a re-send.
    """
    company = session.get(Company, company_id)
    if company is None:
        raise LookupError(f"no company with id {company_id}")
    key = report_key(kind, company.key, start, end)
    earlier = sends_of(session, key)
    if earlier and not resend:
        return _sent_before(session, earlier[0])
    legacy = legacy_mailings(session, company.key, start, end)
    if legacy and not earlier and not resend:
        first = legacy[0]
        return QueuedReport(html=first.body_html or "", message=first, record=None, new=False)
    report = detection_report_for(
        session, company_id, start, end, now=now, settings=settings, kind=kind
    )
    mail = detection_report_mail(report)
    language = "en" if company.language == "en" else "ja"
    record, _ = archive_report(
        session,
        archive_dir,
        key=key,
        kind=kind,
        owner=company.key,
        file=ReportFile(
            report_filename(company.key, start, end, language), PDF, detection_report_pdf(report)
        ),
        period=(start, end),
        recipients=[report.recipient],
        subject=mail.subject,
        actor=actor,
        now=now,
        language=language,
        company_id=company.id,
        tenant_id=report.tenant_id,
        resend=resend,
    )
    message = enqueue(
        session,
        dedupe_key=record.dedupe_key,
        kind=REPORT_KIND,
        recipient=report.recipient,
        subject=mail.subject,
        body_text=mail.text,
        body_html=mail.html,
        tenant_id=report.tenant_id,
        report_id=record.id,
    )
    extra: dict[str, object] = {"report": record.id, "file": record.filename}
    if record.sequence or legacy:
        extra["resend"] = record.sequence + len(legacy)
    audit_report_mail(
        session,
        message,
        company_key=company.key,
        period=(start, end),
        actor=actor,
        at=now,
        extra=extra,
    )
    return QueuedReport(html=mail.html or "", message=message, record=record)


def _sent_before(session: Session, record: ReportArchive) -> QueuedReport:
    """The first send of a report, as it was queued (not today's re-render)."""
    message = session.scalar(
        select(OutboxMessage).where(OutboxMessage.report_id == record.id).order_by(OutboxMessage.id)
    )
    if message is None:  # a record is written only with its mail: the store was edited
        raise ArchiveError(f"archived report {record.id} ({record.filename}) has no mail")
    return QueuedReport(html=message.body_html or "", message=message, record=record, new=False)


def resend_archived(
    session: Session,
    report_id: int,
    *,
    actor: str,
    now: datetime,
    to: str | None = None,
) -> QueuedReport:
    """Send an archived report again, deliberately, as it was sent: the same file (checked
    against its digest, copied as the next sequence) under the same mail, to the recipients
    of the first send or to `to`. Audited as `actor`'s re-send; does not commit.

    Used for a report a company lost or never received: nothing is rendered again, so what
    it receives is what the archive says it was sent.
    """
    if to is not None and not _ADDRESS.fullmatch(to):
        raise ArchiveError(f"{one_line(to)!r} is not a mail address")
    original = archived(session, report_id)
    first = _sent_before(session, original).message
    content = read_archived(original)
    recipients = [to] if to else list(original.recipients)
    if not recipients or not all(recipients):
        raise ArchiveError(f"archived report {report_id} names no recipient; give one with --to")
    key = original.dedupe_key.rpartition(":")[0]
    period = (original.period_start, original.period_end)
    record, _ = archive_report(
        session,
        Path(original.path).parent.parent,
        key=key,
        kind=original.kind,
        owner=Path(original.path).parent.name,
        file=ReportFile(original.filename, original.content_type, content),
        period=period,
        recipients=recipients,
        subject=original.subject,
        actor=actor,
        now=now,
        language=original.language,
        company_id=original.company_id,
        tenant_id=original.tenant_id,
        ticket_id=original.ticket_id,
        resend=True,
    )
    message = enqueue(
        session,
        dedupe_key=record.dedupe_key,
        kind=first.kind,
        recipient=recipients[0],
        subject=first.subject,
        body_text=first.body_text,
        body_html=first.body_html,
        tenant_id=original.tenant_id,
        report_id=record.id,
    )
    company = session.get(Company, original.company_id) if original.company_id else None
    audit_report_mail(
        session,
        message,
        company_key=company.key if company else Path(original.path).parent.name,
        period=period,
        actor=actor,
        at=now,
        extra={
            "report": record.id,
            "file": record.filename,
            "resend": record.sequence,
            "of": original.id,
            **({"ticket": original.ticket_id} if original.ticket_id else {}),
        },
    )
    return QueuedReport(html=message.body_html or "", message=message, record=record)
