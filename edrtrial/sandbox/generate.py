"""What a tenant holds when the sandbox starts, and what happens to it as time passes.

At start: devices (a couple of them silent for more than a week), the onboarding detection
test on most Windows devices, a few low/medium alerts, and for the first two tenants a
high-severity attack already under way, so a newcomer sees tickets on the first poll.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from edrtrial.sandbox.catalogue import ALERT_KINDS, ATTACK_CHAIN, AlertKind, kinds_for
from edrtrial.sandbox.devices import Device, refresh_last_seen
from edrtrial.sandbox.samples import fleet_platforms
from edrtrial.sandbox.tenant import TenantState

_DETECTION_WINDOW = timedelta(days=14)
_BACKLOG_WINDOW = timedelta(days=30)


def populate(tenant: TenantState, index: int, now: datetime, backlog: int | None) -> None:
    """Fill a new tenant: its devices, then either the realistic start or `backlog` alerts."""
    rng = tenant.rng
    platforms = fleet_platforms(index, rng)
    windows = [i for i, p in enumerate(platforms) if p.startswith("Windows")]
    stale_count = 2 if len(platforms) >= 5 else (1 if len(platforms) >= 3 else 0)
    # Silent devices are Windows ones, never the first (which carries the attack story).
    stale = set(rng.sample(windows[1:], min(stale_count, max(0, len(windows) - 1))))
    for position, platform in enumerate(platforms):
        tenant.add_device(platform, now, stale=position in stale)
    if backlog is None:
        _detection_tests(tenant, now)
        _everyday_alerts(tenant, now, rng.randint(2, 4))
        if index < 2 or rng.random() < 0.3:
            _attack(tenant, now)
    else:
        _backlog(tenant, now, backlog)


def _between(rng: random.Random, low: datetime, high: datetime) -> datetime:
    if high <= low:
        return high
    return low + (high - low) * rng.random()


def _window(device: Device, now: datetime, span: timedelta) -> tuple[datetime, datetime]:
    """When an alert on the device can have been raised: while it reported, within `span`."""
    return max(device.first_seen, now - span), min(device.last_seen, now)


def _settle(tenant: TenantState, alert_id: str, now: datetime, *, resolve_chance: float) -> None:
    """Give an old alert the status an analyst would have left it in by now."""
    rng = tenant.rng
    alert = tenant.alerts[alert_id]
    if now - alert.created < timedelta(days=1):
        return
    draw = rng.random()
    if draw < resolve_chance:
        tenant.set_alert_status(alert, "resolved", _between(rng, alert.created, now))
    elif draw < resolve_chance + 0.2:
        tenant.set_alert_status(alert, "inProgress", _between(rng, alert.created, now))


def detection_test(tenant: TenantState, device: Device, created: datetime) -> None:
    """The onboarding detection test: the [Test Alert], often with its medium companion."""
    alert = tenant.add_alert(ALERT_KINDS["detection_test"], device, created)
    if tenant.rng.random() < 0.6:
        companion = created + timedelta(seconds=tenant.rng.uniform(20, 180))
        tenant.add_alert(
            ALERT_KINDS["detection_test_companion"],
            device,
            companion,
            incident=tenant.incidents[alert.incident_id],
        )


def _detection_tests(tenant: TenantState, now: datetime) -> None:
    rng = tenant.rng
    windows = [d for d in tenant.devices.values() if d.platform.startswith("Windows")]
    chosen = [d for d in windows if rng.random() < 0.8]
    if windows and not chosen:
        chosen = [windows[0]]
    if len(windows) > 1 and len(chosen) == len(windows):
        chosen.pop(rng.randrange(1, len(chosen)))  # most, not all: someone skipped the test
    for device in chosen:
        low, high = _window(device, now, _DETECTION_WINDOW)
        detection_test(tenant, device, _between(rng, low, high))
    for incident in list(tenant.incidents.values()):
        for alert in tenant.incident_alerts(incident):
            if now - alert.created > timedelta(days=2) and rng.random() < 0.7:
                alert.classification = "informationalExpectedActivity"
                alert.determination = "securityTesting"
                tenant.set_alert_status(alert, "resolved", _between(rng, alert.created, now))


def _everyday_alerts(tenant: TenantState, now: datetime, count: int) -> None:
    rng = tenant.rng
    devices = tenant.reporting_devices()
    for _ in range(count):
        device = rng.choice(devices)
        kinds = [k for k in kinds_for(device.platform) if k.severity in ("low", "medium")]
        low, high = _window(device, now, timedelta(days=10))
        alert = tenant.add_alert(pick_kind(rng, kinds), device, _between(rng, low, high))
        _settle(tenant, alert.id, now, resolve_chance=0.4)


def _attack(tenant: TenantState, now: datetime) -> None:
    """A hands-on-keyboard attack on one Windows device: 2-3 alerts, one high incident."""
    rng = tenant.rng
    targets = [d for d in tenant.reporting_devices() if d.platform.startswith("Windows")]
    if not targets:
        return
    device = targets[0]
    chain = ATTACK_CHAIN[rng.randint(0, 1) :]
    at = now - timedelta(hours=rng.uniform(2, 30))
    incident = tenant.new_incident(at)
    for key in chain:
        tenant.add_alert(ALERT_KINDS[key], device, at, incident=incident)
        at = min(now, at + timedelta(minutes=rng.uniform(5, 40)))


def _backlog(tenant: TenantState, now: datetime, count: int) -> None:
    """Exactly `count` alerts over the last 30 days, a mix of kinds, some grouped."""
    rng = tenant.rng
    devices = tenant.reporting_devices() or list(tenant.devices.values())
    times = sorted(now - _BACKLOG_WINDOW * rng.random() for _ in range(count))
    last_incident: dict[str, str] = {}
    for created in times:
        device = rng.choice(devices)
        recent = last_incident.get(device.id)
        incident = None
        if recent is not None and rng.random() < 0.3:
            candidate = tenant.incidents[recent]
            if created - candidate.created < timedelta(days=2):
                incident = candidate
        alert = tenant.add_alert(
            pick_kind(rng, kinds_for(device.platform)), device, created, incident=incident
        )
        last_incident[device.id] = alert.incident_id
    for alert_id in list(tenant.alerts):
        _settle(tenant, alert_id, now, resolve_chance=0.6)


def pick_kind(rng: random.Random, kinds: list[AlertKind]) -> AlertKind:
    """A kind at random, common detections more often than rare attacks."""
    return rng.choices(kinds, weights=[k.weight for k in kinds])[0]


def step(tenant: TenantState, now: datetime, interval: timedelta) -> int:
    """Advance a tenant to `now`: due new alerts, alert status changes, actions, reports."""
    rng = tenant.rng
    tenant.advance_actions(now)
    for device in tenant.devices.values():
        refresh_last_seen(device, now)
    if tenant.next_alert_at is None:
        tenant.next_alert_at = now + interval * rng.uniform(0.3, 1.0)
    events = 0
    for _ in range(3):  # at most three intervals' worth of alerts per tick
        if tenant.next_alert_at > now:
            break
        events += _one_event(tenant, now)
        tenant.next_alert_at += interval
    if tenant.next_alert_at <= now:  # the sandbox was paused: skip ahead, don't flood
        tenant.next_alert_at = now + interval
    return events


def _one_event(tenant: TenantState, now: datetime) -> int:
    rng = tenant.rng
    devices = tenant.reporting_devices()
    if not devices:
        return 0
    device = rng.choice(devices)
    joinable = tenant.open_incidents_on(device.id)
    incident = rng.choice(joinable) if joinable and rng.random() < 0.25 else None
    tenant.add_alert(pick_kind(rng, kinds_for(device.platform)), device, now, incident=incident)
    open_alerts = [a for a in tenant.alerts.values() if a.open and a.created < now]
    if open_alerts and rng.random() < 0.5:
        alert = rng.choice(open_alerts)
        status = "resolved" if alert.status == "inProgress" or rng.random() < 0.4 else "inProgress"
        tenant.set_alert_status(alert, status, now)
        return 2
    return 1
