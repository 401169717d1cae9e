"""Deadlines the desk must not miss: unacknowledged tickets climb the channel list.

A ticket that is still `new` at its acknowledgement deadline is sent to the next channel
in the desk's escalation order, with a fresh deadline on the same clock. At the end of the
list the last channel is reminded, up to `MAX_LEVEL` times, then the ticket waits in the
queue marked overdue rather than paging forever.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from edrtrial import audit
from edrtrial.desk import sla
from edrtrial.desk.intake import DeskPolicy, company_of, in_trial, send_to_channel, ticket_alerts
from edrtrial.models import Ticket
from edrtrial.notify.notices import desk_escalation_notice

MAX_LEVEL = 5


def escalate_overdue(session: Session, policy: DeskPolicy, now: datetime) -> list[int]:
    """Escalate every `new` ticket past its deadline; returns their ids. Does not commit."""
    overdue = list(
        session.scalars(
            select(Ticket)
            .where(Ticket.state == "new", Ticket.ack_due_at.is_not(None), Ticket.ack_due_at <= now)
            .order_by(Ticket.ack_due_at, Ticket.id)
        )
    )
    escalated = []
    for ticket in overdue:
        assert ticket.ack_due_at is not None
        missed = ticket.ack_due_at
        following = policy.next_channel(ticket.channel)
        channel = following or policy.channel(ticket.channel)
        ticket.escalation_level += 1
        ticket.channel = channel.name
        ticket.updated_at = now
        trial = in_trial(session, ticket.tenant_id, now)
        ticket.ack_due_at = (
            None
            if ticket.escalation_level >= MAX_LEVEL
            else max(
                sla.next_deadline(
                    missed,
                    ticket.priority,
                    in_trial=trial,
                    sla=policy.sla,
                    calendar=policy.calendar,
                ),
                now + timedelta(minutes=1),
            )
        )
        _, company = company_of(session, ticket)
        mail = desk_escalation_notice(
            company,
            ticket,
            ticket_alerts(session, ticket),
            ticket.escalation_level,
            missed,
            channel.name,
        )
        send_to_channel(
            session,
            channel,
            dedupe_key=f"escalation:ticket:{ticket.id}:{ticket.reopened}:{ticket.escalation_level}",
            kind="desk-escalation",
            subject=mail.subject,
            text=mail.text,
            html=mail.html,
            tenant_id=ticket.tenant_id,
        )
        audit.record(
            session,
            at=now,
            actor="desk",
            action="ticket.escalated",
            tenant_id=ticket.tenant_id,
            target=f"ticket:{ticket.id}",
            detail={
                "level": ticket.escalation_level,
                "channel": channel.name,
                "missed": missed.isoformat(),
            },
        )
        escalated.append(ticket.id)
    session.flush()
    return escalated


def close_quiet(session: Session, policy: DeskPolicy, now: datetime) -> list[int]:
    """Close tickets resolved longer ago than the desk's `close_after_days`."""
    cutoff = now - timedelta(days=policy.desk.close_after_days)
    closed = []
    for ticket in session.scalars(
        select(Ticket).where(
            Ticket.state == "resolved",
            Ticket.resolved_at.is_not(None),
            Ticket.resolved_at <= cutoff,
        )
    ):
        ticket.state, ticket.closed_at, ticket.updated_at = "closed", now, now
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
