"""Deadlines the desk must not miss: unacknowledged tickets climb the channel list.

A ticket that is still `new` at its acknowledgement deadline is sent to the next channel
in the desk's escalation order, with a fresh deadline on the same clock. At the end of the
list the last channel is reminded, up to `MAX_LEVEL` times, then the ticket waits in the
queue marked overdue rather than paging forever.

A company that joins mid-trial can bring dozens of P1 tickets that all miss their deadline
in the same desk pass. Each ticket still escalates on its own (level, channel, next
deadline, audit record), but when one pass escalates more than `GROUP_OVER` tickets of the
same tenant to the same channel at the same level, that channel reads one grouped notice
for them instead of one each, at every level. A ticket escalates to a level once (`move`
refuses a second desk job that read the same level), and its notice is queued in the same
transaction, so it is in exactly one notice per level: a single one or its pass's group.
The group's dedupe key names its tickets, so a re-run of that pass sends nothing again.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from edrtrial import audit
from edrtrial.config import ChannelConfig
from edrtrial.desk import sla
from edrtrial.desk.announce import desk_facts
from edrtrial.desk.policy import DeskPolicy
from edrtrial.desk.queries import company_of, ticket_alerts
from edrtrial.desk.states import TicketState, move
from edrtrial.errors import TicketError
from edrtrial.models import Ticket
from edrtrial.notify.escalation_group import EscalatedTicket, desk_escalation_group_notice
from edrtrial.notify.notices import desk_escalation_notice
from edrtrial.notify.recipients import send_to_channel
from edrtrial.programme.trials import in_trial

log = logging.getLogger(__name__)
MAX_LEVEL = 5
GROUP_OVER = 3  # more tickets than this, of one tenant, channel and level: one notice


@dataclass(frozen=True, slots=True)
class _Escalation:
    """A ticket this pass moved up a level, before the next channel is told."""

    ticket: Ticket
    level: int
    channel: ChannelConfig
    missed: datetime


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
    escalated = [e for e in (_escalate(session, t, policy, now) for t in overdue) if e]
    groups: dict[tuple[int, str, int], list[_Escalation]] = {}
    for done in escalated:
        groups.setdefault((done.ticket.tenant_id, done.channel.name, done.level), []).append(done)
    for group in groups.values():
        if len(group) > GROUP_OVER:
            _tell_group(session, group, policy, now)
        else:
            for done in group:
                _tell(session, done, policy, now)
    session.flush()
    return [e.ticket.id for e in escalated]


def _escalate(
    session: Session, ticket: Ticket, policy: DeskPolicy, now: datetime
) -> _Escalation | None:
    """Move one overdue ticket to the next channel and audit it; None if someone acknowledged
    it meanwhile. The next channel is told by the caller, once it knows the whole pass."""
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
        return None
    audit.record(
        session,
        at=now,
        actor="desk",
        action="ticket.escalated",
        tenant_id=ticket.tenant_id,
        target=f"ticket:{ticket.id}",
        detail={"level": level, "channel": channel.name, "missed": missed.isoformat()},
    )
    return _Escalation(ticket, level, channel, missed)


def _tell(session: Session, done: _Escalation, policy: DeskPolicy, now: datetime) -> None:
    """The next channel's notice for one escalated ticket."""
    ticket = done.ticket
    _, company = company_of(session, ticket)
    mail = desk_escalation_notice(
        company,
        ticket,
        ticket_alerts(session, ticket),
        done.level,
        done.missed,
        done.channel.name,
        desk_facts(session, ticket, policy, now),
    )
    send_to_channel(
        session,
        done.channel,
        ticket.tenant_id,
        mail,
        dedupe_key=f"escalation:ticket:{ticket.id}:{ticket.reopened}:{done.level}",
        kind="desk-escalation",
    )


def _tell_group(
    session: Session, group: Sequence[_Escalation], policy: DeskPolicy, now: datetime
) -> None:
    """The next channel's one notice for many tickets of one tenant escalated to one level."""
    first = group[0]
    _, company = company_of(session, first.ticket)
    entries = [
        EscalatedTicket(
            e.ticket,
            e.missed,
            tuple(ticket_alerts(session, e.ticket)),
            desk_facts(session, e.ticket, policy, now),
        )
        for e in group
    ]
    mail = desk_escalation_group_notice(company, entries, first.level, first.channel.name)
    send_to_channel(
        session,
        first.channel,
        first.ticket.tenant_id,
        mail,
        dedupe_key=group_key(
            first.ticket.tenant_id,
            first.channel.name,
            first.level,
            [(e.ticket.id, e.ticket.reopened) for e in group],
        ),
        kind="desk-escalation-group",
    )


def group_key(tenant_id: int, channel: str, level: int, tickets: Sequence[tuple[int, int]]) -> str:
    """A grouped escalation's dedupe key: its tenant, channel and level, and a digest of its
    tickets (id and times reopened, as a single notice's key has), in any order."""
    names = ",".join(f"{ticket_id}.{reopened}" for ticket_id, reopened in sorted(tickets))
    digest = hashlib.sha256(names.encode("ascii")).hexdigest()[:24]
    return f"escalation:group:tenant:{tenant_id}:{channel}:{level}:{digest}"


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
