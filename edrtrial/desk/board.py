"""What the console's desk pages read: the queue of one person's scope and each ticket.

Every query here takes the reader's `Scope`, so a person limited to some cohorts sees no
other cohort's ticket in the queue, its count, the company filter or a ticket page. The
queue is sorted by what needs a person first (a missed acknowledgement, then priority,
then the nearest deadline) and cut at `limit` rows: a desk that has thousands of open
tickets needs its first screen in a moment, and reads the rest by narrowing the filters.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, case, func, select
from sqlalchemy.orm import Session

from edrtrial.access.scope import Scope
from edrtrial.connectors.base import ActionKind
from edrtrial.desk import operator
from edrtrial.desk.evidence import AlertEvidence, evidence_of
from edrtrial.devices import actions as responses
from edrtrial.models import Alert, Company, Device, ResponseAction, Tenant, Ticket
from edrtrial.states import OPEN_TICKET_STATES, ActionState, TicketState

OPEN = "open"
STATE_CHOICES = (OPEN, *(s.value for s in TicketState))
"""The queue's state filter: `open` (new, acknowledged, in progress) or one state."""

QUEUE_LIMIT = 200
TICKET_ALERTS_SHOWN = 50
"""A ticket page shows its newest alerts up to this many (a noisy ticket can gather
thousands; the count says how many there are)."""


@dataclass(frozen=True, slots=True)
class QueueFilter:
    """What the queue is narrowed to (the defaults: every open ticket in scope)."""

    state: str = OPEN
    priority: str = ""
    assignee: str | None = None
    company_key: str = ""
    overdue: bool = False

    def states(self) -> tuple[str, ...]:
        if self.state == OPEN or self.state not in STATE_CHOICES:
            return tuple(s.value for s in OPEN_TICKET_STATES)
        return (self.state,)


@dataclass(frozen=True, slots=True)
class TicketLine:
    """The columns of a ticket the queue shows (read as columns: 200 whole rows with their
    summaries cost more to load than the page takes to render)."""

    id: int
    title: str
    priority: str
    state: str
    assignee: str
    created_at: datetime
    ack_due_at: datetime | None


LINE_COLUMNS = (
    Ticket.id,
    Ticket.title,
    Ticket.priority,
    Ticket.state,
    Ticket.assignee,
    Ticket.created_at,
    Ticket.ack_due_at,
)


@dataclass(frozen=True, slots=True)
class BoardRow:
    """A ticket as the queue shows it."""

    ticket: TicketLine
    company_key: str
    company_name: str
    alert_count: int
    devices: tuple[str, ...]
    deadline: datetime | None
    overdue: bool


@dataclass(frozen=True, slots=True)
class Board:
    """The queue's first rows, how many match in all, and the version they are of."""

    rows: list[BoardRow]
    total: int
    version: str


def _deadline(now: datetime) -> Any:
    """The deadline the desk is held to: the acknowledgement's, while a ticket is new."""
    return case((Ticket.state == TicketState.NEW.value, Ticket.ack_due_at), else_=None)


def _overdue(now: datetime) -> Any:
    return and_(
        Ticket.state == TicketState.NEW.value,
        Ticket.ack_due_at.is_not(None),
        Ticket.ack_due_at <= now,
    )


def _matching(scope: Scope, given: QueueFilter, now: datetime, *columns: Any) -> Select[Any]:
    # Knowing only that `state` has five values, SQLite's planner would read every ticket of
    # every company through the tenant index (100,000 rows, most closed) rather than the few
    # thousand open ones through the state index: `+ 0` keeps it off the tenant index, unless
    # one company is asked for (then that company's tickets are the fewer).
    tenant_id = Ticket.tenant_id if given.company_key else Ticket.tenant_id + 0
    query = (
        select(*columns)
        .select_from(Ticket)
        .join(Tenant, tenant_id == Tenant.id)
        .join(Company, Tenant.company_id == Company.id)
        .where(scope.companies(), Ticket.state.in_(given.states()))
    )
    if given.priority:
        query = query.where(Ticket.priority == given.priority.upper())
    if given.assignee is not None:
        query = query.where(
            func.lower(func.trim(Ticket.assignee)) == given.assignee.strip().lower()
        )
    if given.company_key:
        query = query.where(Company.key == given.company_key)
    if given.overdue:
        query = query.where(_overdue(now))
    return query


def queue_version(session: Session, scope: Scope, given: QueueFilter, now: datetime) -> str:
    """A short token that changes whenever the queue's rows would: a ticket arrives, leaves
    the filter or changes (its `updated_at`), or a minute passes (the time left is shown
    to the minute). Cheap: one aggregate over the matching tickets."""
    return _version(session, scope, given, now)[0]


def _version(session: Session, scope: Scope, given: QueueFilter, now: datetime) -> tuple[str, int]:
    """The queue's version, and how many tickets match."""
    count, top, changed = session.execute(
        _matching(
            scope,
            given,
            now,
            func.count(Ticket.id),
            func.max(Ticket.id),
            func.max(Ticket.updated_at),
        )
    ).one()
    minute = now.replace(second=0, microsecond=0).isoformat()
    text = f"{count}|{top}|{changed}|{minute}"
    return hashlib.sha256(text.encode()).hexdigest()[:16], int(count or 0)


