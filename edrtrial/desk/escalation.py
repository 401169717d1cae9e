"""Deadlines the desk must not miss: unacknowledged tickets climb the channel list.

A ticket that is still `new` at its acknowledgement deadline is sent to the next channel
in the desk's escalation order, with a fresh deadline on the same clock. At the end of the
list the last channel is reminded, up to `MAX_LEVEL` times, then the ticket waits in the
queue marked overdue rather than paging forever.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from edrtrial import audit
from edrtrial.desk import sla
from edrtrial.desk.announce import desk_facts
from edrtrial.desk.policy import DeskPolicy
from edrtrial.desk.queries import company_of, ticket_alerts
from edrtrial.desk.states import TicketState, move
from edrtrial.errors import TicketError
from edrtrial.models import Ticket
from edrtrial.notify.notices import desk_escalation_notice
from edrtrial.notify.recipients import send_to_channel
from edrtrial.programme.trials import in_trial

log = logging.getLogger(__name__)
MAX_LEVEL = 5


def escalate_overdue(session: Session, policy: DeskPolicy, now: datetime) -> list[int]:
    """Escalate every `new` ticket past its deadline; returns their ids. Does not commit."""
    overdue = list(
        session.scalars(
            select(Ticket)
            .where(
                Ticket.state == TicketState.NEW,
                Ticket.ack_due_at.is_not(None),
                Ticket.ack_due_at <= now,
            )
            .order_by(Ticket.ack_due_at, Ticket.id)
        )
    )
    escalated = []
    for ticket in overdue:
        if _escalate(session, ticket, policy, now):
            escalated.append(ticket.id)
    session.flush()
    return escalated


def _escalate(session: Session, ticket: Ticket, policy: DeskPolicy, now: datetime) -> bool:
    """Move one overdue ticket to the next channel; False if someone acknowledged it meanwhile."""
    assert ticket.ack_due_at is not None
    missed = ticket.ack_due_at
    channel = policy.next_channel(ticket.channel) or policy.channel(ticket.channel)
    level = ticket.escalation_level + 1
    due = (
        None
        if level >= MAX_LEVEL
        else max(
            sla.next_deadline(
                missed,
                ticket.priority,
                in_trial=in_trial(session, ticket.tenant_id, now),
                sla=policy.sla,
                calendar=policy.calendar,
            ),
            now + timedelta(minutes=1),
        )
    )
    try:
        move(
            session,
            ticket,
            "escalate",
            now,
            unchanged=("escalation_level",),  # a second desk job escalated it meanwhile
            escalation_level=level,
            channel=channel.name,
            ack_due_at=due,
        )
    except TicketError as err:  # acknowledged (or otherwise taken) since the deadline query
        log.info("ticket #%s not escalated: %s", ticket.id, err)
        return False
    _, company = company_of(session, ticket)
    mail = desk_escalation_notice(
        company,
        ticket,
        ticket_alerts(session, ticket),
        level,
        missed,
        channel.name,
        desk_facts(session, ticket, policy, now),
    )
    send_to_channel(
        session,
        channel,
        ticket.tenant_id,
        mail,
        dedupe_key=f"escalation:ticket:{ticket.id}:{ticket.reopened}:{level}",
        kind="desk-escalation",
    )
    audit.record(
        session,
        at=now,
        actor="desk",
        action="ticket.escalated",
        tenant_id=ticket.tenant_id,
        target=f"ticket:{ticket.id}",
        detail={"level": level, "channel": channel.name, "missed": missed.isoformat()},
    )
    return True


def close_quiet(session: Session, policy: DeskPolicy, now: datetime) -> list[int]:
    """Close tickets resolved longer ago than the desk's `close_after_days`."""
    cutoff = now - timedelta(days=policy.desk.close_after_days)
    closed = []
    for ticket in list(
        session.scalars(
            select(Ticket).where(
                Ticket.state == TicketState.RESOLVED,
                Ticket.resolved_at.is_not(None),
                Ticket.resolved_at <= cutoff,
            )
        )
    ):
        try:
            move(session, ticket, "auto-close", now, closed_at=now)
        except TicketError as err:  # reopened or closed by someone meanwhile: theirs stands
            log.info("ticket #%s not closed: %s", ticket.id, err)
            continue
        audit.record(
            session,
            at=now,
            actor="desk",
            action="ticket.closed",
            tenant_id=ticket.tenant_id,
            target=f"ticket:{ticket.id}",
            detail={"after_days": policy.desk.close_after_days},
        )
        closed.append(ticket.id)
    session.flush()
    return closed
