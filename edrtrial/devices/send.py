"""The one way a device action reaches the EDR: claim, send, settle; then follow.

Isolate, release and offboard travel the same road:

1. **claim** — `planned` → `sending`, audited, in its own commit *before* the EDR is
   called, so a second operator, a second process or a restart never sends it again;
   a send interrupted by a crash stays `sending`, with a note to check the portal. In the
   same transaction the route's `check_send` looks at the company and device *as they are
   now* (a task planned days ago may no longer fit): if it objects, the action is
   cancelled with its reason (audited) and nothing is sent;
2. **send** — `connector.start_action`;
3. **settle** — what the EDR answered (its machine action and status, or its refusal) is
   recorded and audited in one commit;
4. **follow** — the EDR's status of sent actions is read until it is terminal (audited by
   the caller's `on_finished`, which may also tell the company).

What differs between the kinds is a `Route`: its transition table, its audit names and
wording, the check that the connector talks to the action's tenant, and, for offboarding,
a platform the EDR cannot uninstall remotely (settled as manual work without a send).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from edrtrial import audit
from edrtrial.connectors.base import ActionKind, Connector
from edrtrial.db import transaction
from edrtrial.devices.states import FOLLOWED, reported, sent
from edrtrial.errors import ConnectorError
from edrtrial.machine import Machine
from edrtrial.models import Device, ResponseAction, Tenant
from edrtrial.states import ActionState

log = logging.getLogger(__name__)


def _never_manual(connector: Connector, device: Device) -> str | None:
    return None


def _always_send(session: Session, action: ResponseAction, device: Device, at: datetime) -> None:
    return None


@dataclass(frozen=True, slots=True)
class Route:
    """How one kind of action travels: the kind-specific parts of the one send path."""

    machine: Machine[ActionState]
    target: Callable[[ResponseAction, Device], str]
    """The audit target (a ticket, or the device)."""
    check_tenant: Callable[[Tenant, Connector], None]
    """Raises unless the connector talks to the action's tenant (before anything is written)."""
    comment: Callable[[ResponseAction, Device, str], str]
    """The comment the EDR keeps with its machine action (action, device, actor)."""
    interrupted: str
    """The detail while `sending`: what to check if it stays so."""
    refused: str
    """The detail after the EDR refused the send; `{error}` is its message."""
    noun: str = ""
    """The audit prefix ("offboarding"); empty: the action's kind ("isolate", "release")."""
    manual: Callable[[Connector, Device], str | None] = _never_manual
    """The note for work the EDR cannot do remotely, settled without a send; None: send it."""
    sender_requests: bool = False
    """The operator who sends becomes the requester (a task planned by the lifecycle job)."""
    check_send: Callable[[Session, ResponseAction, Device, datetime], str | None] = _always_send
    """Why the action must not be sent now (it is cancelled with this reason); None: send it.

    Runs inside the claim's transaction, so what it reads is what the send acts on."""

    def event(self, action: ResponseAction, what: str) -> str:
        """The audit action's name, e.g. `isolate.sending` or `offboarding.manual`."""
        return f"{self.noun or action.kind}.{what}"


class Outcome(StrEnum):
    """What one `send_action` did."""

    NOT_PLANNED = "not_planned"  # no longer planned (sent, or taken by another process)
    MANUAL = "manual"  # handed over as manual work, nothing sent
    SENT = "sent"  # the EDR accepted it
    REFUSED = "refused"  # the EDR refused it; settled by the route's "refused" step
    CANCELLED = "cancelled"  # no longer fits (the route's check at send time): nothing sent


@dataclass(frozen=True, slots=True)
class _Claimed:
    kind: ActionKind
    device_source_id: str
    device_name: str
    target: str
    comment: str


def send_action(
    sessions: sessionmaker[Session],
    route: Route,
    action_id: int,
    connector: Connector,
    actor: str,
    now: Callable[[], datetime],
) -> Outcome:
    """Send one planned action once: claimed (and audited) in its own commit before the call."""
    claimed = _claim(sessions, route, action_id, connector, actor, now)
    if not isinstance(claimed, _Claimed):
        return claimed
    try:
        result = connector.start_action(claimed.device_source_id, claimed.kind, claimed.comment)
    except ConnectorError as err:
        # Any ConnectorError counts as a refusal, although after a timeout or a 5xx the EDR
        # may have created the action: reading the device's machine actions before deciding
        # (reconciliation) is still to come.
        log.warning("%s of %s failed: %s", claimed.kind.value, claimed.device_name, err)
        settle(
            sessions,
            route,
            action_id,
            "refused",
            at=now(),
            actor=actor,
            what="failed",
            target=claimed.target,
            audit_detail={"error": str(err)},
            detail=route.refused.format(error=err),
        )
        return Outcome.REFUSED
    settle(
        sessions,
        route,
        action_id,
        sent(result.status),
        at=now(),
        actor=actor,
        what="sent",
        target=claimed.target,
        audit_detail={"machine_action": result.source_action_id, "status": result.status.value},
        source_action_id=result.source_action_id,
        detail=f"machine action {result.source_action_id}",
    )
    return Outcome.SENT


