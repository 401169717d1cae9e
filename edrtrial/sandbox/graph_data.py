"""Graph's view of a tenant: list, get and update alerts_v2 and incidents.

Lists are ordered by (lastUpdateDateTime, id) and continue after the last item of the
previous page (keyset paging), so an item updated while a client pages simply moves to a
later page: no other item is skipped or repeated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from edrtrial.sandbox.alerts import Alert, Incident, incident_severity, incident_status
from edrtrial.sandbox.faults import ApiError
from edrtrial.sandbox.odata import Clause, FieldKind, Value, matches_all
from edrtrial.sandbox.tenant import TenantState, changed
from edrtrial.timeutil import Stamp

ALERT_FIELDS: dict[str, FieldKind] = {
    "lastUpdateDateTime": "datetime",
    "createdDateTime": "datetime",
    "serviceSource": "string",
    "severity": "string",
    "status": "string",
    "classification": "string",
    "determination": "string",
    "assignedTo": "string",
}
INCIDENT_FIELDS: dict[str, FieldKind] = {
    "lastUpdateDateTime": "datetime",
    "createdDateTime": "datetime",
    "severity": "string",
    "status": "string",
    "classification": "string",
    "determination": "string",
    "assignedTo": "string",
}
ALERT_STATUSES = ("new", "inProgress", "resolved")
INCIDENT_STATUSES = ("active", "inProgress", "resolved")
CLASSIFICATIONS = ("unknown", "falsePositive", "truePositive", "informationalExpectedActivity")
DETERMINATIONS = (
    "unknown",
    "apt",
    "malware",
    "securityPersonnel",
    "securityTesting",
    "unwantedSoftware",
    "other",
    "multiStagedAttack",
    "compromisedUser",
    "compromisedAccount",
    "phishing",
    "maliciousUserActivity",
    "clean",
    "insufficientData",
    "confirmedUserActivity",
    "lineOfBusinessApplication",
    "notMalicious",
    "notEnoughDataToValidate",
    "confirmedActivity",
)
PageKey = tuple[Stamp, str]
_Item = TypeVar("_Item", Alert, Incident)


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a Graph list; `next_key` is set when more items follow."""

    items: list[dict[str, Any]]
    next_key: PageKey | None
    count: int


def _keyset(
    items: list[_Item], after: PageKey | None, skip: int, top: int
) -> tuple[list[_Item], PageKey | None]:
    items.sort(key=lambda item: (item.last_update, item.id))
    if after is not None:
        items = [item for item in items if (item.last_update, item.id) > after]
    else:
        items = items[skip:]
    page = items[:top]
    more = len(items) > top and bool(page)
    return page, ((page[-1].last_update, page[-1].id) if more else None)


def _alert_value(alert: Alert) -> Callable[[str], Value]:
    values: dict[str, Value] = {
        "lastUpdateDateTime": alert.last_update,
        "createdDateTime": alert.created,
        "serviceSource": "microsoftDefenderForEndpoint",
        "severity": alert.severity,
        "status": alert.status,
        "classification": alert.classification,
        "determination": alert.determination,
        "assignedTo": alert.assigned_to,
    }
    return values.__getitem__


def list_alerts(
    tenant: TenantState, clauses: list[Clause], after: PageKey | None, skip: int, top: int
) -> Page:
    """A page of the tenant's alerts matching the filter."""
    matching = [a for a in tenant.alerts.values() if matches_all(clauses, _alert_value(a))]
    page, next_key = _keyset(list(matching), after, skip, top)
    risks = tenant.device_risks()
    return Page([tenant.alert_json(a, risks) for a in page], next_key, len(matching))


def _incident_value(tenant: TenantState, incident: Incident) -> Callable[[str], Value]:
    alerts = tenant.incident_alerts(incident)
    values: dict[str, Value] = {
        "lastUpdateDateTime": incident.last_update,
        "createdDateTime": incident.created,
        "severity": incident_severity(alerts),
        "status": incident_status(incident, alerts),
        "classification": incident.classification,
        "determination": incident.determination,
        "assignedTo": incident.assigned_to,
    }
    return values.__getitem__


def list_incidents(
    tenant: TenantState,
    clauses: list[Clause],
    after: PageKey | None,
    skip: int,
    top: int,
    expand: bool,
) -> Page:
    """A page of the tenant's incidents matching the filter, with alerts if expanded."""
    matching = [
        i
        for i in tenant.incidents.values()
        if i.alert_ids and matches_all(clauses, _incident_value(tenant, i))
    ]
    page, next_key = _keyset(list(matching), after, skip, top)
    risks = tenant.device_risks()
    return Page([tenant.incident_json(i, risks, expand) for i in page], next_key, len(matching))


