"""Isolating and releasing devices: asked for once, sent once, followed to the end.

An action is a `ResponseAction` row. It is `proposed` (a playbook suggests it; nothing
happens until an operator confirms), `planned` (confirmed, or requested by a playbook where
the company agreed to automatic isolation), `sending` (claimed, being sent), then the EDR's
own states to a terminal one (the table: `devices/states.py`; the send: `devices/send.py`).
While one isolate or release of a device is under way, a second is refused: it would race
the first at the EDR and confuse the company.

What else must hold is checked twice, when the action is planned and again when it is sent
(`refusal`; a planned isolation may wait for the desk job): the device is not offboarded
(the action would wait for a sensor that is gone), an isolation falls inside the company's
trial, and the ticket it comes from is still open (a company told its incident is resolved
must not then hear that its device was isolated). A device that has not reported for days
is only a warning (`silence_warning`): the EDR holds the action until the device reports.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from edrtrial import audit
from edrtrial.config import DeskConfig
from edrtrial.connectors.base import ActionKind, Connector
from edrtrial.devices.send import (
    RECONCILE_WINDOW,
    Finished,
    Outcome,
    Route,
    follow_actions,
    marker,
    reconcile_pending,
    send_action,
)
from edrtrial.devices.states import DEVICE_ACTIONS, UNDER_WAY
from edrtrial.errors import ActionRefused
from edrtrial.models import Company, Device, ResponseAction, Tenant, Ticket
from edrtrial.notify.notices import isolation_notice
from edrtrial.notify.recipients import mail_company
from edrtrial.programme.trials import coverage_of_tenant
from edrtrial.states import OPEN_TICKET_STATES, ActionState
from edrtrial.words import Words

DEVICE_KINDS = (ActionKind.ISOLATE.value, ActionKind.RELEASE.value)
INTERRUPTED = "being sent to the EDR; if this stays, check the device in the Defender portal"
OFFBOARDED = (
    ActionState.SENDING,
    ActionState.PENDING,
    ActionState.IN_PROGRESS,
    ActionState.UNCONFIRMED,
    ActionState.SUCCEEDED,
    ActionState.VERIFIED,
    ActionState.STILL_REPORTING,
    ActionState.MANUAL,
)
"""An offboarding task in one of these states: the EDR is leaving (or has left) the device."""


@dataclass(frozen=True, slots=True)
class DeviceState:
    """What the store knows of a device's isolation."""

    isolated: bool
    under_way: ResponseAction | None


def _target(action: ResponseAction, device: Device) -> str:
    return f"ticket:{action.ticket_id}" if action.ticket_id else f"device:{device.source_id}"


def device_state(session: Session, device: Device) -> DeviceState:
    """Isolated or not (by the last isolate/release that succeeded), and any action under way."""
    actions = list(
        session.scalars(
            select(ResponseAction)
            .where(
                ResponseAction.device_id == device.id,
                ResponseAction.kind.in_(DEVICE_KINDS),
            )
            .order_by(ResponseAction.id)
        )
    )
    done = [a for a in actions if a.status == ActionState.SUCCEEDED]
    isolated = bool(done) and done[-1].kind == ActionKind.ISOLATE.value
    under_way = next((a for a in actions if a.status in UNDER_WAY), None)
    return DeviceState(isolated, under_way)


def refusal(
    session: Session, device: Device, kind: str, ticket: Ticket | None, at: datetime
) -> str | None:
    """Why this isolate or release must not go ahead now; None: it may.

    A release stays possible after the trial's end: refusing it would leave a company's
    device cut off the network with nobody allowed to bring it back.
    """
    name = device.name or device.source_id
    if ticket is not None and ticket.state not in OPEN_TICKET_STATES:
        return Words(
            "ticket #%(id)s is %(state)s; reopen ticket #%(id)s first",
            id=ticket.id,
            state=ticket.state,
        )
    offboarded = session.scalar(
        select(ResponseAction.status).where(
            ResponseAction.device_id == device.id,
            ResponseAction.kind == ActionKind.OFFBOARD.value,
            ResponseAction.status.in_(OFFBOARDED),
        )
    )
    if offboarded is not None:
        return Words(
            "%(device)s is offboarded (offboarding %(status)s): the EDR no longer acts on it",
            device=name,
            status=offboarded,
        )
    if kind == ActionKind.ISOLATE.value:
        coverage = coverage_of_tenant(session, device.tenant_id, at)
        if coverage.ended:
            return Words(
                "%(device)s: its company's trial ended %(ended)s; "
                "the programme no longer isolates its devices",
                device=name,
                ended=coverage.ends_on,
            )
    return None


