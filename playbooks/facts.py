"""What a playbook rule may look at, so rules never depend on one EDR's payload shape."""

from __future__ import annotations

from dataclasses import dataclass

from edrtrial.connectors.base import AlertRecord


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
    tenant_id: str = ""  # the EDR tenant (e.g. the Entra tenant id)
    incident_id: str | None = None

    @classmethod
    def from_record(cls, record: AlertRecord, company_key: str, business_hours: bool) -> AlertFacts:
        """The facts of a connector's alert record."""
        names = dict.fromkeys(device.name for device in record.devices if device.name)
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
            incident_id=record.incident_source_id,
        )


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

    @classmethod
    def of(cls, facts: AlertFacts) -> FoldedFacts:
        """Fold an alert's facts; `T1059.001` also counts as its parent `T1059`."""
        techniques: set[str] = set()
        for technique in facts.mitre_techniques:
            upper = technique.strip().upper()
            techniques.add(upper)
            techniques.add(upper.partition(".")[0])
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
        )
