"""Sandbox devices and the two ways the APIs show them: an MDE machine and Graph evidence."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from edrtrial.sandbox.odata import odata_time

_USERS = (
    "tanaka",
    "suzuki",
    "sato",
    "takahashi",
    "watanabe",
    "ito",
    "yamamoto",
    "nakamura",
    "kobayashi",
    "kato",
    "yoshida",
    "yamada",
    "sasaki",
    "matsumoto",
    "inoue",
    "kimura",
)
_PREFIX = {"macOS": "mac", "Linux": "srv"}
_RISK = {"informational": "Informational", "low": "Low", "medium": "Medium", "high": "High"}

#: A device whose last full report is older than this does not count as "active".
ACTIVE_WINDOW = timedelta(days=7)


@dataclass(slots=True)
class Device:
    """One onboarded device; isolation and offboarding change it over time."""

    id: str
    dns_name: str
    platform: str
    version: str
    os_build: int | None
    agent_version: str
    first_seen: datetime
    last_seen: datetime
    stale: bool
    ip_address: str
    external_ip: str
    mac_address: str
    aad_device_id: str | None
    user: str
    domain: str
    exposure: str
    tags: tuple[str, ...] = ()
    isolated: bool = False
    offboarded: bool = False

    @property
    def upn(self) -> str:
        """The signed-in user's UPN, in the tenant's domain."""
        return f"{self.user}@{self.dns_name.split('.', 1)[1]}"

    @property
    def health(self) -> str:
        """MDE healthStatus: an offboarded sensor stops reporting and shows Inactive."""
        return "Inactive" if self.offboarded else "Active"


def machine_tags(platform: str, number: int) -> tuple[str, ...]:
    """The tags an operator gives: Linux boxes are servers, the first PC is the boss's.

    Derived from the host name alone, so tagging draws nothing from the tenant's generator
    and a seed keeps giving the same world.
    """
    if platform == "Linux":
        return ("server",)
    if number == 1 and platform.startswith("Windows"):
        return ("vip",)
    return ()


def _os_details(platform: str, rng: random.Random) -> tuple[str, int | None, str]:
    if platform == "Windows10":
        return "22H2", 19045, f"10.8760.19045.{rng.randint(3000, 5300)}"
    if platform == "Windows11":
        version, build = rng.choice((("23H2", 22631), ("24H2", 26100)))
        return version, build, f"10.8760.{build}.{rng.randint(1000, 4500)}"
    if platform == "macOS":
        return rng.choice(("14.6", "15.1")), None, "101.24092.0002"
    return "22.04", None, "101.24082.0004"


def make_device(
    rng: random.Random,
    platform: str,
    number: int,
    domain: str,
    now: datetime,
    *,
    stale: bool = False,
    onboarded_days_ago: float | None = None,
) -> Device:
    """A freshly generated device; `stale` ones stopped reporting more than a week ago."""
    version, build, agent = _os_details(platform, rng)
    days = onboarded_days_ago if onboarded_days_ago is not None else rng.uniform(10, 40)
    first_seen = now - timedelta(days=days, minutes=rng.randint(0, 600))
    if stale:
        last_seen = now - timedelta(days=rng.uniform(8, 9), minutes=rng.randint(0, 600))
        last_seen = max(last_seen, first_seen)
    else:
        last_seen = max(now - timedelta(hours=rng.uniform(0.2, 20)), first_seen)
    host = f"{_PREFIX.get(platform, 'pc')}-{number:03d}"
    return Device(
        id=f"{rng.getrandbits(160):040x}",
        dns_name=f"{host}.{domain}",
        platform=platform,
        version=version,
        os_build=build,
        agent_version=agent,
        first_seen=first_seen,
        last_seen=last_seen,
        stale=stale,
        ip_address=f"192.168.{rng.randint(0, 20)}.{rng.randint(10, 250)}",
        external_ip=f"203.0.113.{rng.randint(1, 254)}",
        mac_address="".join(f"{rng.randint(0, 255):02X}" for _ in range(6)),
        aad_device_id=(
            str(uuid.UUID(int=rng.getrandbits(128), version=4)) if platform != "Linux" else None
        ),
        user=rng.choice(_USERS),
        domain=domain.split(".")[0].upper(),
        exposure=rng.choice(("Low", "Medium", "Medium", "High")),
        tags=machine_tags(platform, number),
    )


def refresh_last_seen(device: Device, now: datetime) -> None:
    """Reporting devices send a full report about once a day; stale or offboarded ones never."""
    if device.stale or device.offboarded:
        return
    if now - device.last_seen > timedelta(hours=24):
        device.last_seen = now


def render_machine(device: Device, risk: str | None, rbac_group_id: int) -> dict[str, Any]:
    """The MDE machine entity (GET /api/machines) for a device; `risk` is its worst open alert."""
    return {
        "id": device.id,
        "computerDnsName": device.dns_name,
        "firstSeen": odata_time(device.first_seen),
        "lastSeen": odata_time(device.last_seen),
        "osPlatform": device.platform,
        "version": device.version,
        "osProcessor": "x64",
        "lastIpAddress": device.ip_address,
        "lastExternalIpAddress": device.external_ip,
        "osBuild": device.os_build,
        "healthStatus": device.health,
        "onboardingStatus": "Onboarded",
        "rbacGroupId": rbac_group_id,
        "rbacGroupName": "UnassignedGroup",
        "riskScore": _RISK.get(risk or "", "None"),
        "exposureLevel": device.exposure,
        "isAadJoined": device.aad_device_id is not None,
        "aadDeviceId": device.aad_device_id,
        "machineTags": list(device.tags),
        "defenderAvStatus": "Updated",
        "agentVersion": device.agent_version,
        "osArchitecture": "64-bit",
        "managedBy": "Intune" if device.platform.startswith("Windows") else "Unknown",
        "deviceValue": "Normal",
        "ipAddresses": [
            {
                "ipAddress": device.ip_address,
                "macAddress": device.mac_address,
                "type": "Ethernet",
                "operationalStatus": "Up",
            }
        ],
    }


def render_device_evidence(
    template: dict[str, Any],
    device: Device,
    created: datetime,
    risk: str | None,
    rbac_group_id: int,
) -> dict[str, Any]:
    """Graph deviceEvidence for an alert, in the documented shape, naming a real device."""
    return {
        **template,
        "createdDateTime": odata_time(created),
        "firstSeenDateTime": odata_time(device.first_seen),
        "mdeDeviceId": device.id,
        "azureAdDeviceId": device.aad_device_id,
        "deviceDnsName": device.dns_name,
        "osPlatform": device.platform,
        "osBuild": device.os_build,
        "version": device.version,
        "healthStatus": device.health.lower(),
        "riskScore": risk or "none",
        "rbacGroupId": rbac_group_id,
        "rbacGroupName": "UnassignedGroup",
        "onboardingStatus": "onboarded",
        "defenderAvStatus": "updated",
        "ipInterfaces": [device.ip_address],
        "loggedOnUsers": [{"accountName": device.user, "domainName": device.domain}],
        "roles": ["compromised"],
        "detailedRoles": ["Main device"],
        "tags": [],
        "vmMetadata": None,
    }