def _claim(
    sessions: sessionmaker[Session],
    route: Route,
    action_id: int,
    connector: Connector,
    actor: str,
    now: Callable[[], datetime],
) -> _Claimed | Outcome:
    """Take a planned action for sending (audited), or settle it as manual work."""
    with transaction(sessions) as session:
        action = session.get_one(ResponseAction, action_id)
        device = session.get_one(Device, action.device_id)
        route.check_tenant(session.get_one(Tenant, action.tenant_id), connector)
        target, at, seen = route.target(action, device), now(), action.status
        if route.machine.can("cancel", seen) and (
            why := route.check_send(session, action, device, at)
        ):
            return _cancel(session, route, action, device, actor, at, why)
        requester: dict[str, Any] = {"requested_by": actor} if route.sender_requests else {}
        note = route.manual(connector, device)
        step, detail = ("claim", route.interrupted) if note is None else ("manual", note)
        if not route.machine.can(step, seen) or not route.machine.move_id(
            session, action_id, seen, step, detail=detail, updated_at=at, **requester
        ):
            return Outcome.NOT_PLANNED  # sent already, or another operator took it
        audit.record(
            session,
            at=at,
            actor=actor,
            action=route.event(action, "sending" if note is None else "manual"),
            tenant_id=action.tenant_id,
            target=target,
            detail={"device": device.name},
        )
        if note is not None:
            return Outcome.MANUAL
        comment = route.comment(action, device, actor)
        return _Claimed(ActionKind(action.kind), device.source_id, device.name, target, comment)


def _cancel(
    session: Session,
    route: Route,
    action: ResponseAction,
    device: Device,
    actor: str,
    at: datetime,
    why: str,
) -> Outcome:
    """Cancel a planned action the send-time check objects to (audited with the reason)."""
    kind, tenant_id, target = action.kind, action.tenant_id, route.target(action, device)
    event = route.event(action, "cancelled")
    if not route.machine.move_id(
        session, action.id, action.status, "cancel", detail=why, updated_at=at
    ):
        return Outcome.NOT_PLANNED  # another operator took it meanwhile
    log.info("%s of %s cancelled at send time: %s", kind, device.name, why)
    audit.record(
        session,
        at=at,
        actor=actor,
        action=event,
        tenant_id=tenant_id,
        target=target,
        detail={"device": device.name, "reason": why, "when": "at send time"},
    )
    return Outcome.CANCELLED


def settle(
    sessions: sessionmaker[Session],
    route: Route,
    action_id: int,
    step: str,
    *,
    at: datetime,
    actor: str,
    what: str,
    target: str,
    audit_detail: dict[str, Any],
    **values: Any,
) -> None:
    """Move an action out of `sending` by `step`, with what the EDR answered, and audit it.

    The audit is written even if the row had left `sending` meanwhile (nothing but this
    send moves it from there, so that means someone edited the store): the EDR was called,
    and the audit log must say so.
    """
    with transaction(sessions) as session:
        action = session.get_one(ResponseAction, action_id)
        if not route.machine.move_id(
            session, action_id, ActionState.SENDING, step, updated_at=at, **values
        ):
            log.warning(
                "%s #%d left sending before its answer (%s) was recorded; it is %s",
                route.machine.entity,
                action_id,
                step,
                session.get_one(ResponseAction, action_id).status,
            )
        audit.record(
            session,
            at=at,
            actor=actor,
            action=route.event(action, what),
            tenant_id=action.tenant_id,
            target=target,
            detail=audit_detail,
        )


def follow_actions(
    sessions: sessionmaker[Session],
    machine: Machine[ActionState],
    tenant_id: int,
    connector: Connector,
    kinds: Sequence[str],
    now: datetime,
    on_finished: Callable[[Session, ResponseAction], None],
) -> tuple[int, list[int]]:
    """Read the EDR's status of a tenant's sent actions of these kinds, one commit each.

    Each status is written from the state read before the (slow) EDR call, so of two
    followers (the desk job and `ticket isolate --wait`) only one records a change and runs
    `on_finished`; the other's older reading never overwrites a newer status.
    `on_finished` runs in the commit that records a terminal status (to audit it, tell the
    company…). Returns how many changed and the ids of those that finished. The caller has
    checked that the connector talks to this tenant.
    """
    with sessions() as session:
        pending = [
            (a.id, a.status, a.source_action_id)
            for a in session.scalars(
                select(ResponseAction).where(
                    ResponseAction.tenant_id == tenant_id,
                    ResponseAction.kind.in_(list(kinds)),
                    ResponseAction.status.in_(FOLLOWED),
                    ResponseAction.source_action_id.is_not(None),
                )
            )
        ]
    changed, finished = 0, []
    for action_id, seen, source_action_id in pending:
        assert source_action_id is not None
        try:
            result = connector.action_status(source_action_id)
        except ConnectorError as err:  # one unreadable action must not hide the others
            log.warning("machine action %s unreadable: %s", source_action_id, err)
            continue
        if result.status.value == seen:
            continue
        with transaction(sessions) as session:
            if not machine.move_id(
                session, action_id, seen, reported(result.status), updated_at=now
            ):
                continue  # another follower recorded it first
            changed += 1
            if result.status.terminal:
                on_finished(session, session.get_one(ResponseAction, action_id))
                finished.append(action_id)
    return changed, finished
