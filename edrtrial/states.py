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


class ActionState(StrEnum):
    """Where a device action stands: isolate, release (device actions) or offboard (tasks).

    One column holds both entities' states. Ours come first; the EDR's own six follow
    (`connectors.base.ActionStatus`, the same values), so what the EDR answers is stored as is.
    """

    PROPOSED = "proposed"  # a playbook's suggestion; nothing happens until an operator acts
    PLANNED = "planned"  # to be sent
    SENDING = "sending"  # claimed and being sent; stays if the process dies mid-send
    UNCONFIRMED = "unconfirmed"  # sent, no answer: the EDR's action is looked for until found
    SUPERSEDED = "superseded"  # a proposal made moot by a planned isolation of its device
    MANUAL = "manual"  # offboarding the EDR cannot do remotely: handed over to a person
    PENDING = "pending"
    IN_PROGRESS = "inprogress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    # Offboarding after the EDR's success: the device went quiet, or still reports days later.
    VERIFIED = "verified"
    STILL_REPORTING = "still_reporting"


class TenantState(StrEnum):
    """Whether a tenant is polled: active, failing (backing off) or parked (operator's turn)."""

    ACTIVE = "active"
    FAILING = "failing"
    PARKED = "parked"


class OutboxState(StrEnum):
    """An outbox message: waiting (or being retried), delivered, or given up."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class WriteBackState(StrEnum):
    """Whether an alert's verdict still has to reach the EDR (the reason of a failure is apart)."""

    NONE = ""  # nothing to send
    PENDING = "pending"
    DONE = "done"
    OFF = "off"  # the tenant's write-back switch is off: not sent, and never will be
    FAILED = "failed"  # refused by the EDR; `Alert.write_back_error` says why
    # Accepted by the EDR after a re-triage had withdrawn the verdict (the alert is no longer
    # what it said): triage's next pass tells the desk to reopen it there, then it is "done".
    OVERTAKEN = "overtaken"
