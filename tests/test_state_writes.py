"""Each entity's state is written by its state machine alone: a second writer fails this test."""

from __future__ import annotations

from textwrap import dedent

import pytest
from state_writes import Rule, find_writes, writes_outside

TICKET_STATE = Rule(
    "Ticket",
    "state",
    frozenset({"edrtrial/desk/states.py", "edrtrial/machine.py"}),
)


def test_only_the_ticket_state_machine_writes_a_ticket_state():
    assert [str(w) for w in writes_outside(TICKET_STATE)] == []


PLANTED = {
    "attribute": "ticket.state = 'closed'",
    "attribute from a variable": "target = 'closed'\nt = ticket\nt.state = target",
    "augmented": "ticket.state += ''",
    "annotated": "ticket.state: str = 'closed'",
    "tuple target": "ticket.state, ticket.closed_at = 'closed', now",
    "loop target": "for ticket.state in ('new', 'closed'):\n    pass",
    "through a relationship": "alert.ticket.state = 'new'",
    "setattr constant": "setattr(ticket, 'state', 'closed')",
    "setattr variable": "field = 'state'\nsetattr(ticket, field, 'closed')",
    "update keyword": "session.execute(update(Ticket).where(Ticket.id == 1).values(state=s))",
    "update dict": "session.execute(update(Ticket).values({'state': 'closed'}))",
    "update splat": "values = {'state': s}\nsession.execute(update(Ticket).values(**values))",
    "update variable": "session.execute(sa.update(Ticket).values(values))",
    "constructor": "Ticket(state='closed', title='x')",
    "claim": "claim(session, Ticket, ticket.id, 'state', 'resolved', state='closed')",
}


@pytest.mark.parametrize("form", sorted(PLANTED))
def test_a_planted_ticket_state_write_is_caught(form):
    source = "from edrtrial.models import Ticket\n\n\ndef f(session, ticket, alert, now):\n"
    source += "\n".join("    " + line for line in dedent(PLANTED[form]).splitlines())
    writes = find_writes(source, "edrtrial/scratch.py", TICKET_STATE)
    assert writes, f"{form} was not caught"


def test_reading_a_state_or_writing_other_columns_is_not_a_write():
    source = dedent(
        """
        from edrtrial.models import Ticket, Tenant


        def f(session, ticket, tenant):
            if ticket.state == "new":
                ticket.assignee = "alice"
            session.execute(update(Ticket).values(assignee="bob"))
            Ticket(title="x", priority="P1")
            select(Ticket).where(Ticket.state == "new")
            return ticket.state
        """
    )
    assert find_writes(source, "edrtrial/scratch.py", TICKET_STATE) == []
