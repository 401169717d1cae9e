"""Alerts and devices added on request (tests, operator drills), beside the ones time brings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime

from edrtrial.sandbox.catalogue import ALERT_KINDS
from edrtrial.sandbox.generate import detection_test
from edrtrial.sandbox.tenant import TenantState

PLATFORMS = ("Windows10", "Windows11", "macOS", "Linux")
SEVERITIES = ("informational", "low", "medium", "high")
#: What an injected alert may say instead of its kind's text (a drill, or a hostile EDR).
ALERT_TEXT = ("title", "description", "file_name", "command_line", "url")


def inject_alerts(
    tenant: TenantState,
    kind: str,
    count: int,
    now: datetime,
    *,
    incident_id: str | None = None,
    device_id: str | None = None,
    severity: str | None = None,
    text: Mapping[str, str] | None = None,
) -> list[str]:
    """Raise `count` alerts of a kind at `now`, on the device (or random ones where it can fire),
    each in its own incident, all in one new incident ("new"), or in an existing one.

    `text` replaces what the alerts say (keys in `ALERT_TEXT`), as any EDR text may be
    anything: a title with markup, a command line with escape sequences.
    """
    if kind not in ALERT_KINDS:
        raise ValueError(f"unknown alert kind {kind!r}; known: {', '.join(ALERT_KINDS)}")
    if count < 1:
        raise ValueError("count must be at least 1")
    if severity is not None and severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}")
    alert_kind = ALERT_KINDS[kind]
    if text:
        unknown = sorted(set(text) - set(ALERT_TEXT))
        if unknown:
            raise ValueError(f"an alert's text has no {', '.join(unknown)}; known: {ALERT_TEXT}")
        fields = {k: str(v) for k, v in text.items() if k != "url"}
        if "url" in text:
            fields["urls"] = (str(text["url"]),)  # type: ignore[assignment]
        alert_kind = replace(alert_kind, **fields)  # type: ignore[arg-type]
    if device_id is not None:
        device = tenant.find_device(device_id)
        if device is None:
            raise LookupError(f"no device {device_id} in tenant {tenant.tenant_id}")
        devices = [device]
    else:
        devices = [d for d in tenant.reporting_devices() if d.platform in alert_kind.platforms]
        if not devices:
            raise ValueError(f"tenant {tenant.tenant_id} has no device where {kind} can fire")
    shared = None
    if incident_id == "new":
        shared = tenant.new_incident(now)
    elif incident_id is not None:
        shared = tenant.incidents.get(incident_id)
        if shared is None:
            raise LookupError(f"no incident {incident_id} in tenant {tenant.tenant_id}")
    return [
        tenant.add_alert(
            alert_kind, tenant.rng.choice(devices), now, incident=shared, severity=severity
        ).id
        for _ in range(count)
    ]


def onboard_devices(
    tenant: TenantState, count: int, platform: str, now: datetime, detection_test_alert: bool
) -> list[str]:
    """Onboard devices at `now`; Windows ones run the detection test straight away."""
    if platform not in PLATFORMS:
        raise ValueError(f"os_platform must be one of {', '.join(PLATFORMS)}")
    if count < 1:
        raise ValueError("count must be at least 1")
    added = []
    for _ in range(count):
        device = tenant.add_device(platform, now, onboarded_days_ago=0.005)
        device.last_seen = now
        if detection_test_alert and platform.startswith("Windows"):
            detection_test(tenant, device, now)
        added.append(device.id)
    return added
