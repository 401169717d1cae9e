"""The secretariat's weekly seat mail: the totals and the cap warnings, the CSV attached.

The CSV is archived first (`notify.archive`, kind "seats", owner "secretariat", the week as
its period) and the mail names that record, so what the secretariat was sent can be shown
again and a second run of the week's job sends nothing new. The first queueing is audited
like every report mail (`report_mail.REPORT_QUEUED`), naming the archived file.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from edrtrial import audit
from edrtrial.config import Settings
from edrtrial.models import OutboxMessage, ReportArchive
from edrtrial.notify.archive import CSV, ReportFile, archive_report, report_key, sends_of
from edrtrial.notify.outbox import enqueue
from edrtrial.notify.report_mail import REPORT_QUEUED
from edrtrial.programme.seats import seat_counts
from edrtrial.reports.seat_report import (
    build_seat_report,
    seat_csv,
    seat_csv_filename,
    seat_report_mail,
)
from edrtrial.timeutil import jst_date

SEAT_KIND = "seats"
SEAT_OWNER = "secretariat"
SEAT_MAIL_KIND = "seat_report"


@dataclass(frozen=True, slots=True)
class QueuedSeatReport:
    """The archived CSV, the mail that attaches it, and whether this call queued it."""

    record: ReportArchive
    message: OutboxMessage
    new: bool


def seat_week(today: date) -> tuple[date, date]:
    """The last whole week (Monday to Sunday, JST) before `today`: the seat report's period.

    A calendar week, not the seven days before the run, so the report is one per week
    whichever day it runs: a run by hand on Wednesday after Monday's finds Monday's.
    """
    end = today - timedelta(days=today.weekday() + 1)
    return end - timedelta(days=6), end


def secretariat_address(settings: Settings) -> str:
    """Where the secretariat's own reports go: its address, else the desk's."""
    return str(settings.programme.secretariat_email or settings.desk.email)


def queue_seat_report(
    session: Session,
    archive_dir: Path,
    period: tuple[date, date],
    *,
    now: datetime,
    settings: Settings,
    actor: str = "seat-report",
    resend: bool = False,
) -> QueuedSeatReport:
    """Count the seats now, archive the CSV and queue its mail for the week `period`;
    does not commit.

    Once per week: asked again for the same week, the first send is handed back unchanged
    (nothing counted, written or queued), unless `resend`, which archives and queues a new
    one of today's figures.
    """
    key = report_key(SEAT_KIND, SEAT_OWNER, *period)
    earlier = sends_of(session, key)
    if earlier and not resend:
        first = earlier[0]
        sent = session.scalar(select(OutboxMessage).where(OutboxMessage.report_id == first.id))
        if sent is not None:
            return QueuedSeatReport(first, sent, False)
    recipient = secretariat_address(settings)
    report = build_seat_report(seat_counts(session, now), jst_date(now))
    mail = seat_report_mail(
        report,
        programme=settings.programme.name,
        secretariat=settings.programme.secretariat,
        period=period,
    )
    record, new = archive_report(
        session,
        archive_dir,
        key=key,
        kind=SEAT_KIND,
        owner=SEAT_OWNER,
        file=ReportFile(seat_csv_filename(report), CSV, seat_csv(report)),
        period=period,
        recipients=[recipient],
        subject=mail.subject,
        actor=actor,
        now=now,
        resend=resend,
    )
    message = enqueue(
        session,
        dedupe_key=record.dedupe_key,
        kind=SEAT_MAIL_KIND,
        recipient=recipient,
        subject=mail.subject,
        body_text=mail.text,
        report_id=record.id,
    )
    audit.record(
        session,
        at=now,
        actor=actor,
        action=REPORT_QUEUED,
        tenant_id=None,
        target=SEAT_OWNER,
        detail={
            "kind": SEAT_MAIL_KIND,
            "period": {"from": period[0].isoformat(), "to": period[1].isoformat()},
            "recipients": [recipient],
            "subject": mail.subject,
            "outbox_id": message.id,
            "report_id": record.id,
            "resend": record.sequence,
        },
    )
    return QueuedSeatReport(record, message, True)