def conflict(session: Session, device: Device, kind: ActionKind) -> str | None:
    """Why the device's own state leaves nothing to do now (one action under way, already
    isolated, nothing to release); None: the action would change something."""
    state = device_state(session, device)
    name = device.name or device.source_id
    if state.under_way is not None:
        return Words(
            "%(device)s: a %(kind)s is already under way (action #%(action)s, %(status)s); "
            "wait for it to finish",
            device=name,
            kind=state.under_way.kind,
            action=state.under_way.id,
            status=state.under_way.status,
        )
    if kind is ActionKind.ISOLATE and state.isolated:
        return Words("%(device)s is already isolated", device=name)
    if kind is ActionKind.RELEASE and not state.isolated:
        return Words("%(device)s is not isolated, so there is nothing to release", device=name)
    return None


def silence_warning(device: Device, now: datetime, days: int) -> str | None:
    """A warning when the device has not reported for `days` or more (not a refusal)."""
    if device.last_seen is None or now - device.last_seen < timedelta(days=days):
        return None
    quiet = (now - device.last_seen).days
    return Words(
        "%(device)s has not reported for %(days)s days: the action waits until it reports",
        device=device.name or device.source_id,
        days=quiet,
    )


def _sequence(session: Session, device: Device, kind: str) -> int:
    count = session.scalar(
        select(func.count())
        .select_from(ResponseAction)
        .where(ResponseAction.device_id == device.id, ResponseAction.kind == kind)
    )
    return int(count or 0) + 1


def plan(
    session: Session,
    device: Device,
    kind: ActionKind,
    *,
    actor: str,
    at: datetime,
    ticket: Ticket | None = None,
    reason: str = "",
) -> ResponseAction:
    """Plan an isolate or release of one device, or refuse with the reason (audited)."""
    if kind not in (ActionKind.ISOLATE, ActionKind.RELEASE):
        raise ActionRefused(f"{kind.value} is not a device isolation action")
    if ticket is not None and ticket.tenant_id != device.tenant_id:
        raise ActionRefused(
            Words(
                "device %(device)s does not belong to ticket #%(id)s's company",
                device=device.name or device.source_id,
                id=ticket.id,
            )
        )
    if (why := refusal(session, device, kind.value, ticket, at)) is not None:
        raise ActionRefused(why)
    if (why := conflict(session, device, kind)) is not None:
        raise ActionRefused(why)
    name = device.name or device.source_id
    number = _sequence(session, device, kind.value)
    action = ResponseAction(
        dedupe_key=f"{kind.value}:{device.tenant_id}:{device.source_id}:{number}",
        tenant_id=device.tenant_id,
        device_id=device.id,
        ticket_id=ticket.id if ticket else None,
        kind=kind.value,
        status=ActionState.PLANNED,
        reason=reason,
        requested_by=actor,
        created_at=at,
        updated_at=at,
    )
    try:
        with session.begin_nested():  # a second operator racing for the same device loses
            session.add(action)
    except IntegrityError as err:
        raise ActionRefused(
            Words(
                "%(device)s: another %(kind)s was planned at the same moment",
                device=name,
                kind=kind.value,
            )
        ) from err
    _supersede_proposals(session, device, kind, at)
    audit.record(
        session,
        at=at,
        actor=actor,
        action=f"{kind.value}.planned",
        tenant_id=device.tenant_id,
        target=_target(action, device),
        detail={"device": name, "action": action.id, "reason": reason},
    )
    return action


def propose(
    session: Session, device: Device, ticket: Ticket, *, at: datetime, reason: str
) -> ResponseAction | None:
    """Record a playbook's suggestion to isolate (once per ticket and device)."""
    key = f"propose-isolate:{ticket.id}:{device.source_id}"
    if session.scalar(select(ResponseAction.id).where(ResponseAction.dedupe_key == key)):
        return None
    state = device_state(session, device)
    if state.isolated or state.under_way is not None:
        return None
    if refusal(session, device, ActionKind.ISOLATE.value, ticket, at) is not None:
        return None  # a proposal the desk could only see refused (offboarded, trial over)
    action = ResponseAction(
        dedupe_key=key,
        tenant_id=device.tenant_id,
        device_id=device.id,
        ticket_id=ticket.id,
        kind=ActionKind.ISOLATE.value,
        status=ActionState.PROPOSED,
        reason=reason,
        requested_by="playbook",
        created_at=at,
        updated_at=at,
    )
    session.add(action)
    session.flush()
    audit.record(
        session,
        at=at,
        actor="playbook",
        action="isolate.proposed",
        tenant_id=device.tenant_id,
        target=f"ticket:{ticket.id}",
        detail={"device": device.name or device.source_id, "reason": reason},
    )
    return action


def _supersede_proposals(session: Session, device: Device, kind: ActionKind, at: datetime) -> None:
    if kind is not ActionKind.ISOLATE:
        return
    proposals = session.scalars(
        select(ResponseAction).where(
            ResponseAction.device_id == device.id, ResponseAction.status == ActionState.PROPOSED
        )
    ).all()
    for proposal in proposals:  # one superseded meanwhile by another operator stays so
        DEVICE_ACTIONS.move(session, proposal, "supersede", updated_at=at)


def _check_tenant(tenant: Tenant, connector: Connector) -> None:
    if connector.tenant_id != tenant.external_id:
        raise ActionRefused(
            f"refusing to act: the connector talks to tenant {connector.tenant_id}, the action "
            f"belongs to tenant {tenant.external_id}"
        )


