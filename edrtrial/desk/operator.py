"""What operators do to tickets: each step checked against the ticket's state and audited.

The CLI calls these today and the web console will call the same functions. A state change
is a conditional UPDATE from the state the operator saw, so two operators acting on one
ticket at once cannot both succeed.

A ticket whose isolate or release is under way is neither resolved nor closed: the incident
report would tell the company it is over while the EDR is still acting, and the company
would then hear "isolated" after "resolved". The operator waits for the action's result
(the desk job follows it), which the report then states.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from edrtrial import audit
from edrtrial.desk.policy import DeskPolicy
from edrtrial.desk.queries import company_of, ticket_alerts
from edrtrial.desk.states import OPEN_TICKET_STATES, move
from edrtrial.devices.actions import actions_of
from edrtrial.devices.states import UNDER_WAY
from edrtrial.errors import TicketError
from edrtrial.models import Alert, AuditEvent, Ticket, TicketNote
from edrtrial.notify.archive import PDF, ReportFile, archive_report, report_key
from edrtrial.notify.notices import company_message
from edrtrial.notify.recipients import mail_company
from edrtrial.notify.report_mail import already_queued, audit_report_mail
from edrtrial.programme.trials import coverage_of_tenant
from edrtrial.reports.incident import (
    assemble_incident_report,
    incident_report_filename,
    incident_report_mail,
    incident_report_pdf,
)
from edrtrial.states import WriteBackState
from edrtrial.timeutil import jst_date
from edrtrial.words import Words

SUMMARY_FIELDS = ("when", "what", "cause", "handling", "effect")
SUMMARY_LABELS = {
    "when": "when it happened (発生日時)",
    "what": "what happened (インシデント内容)",
    "cause": "the cause (インシデントの原因)",
    "handling": "how it was handled (対応方法)",
    "effect": "the effect of the handling (対応の効果)",
}
ASSIGNEE_WIDTH = audit.width_of(Ticket.assignee)
"""The longest assignee the store keeps (a longer one is refused, not cut)."""

CLASSIFICATIONS = ("truepositive", "falsepositive", "informationalexpectedactivity")


def get(session: Session, ticket_id: int) -> Ticket:
    """The ticket, or a TicketError naming the missing number."""
    ticket = session.get(Ticket, ticket_id)
    if ticket is None:
        raise TicketError(Words("there is no ticket #%(id)s", id=ticket_id))
    return ticket


def _audit(
    session: Session,
    ticket: Ticket,
    action: str,
    actor: str,
    at: datetime,
    detail: dict[str, Any] | None = None,
) -> None:
    audit.record(
        session,
        at=at,
        actor=actor,
        action=action,
        tenant_id=ticket.tenant_id,
        target=f"ticket:{ticket.id}",
        detail=detail or {},
    )


def _nothing_under_way(session: Session, ticket: Ticket, step: str) -> None:
    """Refuse `step` while one of the ticket's isolate/release actions is under way."""
    for action, device in actions_of(session, ticket):
        if action.status in UNDER_WAY:
            raise TicketError(
                Words(
                    "ticket #%(id)s cannot be %(step)s: the %(kind)s of %(device)s is "
                    "%(status)s (action #%(action)s); wait for its result",
                    id=ticket.id,
                    step=step,
                    kind=action.kind,
                    device=device.name or device.source_id,
                    status=action.status,
                    action=action.id,
                )
            )


def acknowledge(session: Session, ticket_id: int, actor: str, at: datetime) -> Ticket:
    """Someone has the ticket: the acknowledgement clock stops and escalation ends."""
    ticket = get(session, ticket_id)
    move(session, ticket, "acknowledge", at, acknowledged_at=at, ack_due_at=None)
    if not ticket.assignee:
        ticket.assignee = audit.person_of(actor)
    _audit(session, ticket, "ticket.acknowledged", actor, at, {"assignee": ticket.assignee})
    return ticket


def start(session: Session, ticket_id: int, actor: str, at: datetime) -> Ticket:
    """Work has begun (acknowledging on the way if nobody had)."""
    ticket = get(session, ticket_id)
    values: dict[str, Any] = {}
    if ticket.acknowledged_at is None:
        values = {"acknowledged_at": at, "ack_due_at": None}
    before = move(session, ticket, "start", at, **values)
    _audit(session, ticket, "ticket.in_progress", actor, at, {"from": before})
    return ticket


