"""Playbook throughput: a few thousand real-looking alerts through ~200 rules."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edrtrial.connectors.defender.evidence import graph_evidence
from edrtrial.playbooks.engine import (
    AlertFacts,
    Playbook,
    default_playbook_paths,
    load_playbooks,
)

_MIN_SECONDS = 1.0


def _toml_list(values: Sequence[str]) -> str:
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


def _rule(i: int, companies: Sequence[str]) -> str:
    """One generated rule: mostly conditions alerts almost meet, never `stop`.

    Six of the fourteen shapes look at evidence (users, hashes, IPs, URLs, device tags).
    """
    company = companies[i % len(companies)]
    technique = f"T{1000 + (i * 53) % 600}"
    digest = hashlib.sha256(f"bench-{i}".encode()).hexdigest()
    users = [f"svc-{i}", f"SAKURA\\admin{i}", f"ops{i}@example.jp"]
    conditions = [
        f"title = {_toml_list([f'vendor-{i}-agent', f'legacy tool {i}'])}",
        f"title_regex = 'suspicious .* (?:task|service) {i}$'",
        f"mitre = {_toml_list([technique, f'{technique}.00{i % 10}'])}\nseverity = 'informational'",
        f"device_name_regex = '^srv-{i:03d}\\.'\ncompany = '{company}'",
        f"category = '{('Malware', 'Execution')[i % 2]}'\nseverity = 'high'\ncompany = '{company}'",
        "detection_source = 'antivirus'\nservice_source = 'microsoftDefenderForEndpoint'\n"
        f"business_hours = {str(i % 2 == 0).lower()}\ntitle = 'campaign-{i}'",
        f"status = 'resolved'\ntitle_regex = '(?:ransom|wiper)\\w* variant {i}'",
        f"mitre = 'T1059.001'\nseverity = 'low'\nbusiness_hours = false\ncompany = '{company}'",
        f"user = {_toml_list(users)}",
        f"file_hash = {_toml_list([digest, digest[:40], digest[:32]])}\nseverity = 'high'",
        f"ip = {_toml_list([f'198.51.{i % 256}.0/24', f'2001:db8:{i:x}::/48'])}\n"
        "severity = 'informational'",
        f"url = {_toml_list([f'campaign-{i}.example', f'/track?id={i}'])}",
        f"device_tag = {_toml_list([f'site-{i}', 'VIP'])}\nseverity = 'high'",
        f"user_regex = '^svc-{i}$'\nurl_regex = '^https?://[^/]*-{i}\\.example/'",
    ][i % 14]
    outcome = ("priority = 'P2'\nticket = true", "notify_desk = true", "priority = 'P3'")[i % 3]
    return f"[[rules]]\nname = 'generated-{i:03d}'\n{conditions}\n{outcome}\n"


def write_rules(path: Path, count: int, companies: Sequence[str]) -> Path:
    """A playbook file of `count` generated rules (listed before the shipped ones)."""
    header = "description = 'Generated for make bench: rules that almost match.'\n\n"
    path.write_text(header + "\n".join(_rule(i, companies) for i in range(count)), "utf-8")
    return path


def facts_from_graph(alerts: Sequence[dict[str, Any]], keys: dict[str, str]) -> list[AlertFacts]:
    """AlertFacts of Graph alert JSON, with its evidence; every other alert falls in business
    hours and every fifth device carries the VIP tag (tags come from the inventory)."""
    facts = []
    for n, item in enumerate(alerts):
        devices = [e for e in item.get("evidence") or () if "deviceDnsName" in e]
        evidence = graph_evidence(item.get("evidence") or ())
        facts.append(
            AlertFacts(
                title=item.get("title") or "",
                severity=item.get("severity") or "unknown",
                company_key=keys.get(item.get("tenantId") or "", "unknown"),
                business_hours=n % 2 == 0,
                status=item.get("status") or "",
                category=(item.get("category") or "").lower(),
                detection_source=item.get("detectionSource") or "",
                service_source=item.get("serviceSource") or "",
                mitre_techniques=tuple(item.get("mitreTechniques") or ()),
                device_names=tuple(d["deviceDnsName"] for d in devices if d["deviceDnsName"]),
                device_tags=("VIP",) if n % 5 == 0 else (),
                users=evidence.users,
                file_hashes=evidence.file_hashes,
                ips=evidence.ips,
                urls=evidence.urls,
                tenant_id=item.get("tenantId") or "",
                incident_id=item.get("incidentId"),
            )
        )
    return facts


@dataclass(frozen=True, slots=True)
class Speed:
    """Evaluations per second over a playbook."""

    rules: int
    evaluations: int
    seconds: float
    matched: int  # rule hits over one pass of the facts

    @property
    def per_second(self) -> float:
        """Alerts decided per second."""
        return self.evaluations / self.seconds


def measure(playbook: Playbook, facts: Sequence[AlertFacts]) -> Speed:
    """Evaluate every alert, repeating the pass until at least a second has gone by."""
    matched = sum(len(playbook.evaluate(f).matched) for f in facts)  # also warms caches
    evaluations, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < _MIN_SECONDS:
        for item in facts:
            playbook.evaluate(item)
        evaluations += len(facts)
    return Speed(len(playbook.rules), evaluations, elapsed, matched)


def run(directory: Path, total_rules: int, facts: Sequence[AlertFacts]) -> tuple[Speed, Speed]:
    """(the shipped playbook alone, the shipped one plus generated rules up to `total_rules`)."""
    shipped = load_playbooks(default_playbook_paths())
    companies = sorted({f.company_key for f in facts}) or ["sample-0004"]
    extra = max(0, total_rules - len(shipped.rules))
    generated = write_rules(directory / "bench-rules.toml", extra, companies)
    combined = load_playbooks([generated, *default_playbook_paths()])
    return measure(shipped, facts), measure(combined, facts)