def _comment(action: ResponseAction, device: Device, actor: str) -> str:
    return f"edrtrial: {action.kind} {device.name} ({action.requested_by}, {marker(action)})"


def _check_send(
    session: Session, action: ResponseAction, device: Device, at: datetime
) -> str | None:
    """The checks of planning, again at send time (a planned isolation may have waited)."""
    ticket = session.get(Ticket, action.ticket_id) if action.ticket_id else None
    return refusal(session, device, action.kind, ticket, at)


ROUTE = Route(
    machine=DEVICE_ACTIONS,
    target=_target,
    check_tenant=_check_tenant,
    comment=_comment,
    interrupted=INTERRUPTED,
    refused="the EDR refused: {error}",
    check_send=_check_send,
)


def send(
    sessions: sessionmaker[Session],
    action_id: int,
    connector: Connector,
    actor: str,
    now: Callable[[], datetime],
    window: timedelta = RECONCILE_WINDOW,
    *,
    desk: DeskConfig | None = None,
) -> ResponseAction:
    """Send a planned isolate or release once (see `devices.send`); returns it as it is now.

    One the check at send time refuses comes back `cancelled`, its reason in `detail`. With
    the desk's settings, an answer that is already final is audited and told to the company
    at once, as `follow` would (it never sees a finished action again).
    """
    finished = finisher(desk, now) if desk is not None else None
    send_action(sessions, ROUTE, action_id, connector, actor, now, window, finished)
    with sessions() as session:
        return session.get_one(ResponseAction, action_id)


def reconcile(
    sessions: sessionmaker[Session],
    tenant_id: int,
    connector: Connector,
    now: Callable[[], datetime],
    window: timedelta = RECONCILE_WINDOW,
    *,
    desk: DeskConfig | None = None,
) -> dict[int, Outcome]:
    """Settle the tenant's isolations and releases sent without an answer (see `devices.send`).

    An action found already finished (a crash left it `sending` while the EDR carried it out)
    is audited and told to the company at once when the desk's settings are given.
    """
    with sessions() as session:
        _check_tenant(session.get_one(Tenant, tenant_id), connector)
    finished = finisher(desk, now) if desk is not None else None
    kinds = DEVICE_KINDS
    return reconcile_pending(sessions, ROUTE, tenant_id, connector, kinds, now, window, finished)


def follow(
    sessions: sessionmaker[Session],
    tenant_id: int,
    connector: Connector,
    desk: DeskConfig,
    now: datetime,
) -> list[int]:
    """Follow sent isolate/release actions; returns those that finished.

    A finished action is audited and the company contact is told (in its language).
    """
    with sessions() as session:
        _check_tenant(session.get_one(Tenant, tenant_id), connector)
    finished = finisher(desk, lambda: now)
    kinds = DEVICE_KINDS
    return follow_actions(sessions, DEVICE_ACTIONS, tenant_id, connector, kinds, now, finished)[1]


def finisher(desk: DeskConfig, now: Callable[[], datetime]) -> Finished:
    """What a finished isolate/release does: audit the EDR's outcome and tell the company.

    The same whether the outcome is read by following the action, or comes with the send's
    answer or the action reconciliation found (already finished after a crash).
    """

    def finished(session: Session, action: ResponseAction) -> None:
        device = session.get_one(Device, action.device_id)
        audit.record(
            session,
            at=now(),
            actor="edr",
            action=f"{action.kind}.{action.status}",
            tenant_id=action.tenant_id,
            target=_target(action, device),
            detail={"device": device.name, "machine_action": action.source_action_id},
        )
        tell_company(session, action, device, desk, now())

    return finished


def tell_company(
    session: Session, action: ResponseAction, device: Device, desk: DeskConfig, at: datetime
) -> None:
    """Queue the company's notice that its device was isolated, released, or could not be.

    Its contacts promise the desk the company has at `at`: a release after the trial's end
    names the desk's business hours, not the 24-hour incident desk.
    """
    if action.ticket_id is None:
        return
    ticket = session.get_one(Ticket, action.ticket_id)
    tenant = session.get_one(Tenant, action.tenant_id)
    company = session.get_one(Company, tenant.company_id)
    coverage = coverage_of_tenant(session, tenant.id, at)
    mail = isolation_notice(company, ticket, device, action, desk, coverage)
    mail_company(
        session,
        company,
        tenant.id,
        mail,
        dedupe_key=f"notice:company:action:{action.id}",
        kind="isolation-notice",
    )


def actions_of(session: Session, ticket: Ticket) -> list[tuple[ResponseAction, Device]]:
    """The ticket's device actions (proposed, planned, sent, finished), oldest first."""
    return [
        (action, device)
        for action, device in session.execute(
            select(ResponseAction, Device)
            .join(Device, ResponseAction.device_id == Device.id)
            .where(ResponseAction.ticket_id == ticket.id)
            .order_by(ResponseAction.id)
        )
    ]
