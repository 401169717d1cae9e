"""Alerts and incidents as the sandbox keeps them, and their Graph JSON (alerts_v2, incidents).

The JSON starts from the documented payloads (`alert_template.json`, `incident_template.json`,
copied from the Graph docs) so that key order and untouched fields stay as Microsoft sends them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

from edrtrial.sandbox.catalogue import SEVERITY_RANK, AlertKind, category_name
from edrtrial.sandbox.devices import Device, render_device_evidence
from edrtrial.sandbox.odata import odata_time
from edrtrial.timeutil import Stamp

_EICAR = (
    "3395856ce81f2b7382dee72602f798b642f14140",
    "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f",
)
_PORTAL = "https://security.microsoft.com"


@dataclass(slots=True)
class Alert:
    """One alert on one device, member of one incident."""

    id: str
    kind: AlertKind
    severity: str
    device_id: str
    incident_id: str
    created: datetime
    first_activity: datetime
    last_activity: datetime
    last_update: Stamp  # to the 100 ns, as Graph stamps changes
    status: str = "new"
    classification: str = "unknown"
    determination: str = "unknown"
    assigned_to: str | None = None
    resolved: datetime | None = None
    comments: list[dict[str, Any]] = field(default_factory=list)
    malformed: bool = False  # served without its timestamps, as a broken source might

    @property
    def open(self) -> bool:
        """Not yet resolved."""
        return self.status != "resolved"


@dataclass(slots=True)
class Incident:
    """A group of alerts; its time, severity and status follow its alerts."""

    id: str
    created: datetime
    last_update: Stamp
    alert_ids: list[str] = field(default_factory=list)
    status_override: str | None = None
    assigned_to: str | None = None
    classification: str = "unknown"
    determination: str = "unknown"
    custom_tags: list[str] = field(default_factory=list)


@cache
def _template(name: str) -> dict[str, Any]:
    text = resources.files("edrtrial.sandbox").joinpath(name).read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _evidence_template(odata_type: str) -> dict[str, Any]:
    for item in _template("alert_template.json")["evidence"]:
        if item["@odata.type"] == f"#microsoft.graph.security.{odata_type}":
            return dict(item)
    raise LookupError(f"alert_template.json has no {odata_type}")


def _hashes(kind: AlertKind, file_name: str) -> tuple[str, str]:
    if kind.key == "eicar":
        return _EICAR
    seed = f"{kind.key}/{file_name}".encode()
    return hashlib.sha1(seed).hexdigest(), hashlib.sha256(seed).hexdigest()


def _folder(kind_dir: str, device: Device) -> str:
    if kind_dir != "Downloads":
        return kind_dir
    if device.platform == "macOS":
        return f"/Users/{device.user}/Downloads"
    if device.platform == "Linux":
        return f"/home/{device.user}/Downloads"
    return f"C:\\Users\\{device.user}\\Downloads"


def _file_details(kind: AlertKind, name: str, folder: str) -> dict[str, Any]:
    sha1, sha256 = _hashes(kind, name)
    return {
        "sha1": sha1,
        "sha256": sha256,
        "fileName": name,
        "filePath": folder,
        "fileSize": 68 if kind.key == "eicar" else 40_000 + int(sha1[:4], 16) * 16,
        "filePublisher": None,
        "signer": None,
        "issuer": None,
    }


def _verdicts(kind: AlertKind) -> dict[str, Any]:
    prevented = kind.detection_source == "antivirus"
    return {
        "verdict": "malicious" if prevented else "suspicious",
        "remediationStatus": "prevented" if prevented else "none",
    }


def _user_account(device: Device) -> dict[str, Any]:
    """The device's signed-in user as Graph's userAccount; the SID is stable per user."""
    digest = hashlib.sha256(f"{device.domain}\\{device.user}".encode()).digest()
    parts = [int.from_bytes(digest[i : i + 4], "big") for i in (0, 4, 8)]
    return {
        "accountName": device.user,
        "domainName": device.domain,
        "userSid": f"S-1-5-21-{parts[0]}-{parts[1]}-{parts[2]}-{1001 + digest[12]}",
        "azureAdUserId": None,
        "userPrincipalName": device.upn,
        "displayName": device.user.capitalize(),
    }


def _common(odata_type: str, created: str, kind: AlertKind) -> dict[str, Any]:
    """The alertEvidence fields every evidence type starts with (for types the template lacks)."""
    return {
        "@odata.type": f"#microsoft.graph.security.{odata_type}",
        "createdDateTime": created,
        **_verdicts(kind),
        "remediationStatusDetails": None,
        "roles": [],
        "detailedRoles": [],
        "tags": [],
    }


def _network(alert: Alert, created: str) -> list[dict[str, Any]]:
    """urlEvidence and ipEvidence for kinds that name a remote site (one pair per alert)."""
    kind = alert.kind
    if not (kind.urls or kind.remote_ips):
        return []
    pick = int(hashlib.sha256(alert.id.encode()).hexdigest()[:8], 16)
    roles = ["commandAndControl"] if kind.category in ("CommandAndControl", "Malware") else []
    items = []
    if kind.urls:
        url = kind.urls[pick % len(kind.urls)]
        items.append({**_common("urlEvidence", created, kind), "roles": roles, "url": url})
    if kind.remote_ips:
        ip = kind.remote_ips[pick % len(kind.remote_ips)]
        items.append(
            {
                **_common("ipEvidence", created, kind),
                "roles": roles,
                "ipAddress": ip,
                "countryLetterCode": None,
            }
        )
    return items


def _evidence(alert: Alert, device: Device, risk: str | None, rbac: int) -> list[dict[str, Any]]:
    kind = alert.kind
    created = odata_time(alert.created)
    items = [
        render_device_evidence(
            _evidence_template("deviceEvidence"), device, alert.created, risk, rbac
        ),
        {
            **_common("userEvidence", created, kind),
            "verdict": "unknown",  # the user is involved, not judged
            "remediationStatus": "none",
            "detailedRoles": ["Signed-in user"],
            "userAccount": _user_account(device),
        },
    ]
    if kind.file_name and kind.file_dir:
        items.append(
            {
                **_evidence_template("fileEvidence"),
                "createdDateTime": created,
                **_verdicts(kind),
                "detectionStatus": "prevented" if kind.threat_name else "detected",
                "mdeDeviceId": device.id,
                "roles": [],
                "detailedRoles": ["Detected"],
                "tags": [],
                "fileDetails": _file_details(kind, kind.file_name, _folder(kind.file_dir, device)),
            }
        )
    if kind.command_line:
        image = kind.command_line.split()[0].strip('"')
        pid = int(hashlib.md5(alert.id.encode()).hexdigest()[:4], 16)
        windows = device.platform.startswith("Windows")
        items.append(
            {
                **_evidence_template("processEvidence"),
                "createdDateTime": created,
                **_verdicts(kind),
                "processId": pid,
                "parentProcessId": pid // 7 + 4,
                "processCommandLine": kind.command_line,
                "processCreationDateTime": odata_time(alert.first_activity),
                "parentProcessCreationDateTime": odata_time(device.last_seen),
                "detectionStatus": "detected",
                "mdeDeviceId": device.id,
                "roles": [],
                "detailedRoles": [],
                "tags": [],
                "imageFile": _file_details(
                    kind,
                    image,
                    kind.file_dir
                    if kind.file_dir and "\\" in kind.file_dir
                    else "C:\\Windows\\System32",
                ),
                "parentProcessImageFile": _file_details(
                    kind,
                    "explorer.exe" if windows else "bash",
                    "C:\\Windows" if windows else "/usr/bin",
                ),
                "userAccount": _user_account(device),
            }
        )
    return items + _network(alert, created)


def render_alert(
    alert: Alert, tenant_id: str, device: Device, risk: str | None, rbac: int
) -> dict[str, Any]:
    """The Graph alerts_v2 entity for an alert; `risk` is the device's worst open severity."""
    kind = alert.kind
    return {
        **_template("alert_template.json"),
        "id": alert.id,
        "providerAlertId": alert.id,
        "incidentId": alert.incident_id,
        "status": alert.status,
        "severity": alert.severity,
        "classification": alert.classification,
        "determination": alert.determination,
        "serviceSource": "microsoftDefenderForEndpoint",
        "detectionSource": kind.detection_source,
        "detectorId": kind.detector_id,
        "tenantId": tenant_id,
        "title": kind.title,
        "description": kind.description,
        "recommendedActions": kind.recommended_actions,
        "category": kind.category,
        "assignedTo": alert.assigned_to,
        "alertWebUrl": f"{_PORTAL}/alerts/{alert.id}?tid={tenant_id}",
        "incidentWebUrl": f"{_PORTAL}/incidents/{alert.incident_id}?tid={tenant_id}",
        "actorDisplayName": None,
        "threatDisplayName": kind.threat_name,
        "threatFamilyName": kind.threat_family,
        "mitreTechniques": list(kind.mitre),
        "createdDateTime": odata_time(alert.created),
        "lastUpdateDateTime": None if alert.malformed else alert.last_update.iso(),
        "resolvedDateTime": odata_time(alert.resolved) if alert.resolved else None,
        "firstActivityDateTime": odata_time(alert.first_activity),
        "lastActivityDateTime": odata_time(alert.last_activity),
        "comments": [dict(comment) for comment in alert.comments],
        "evidence": _evidence(alert, device, risk, rbac),
        "systemTags": [],
    }