def assign(session: Session, ticket_id: int, assignee: str, actor: str, at: datetime) -> Ticket:
    """Give the ticket to someone (an open ticket only)."""
    ticket = get(session, ticket_id)
    if ticket.state not in OPEN_TICKET_STATES:
        raise TicketError(
            Words(
                "ticket #%(id)s is %(state)s; reopen it to assign it",
                id=ticket.id,
                state=ticket.state,
            )
        )
    if not assignee.strip():
        raise TicketError(Words("say who the ticket goes to"))
    if len(assignee.strip()) > ASSIGNEE_WIDTH:
        raise TicketError(
            Words(
                "assignee of ticket #%(id)s: a name of %(length)s characters; at most %(most)s fit",
                id=ticket.id,
                length=len(assignee.strip()),
                most=ASSIGNEE_WIDTH,
            )
        )
    before, ticket.assignee, ticket.updated_at = ticket.assignee, assignee.strip(), at
    _audit(session, ticket, "ticket.assigned", actor, at, {"from": before, "to": ticket.assignee})
    return ticket


def note(session: Session, ticket_id: int, text: str, actor: str, at: datetime) -> TicketNote:
    """Add a note (notes are never edited; a correction is a new note)."""
    ticket = get(session, ticket_id)
    if not text.strip():
        raise TicketError(Words("an empty note says nothing; write the note's text"))
    added = TicketNote(ticket_id=ticket.id, at=at, author=actor, text=text.strip())
    session.add(added)
    ticket.updated_at = at
    session.flush()
    _audit(session, ticket, "ticket.note", actor, at, {"note": added.id})
    return added


def check_summary(summary: Mapping[str, str]) -> dict[str, str]:
    """The five parts of the programme's incident record, all present, or a TicketError."""
    unknown = sorted(set(summary) - set(SUMMARY_FIELDS))
    if unknown:
        raise TicketError(f"unknown incident summary part(s): {', '.join(unknown)}")
    missing = [SUMMARY_LABELS[k] for k in SUMMARY_FIELDS if not str(summary.get(k, "")).strip()]
    if missing:
        raise TicketError(
            Words(
                "resolving needs the incident summary; missing: %(missing)s",
                missing="; ".join(missing),
            )
        )
    return {k: str(summary[k]).strip() for k in SUMMARY_FIELDS}


def resolve(
    session: Session,
    ticket_id: int,
    summary: Mapping[str, str],
    actor: str,
    at: datetime,
    policy: DeskPolicy,
    *,
    classification: str = "",
    determination: str = "",
    write_back: bool = False,
    report: bool = True,
) -> Ticket:
    """Resolve with the incident summary; the company gets its incident report.

    With `write_back` (the tenant's switch), each alert is queued to be resolved in the EDR
    with the desk's classification; the write-back job sends it.
    """
    ticket = get(session, ticket_id)
    record = check_summary(summary)
    classification, determination = check_verdict(classification, determination)
    _nothing_under_way(session, ticket, "resolved")
    move(
        session,
        ticket,
        "resolve",
        at,
        resolved_at=at,
        ack_due_at=None,
        summary=record,
        classification=classification,
        determination=determination,
    )
    alerts = ticket_alerts(session, ticket)
    for alert in alerts:
        if classification:
            alert.classification = classification
            alert.determination = ticket.determination
        if write_back:
            alert.write_back = WriteBackState.PENDING
    _audit(
        session,
        ticket,
        "ticket.resolved",
        actor,
        at,
        {"summary": record, "classification": classification, "write_back": write_back},
    )
    if report:
        _queue_incident_report(session, ticket, alerts, policy, actor=actor, at=at)
    return ticket


def check_verdict(classification: str, determination: str) -> tuple[str, str]:
    """The desk's verdict as the EDR spells it, or a TicketError saying what is wrong."""
    classification = classification.strip().casefold()
    if classification and classification not in CLASSIFICATIONS:
        raise TicketError(
            f"classification {classification!r} is not one of {', '.join(CLASSIFICATIONS)}"
        )
    if determination and not classification:
        raise TicketError(Words("a determination needs a classification too"))
    return classification, determination.strip().casefold()


def _queue_incident_report(
    session: Session,
    ticket: Ticket,
    alerts: list[Alert],
    policy: DeskPolicy,
    *,
    actor: str,
    at: datetime,
) -> None:
    """The company's incident report, once per resolution (a reopened ticket reports again),
    with its PDF archived and attached when the policy has an archive."""
    tenant, company = company_of(session, ticket)
    coverage = coverage_of_tenant(session, ticket.tenant_id, at)
    actions = actions_of(session, ticket)
    mail = incident_report_mail(company, ticket, alerts, actions, policy.desk, coverage)
    dedupe_key = f"incident-report:ticket:{ticket.id}:{ticket.reopened}"
    if already_queued(session, dedupe_key):
        return
    extra: dict[str, object] = {"ticket": ticket.id}
    record = None
    if policy.archive_dir is not None:
        report = assemble_incident_report(company, ticket, alerts, actions, policy.desk, coverage)
        period = (jst_date(ticket.created_at), jst_date(at))
        record, _ = archive_report(
            session,
            policy.archive_dir,
            key=report_key("incident", company.key, *period, ticket_id=ticket.id),
            kind="incident",
            owner=company.key,
            file=ReportFile(
                incident_report_filename(report, company.key),
                PDF,
                incident_report_pdf(report, policy.programme, generated_at=at),
            ),
            period=period,
            recipients=[company.contact_email],
            subject=mail.subject,
            actor=actor,
            now=at,
            language=report.language,
            company_id=company.id,
            tenant_id=tenant.id,
            ticket_id=ticket.id,
            resend=True,  # each resolution is its own send: 0 the first, 1 after a reopening
        )
        extra |= {"report": record.id, "file": record.filename}
    message = mail_company(
        session,
        company,
        tenant.id,
        mail,
        dedupe_key=dedupe_key,
        kind="incident-report",
        report_id=record.id if record is not None else None,
    )
    audit_report_mail(
        session,
        message,
        company_key=company.key,
        period=(ticket.created_at, at),
        actor=actor,
        at=at,
        extra=extra,
    )


