"""What the desk reads: a ticket's alerts, company and devices, and the queue across tenants."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from edrtrial.models import Alert, Company, Device, Tenant, Ticket
from edrtrial.states import OPEN_TICKET_STATES


def ticket_alerts(session: Session, ticket: Ticket) -> list[Alert]:
    """The ticket's alerts, oldest first."""
    return list(
        session.scalars(
            select(Alert).where(Alert.ticket_id == ticket.id).order_by(Alert.created_at, Alert.id)
        )
    )


def company_of(session: Session, ticket: Ticket) -> tuple[Tenant, Company]:
    """The ticket's tenant and company."""
    tenant = session.get_one(Tenant, ticket.tenant_id)
    return tenant, session.get_one(Company, tenant.company_id)


@dataclass(frozen=True, slots=True)
class QueueRow:
    """A ticket as the operators' queue shows it."""

    ticket: Ticket
    company_key: str
    company_name: str
    alert_count: int
    devices: tuple[str, ...]


def ticket_queue(
    session: Session,
    *,
    company_key: str | None = None,
    states: Sequence[str] = OPEN_TICKET_STATES,
    priorities: Sequence[str] = (),
    assignee: str | None = None,
) -> list[QueueRow]:
    """One queue across all tenants: highest priority first, then oldest first.

    `priorities` (when given) and `assignee` narrow it; an assignee is matched as the desk
    types names, ignoring case and surrounding spaces.
    """
    query = (
        select(Ticket, Company.key, Company.name)
        .join(Tenant, Ticket.tenant_id == Tenant.id)
        .join(Company, Tenant.company_id == Company.id)
        .where(Ticket.state.in_(list(states)))
        .order_by(Ticket.priority, Ticket.created_at, Ticket.id)
    )
    if company_key:
        query = query.where(Company.key == company_key)
    if priorities:
        query = query.where(Ticket.priority.in_(list(priorities)))
    if assignee is not None:
        query = query.where(func.lower(func.trim(Ticket.assignee)) == assignee.strip().lower())
    found = session.execute(query).all()
    ids = [ticket.id for ticket, _, _ in found]
    counts: dict[int, int] = {}
    devices: dict[int, set[str]] = {}
    if ids:
        counted = session.execute(
            select(Alert.ticket_id, func.count())
            .where(Alert.ticket_id.in_(ids))
            .group_by(Alert.ticket_id)
        )
        counts = {ticket_id: int(n) for ticket_id, n in counted if ticket_id is not None}
        for ticket_id, names in session.execute(
            select(Alert.ticket_id, Alert.device_names).where(Alert.ticket_id.in_(ids))
        ):
            if ticket_id is not None:
                devices.setdefault(ticket_id, set()).update(n for n in names or [] if n)
    return [
        QueueRow(
            ticket, key, name, counts.get(ticket.id, 0), tuple(sorted(devices.get(ticket.id, ())))
        )
        for ticket, key, name in found
    ]


def ticket_devices(session: Session, ticket: Ticket) -> list[Device]:
    """The stored devices of the ticket's tenant that its alerts name, by id."""
    named = list(
        dict.fromkeys(s for a in ticket_alerts(session, ticket) for s in a.device_source_ids)
    )
    query = select(Device).where(Device.tenant_id == ticket.tenant_id, Device.source_id.in_(named))
    return list(session.scalars(query.order_by(Device.id)))
