"""The shipped default playbook, one row per alert: the documented Defender payloads and every
kind of alert the sandbox raises, mapped the way the connector maps them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from edrtrial.connectors.base import AlertRecord, DeviceRef
from edrtrial.connectors.defender import DefenderForBusinessConnector
from edrtrial.connectors.defender.evidence import mde_evidence
from edrtrial.playbooks import (
    AlertFacts,
    Decision,
    Playbook,
    default_playbook_paths,
    load_playbooks,
)
from edrtrial.sandbox import SandboxWorld
from edrtrial.sandbox.catalogue import ALERT_KINDS
from edrtrial.timeutil import Stamp

FIXTURES = Path(__file__).parent / "fixtures"
TESTING = ("informationalexpectedactivity", "securitytesting")
NO_VERDICT = (None, None)
map_alert = DefenderForBusinessConnector.map_alert  # the public contract, as tools use it

# (priority, ticket, notify desk, notify company, suppressed reason, isolate, device verified,
#  (classification, determination))
Row = tuple[str, bool, bool, bool, str | None, str | None, bool, tuple[str | None, str | None]]
P1_REQUEST: Row = ("P1", True, True, True, None, "request", False, NO_VERDICT)
P1_PROPOSE: Row = ("P1", True, True, True, None, "propose", False, NO_VERDICT)
P2_DESK: Row = ("P2", True, True, False, None, None, False, NO_VERDICT)
P3_QUEUE: Row = ("P3", True, False, False, None, None, False, NO_VERDICT)
DETECTION_TEST: Row = ("P4", False, False, False, "detection-test", None, True, TESTING)
TEST_FILE: Row = ("P4", False, False, False, "test-file", None, True, TESTING)


@pytest.fixture(scope="module")
def playbook() -> Playbook:
    return load_playbooks(default_playbook_paths())


def row(decision: Decision) -> Row:
    return (
        decision.priority,
        decision.ticket,
        decision.notify_desk,
        decision.notify_company,
        decision.suppressed_reason,
        decision.isolate,
        decision.mark_device_verified,
        (decision.classification, decision.determination),
    )


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def mde_record(alert: dict[str, Any]) -> AlertRecord:
    """An MDE /api/alerts item (the connector reads alerts from Graph, so there is no mapper
    of its own); enum values as sent, evidence through the connector's MDE reader."""
    return AlertRecord(
        source_id=alert["id"],
        title=alert["title"],
        severity=alert["severity"],
        status=alert["status"],
        last_update_at=Stamp.from_iso(alert["lastUpdateTime"]),
        incident_source_id=str(alert["incidentId"]),
        category=alert.get("category") or "",
        detection_source=alert.get("detectionSource") or "",
        mitre_techniques=tuple(alert.get("mitreTechniques") or ()),
        devices=(DeviceRef(alert["machineId"], alert.get("computerDnsName") or ""),),
        evidence=mde_evidence(alert),
        raw=alert,
    )


def documented() -> list[Any]:
    """Every alert of the documented payloads, with what the programme expects of it."""
    expected: dict[str, Row] = {
        # Low "Suspicious execution of hidden file" (DefenseEvasion): the desk's queue.
        "graph__list_alerts_v2.json": P3_QUEUE,
        "graph__list_incidents_expand_alerts.json": P3_QUEUE,
        # Low "Suspicious 'Meterpreter' behavior": attacker tooling, so P1 and isolation.
        "mde__list_alerts_default.json": P1_REQUEST,
    }
    cases = []
    for name, want in expected.items():
        payload = fixture(name)["value"]
        if name.startswith("mde__"):
            records = [mde_record(item) for item in payload]
        elif "incidents" in name:
            records = [map_alert(a) for incident in payload for a in incident["alerts"]]
        else:
            records = [map_alert(item) for item in payload]
        assert records, name
        cases += [pytest.param(r, want, id=f"{name}[{n}]") for n, r in enumerate(records)]
    return cases


@pytest.mark.parametrize(("record", "expected"), documented())
def test_documented_payloads(playbook: Playbook, record: AlertRecord, expected: Row) -> None:
    facts = AlertFacts.from_record(record, company_key="acme-kogyo", business_hours=False)
    assert row(playbook.evaluate(facts)) == expected


