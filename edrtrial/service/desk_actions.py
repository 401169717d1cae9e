"""The desk's steps on a ticket, the same whichever front end takes them.

`edrtrial ticket …` and the web console both act through these functions, so one step
writes the same audit records (action, target, tenant, detail) whoever asked; only the
actor differs (`cli:sato`, `web:sato`). Each step runs in its own transaction; a step that
queues mail for the company sends the outbox at once, as an operator expects the company
to hear from the desk now, not at the next delivery run. What a front end shows (a line on
the terminal, a message on the page) stays with that front end.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from edrtrial.access.scope import Scope
from edrtrial.connectors.base import ActionKind, ActionStatus, Capability
from edrtrial.db import transaction
from edrtrial.desk import operator, queries
from edrtrial.devices import actions, writeback
from edrtrial.devices import queries as device_queries
from edrtrial.devices.states import FOLLOWED
from edrtrial.errors import TicketError
from edrtrial.models import Company, Device, ResponseAction, Tenant, Ticket
from edrtrial.notify.outbox import DeliveryStats
from edrtrial.service import jobs
from edrtrial.service.runtime import Runtime, TenantRef
from edrtrial.states import ActionState
from edrtrial.words import Words


def ticket_in_scope(session: Session, scope: Scope, ticket_id: int) -> Ticket | None:
    """The ticket when the person's cohorts include its company; None otherwise (or when
    there is no such ticket): a front end answers both alike."""
    return session.scalar(select(Ticket).where(Ticket.id == ticket_id, scope.tickets()))


def tenant_of_ticket(rt: Runtime, ticket_id: int) -> TenantRef:
    """The ticket's tenant, while the service works on it (a TicketError once its company's
    programme has ended or its credentials were dropped)."""
    with rt.sessions() as session:
        tenant_id = operator.get(session, ticket_id).tenant_id
    for tenant in rt.tenants():
        if tenant.id == tenant_id:
            return tenant
    raise TicketError(
        Words("ticket #%(id)s's company is no longer in the programme's polling", id=ticket_id)
    )


def deliver(rt: Runtime) -> DeliveryStats:
    """Send the outbox now (the company's mail of the step just taken among it)."""
    return jobs.deliver_outbox(rt)


# --- the ticket's workflow ------------------------------------------------------------------


def acknowledge(rt: Runtime, ticket_id: int, actor: str) -> str:
    """Acknowledge the ticket; its new state."""
    with transaction(rt.sessions) as session:
        return operator.acknowledge(session, ticket_id, actor, rt.clock()).state


def start(rt: Runtime, ticket_id: int, actor: str) -> str:
    """Mark the ticket in progress; its new state."""
    with transaction(rt.sessions) as session:
        return operator.start(session, ticket_id, actor, rt.clock()).state


def assign(rt: Runtime, ticket_id: int, assignee: str, actor: str) -> str:
    """Give the ticket to `assignee`; its state."""
    with transaction(rt.sessions) as session:
        return operator.assign(session, ticket_id, assignee, actor, rt.clock()).state


def note(rt: Runtime, ticket_id: int, text: str, actor: str) -> None:
    """Add a note to the ticket's history."""
    with transaction(rt.sessions) as session:
        operator.note(session, ticket_id, text, actor, rt.clock())


def close(rt: Runtime, ticket_id: int, actor: str) -> str:
    """Close a resolved ticket; its new state."""
    with transaction(rt.sessions) as session:
        return operator.close(session, ticket_id, actor, rt.clock()).state


def reopen(rt: Runtime, ticket_id: int, reason: str, actor: str) -> str:
    """Take the ticket back into work; its new state."""
    with transaction(rt.sessions) as session:
        return operator.reopen(session, ticket_id, reason, actor, rt.clock()).state


def notify_company(rt: Runtime, ticket_id: int, text: str, actor: str) -> DeliveryStats:
    """Mail the company contact about the ticket (in the company's language), sent now."""
    with transaction(rt.sessions) as session:
        operator.message_company(session, ticket_id, text, actor, rt.clock(), rt.policy)
    return deliver(rt)


@dataclass(frozen=True, slots=True)
class Resolved:
    """What resolving did beyond the ticket: the verdict written back to the EDR (None where
    the tenant's EDR takes none) and the mail sent."""

    written_back: writeback.WriteBackResult | None
    mail: DeliveryStats


def resolve(
    rt: Runtime,
    ticket_id: int,
    summary: Mapping[str, str],
    actor: str,
    *,
    classification: str = "",
    determination: str = "",
    report: bool = True,
) -> Resolved:
    """Resolve with the programme's incident summary, write the verdict back to the EDR where
    it takes one, and send the company its incident report (unless `report` is off)."""
    tenant = tenant_of_ticket(rt, ticket_id)
    connector = rt.connector(tenant)
    write_back = Capability.WRITE_BACK in connector.capabilities
    with transaction(rt.sessions) as session:
        operator.resolve(
            session,
            ticket_id,
            summary,
            actor,
            rt.clock(),
            rt.policy,
            classification=classification,
            determination=determination,
            write_back=write_back,
            report=report,
        )
    written = (
        writeback.write_back_pending(rt.sessions, tenant.id, connector) if write_back else None
    )
    return Resolved(written, deliver(rt))


# --- isolating and releasing a ticket's device ----------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceRow:
    """A device a ticket's alerts name: whether it is isolated, what is under way, and the
    playbook's proposal to isolate it, if one waits for the desk."""

    device: Device
    state: actions.DeviceState
    proposal: ResponseAction | None


def device_rows(session: Session, ticket: Ticket) -> list[DeviceRow]:
    """The ticket's devices as the desk acts on them."""
    proposals = {
        action.device_id: action
        for action, _ in actions.actions_of(session, ticket)
        if action.status == ActionState.PROPOSED
    }
    return [
        DeviceRow(device, actions.device_state(session, device), proposals.get(device.id))
        for device in queries.ticket_devices(session, ticket)
    ]


@dataclass(frozen=True, slots=True)
class DevicePlan:
    """An isolate or release about to be asked for: what it acts on, and what the operator
    should know first (why it would be refused; that the device has been silent)."""

    ticket_id: int
    kind: ActionKind
    device_id: int
    device_name: str
    company_name: str
    company_key: str
    tenant_external_id: str
    refusal: str | None
    silent: str | None
    proposed_by: str

    @property
    def label(self) -> str:
        """`pc-001 of 株式会社さくら製作所 (tenant …)`, as the terminal and the log say it."""
        return f"{self.device_name} of {self.company_name} (tenant {self.tenant_external_id})"


def _pick_device(
    t: Ticket, devices: list[Device], name: str | None, device_id: int | None
) -> Device:
    """The device named (by name, id or store id), or the ticket's only device."""
    known = ", ".join(d.name or d.source_id for d in devices) or "none"
    if device_id is not None:
        for d in devices:
            if d.id == device_id:
                return d
        raise TicketError(
            Words("ticket #%(id)s names no such device (devices: %(known)s)", id=t.id, known=known)
        )
    if name:
        found = [
            d for d in devices if name.casefold() in (d.name.casefold(), d.source_id.casefold())
        ]
        if not found:
            raise TicketError(f"ticket #{t.id} names no device {name!r} (devices: {known})")
        return found[0]
    if len(devices) != 1:
        raise TicketError(
            f"ticket #{t.id} names {len(devices)} devices ({known}); choose one with --device"
        )
    return devices[0]


def plan_device_action(
    rt: Runtime,
    ticket_id: int,
    kind: ActionKind,
    *,
    name: str | None = None,
    device_id: int | None = None,
) -> DevicePlan:
    """What an isolate or release of one of the ticket's devices would act on, and what
    stands in its way; nothing is changed. The device must be one the ticket's alerts name
    (a TicketError otherwise), of a company the service still polls."""
    tenant = tenant_of_ticket(rt, ticket_id)
    with rt.sessions() as session:
        t = operator.get(session, ticket_id)
        device = _pick_device(t, queries.ticket_devices(session, t), name, device_id)
        company = session.get_one(Company, session.get_one(Tenant, t.tenant_id).company_id)
        now = rt.clock()
        proposal = next(
            (
                a
                for a, d in actions.actions_of(session, t)
                if d.id == device.id and a.status == ActionState.PROPOSED
            ),
            None,
        )
        return DevicePlan(
            ticket_id=t.id,
            kind=kind,
            device_id=device.id,
            device_name=device.name or device.source_id,
            company_name=company.name,
            company_key=company.key,
            tenant_external_id=tenant.external_id,
            refusal=(
                actions.refusal(session, device, kind.value, t, now)
                or actions.conflict(session, device, kind)
            ),
            silent=actions.silence_warning(device, now, rt.config.settings.desk.silent_device_days),
            proposed_by=proposal.requested_by if proposal and kind is ActionKind.ISOLATE else "",
        )


@dataclass(frozen=True, slots=True)
class DeviceActionSent:
    """The action as the EDR's answer to its sending left it."""

    action_id: int
    status: str
    detail: str


def send_device_action(rt: Runtime, plan: DevicePlan, actor: str) -> DeviceActionSent:
    """Plan the action (refused, and audited, if anything stands in its way now) and send it
    to the EDR once; the company is told at once when the EDR's answer is already final."""
    tenant = tenant_of_ticket(rt, plan.ticket_id)
    with transaction(rt.sessions) as session:
        t = operator.get(session, plan.ticket_id)
        action = actions.plan(
            session,
            device_queries.device(session, plan.device_id),
            plan.kind,
            actor=actor,
            at=rt.clock(),
            ticket=t,
            reason=f"operator, ticket #{plan.ticket_id}",
        )
        action_id = action.id
    desk = rt.config.settings.desk
    window = timedelta(minutes=desk.reconcile_minutes)
    connector = rt.connector(tenant)
    sent = actions.send(rt.sessions, action_id, connector, actor, rt.clock, window, desk=desk)
    return DeviceActionSent(action_id, sent.status, sent.detail or "")


def follow_device_action(rt: Runtime, ticket_id: int, action_id: int, wait: float) -> str:
    """Follow the action until it ends or `wait` seconds pass; its last known status."""
    tenant = tenant_of_ticket(rt, ticket_id)
    with rt.sessions() as session:
        status = device_queries.action_status(session, action_id)
    deadline = time.monotonic() + wait
    while wait and status in FOLLOWED and time.monotonic() < deadline:
        time.sleep(min(2.0, max(deadline - time.monotonic(), 0)))
        actions.follow(
            rt.sessions, tenant.id, rt.connector(tenant), rt.config.settings.desk, rt.clock()
        )
        with rt.sessions() as session:
            status = device_queries.action_status(session, action_id)
    return status


def finished(status: str) -> bool:
    """Whether an isolate/release in `status` has the EDR's final answer."""
    return status in (s.value for s in ActionStatus if s.terminal)