def incident_severity(alerts: list[Alert]) -> str:
    """An incident is as severe as its worst alert."""
    return max((a.severity for a in alerts), key=SEVERITY_RANK.__getitem__, default="unknown")


def incident_status(incident: Incident, alerts: list[Alert]) -> str:
    """Resolved once every alert is; otherwise what an analyst set, or what its alerts say."""
    if alerts and all(not a.open for a in alerts):
        return "resolved"
    if incident.status_override:
        return incident.status_override
    return "inProgress" if any(a.status == "inProgress" for a in alerts) else "active"


def incident_name(alerts: list[Alert]) -> str:
    """Name an incident the way the Defender portal does, from its alerts."""
    where = "one endpoint" if len({a.device_id for a in alerts}) <= 1 else "multiple endpoints"
    titles = list(dict.fromkeys(a.kind.title for a in alerts))
    categories = list(dict.fromkeys(category_name(a.kind.category) for a in alerts))
    if len(titles) == 1:
        return f"{titles[0]} on {where}"
    if len(categories) == 1:
        return f"{categories[0]} incident on {where}"
    return f"Multi-stage incident involving {' & '.join(categories[:2])} on {where}"


def render_incident(incident: Incident, tenant_id: str, alerts: list[Alert]) -> dict[str, Any]:
    """The Graph incident entity; name, severity, status and time follow its alerts."""
    return {
        **_template("incident_template.json"),
        "id": incident.id,
        "incidentWebUrl": f"{_PORTAL}/incidents/{incident.id}?tid={tenant_id}",
        "redirectIncidentId": None,
        "tenantId": tenant_id,
        "displayName": incident_name(alerts),
        "createdDateTime": odata_time(incident.created),
        "lastUpdateDateTime": incident.last_update.iso(),
        "assignedTo": incident.assigned_to,
        "classification": incident.classification,
        "determination": incident.determination,
        "status": incident_status(incident, alerts),
        "severity": incident_severity(alerts),
        "customTags": list(incident.custom_tags),
        "comments": [],
        "systemTags": [],
        "description": "",
    }
