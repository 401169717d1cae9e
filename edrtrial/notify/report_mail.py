"""Queueing a company's detection report so a re-run of the schedule never mails it twice.

Every report mail queued (this detection report, and the desk's incident report) is
audited once, when it is first queued: a report tells a company what happened on its PCs,
so who sent which company which period, to whom, must be answerable later.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from edrtrial import audit
from edrtrial.config import Settings
from edrtrial.ingest.queries import period_alerts, tenant_devices
from edrtrial.models import Alert, Company, Device, OutboxMessage, ResponseAction
from edrtrial.notify.outbox import enqueue
from edrtrial.programme.companies import tenant_of_company
from edrtrial.programme.trials import trial_of_company
from edrtrial.reports.detection import DetectionReport, build_detection_report, previous_period
from edrtrial.reports.render import detection_report_mail
from edrtrial.timeutil import jst_day_bounds

REPORT_KIND = "detection_report"
REPORT_QUEUED = "report.queued"


@dataclass(frozen=True, slots=True)
class QueuedReport:
    """The report's HTML (for an archive or PDF) and the outbox row that carries it."""

    html: str
    message: OutboxMessage


def report_dedupe_key(company_key: str, start: date, end: date) -> str:
    """One report mail per company and period."""
    return f"report:detection:{company_key}:{start.isoformat()}:{end.isoformat()}"


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
    """The company's `kind` ("weekly", "monthly") detection report for the period, from its
    own tenant's rows only."""
    company = session.get(Company, company_id)
    if company is None:
        raise LookupError(f"no company with id {company_id}")
    tenant = tenant_of_company(session, company.id)
    alerts: list[Alert] = []
    devices: list[Device] = []
    actions: list[ResponseAction] = []
    previous = 0
    if tenant is not None:
        alerts = period_alerts(session, tenant.id, start, end)
        devices = tenant_devices(session, tenant.id)
        before = previous_period(start, end, kind)
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
        trial_of_company(session, company.id),
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


def report_mailings(
    session: Session, company_key: str, start: date, end: date
) -> list[OutboxMessage]:
    """Every mail of the company's report for the period (the first and each re-send),
    oldest first: what `report` tells an operator before mailing it again."""
    key = report_dedupe_key(company_key, start, end)
    return list(
        session.scalars(
            select(OutboxMessage)
            .where(
                (OutboxMessage.dedupe_key == key)
                | OutboxMessage.dedupe_key.startswith(f"{key}{_RESEND}", autoescape=True)
            )
            .order_by(OutboxMessage.id)
        )
    )


_RESEND = ":resend:"


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
    kind: str = "weekly",
    actor: str = "weekly-reports",
    resend: bool = False,
) -> QueuedReport:
    """Assemble, render and queue the report to the company contact; does not commit.

    The first queueing is audited as `actor`'s (the weekly job, or who ran the command).
    Queued again, the period's report is not mailed twice, unless `resend`: then a new
    mail of today's report is queued and audited the same way (`resend` in its detail).
    """
    report = detection_report_for(
        session, company_id, start, end, now=now, settings=settings, kind=kind
    )
    mail = detection_report_mail(report)
    dedupe_key = report_dedupe_key(report.company_key, start, end)
    earlier = report_mailings(session, report.company_key, start, end)
    if resend and earlier:
        dedupe_key = f"{dedupe_key}{_RESEND}{len(earlier)}"
    new = not already_queued(session, dedupe_key)
    message = enqueue(
        session,
        dedupe_key=dedupe_key,
        kind=REPORT_KIND,
        recipient=report.recipient,
        subject=mail.subject,
        body_text=mail.text,
        body_html=mail.html,
        tenant_id=report.tenant_id,
    )
    if new:
        period = (start, end)
        audit_report_mail(
            session,
            message,
            company_key=report.company_key,
            period=period,
            actor=actor,
            at=now,
            extra={"resend": len(earlier)} if resend and earlier else None,
        )
    # Already queued earlier: hand back what was (or will be) sent, not today's re-render.
    html = message.body_html if message.body_html is not None else mail.html or ""
    return QueuedReport(html=html, message=message)
