"""MDE machine actions: what a request body must hold, and how an action moves on in time.

An action is Pending for the first third of its duration, InProgress until the end, then
reaches its outcome; only then does the device change (isolated, released, offboarded).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from edrtrial.sandbox.devices import Device
from edrtrial.sandbox.faults import ApiError
from edrtrial.sandbox.odata import odata_time

#: URL verb → MachineAction type.
ACTION_TYPES = {
    "isolate": "Isolate",
    "unisolate": "Unisolate",
    "runAntiVirusScan": "RunAntiVirusScan",
    "offboard": "Offboard",
}
ACTIVE = ("Pending", "InProgress")
OUTCOMES = ("Succeeded", "Failed", "TimeOut")
_TITLES = {
    "Isolate": "Isolate device",
    "Unisolate": "Release device from isolation",
    "RunAntiVirusScan": "Run antivirus scan",
    "Offboard": "Offboard device",
}


@dataclass(slots=True)
class MachineAction:
    """One requested action on one device."""

    id: str
    type: str
    scope: str | None
    requestor: str
    comment: str
    device_id: str
    dns_name: str
    created: datetime
    last_update: datetime
    duration: float
    outcome: str
    status: str = "Pending"

    @property
    def active(self) -> bool:
        """Still Pending or InProgress."""
        return self.status in ACTIVE


def _invalid_body(detail: str) -> ApiError:
    return ApiError(400, "InvalidRequestBody", f"Request body is incorrect: {detail}")


def read_request(verb: str, body: Any, device: Device) -> tuple[str, str | None, str]:
    """Check an action request as MDE does (case-sensitive keys); returns type, scope, comment."""
    action_type = ACTION_TYPES[verb]
    if not isinstance(body, dict):
        raise _invalid_body("expected a JSON object")
    comment = body.get("Comment")
    if not isinstance(comment, str) or not comment.strip():
        raise _invalid_body("'Comment' is required")
    scope: str | None = None
    if action_type == "Isolate":
        scope = body.get("IsolationType", "Full")
        if scope not in ("Full", "Selective", "UnManagedDevice"):
            raise _invalid_body("'IsolationType' must be Full, Selective or UnManagedDevice")
        if scope == "Selective" and not device.platform.startswith("Windows"):
            raise ApiError(
                400,
                "OsPlatformNotSupported",
                f"Selective isolation is not supported on {device.platform} devices",
            )
        if scope == "UnManagedDevice":
            scope = "Full"
    elif action_type == "RunAntiVirusScan":
        scope = body.get("ScanType")
        if scope not in ("Quick", "Full"):
            raise _invalid_body("'ScanType' must be Quick or Full")
    elif action_type == "Offboard" and device.platform in ("macOS", "Linux"):
        raise ApiError(
            400,
            "OsPlatformNotSupported",
            f"Offboarding through the API is not supported on {device.platform} devices",
        )
    return action_type, scope, comment


def advance(action: MachineAction, now: datetime) -> bool:
    """Move an action along its timeline; True when it has just succeeded."""
    if not action.active:
        return False
    started = action.created + timedelta(seconds=action.duration / 3)
    finished = action.created + timedelta(seconds=action.duration)
    if now >= finished:
        action.status = action.outcome
        action.last_update = finished
        return action.outcome == "Succeeded"
    if now >= started and action.status == "Pending":
        action.status = "InProgress"
        action.last_update = started
    return False


def apply_success(action: MachineAction, device: Device) -> None:
    """What a finished action does to its device."""
    if action.type == "Isolate":
        device.isolated = True
    elif action.type == "Unisolate":
        device.isolated = False
    elif action.type == "Offboard":
        device.offboarded = True
        device.isolated = False


def render_action(action: MachineAction) -> dict[str, Any]:
    """The MDE MachineAction entity, in the documented shape."""
    return {
        "id": action.id,
        "type": action.type,
        "title": _TITLES[action.type],
        "scope": action.scope,
        "requestor": action.requestor,
        "requestorComment": action.comment,
        "requestSource": "PublicApi",
        "status": action.status,
        "machineId": action.device_id,
        "computerDnsName": action.dns_name,
        "creationDateTimeUtc": odata_time(action.created),
        "lastUpdateDateTimeUtc": odata_time(action.last_update),
        "cancellationRequestor": None,
        "cancellationComment": None,
        "cancellationDateTimeUtc": None,
        "errorHResult": 0 if action.status != "Failed" else -2147467259,
        "commands": [],
        "externalID": None,
        "troubleshootInfo": None,
        "relatedFileInfo": None,
    }
