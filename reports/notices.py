"""Mails the service writes: the prompt notices for a new ticket and the detection report mail."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edrtrial.config import DeskConfig
from edrtrial.models import Alert, Company, Ticket
from edrtrial.reports.detection import DetectionReport
from edrtrial.reports.render import (
    render,
    render_detection_report_html,
    render_detection_report_text,
)
from edrtrial.reports.vocabulary import (
    SEVERITY_EN,
    SEVERITY_JA,
    device_names,
    jst_minute,
    plain_title,
    severity_key,
)

MAX_NOTICE_ALERTS = 10
SUBJECT_PREFIX = "【EDR体験】"


@dataclass(frozen=True, slots=True)
class RenderedMail:
    """A finished mail body: what `outbox.enqueue` takes."""

    subject: str
    text: str
    html: str | None = None


@dataclass(frozen=True, slots=True)
class _NoticeAlert:
    at: str
    device: str
    what: str
    severity: str


@dataclass(frozen=True, slots=True)
class _CompanyNotice:
    company_name: str
    contact_name: str
    ticket_id: int
    alerts: tuple[_NoticeAlert, ...]
    more: int
    desk_name: str
    desk_email: str
    desk_phone: str
    desk_hours: str
    incident_desk_phone: str


def _same_tenant(ticket: Ticket, alerts: Sequence[Alert]) -> list[Alert]:
    # A notice goes to one company: an alert of another tenant here is a bug, not a detail.
    strangers = [a.id for a in alerts if a.tenant_id != ticket.tenant_id]
    if strangers:
        raise ValueError(f"alerts {strangers} do not belong to ticket {ticket.id}'s tenant")
    return sorted(alerts, key=lambda a: (a.created_at is None, a.created_at, a.id))


def _when(alert: Alert, ticket: Ticket) -> str:
    return jst_minute(alert.created_at or ticket.created_at)


def company_alert_notice(
    company: Company, ticket: Ticket, alerts: Sequence[Alert], desk: DeskConfig
) -> RenderedMail:
    """The prompt, calm notice to the company contact, in the company's language (ja or en)."""
    language = "en" if company.language == "en" else "ja"
    ordered = _same_tenant(ticket, alerts)
    labels = SEVERITY_EN if language == "en" else SEVERITY_JA
    shown = tuple(
        _NoticeAlert(
            at=_when(a, ticket),
            device=device_names(a, language),
            what=plain_title(a, language),
            severity=labels[severity_key(a.severity)],
        )
        for a in ordered[:MAX_NOTICE_ALERTS]
    )
    notice = _CompanyNotice(
        company_name=company.name,
        contact_name=company.contact_name,
        ticket_id=ticket.id,
        alerts=shown,
        more=max(len(ordered) - MAX_NOTICE_ALERTS, 0),
        desk_name=desk.name,
        desk_email=str(desk.email),
        desk_phone=desk.phone,
        desk_hours=desk.hours,
        incident_desk_phone=desk.incident_desk_phone,
    )
    if language == "en":
        subject = (f"[EDR trial - important] Suspicious activity detected on one of your "
                   f"computers (ticket #{ticket.id})")
    else:
        subject = (f"【EDR体験・重要】貴社のパソコンで不審な動きを検知しました"
                   f"（受付番号 #{ticket.id}）")
    return RenderedMail(subject, render(f"company_alert_notice.{language}.txt.j2", n=notice))


def _desk_alert(alert: Alert, ticket: Ticket) -> dict[str, Any]:
    devices = ", ".join(
        f"{name} ({source_id})" if name else source_id
        for name, source_id in _pairs(alert.device_names or [], alert.device_source_ids or [])
    )
    url = alert.raw.get("alertWebUrl") if isinstance(alert.raw, dict) else None
    return {
        "severity": SEVERITY_JA[severity_key(alert.severity)],
        "category": alert.category or "",
        "title": " ".join((alert.title or "").split()),
        "at": _when(alert, ticket),
        "devices": devices or "なし",
        "mitre": ", ".join(alert.mitre_techniques or []),
        "detection_source": alert.detection_source or "",
        "service_source": alert.service_source or "",
        "status": alert.status or "",
        "suppressed": alert.suppressed_reason or "",
        "source_ref": f"{alert.source}:{alert.source_id}",
        "incident_id": alert.incident_source_id or "",
        "rules": ", ".join(alert.matched_rules or []),
        "url": url if isinstance(url, str) else "",
    }


def _pairs(names: Sequence[str], ids: Sequence[str]) -> list[tuple[str, str]]:
    count = max(len(names), len(ids))
    return [(names[i] if i < len(names) else "", ids[i] if i < len(ids) else "")
            for i in range(count)]


def desk_ticket_notice(company: Company, ticket: Ticket, alerts: Sequence[Alert]) -> RenderedMail:
    """The operational notice to the support desk: who, how urgent, and every alert's evidence."""
    ordered = _same_tenant(ticket, alerts)
    incident_ids = sorted({a.incident_source_id for a in ordered if a.incident_source_id})
    incident_urls = sorted({
        url for a in ordered
        if isinstance(a.raw, dict) and isinstance(url := a.raw.get("incidentWebUrl"), str) and url
    })
    contact = f"{company.contact_name} <{company.contact_email}>".strip()
    context = {
        "company_name": company.name,
        "company_key": company.key,
        "contact": contact,
        "language": company.language,
        "ticket_id": ticket.id,
        "priority": ticket.priority,
        "state": ticket.state,
        "created_at": jst_minute(ticket.created_at),
        "title": " ".join(ticket.title.split()),
        "correlation_key": ticket.correlation_key,
        "incident_ids": ", ".join(incident_ids),
        "incident_urls": incident_urls,
        "alerts": [_desk_alert(a, ticket) for a in ordered],
    }
    subject = f"[{ticket.priority}] 新規チケット #{ticket.id} {company.name}：{context['title']}"
    return RenderedMail(subject, render("desk_ticket_notice.txt.j2", t=context))


def detection_report_mail(report: DetectionReport) -> RenderedMail:
    """The detection report as a mail: Japanese subject, plain text and the HTML alternative."""
    subject = f"{SUBJECT_PREFIX}検知レポート（{report.period_label}）{report.company_name}"
    return RenderedMail(
        subject=subject,
        text=render_detection_report_text(report),
        html=render_detection_report_html(report),
    )