def test_documented_evidence_reaches_the_facts() -> None:
    graph = map_alert(fixture("graph__list_alerts_v2.json")["value"][0])
    facts = AlertFacts.from_record(
        graph,
        company_key="acme-kogyo",
        business_hours=False,
        tenant_id="b3c1b5fc-828c-45fa-a1e1-10d74f6d6e9c",
    )
    assert facts.users and facts.file_hashes  # the process evidence's account and image
    assert facts.tenant_id == "b3c1b5fc-828c-45fa-a1e1-10d74f6d6e9c"
    mde = mde_record(fixture("mde__list_alerts_default.json")["value"][0])
    assert any(
        "temp123" in user
        for user in AlertFacts.from_record(
            mde, company_key="acme-kogyo", business_hours=False
        ).users
    )


SANDBOX: dict[str, Row] = {
    "detection_test": DETECTION_TEST,
    # The Medium companion of the test carries a real attack's name: the desk looks at it.
    "detection_test_companion": P2_DESK,
    "eicar": TEST_FILE,
    "ransomware": P1_REQUEST,
    "credential_theft": P1_PROPOSE,
    "hands_on_keyboard": P1_PROPOSE,  # LateralMovement: remote service from another device
    "phishing_link": P2_DESK,
    "c2_beacon": P1_PROPOSE,
    "pua": P3_QUEUE,
    "mac_adware": P3_QUEUE,
    "hidden_file": P3_QUEUE,
    "malware_prevented": P3_QUEUE,
    "asep_registry": P3_QUEUE,
    "exploration": P2_DESK,
    "linux_miner": P2_DESK,  # a miner on a server: someone got in, the desk looks
}


@pytest.fixture(scope="module")
def sandbox_records() -> dict[str, AlertRecord]:
    """One alert of each kind, raised through the sandbox's own controls and Graph JSON."""
    world = SandboxWorld(
        seed=5,
        tenants=1,
        alert_interval_seconds=3600,
        clock=lambda: datetime(2026, 11, 18, 2, 0, tzinfo=UTC),
    )
    tenant = world.tenants[0].tenant_id
    world.clear_tenant(tenant)
    records = {}
    for key, kind in ALERT_KINDS.items():
        platform = sorted(kind.platforms)[0]
        [device] = world.add_devices(tenant, 1, platform, detection_test_alert=False)
        [alert_id] = world.add_alerts(tenant, key, device_id=device)
        records[key] = map_alert(world.get_alert(tenant, alert_id))
    return records


def test_every_sandbox_kind_has_an_expected_decision() -> None:
    assert sorted(SANDBOX) == sorted(ALERT_KINDS)


@pytest.mark.parametrize(("kind", "expected"), list(SANDBOX.items()), ids=list(SANDBOX))
def test_sandbox_alert_kinds(
    playbook: Playbook, sandbox_records: dict[str, AlertRecord], kind: str, expected: Row
) -> None:
    record = sandbox_records[kind]
    facts = AlertFacts.from_record(record, company_key="sakura-seisakusho", business_hours=True)
    decision = playbook.evaluate(facts)
    assert row(decision) == expected, decision.explain()
    assert decision.escalate is None  # channel names are site-specific: none in the default
    assert (decision.correlate, decision.correlate_window_minutes) == ("incident", 60)


def test_url_click_without_t1566_still_reaches_the_desk(
    playbook: Playbook, sandbox_records: dict[str, AlertRecord]
) -> None:
    record = sandbox_records["phishing_link"]
    facts = AlertFacts.from_record(record, company_key="sakura-seisakusho", business_hours=True)
    assert facts.urls  # the clicked link is in the URL evidence
    untagged = AlertFacts(**{**_fields(facts), "mitre_techniques": (), "severity": "low"})
    decision = playbook.evaluate(untagged)
    assert row(decision) == P2_DESK
    assert decision.matched[0] == "phishing-url-click"


def _fields(facts: AlertFacts) -> dict[str, Any]:
    return {name: getattr(facts, name) for name in AlertFacts.__dataclass_fields__}
