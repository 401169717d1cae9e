"""The states each entity can be in, as enums.

They live with the platform because the store's columns hold them and every layer reads
them (a report says "対応中" only for a ticket someone is working on). Which state may follow
which is each domain's own business: the transition tables are `desk/states.py` (tickets),
`devices/states.py` (device actions, offboarding tasks), `ingest/states.py` (tenant
polling) and `notify/states.py` (outbox messages), built with `edrtrial.machine`.
"""

from __future__ import annotations

from enum import StrEnum


class TicketState(StrEnum):
    """Where a desk ticket stands."""

    NEW = "new"
    ACKNOWLEDGED = "acknowledged"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    CLOSED = "closed"

    @property
    def open(self) -> bool:
        """Still the desk's work (not resolved or closed)."""
        return self in OPEN_TICKET_STATES


OPEN_TICKET_STATES = (TicketState.NEW, TicketState.ACKNOWLEDGED, TicketState.IN_PROGRESS)


class Priority(StrEnum):
    """A ticket's priority; P1 is the most urgent."""

    P1 = "P1"
    P2 = "P2"
    P3 = "P3"
    P4 = "P4"

    @property
    def rank(self) -> int:
        """1 for P1 … 4 for P4: lower is more urgent."""
        return int(self.value[1:])
