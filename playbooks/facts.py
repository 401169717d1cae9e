"""What a playbook rule may look at, so rules never depend on one EDR's payload shape."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from edrtrial.connectors.base import AlertRecord

IpKey = tuple[int, int]
"""An IP address as (version, integer), so a CIDR test is one mask and compare."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertFacts:
    """One alert as rules see it; the caller supplies the company and the business-hours flag."""

    title: str
    severity: str
    company_key: str
    business_hours: bool
    status: str = ""
    category: str = ""
    detection_source: str = ""
    service_source: str = ""
    mitre_techniques: tuple[str, ...] = ()
    device_names: tuple[str, ...] = ()
    device_tags: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    file_hashes: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()
    urls: tuple[str, ...] = ()
    command_lines: tuple[str, ...] = ()  # processes the evidence names, as they ran
    tenant_id: str = ""  # the EDR tenant (e.g. the Entra tenant id)
    incident_id: str | None = None

    @classmethod
    def from_record(
        cls,
        record: AlertRecord,
        company_key: str,
        business_hours: bool,
        *,
        tenant_id: str = "",
        device_tags: tuple[str, ...] = (),
    ) -> AlertFacts:
        """The facts of a connector's alert record (devices, techniques and evidence)."""
        names = dict.fromkeys(device.name for device in record.devices if device.name)
        evidence = record.evidence
        return cls(
            title=record.title,
            severity=record.severity,
            company_key=company_key,
            business_hours=business_hours,
            status=record.status,
            category=record.category,
            detection_source=record.detection_source,
            service_source=record.service_source,
            mitre_techniques=tuple(record.mitre_techniques),
            device_names=tuple(names),
            device_tags=device_tags,
            users=tuple(evidence.users),
            file_hashes=tuple(evidence.file_hashes),
            ips=tuple(evidence.ips),
            urls=tuple(evidence.urls),
            command_lines=tuple(evidence.command_lines),
            tenant_id=tenant_id,
            incident_id=record.incident_source_id,
        )


def user_forms(name: str) -> tuple[str, ...]:
    """A user as rules compare it: folded, and its bare account name for `DOM\\u` or `u@dom`."""
    full = name.strip().casefold()
    bare = full.rpartition("\\")[2].partition("@")[0]
    return (full,) if not bare or bare == full else (full, bare)


def ip_key(text: str) -> IpKey | None:
    """An alert's IP for CIDR tests; None when it is not an address (it then never matches)."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:10.0.0.1 is the IPv4 host 10.0.0.1
    return address.version, int(address)


@dataclass(frozen=True, slots=True)
class FoldedFacts:
    """The facts as rules compare them: case-folded once per alert, techniques with parents."""

    title: str
    raw_title: str  # for regexes: IGNORECASE on the original beats searching folded text
    severity: str
    company_key: str
    business_hours: bool
    status: str
    category: str
    detection_source: str
    service_source: str
    mitre_techniques: frozenset[str]
    device_names: tuple[str, ...]
    device_tags: frozenset[str]
    users: frozenset[str]  # full forms and bare account names
    raw_users: tuple[str, ...]
    file_hashes: frozenset[str]
    ips: tuple[IpKey, ...]
    urls: tuple[str, ...]
    raw_urls: tuple[str, ...]
    command_lines: tuple[str, ...]
    raw_command_lines: tuple[str, ...]
    tenant_id: str

    @classmethod
    def of(cls, facts: AlertFacts) -> FoldedFacts:
        """Fold an alert's facts; `T1059.001` also counts as its parent `T1059`."""
        techniques: set[str] = set()
        for technique in facts.mitre_techniques:
            upper = technique.strip().upper()
            techniques.add(upper)
            techniques.add(upper.partition(".")[0])
        users: set[str] = set()
        for user in facts.users:
            users.update(user_forms(user))
        ips = tuple(key for key in map(ip_key, facts.ips) if key is not None) if facts.ips else ()
        return cls(
            title=facts.title.casefold(),
            raw_title=facts.title,
            severity=facts.severity.strip().casefold(),
            company_key=facts.company_key.casefold(),
            business_hours=facts.business_hours,
            status=facts.status.strip().casefold(),
            category=facts.category.strip().casefold(),
            detection_source=facts.detection_source.strip().casefold(),
            service_source=facts.service_source.strip().casefold(),
            mitre_techniques=frozenset(techniques),
            device_names=facts.device_names,
            device_tags=frozenset(t.strip().casefold() for t in facts.device_tags),
            users=frozenset(users),
            raw_users=facts.users,
            file_hashes=frozenset(h.strip().lower() for h in facts.file_hashes),
            ips=ips,
            urls=tuple(u.casefold() for u in facts.urls),
            raw_urls=facts.urls,
            command_lines=tuple(c.casefold() for c in facts.command_lines),
            raw_command_lines=facts.command_lines,
            tenant_id=facts.tenant_id.strip().casefold(),
        )
