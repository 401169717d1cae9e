"""Defender for Endpoint's view of a tenant: machines and machine actions.

MDE lists page with `$top`/`$skip` only; like the real API (whose nextLink is unreliable)
they never carry `@odata.nextLink`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from edrtrial.sandbox.actions import (
    MachineAction,
    advance,
    apply_success,
    read_request,
    render_action,
)
from edrtrial.sandbox.devices import Device, render_machine
from edrtrial.sandbox.faults import ApiError
from edrtrial.sandbox.odata import Clause, FieldKind, Value, matches_all
from edrtrial.sandbox.tenant import TenantState
from edrtrial.timeutil import parse_iso

MACHINE_FIELDS: dict[str, FieldKind] = {
    "id": "string",
    "computerDnsName": "string",
    "lastSeen": "datetime",
    "healthStatus": "string",
    "osPlatform": "string",
    "onboardingStatus": "string",
    "riskScore": "string",
    "exposureLevel": "string",
    "lastIpAddress": "string",
    "aadDeviceId": "string",
    "version": "string",
}
ACTION_FIELDS: dict[str, FieldKind] = {
    "id": "string",
    "status": "string",
    "machineId": "string",
    "type": "string",
    "requestor": "string",
    "creationDateTimeUtc": "datetime",
    "lastUpdateDateTimeUtc": "datetime",
}


def _select(
    rows: list[dict[str, Any]],
    clauses: list[Clause],
    fields: dict[str, FieldKind],
    skip: int,
    top: int,
) -> list[dict[str, Any]]:
    def value_of(row: dict[str, Any]) -> Any:
        def read(name: str) -> Value:
            raw = row.get(name)
            if fields[name] == "datetime" and isinstance(raw, str):
                return parse_iso(raw)
            return None if raw is None else str(raw)

        return read

    chosen = [row for row in rows if matches_all(clauses, value_of(row))]
    return chosen[skip : skip + top]


def _device(tenant: TenantState, machine_id: str) -> Device:
    device = tenant.find_device(machine_id)
    if device is None:
        raise ApiError(404, "ResourceNotFound", f"Machine {machine_id} was not found")
    return device


def list_machines(
    tenant: TenantState, clauses: list[Clause], skip: int, top: int
) -> list[dict[str, Any]]:
    """The tenant's machines; 404 when it has none at all, as MDE answers."""
    if not tenant.devices:
        raise ApiError(404, "ResourceNotFound", "No machines were found for this tenant")
    risks = tenant.device_risks()
    rows = [
        render_machine(d, risks.get(d.id), tenant.rbac_group_id) for d in tenant.devices.values()
    ]
    return _select(rows, clauses, MACHINE_FIELDS, skip, top)


def get_machine(tenant: TenantState, machine_id: str) -> dict[str, Any]:
    """One machine by id or computer name, or 404."""
    device = _device(tenant, machine_id)
    return render_machine(device, tenant.device_risks().get(device.id), tenant.rbac_group_id)


def start_action(
    tenant: TenantState,
    machine_id: str,
    verb: str,
    body: Any,
    requestor: str,
    now: datetime,
    duration: float,
    outcome: str,
) -> dict[str, Any]:
    """Create a machine action; a second one of the same type while one is active is refused."""
    tenant.advance_actions(now)
    device = _device(tenant, machine_id)
    action_type, scope, comment = read_request(verb, body, device)
    for existing in tenant.actions.values():
        if existing.active and existing.device_id == device.id and existing.type == action_type:
            raise ApiError(400, "ActiveRequestAlreadyExists", "Action is already in progress")
    action = MachineAction(
        id=tenant.new_action_id(),
        type=action_type,
        scope=scope,
        requestor=requestor,
        comment=comment,
        device_id=device.id,
        dns_name=device.dns_name,
        created=now,
        last_update=now,
        duration=duration,
        outcome=outcome,
    )
    tenant.actions[action.id] = action
    if advance(action, now):
        apply_success(action, device)
    return render_action(action)


def list_actions(
    tenant: TenantState, clauses: list[Clause], skip: int, top: int, now: datetime
) -> list[dict[str, Any]]:
    """Machine actions, newest first."""
    tenant.advance_actions(now)
    ordered = sorted(tenant.actions.values(), key=lambda a: (a.created, a.id), reverse=True)
    return _select([render_action(a) for a in ordered], clauses, ACTION_FIELDS, skip, top)


def get_action(tenant: TenantState, action_id: str, now: datetime) -> dict[str, Any]:
    """One machine action; a key that is not a GUID is a 400, as MDE answers."""
    try:
        key = str(uuid.UUID(action_id))
    except ValueError as err:
        raise ApiError(
            400,
            "BadRequest",
            f"The key value ({action_id}) from request is not valid. The key value should be "
            "format of type 'Edm.Guid'.",
        ) from err
    tenant.advance_actions(now)
    action = tenant.actions.get(key)
    if action is None:
        raise ApiError(404, "ResourceNotFound", f"MachineAction {action_id} was not found")
    return render_action(action)