def reopen(session: Session, ticket_id: int, reason: str, actor: str, at: datetime) -> Ticket:
    """Take a resolved or closed ticket back into work (the reason is required)."""
    if not reason.strip():
        raise TicketError(Words("say why the ticket is reopened"))
    ticket = get(session, ticket_id)
    before = move(
        session,
        ticket,
        "reopen",
        at,
        resolved_at=None,
        closed_at=None,
        reopened=ticket.reopened + 1,
    )
    _audit(session, ticket, "ticket.reopened", actor, at, {"from": before, "reason": reason})
    return ticket


def close(session: Session, ticket_id: int, actor: str, at: datetime) -> Ticket:
    """Close a resolved ticket (the desk closes them by itself after a quiet period)."""
    ticket = get(session, ticket_id)
    _nothing_under_way(session, ticket, "closed")
    move(session, ticket, "close", at, closed_at=at)
    _audit(session, ticket, "ticket.closed", actor, at)
    return ticket


def message_company(
    session: Session, ticket_id: int, text: str, actor: str, at: datetime, policy: DeskPolicy
) -> None:
    """Mail the company contact about the ticket, in the company's language."""
    ticket = get(session, ticket_id)
    if not text.strip():
        raise TicketError(Words("write the message for the company"))
    tenant, company = company_of(session, ticket)
    coverage = coverage_of_tenant(session, ticket.tenant_id, at)
    mail = company_message(company, ticket, text.strip(), policy.desk, coverage)
    event = audit.record(
        session,
        at=at,
        actor=actor,
        action="ticket.company_notified",
        tenant_id=ticket.tenant_id,
        target=f"ticket:{ticket.id}",
        detail={"to": company.contact_email, "text": text.strip()},
    )
    session.flush()  # the event's id names the message
    mail_company(
        session,
        company,
        tenant.id,
        mail,
        dedupe_key=f"message:ticket:{ticket.id}:{event.id}",
        kind="company-message",
    )


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One line of a ticket's history."""

    at: datetime
    actor: str
    what: str
    detail: str
    on_behalf_of: str = ""
    text: str = ""
    """Free text written for the entry (a note, a message to the company), as written: its
    lines are the writer's, so it is shown as a body, never inside the one-line detail."""

    @property
    def who(self) -> str:
        """The actor, and whom they acted for: "cli:sato for tanaka"."""
        return f"{self.actor} for {self.on_behalf_of}" if self.on_behalf_of else self.actor


def history(session: Session, ticket: Ticket) -> list[HistoryEntry]:
    """Everything that happened to the ticket, oldest first: audit events and notes."""
    events = session.scalars(
        select(AuditEvent)
        .where(
            AuditEvent.tenant_id == ticket.tenant_id,
            AuditEvent.target == f"ticket:{ticket.id}",
        )
        .order_by(AuditEvent.at, AuditEvent.id)
    ).all()
    entries = [
        HistoryEntry(e.at, e.actor, e.action, _detail(e.detail), e.on_behalf_of, _text(e.detail))
        for e in events
        if e.action != "ticket.note"
    ]
    # A note's own row has its author; its audit event also has whom the author acted for.
    behalf = {e.detail.get("note"): e.on_behalf_of for e in events if e.action == "ticket.note"}
    entries += [
        HistoryEntry(n.at, n.author, "note", "", behalf.get(n.id, ""), n.text)
        for n in session.scalars(
            select(TicketNote).where(TicketNote.ticket_id == ticket.id).order_by(TicketNote.id)
        )
    ]
    return sorted(entries, key=lambda e: e.at)


def _detail(detail: Mapping[str, Any]) -> str:
    return ", ".join(
        f"{k}={v}"
        for k, v in detail.items()
        if v not in ("", None, {}, []) and k not in ("summary", "text")
    )


def _text(detail: Mapping[str, Any]) -> str:
    text = detail.get("text")
    return text if isinstance(text, str) else ""