def get_alert(tenant: TenantState, alert_id: str) -> dict[str, Any]:
    """One alert, or 404."""
    return tenant.alert_json(_alert(tenant, alert_id), tenant.device_risks())


def get_incident(tenant: TenantState, incident_id: str, expand: bool) -> dict[str, Any]:
    """One incident, or 404."""
    return tenant.incident_json(_incident(tenant, incident_id), tenant.device_risks(), expand)


def _alert(tenant: TenantState, alert_id: str) -> Alert:
    alert = tenant.alerts.get(alert_id)
    if alert is None:
        raise ApiError(404, "NotFound", f"Alert with id '{alert_id}' was not found.")
    return alert


def _incident(tenant: TenantState, incident_id: str) -> Incident:
    incident = tenant.incidents.get(incident_id)
    if incident is None or not incident.alert_ids:
        raise ApiError(404, "NotFound", f"Incident with id '{incident_id}' was not found.")
    return incident


def _enum(changes: dict[str, Any], name: str, allowed: tuple[str, ...]) -> str | None:
    if name not in changes:
        return None
    value = changes[name]
    for option in allowed:
        if isinstance(value, str) and value.lower() == option.lower():
            return option
    raise ApiError(
        400,
        "BadRequest",
        f"Invalid value '{value}' for property '{name}'; expected one of {', '.join(allowed)}.",
    )


def _check_keys(changes: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(changes, dict):
        raise ApiError(400, "BadRequest", "The request body must be a JSON object.")
    unknown = set(changes) - allowed - {"@odata.type"}
    if unknown:
        raise ApiError(
            400,
            "BadRequest",
            f"Property '{sorted(unknown)[0]}' cannot be updated; updatable properties: "
            f"{', '.join(sorted(allowed))}.",
        )
    assigned = changes.get("assignedTo")
    if "assignedTo" in changes and assigned is not None and not isinstance(assigned, str):
        raise ApiError(400, "BadRequest", "Property 'assignedTo' must be a string or null.")
    return changes


def update_alert(tenant: TenantState, alert_id: str, changes: Any, now: datetime) -> dict[str, Any]:
    """PATCH an alert (status, classification, determination, assignedTo); bumps its time."""
    alert = _alert(tenant, alert_id)
    body = _check_keys(changes, {"status", "classification", "determination", "assignedTo"})
    status = _enum(body, "status", ALERT_STATUSES)
    classification = _enum(body, "classification", CLASSIFICATIONS)
    determination = _enum(body, "determination", DETERMINATIONS)
    if classification:
        alert.classification = classification
    if determination:
        alert.determination = determination
    if "assignedTo" in body:
        alert.assigned_to = body["assignedTo"]
    tenant.set_alert_status(alert, status or alert.status, now)
    return tenant.alert_json(alert, tenant.device_risks())


def update_incident(
    tenant: TenantState, incident_id: str, changes: Any, now: datetime
) -> dict[str, Any]:
    """PATCH an incident; resolving it resolves its alerts, reopening it reopens them."""
    incident = _incident(tenant, incident_id)
    body = _check_keys(
        changes, {"status", "classification", "determination", "assignedTo", "customTags"}
    )
    status = _enum(body, "status", INCIDENT_STATUSES)
    classification = _enum(body, "classification", CLASSIFICATIONS)
    determination = _enum(body, "determination", DETERMINATIONS)
    tags = body.get("customTags", incident.custom_tags)
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise ApiError(400, "BadRequest", "Property 'customTags' must be a list of strings.")
    incident.custom_tags = list(tags)
    incident.classification = classification or incident.classification
    incident.determination = determination or incident.determination
    if "assignedTo" in body:
        incident.assigned_to = body["assignedTo"]
    alerts = tenant.incident_alerts(incident)
    if status == "resolved":
        incident.status_override = None
        for alert in alerts:
            if alert.open:
                tenant.set_alert_status(alert, "resolved", now)
    elif status is not None:
        incident.status_override = status
        if all(not alert.open for alert in alerts):
            reopened = "inProgress" if status == "inProgress" else "new"
            for alert in alerts:
                tenant.set_alert_status(alert, reopened, now)
    tenant.touch(incident, changed(incident.last_update, now))
    return tenant.incident_json(incident, tenant.device_risks(), expand=False)
