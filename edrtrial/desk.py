"""The support desk: one ticket per incident, the notices it sends, the queue operators read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from edrtrial import audit, outbox
from edrtrial.config import DeskConfig
from edrtrial.models import Alert, Company, Incident, OutboxMessage, Tenant, Ticket
from edrtrial.reports.notices import company_alert_notice, desk_ticket_notice

PRIORITY_RANK = {"P1": 1, "P2": 2, "P3": 3, "P4": 4}
OPEN_STATES = ("new", "acknowledged", "in_progress")


def correlation_key(alert: Alert) -> str:
    """Alerts of one Defender incident share a ticket; an alert without one gets its own."""
    if alert.incident_source_id:
        return f"incident:{alert.incident_source_id}"
    return f"alert:{alert.source_id}"


class TicketBook:
    """One triage batch's view of the desk: its tickets and incident titles, loaded once.

    Triage asks for a ticket per alert; answering from two queries per batch (instead of
    several statements and flushes per alert) keeps a backlog's first poll fast.
    """

    def __init__(self, session: Session, tenant_id: int, alerts: Sequence[Alert]) -> None:
        self.session = session
        self.tenant_id = tenant_id
        keys = sorted({correlation_key(a) for a in alerts})
        self.tickets: dict[str, Ticket] = (
            {
                t.correlation_key: t
                for t in session.scalars(
                    select(Ticket).where(
                        Ticket.tenant_id == tenant_id, Ticket.correlation_key.in_(keys)
                    )
                )
            }
            if keys
            else {}
        )
        incident_ids = sorted({a.incident_source_id for a in alerts if a.incident_source_id})
        self.titles: dict[tuple[str, str], str] = (
            {
                (source, source_id): title
                for source, source_id, title in session.execute(
                    select(Incident.source, Incident.source_id, Incident.title).where(
                        Incident.tenant_id == tenant_id, Incident.source_id.in_(incident_ids)
                    )
                )
                if title
            }
            if incident_ids
            else {}
        )
        self.opened: list[tuple[Ticket, str]] = []

    def open_or_attach(self, alert: Alert, priority: str, now: datetime) -> tuple[Ticket, bool]:
        """Attach the alert to its incident's ticket, opening the ticket if it is the first."""
        key = correlation_key(alert)
        ticket = self.tickets.get(key)
        created = ticket is None
        if ticket is None:
            title = self.titles.get((alert.source, alert.incident_source_id or ""), alert.title)
            ticket = Ticket(
                tenant_id=self.tenant_id,
                correlation_key=key,
                title=title,
                priority=priority,
                state="new",
                created_at=now,
                updated_at=now,
            )
            self.session.add(ticket)
            self.tickets[key] = ticket
            self.opened.append((ticket, priority))
        elif PRIORITY_RANK[priority] < PRIORITY_RANK[ticket.priority]:
            ticket.priority = priority
            ticket.updated_at = now
        alert.ticket = ticket
        return ticket, created

    def close(self, now: datetime) -> None:
        """Flush once for the batch, then audit the tickets it opened (they now have ids)."""
        self.session.flush()
        for ticket, priority in self.opened:
            audit.record(
                self.session,
                at=now,
                actor="playbook",
                action="ticket.opened",
                tenant_id=self.tenant_id,
                target=f"ticket:{ticket.id}",
                detail={"priority": priority, "correlation": ticket.correlation_key},
            )
        self.opened.clear()


def open_or_attach(
    session: Session, alert: Alert, priority: str, now: datetime
) -> tuple[Ticket, bool]:
    """Attach one alert to its incident's ticket (opening it if needed), outside a batch."""
    book = TicketBook(session, alert.tenant_id, [alert])
    ticket, created = book.open_or_attach(alert, priority, now)
    book.close(now)
    return ticket, created


def _queued(session: Session, key: str) -> bool:
    return (
        session.scalar(select(OutboxMessage.id).where(OutboxMessage.dedupe_key == key)) is not None
    )


def queue_notices(
    session: Session, ticket: Ticket, desk: DeskConfig, *, to_desk: bool, to_company: bool
) -> int:
    """Queue the desk's and the company's notices for a ticket, never twice; returns how many."""
    # The desk hears again when a ticket's priority rises; the company hears once per ticket.
    desk_key = f"notice:desk:ticket:{ticket.id}:{ticket.priority}"
    company_key = f"notice:company:ticket:{ticket.id}"
    to_desk = to_desk and not _queued(session, desk_key)
    to_company = to_company and not _queued(session, company_key)
    if not (to_desk or to_company):
        return 0
    tenant = session.get_one(Tenant, ticket.tenant_id)
    company = session.get_one(Company, tenant.company_id)
    alerts = list(
        session.scalars(
            select(Alert).where(Alert.ticket_id == ticket.id).order_by(Alert.created_at)
        )
    )
    if to_desk:
        mail = desk_ticket_notice(company, ticket, alerts)
        outbox.enqueue(
            session,
            dedupe_key=desk_key,
            kind="desk-notice",
            recipient=str(desk.email),
            subject=mail.subject,
            body_text=mail.text,
            body_html=mail.html,
            tenant_id=tenant.id,
        )
    if to_company:
        mail = company_alert_notice(company, ticket, alerts, desk)
        outbox.enqueue(
            session,
            dedupe_key=company_key,
            kind="company-notice",
            recipient=company.contact_email,
            subject=mail.subject,
            body_text=mail.text,
            body_html=mail.html,
            tenant_id=tenant.id,
        )
    return int(to_desk) + int(to_company)


@dataclass(frozen=True, slots=True)
class QueueRow:
    """A ticket as the operators' queue shows it."""

    ticket: Ticket
    company_key: str
    company_name: str
    alert_count: int
    devices: tuple[str, ...]


def ticket_queue(
    session: Session, *, company_key: str | None = None, states: Sequence[str] = OPEN_STATES
) -> list[QueueRow]:
    """One queue across all tenants: highest priority first, then oldest first."""
    query = (
        select(Ticket, Company.key, Company.name)
        .join(Tenant, Ticket.tenant_id == Tenant.id)
        .join(Company, Tenant.company_id == Company.id)
        .where(Ticket.state.in_(list(states)))
        .order_by(Ticket.priority, Ticket.created_at, Ticket.id)
    )
    if company_key:
        query = query.where(Company.key == company_key)
    rows = []
    for ticket, key, name in session.execute(query):
        alerts = list(session.scalars(select(Alert).where(Alert.ticket_id == ticket.id)))
        devices = sorted({n for a in alerts for n in a.device_names if n})
        rows.append(QueueRow(ticket, key, name, len(alerts), tuple(devices)))
    return rows