def queue(
    session: Session, scope: Scope, given: QueueFilter, now: datetime, *, limit: int = QUEUE_LIMIT
) -> Board:
    """The first `limit` tickets of the queue, what needs a person first: overdue ones, then
    by priority, then by the nearest deadline, then the oldest."""
    deadline = _deadline(now)
    late = case((_overdue(now), 0), else_=1)
    found = session.execute(
        _matching(scope, given, now, *LINE_COLUMNS, Company.key, Company.name)
        .order_by(
            late,
            Ticket.priority,
            case((deadline.is_(None), 1), else_=0),
            deadline,
            Ticket.created_at,
            Ticket.id,
        )
        .limit(limit)
    ).all()
    lines = [(TicketLine(*row[:7]), row[7], row[8]) for row in found]
    ids = [t.id for t, _, _ in lines]
    counts: dict[int, int] = {}
    devices: dict[int, set[str]] = {}
    if ids:
        for ticket_id, n in session.execute(
            select(Alert.ticket_id, func.count())
            .where(Alert.ticket_id.in_(ids))
            .group_by(Alert.ticket_id)
        ):
            if ticket_id is not None:
                counts[ticket_id] = int(n)
        for ticket_id, names in session.execute(
            select(Alert.ticket_id, Alert.device_names).where(Alert.ticket_id.in_(ids)).distinct()
        ):
            if ticket_id is not None:
                devices.setdefault(ticket_id, set()).update(n for n in names or [] if n)
    rows = []
    for t, key, name in lines:
        due = t.ack_due_at if t.state == TicketState.NEW.value else None
        rows.append(
            BoardRow(
                t,
                key,
                name,
                counts.get(t.id, 0),
                tuple(sorted(devices.get(t.id, ()))),
                due,
                due is not None and due <= now,
            )
        )
    version, total = _version(session, scope, given, now)
    return Board(rows, max(total, len(rows)), version)


def companies(session: Session, scope: Scope) -> list[tuple[str, str]]:
    """The companies the queue may be narrowed to: those in scope with a tenant (key, name)."""
    return [
        (key, name)
        for key, name in session.execute(
            select(Company.key, Company.name)
            .join(Tenant, Tenant.company_id == Company.id)
            .where(scope.companies())
            .order_by(Company.key)
        )
    ]


@dataclass(frozen=True, slots=True)
class DeviceView:
    """A device a ticket's alerts name, with what the store knows of it."""

    device: Device
    state: responses.DeviceState
    offboarded: str | None
    warning: str | None
    # A playbook's isolation proposed for this ticket and waiting for a person's yes.
    proposal: ResponseAction | None = None


@dataclass(frozen=True, slots=True)
class AlertView:
    """An alert of a ticket and its evidence, read for a person."""

    alert: Alert
    evidence: AlertEvidence


@dataclass(frozen=True, slots=True)
class TicketPage:
    """Everything the ticket page shows."""

    ticket: Ticket
    tenant: Tenant
    company: Company
    deadline: datetime | None
    overdue: bool
    summary: list[tuple[str, str]]
    alerts: list[AlertView]
    alert_total: int
    devices: list[DeviceView]
    actions: list[tuple[ResponseAction, Device]]
    history: list[operator.HistoryEntry] = field(default_factory=list)


def _offboarded(session: Session, device: Device) -> str | None:
    """The status of the device's offboarding once the EDR is leaving it; None: it is not."""
    return session.scalar(
        select(ResponseAction.status)
        .where(
            ResponseAction.device_id == device.id,
            ResponseAction.kind == ActionKind.OFFBOARD.value,
            ResponseAction.status.in_(list(responses.OFFBOARDED)),
        )
        .order_by(ResponseAction.id.desc())
        .limit(1)
    )


def ticket_page(
    session: Session, scope: Scope, ticket_id: int, now: datetime, *, silent_days: int
) -> TicketPage | None:
    """The ticket as its page shows it; None when there is none this person may see."""
    found = session.execute(
        select(Ticket, Tenant, Company)
        .join(Tenant, Ticket.tenant_id == Tenant.id)
        .join(Company, Tenant.company_id == Company.id)
        .where(Ticket.id == ticket_id, scope.companies())
    ).one_or_none()
    if found is None:
        return None
    ticket, tenant, company = found
    total = int(
        session.scalar(select(func.count(Alert.id)).where(Alert.ticket_id == ticket.id)) or 0
    )
    newest = list(
        session.scalars(
            select(Alert)
            .where(Alert.ticket_id == ticket.id)
            .order_by(Alert.created_at.desc(), Alert.id.desc())
            .limit(TICKET_ALERTS_SHOWN)
        )
    )
    alerts = [AlertView(a, evidence_of(a)) for a in reversed(newest)]
    actions = responses.actions_of(session, ticket)
    proposals = {
        action.device_id: action for action, _ in actions if action.status == ActionState.PROPOSED
    }
    devices = [
        DeviceView(
            d,
            responses.device_state(session, d),
            _offboarded(session, d),
            responses.silence_warning(d, now, silent_days),
            proposals.get(d.id),
        )
        for d in _devices(session, ticket)
    ]
    due = ticket.ack_due_at if ticket.state == TicketState.NEW.value else None
    summary = [
        (key, str(ticket.summary.get(key, "")))
        for key in operator.SUMMARY_FIELDS
        if ticket.summary and ticket.summary.get(key)
    ]
    return TicketPage(
        ticket=ticket,
        tenant=tenant,
        company=company,
        deadline=due,
        overdue=due is not None and due <= now,
        summary=summary,
        alerts=alerts,
        alert_total=total,
        devices=devices,
        actions=actions,
        history=operator.history(session, ticket),
    )


def _devices(session: Session, ticket: Ticket) -> Sequence[Device]:
    """The stored devices the ticket's alerts name (read without loading the alerts)."""
    named: dict[str, None] = {}
    for ids in session.scalars(select(Alert.device_source_ids).where(Alert.ticket_id == ticket.id)):
        named.update(dict.fromkeys(ids or []))
    if not named:
        return []
    return list(
        session.scalars(
            select(Device)
            .where(Device.tenant_id == ticket.tenant_id, Device.source_id.in_(list(named)))
            .order_by(Device.id)
        )
    )
