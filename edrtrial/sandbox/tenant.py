"""One sample tenant's data (devices, alerts, incidents, machine actions) and the changes to it
that keep alerts and incidents consistent. Not thread-safe: the world's lock guards it."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from edrtrial.sandbox.actions import MachineAction, advance, apply_success
from edrtrial.sandbox.alerts import Alert, Incident, render_alert, render_incident
from edrtrial.sandbox.catalogue import SEVERITY_RANK, AlertKind
from edrtrial.sandbox.devices import Device, make_device
from edrtrial.sandbox.samples import SampleTenant
from edrtrial.timeutil import Stamp

_ACTION_NAMESPACE = uuid.UUID("7d3e9c1a-2b4f-4e6a-9c8d-1f0e2d3c4b5a")
_PREFIXES = {"macOS": "mac", "Linux": "srv"}


def changed(previous: Stamp, at: datetime) -> Stamp:
    """The stamp of a change made at `at`: a record's stamps only go up, as Graph's do, so a
    second change within the same 100 ns (or with the clock behind) is stamped one tick later."""
    return max(Stamp.of(at), Stamp(previous.ticks + 1))


class TenantState:
    """Everything the APIs show for one tenant."""

    def __init__(self, info: SampleTenant, seed: int) -> None:
        self.info = info
        # One generator per tenant: tenant 1 looks the same whether 3 or 1000 are generated.
        self.rng = random.Random(f"{seed}/{info.tenant_id}")
        self.rbac_group_id = self.rng.randint(1, 200)
        self.devices: dict[str, Device] = {}
        self.alerts: dict[str, Alert] = {}
        self.incidents: dict[str, Incident] = {}
        self.actions: dict[str, MachineAction] = {}
        self.consent = True
        self.next_alert_at: datetime | None = None
        self._next_incident = self.rng.randint(100, 9000)
        self._host_numbers: dict[str, int] = {}

    @property
    def tenant_id(self) -> str:
        """The Entra tenant id."""
        return self.info.tenant_id

    # -- devices -----------------------------------------------------------------------------

    def add_device(
        self,
        platform: str,
        now: datetime,
        *,
        stale: bool = False,
        onboarded_days_ago: float | None = None,
    ) -> Device:
        """Onboard a device with the next free host name of its kind (pc-001, mac-001, srv-001)."""
        prefix = _PREFIXES.get(platform, "pc")
        number = self._host_numbers.get(prefix, 0) + 1
        self._host_numbers[prefix] = number
        device = make_device(
            self.rng,
            platform,
            number,
            self.info.domain,
            now,
            stale=stale,
            onboarded_days_ago=onboarded_days_ago,
        )
        self.devices[device.id] = device
        return device

    def find_device(self, id_or_name: str) -> Device | None:
        """A device by MDE id or by computer DNS name, as GET /api/machines/{id} accepts both."""
        device = self.devices.get(id_or_name.lower())
        if device is not None:
            return device
        name = id_or_name.lower()
        return next((d for d in self.devices.values() if d.dns_name == name), None)

    def reporting_devices(self) -> list[Device]:
        """Devices whose sensor still reports (not stale, not offboarded)."""
        return [d for d in self.devices.values() if not d.stale and not d.offboarded]

    def device_risks(self) -> dict[str, str]:
        """Each device's worst open alert severity, which MDE shows as its risk score."""
        risks: dict[str, str] = {}
        for alert in self.alerts.values():
            if alert.open:
                current = risks.get(alert.device_id, "unknown")
                if SEVERITY_RANK[alert.severity] > SEVERITY_RANK[current]:
                    risks[alert.device_id] = alert.severity
        return risks

    # -- alerts and incidents ----------------------------------------------------------------

    def _alert_id(self) -> str:
        while True:
            # Shaped like Defender's ids: "da" + 18 digits + "_" + a negative 32-bit number.
            alert_id = (
                f"da638{self.rng.randrange(10**14, 10**15)}_-{self.rng.randrange(10**8, 2**31)}"
            )
            if alert_id not in self.alerts:
                return alert_id

    def new_incident(self, created: datetime) -> Incident:
        """An empty incident with the tenant's next incident number."""
        self._next_incident += self.rng.randint(1, 3)
        incident = Incident(str(self._next_incident), created, Stamp.of(created))
        self.incidents[incident.id] = incident
        return incident

    def add_alert(
        self,
        kind: AlertKind,
        device: Device,
        created: datetime,
        *,
        incident: Incident | None = None,
        severity: str | None = None,
    ) -> Alert:
        """Raise an alert at `created`, in `incident` or in a new one."""
        if incident is None:
            incident = self.new_incident(created)
        first = created - timedelta(minutes=self.rng.uniform(1, 30))
        alert = Alert(
            id=self._alert_id(),
            kind=kind,
            severity=severity or kind.severity,
            device_id=device.id,
            incident_id=incident.id,
            created=created,
            first_activity=first,
            last_activity=first + (created - first) * self.rng.random(),
            last_update=Stamp.of(created),
        )
        self.alerts[alert.id] = alert
        incident.alert_ids.append(alert.id)
        self.touch(incident, alert.last_update)
        return alert

    def touch(self, incident: Incident, at: Stamp) -> None:
        """An incident's lastUpdateDateTime follows its latest change or alert change."""
        if at > incident.last_update:
            incident.last_update = at

    def set_alert_status(self, alert: Alert, status: str, at: datetime) -> None:
        """Change an alert's status at `at`, keeping resolvedDateTime and its incident in step."""
        alert.status = status
        alert.resolved = at if status == "resolved" else None
        alert.last_update = changed(alert.last_update, at)
        self.touch(self.incidents[alert.incident_id], alert.last_update)

    def incident_alerts(self, incident: Incident) -> list[Alert]:
        """The alerts of an incident, oldest first."""
        return [self.alerts[alert_id] for alert_id in incident.alert_ids]

    def open_incidents_on(self, device_id: str) -> list[Incident]:
        """Unresolved incidents with an alert on the device, which a new alert may join."""
        found: dict[str, Incident] = {}
        for alert in self.alerts.values():
            if alert.device_id == device_id and alert.open:
                found[alert.incident_id] = self.incidents[alert.incident_id]
        return list(found.values())

    def alert_json(self, alert: Alert, risks: dict[str, str]) -> dict[str, Any]:
        """The Graph JSON of one alert."""
        device = self.devices[alert.device_id]
        return render_alert(alert, self.tenant_id, device, risks.get(device.id), self.rbac_group_id)

    def incident_json(
        self, incident: Incident, risks: dict[str, str], expand: bool
    ) -> dict[str, Any]:
        """The Graph JSON of one incident, with its alerts when `$expand=alerts`."""
        alerts = self.incident_alerts(incident)
        body = render_incident(incident, self.tenant_id, alerts)
        if expand:
            body["alerts"] = [self.alert_json(alert, risks) for alert in alerts]
        return body

    def summary(self) -> dict[str, Any]:
        """Counts an operator or a test reads at a glance, JSON-ready."""
        alerts = self.alerts.values()
        return {
            "tenant_id": self.tenant_id,
            "key": self.info.key,
            "name": self.info.name,
            "consent": self.consent,
            "devices": len(self.devices),
            "isolated_devices": [d.id for d in self.devices.values() if d.isolated],
            "offboarded_devices": [d.id for d in self.devices.values() if d.offboarded],
            "alerts": len(self.alerts),
            "open_alerts": sum(1 for a in alerts if a.open),
            "alerts_by_severity": dict(Counter(a.severity for a in alerts)),
            "incidents": sum(1 for i in self.incidents.values() if i.alert_ids),
            "machine_actions": self.action_table(),
        }

    # -- machine actions ---------------------------------------------------------------------

    def new_action_id(self) -> str:
        """A GUID for the next machine action, stable for a seed."""
        return str(uuid.uuid5(_ACTION_NAMESPACE, f"{self.tenant_id}/{len(self.actions)}"))

    def action_table(self) -> dict[str, dict[str, int]]:
        """Machine actions requested, per device id and type."""
        table: dict[str, Counter[str]] = {}
        for action in self.actions.values():
            table.setdefault(action.device_id, Counter())[action.type] += 1
        return {device: dict(types) for device, types in table.items()}

    def advance_actions(self, now: datetime) -> None:
        """Move pending actions along their timeline and apply the ones that succeeded."""
        for action in self.actions.values():
            if action.active and advance(action, now):
                apply_success(action, self.devices[action.device_id])
