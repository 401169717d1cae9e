"""Transition table of an outbox message (states: `edrtrial.states.OutboxState`).

A message is queued `pending` and stays so while it is retried; it ends `sent` or, given
up, `failed`. A deliverer first *takes* the message (a conditional write that keeps its
state but holds the row until the delivery's commit), so a second deliverer (the CLI beside
`serve`) waits, then finds it no longer pending and skips it.
"""

from __future__ import annotations

from edrtrial.machine import Machine, Step
from edrtrial.models import OutboxMessage
from edrtrial.states import OutboxState

OUTBOX = Machine(
    "outbox message",
    OutboxMessage,
    "status",
    {
        "take": Step((OutboxState.PENDING,), OutboxState.PENDING),
        "retry": Step((OutboxState.PENDING,), OutboxState.PENDING),
        "sent": Step((OutboxState.PENDING,), OutboxState.SENT),
        "give_up": Step((OutboxState.PENDING,), OutboxState.FAILED),
    },
)
