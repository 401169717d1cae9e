"""An operator settles a send the EDR never answered, after looking in the EDR's console.

Reconciliation (`devices/send.py`) settles such a send by itself where the EDR can list its
actions. Where it cannot (CyCraft), or while its list stays unreadable, the action waits
`unconfirmed`: under way, so the device's next isolate or release and the ticket's close are
refused. Only a person who looked in the console can end that wait, so this is the one
way out: "I found it, it is action X" (its status is read from the EDR, so a mistyped id is
refused) or "there is none" (the action is lost: an isolation failed, an offboarding goes
back to `planned`). Both are audited in the operator's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from edrtrial import audit
from edrtrial.config import DeskConfig
from edrtrial.connectors.base import ActionKind, Connector
from edrtrial.db import transaction
from edrtrial.devices import actions, offboarding
from edrtrial.devices.send import SENDING_GRACE, Finished, Route
from edrtrial.devices.states import RECONCILED, sent
from edrtrial.errors import ActionRefused, ConnectorError
from edrtrial.models import Company, Device, ResponseAction, Tenant
from edrtrial.states import ActionState
from edrtrial.words import Words


@dataclass(frozen=True, slots=True)
class Unanswered:
    """A send the EDR has not answered, as the operator sees it in the list."""

    action_id: int
    company_key: str
    device: str
    kind: str
    status: str
    detail: str
    since: datetime
    being_sent: bool  # claimed moments ago: its answer may still come; not to be settled


def _route(kind: str) -> Route:
    return offboarding.ROUTE if kind == ActionKind.OFFBOARD.value else actions.ROUTE


def _finisher(kind: str, desk: DeskConfig, at: datetime) -> Finished:
    if kind == ActionKind.OFFBOARD.value:
        return offboarding.finished
    return actions.finisher(desk, lambda: at)


def _being_sent(action: ResponseAction, now: datetime) -> bool:
    """Claimed so recently that its send may still be under way (the desk job waits too)."""
    since = action.sent_at or action.updated_at
    return action.status == ActionState.SENDING and since > now - SENDING_GRACE


def unanswered(session: Session, now: datetime) -> list[Unanswered]:
    """Every action sent without an answer (or left `sending`), oldest first."""
    rows = session.execute(
        select(ResponseAction, Device, Company.key)
        .join(Device, ResponseAction.device_id == Device.id)
        .join(Tenant, ResponseAction.tenant_id == Tenant.id)
        .join(Company, Tenant.company_id == Company.id)
        .where(ResponseAction.status.in_(RECONCILED))
        .order_by(ResponseAction.id)
    )
    return [
        Unanswered(
            action.id,
            key,
            device.name or device.source_id,
            action.kind,
            action.status,
            action.detail,
            action.sent_at or action.updated_at,
            _being_sent(action, now),
        )
        for action, device, key in rows
    ]


def tenant_of_action(session: Session, action_id: int) -> int:
    """The tenant an action belongs to (refused if there is no such action)."""
    action = session.get(ResponseAction, action_id)
    if action is None:
        raise ActionRefused(Words("there is no action #%(id)s", id=action_id))
    return action.tenant_id


def settle(
    sessions: sessionmaker[Session],
    action_id: int,
    connector: Connector,
    *,
    found: str | None,
    actor: str,
    at: datetime,
    desk: DeskConfig,
) -> ResponseAction:
    """Record what the operator saw in the EDR's console for an unanswered send.

    `found`: the EDR's id of the action the send created (its status is read from the EDR
    first); None: the operator found none. Refused unless the action is still unanswered,
    or when the id is already another action's. One found already finished is audited and
    told to the company as following it would have been.
    """
    with sessions() as session:
        action = session.get(ResponseAction, action_id)
        if action is None:
            raise ActionRefused(Words("there is no action #%(id)s", id=action_id))
        route, seen, tenant_id = _route(action.kind), action.status, action.tenant_id
        route.check_tenant(session.get_one(Tenant, tenant_id), connector)
        if seen not in RECONCILED:
            raise ActionRefused(
                Words(
                    "action #%(id)s is %(status)s, not waiting for an answer: nothing to settle",
                    id=action_id,
                    status=seen,
                )
            )
        if _being_sent(action, at):
            raise ActionRefused(
                Words(
                    "action #%(id)s is being sent right now: wait for the EDR's answer",
                    id=action_id,
                )
            )
        device = session.get_one(Device, action.device_id)
        target = route.target(action, device)
        held = _held(session, tenant_id, found, action_id)
    if held is not None:
        raise ActionRefused(
            Words(
                "the EDR's action %(found)s is already action #%(held)s's", found=found, held=held
            )
        )
    if found is None:
        step, what = "lost", "lost"
        values: dict[str, Any] = {
            "detail": f"{route.lost} (checked in the EDR's console by {actor})"
        }
        detail: dict[str, Any] = {"checked_by": actor}
    else:
        try:
            result = connector.action_status(found)
        except ConnectorError as err:
            raise ActionRefused(f"the EDR does not show action {found}: {err}") from err
        if result.device_source_id not in (None, device.source_id):
            raise ActionRefused(
                Words(
                    "the EDR's action %(found)s acts on another device (%(other)s), not %(device)s",
                    found=found,
                    other=result.device_source_id,
                    device=device.name or device.source_id,
                )
            )
        if result.kind not in (None, ActionKind(action.kind)):
            raise ActionRefused(
                Words(
                    "the EDR's action %(found)s is a %(kind)s, not a %(expected)s",
                    found=found,
                    kind=result.kind.value,
                    expected=action.kind,
                )
            )
        step, what = sent(result.status), "sent"
        values = {
            "source_action_id": found,
            "detail": f"machine action {found} (found in the EDR's console by {actor})",
        }
        if result.status.terminal:
            values["finished_at"] = at
        detail = {"machine_action": found, "status": result.status.value, "confirmed_by": actor}
    with transaction(sessions) as session:
        if not route.machine.move_id(session, action_id, seen, step, updated_at=at, **values):
            raise ActionRefused(
                Words("action #%(id)s was settled meanwhile; nothing changed", id=action_id)
            )
        audit.record(
            session,
            at=at,
            actor=actor,
            action=route.event(action, what),
            tenant_id=tenant_id,
            target=target,
            detail={"device": device.name, **detail},
        )
        settled = session.get_one(ResponseAction, action_id)
        if "finished_at" in values:
            _finisher(settled.kind, desk, at)(session, settled)
        return settled


def _held(session: Session, tenant_id: int, found: str | None, action_id: int) -> int | None:
    if found is None:
        return None
    return session.scalar(
        select(ResponseAction.id).where(
            ResponseAction.tenant_id == tenant_id,
            ResponseAction.source_action_id == found,
            ResponseAction.id != action_id,
        )
    )
