"""The ticket state machine: the one table of how a desk ticket moves, and the one writer.

Operators acknowledge, start, resolve, close and reopen; the service reopens a resolved
ticket when a new alert joins it, closes quiet resolved tickets, and escalates unacknowledged
ones. Each is a row below, and each is written as a conditional UPDATE from the state the
writer saw: of an operator's acknowledge and an automatic close racing for one ticket,
exactly one wins and the other is refused with the reason. No other module writes
`Ticket.state` (a test scans the source for it).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from edrtrial.errors import TicketError
from edrtrial.machine import Machine, Step
from edrtrial.models import Ticket
from edrtrial.states import OPEN_TICKET_STATES, Priority, TicketState
from edrtrial.words import Words

__all__ = [
    "OPEN_TICKET_STATES",
    "TICKETS",
    "Priority",
    "TicketState",
    "move",
    "new_ticket",
    "worse",
]

NEW, ACKNOWLEDGED, IN_PROGRESS = TicketState.NEW, TicketState.ACKNOWLEDGED, TicketState.IN_PROGRESS
RESOLVED, CLOSED = TicketState.RESOLVED, TicketState.CLOSED

TICKETS: Machine[TicketState] = Machine(
    "ticket",
    Ticket,
    "state",
    {
        # An operator's steps.
        "acknowledge": Step((NEW,), ACKNOWLEDGED),
        "start": Step((NEW, ACKNOWLEDGED), IN_PROGRESS),
        "resolve": Step(OPEN_TICKET_STATES, RESOLVED),
        "close": Step((RESOLVED,), CLOSED),
        "reopen": Step((RESOLVED, CLOSED), IN_PROGRESS),  # someone takes it back into work
        # The service's steps.
        "auto-reopen": Step((RESOLVED,), NEW),  # a new alert joined: the desk must look again
        "auto-close": Step((RESOLVED,), CLOSED),  # resolved and quiet for close_after_days
        "escalate": Step((NEW,), NEW),  # deadline missed: next channel, fresh deadline
    },
    error=TicketError,
)


def new_ticket(**fields: Any) -> Ticket:
    """A ticket in its first state (the only state a ticket is ever created in)."""
    return Ticket(state=TicketState.NEW, **fields)


def move(
    session: Session,
    ticket: Ticket,
    step: str,
    at: datetime,
    *,
    unchanged: tuple[str, ...] = (),
    **values: Any,
) -> TicketState:
    """Take `step` from the ticket's current state; returns the state it left.

    Raises TicketError when the step does not fit the state, or when someone else changed
    the ticket between reading and writing (the caller's view is stale: look again);
    `unchanged` columns must also still hold what the caller read.
    """
    before = TicketState(ticket.state)
    if not TICKETS.move(session, ticket, step, unchanged=unchanged, updated_at=at, **values):
        raise TicketError(
            Words(
                "ticket #%(id)s was changed meanwhile (it is %(state)s now, %(step)s expected "
                "it %(before)s); look again",
                id=ticket.id,
                state=ticket.state,
                step=step,
                before=before,
            )
        )
    return before


def worse(candidate: str, current: str) -> bool:
    """Whether `candidate` is a more urgent priority than `current`."""
    return Priority(candidate).rank < Priority(current).rank
