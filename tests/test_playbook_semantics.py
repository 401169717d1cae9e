"""Engine semantics on small hand-written playbooks: matching, first writer wins, stop, defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edrtrial.playbooks import AlertFacts, Playbook, load_playbooks


def write(tmp_path: Path, text: str, name: str = "rules.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str) -> Playbook:
    return load_playbooks([write(tmp_path, text)])


def facts(**overrides: Any) -> AlertFacts:
    base: dict[str, Any] = {
        "title": "Suspicious activity",
        "severity": "medium",
        "company_key": "acme-kogyo",
        "business_hours": True,
    }
    return AlertFacts(**(base | overrides))


# Each condition, with an alert it must accept and one it must refuse.
CONDITIONS = [
    ('severity = ["high", "medium"]', {"severity": "Medium"}, {"severity": "low"}),
    ('status = "inProgress"', {"status": "InProgress"}, {"status": "new"}),
    ('category = "Malware"', {"category": "malware"}, {"category": "MalwareX"}),
    ('title = ["ransom", "wiper"]', {"title": "Possible WIPER activity"}, {"title": "Ransum"}),
    ("title_regex = '^\\[test alert\\]'", {"title": "[Test Alert] x"}, {"title": "x [Test Alert]"}),
    (
        'detection_source = "antivirus"',
        {"detection_source": "Antivirus"},
        {"detection_source": "smartScreen"},
    ),
    (
        'service_source = "microsoftDefenderForEndpoint"',
        {"service_source": "MicrosoftDefenderForEndpoint"},
        {"service_source": "microsoftDefenderForOffice365"},
    ),
    (
        'mitre = "T1059"',
        {"mitre_techniques": ("T1027", "T1059.001")},
        {"mitre_techniques": ("T1105",)},
    ),
    (
        'mitre = "T1059.001"',
        {"mitre_techniques": ("t1059.001",)},
        {"mitre_techniques": ("T1059", "T1059.003")},
    ),
    (
        "device_name_regex = '^kiosk-\\d+$'",
        {"device_names": ("pc-01", "KIOSK-07")},
        {"device_names": ("pc-kiosk-07",)},
    ),
    (
        'company = ["acme-kogyo", "beta-shoji"]',
        {"company_key": "beta-shoji"},
        {"company_key": "gamma"},
    ),
    ("business_hours = false", {"business_hours": False}, {"business_hours": True}),
]


@pytest.mark.parametrize(
    ("condition", "accepted", "refused"), CONDITIONS, ids=[c[0].split(" ")[0] for c in CONDITIONS]
)
def test_each_condition_accepts_and_refuses(
    tmp_path: Path, condition: str, accepted: dict[str, Any], refused: dict[str, Any]
) -> None:
    playbook = load(tmp_path, f'[[rules]]\nname = "r"\n{condition}\npriority = "P1"\n')
    assert playbook.evaluate(facts(**accepted)).matched == ("r",)
    assert playbook.evaluate(facts(**refused)).matched == ()


def test_all_conditions_of_a_rule_must_hold(tmp_path: Path) -> None:
    playbook = load(
        tmp_path,
        """
[[rules]]
name = "phishing"
category = "InitialAccess"
mitre = "T1566"
priority = "P2"
""",
    )
    assert (
        playbook.evaluate(facts(category="InitialAccess", mitre_techniques=("T1566.001",))).priority
        == "P2"
    )
    assert playbook.evaluate(facts(category="InitialAccess")).matched == ()
    assert playbook.evaluate(facts(mitre_techniques=("T1566",))).matched == ()


def test_a_rule_without_conditions_matches_every_alert(tmp_path: Path) -> None:
    playbook = load(tmp_path, '[[rules]]\nname = "all"\nticket = true\n')
    assert playbook.evaluate(facts(severity="informational", title="")).ticket is True


def test_first_rule_that_sets_a_field_wins_and_later_rules_fill_the_rest(tmp_path: Path) -> None:
    playbook = load(
        tmp_path,
        """
[[rules]]
name = "first"
severity = "high"
priority = "P3"
notify_desk = false

[[rules]]
name = "second"
priority = "P1"
ticket = true
notify_desk = true
notify_company = true
""",
    )
    decision = playbook.evaluate(facts(severity="High"))
    assert decision.matched == ("first", "second")
    assert (decision.priority, decision.ticket, decision.notify_desk, decision.notify_company) == (
        "P3",
        True,
        False,
        True,
    )
    assert playbook.evaluate(facts(severity="low")).priority == "P1"  # "first" did not match


def test_stop_ends_evaluation_only_when_its_rule_matches(tmp_path: Path) -> None:
    playbook = load(
        tmp_path,
        """
[[rules]]
name = "quiet"
company = "acme-kogyo"
priority = "P4"
stop = true

[[rules]]
name = "loud"
ticket = true
notify_desk = true
""",
    )
    stopped = playbook.evaluate(facts(company_key="acme-kogyo"))
    assert (stopped.matched, stopped.priority, stopped.ticket, stopped.notify_desk) == (
        ("quiet",),
        "P4",
        False,
        False,
    )
    passed = playbook.evaluate(facts(company_key="beta-shoji"))
    assert (passed.matched, passed.priority, passed.ticket) == (("loud",), "P2", True)


def test_suppression_overrides_tickets_and_notices_from_any_rule_or_default(
    tmp_path: Path,
) -> None:
    playbook = load(
        tmp_path,
        """
[defaults]
ticket = true
notify_company = true

[[rules]]
name = "escalate"
priority = "P1"
notify_desk = true

[[rules]]
name = "backup-tool"
device_name_regex = '^backup-'
suppress = "known-benign"
""",
    )
    decision = playbook.evaluate(facts(device_names=("BACKUP-01",)))
    assert decision.matched == ("escalate", "backup-tool")
    assert decision.suppressed_reason == "known-benign"
    assert decision.priority == "P1"  # kept for the report
    assert not (decision.ticket or decision.notify_desk or decision.notify_company)
    normal = playbook.evaluate(facts(device_names=("pc-01",)))
    assert (normal.ticket, normal.notify_desk, normal.notify_company) == (True, True, True)


def test_first_suppression_reason_is_kept(tmp_path: Path) -> None:
    playbook = load(
        tmp_path,
        """
[[rules]]
name = "a"
suppress = "detection-test"
mark_device_verified = true

[[rules]]
name = "b"
suppress = "known-benign"
mark_device_verified = false
""",
    )
    decision = playbook.evaluate(facts())
    assert (decision.suppressed_reason, decision.mark_device_verified) == ("detection-test", True)


def test_defaults_give_priority_by_severity_with_a_fallback(tmp_path: Path) -> None:
    playbook = load(
        tmp_path,
        """
[defaults]
priority = "P3"

[defaults.severity_priority]
High = "P2"

[[rules]]
name = "never"
company = "nobody"
ticket = true
""",
    )
    by_severity = {
        s: playbook.evaluate(facts(severity=s)).priority
        for s in ("HIGH", "medium", "low", "Informational", "UnSpecified")
    }
    # high from this file, medium/low/informational from the built-in table, fallback P3
    assert by_severity == {
        "HIGH": "P2",
        "medium": "P2",
        "low": "P3",
        "Informational": "P4",
        "UnSpecified": "P3",
    }
    assert playbook.evaluate(facts()).ticket is False


def test_files_run_in_the_order_given(tmp_path: Path) -> None:
    local = write(
        tmp_path,
        """
[defaults]
notify_desk = true

[defaults.severity_priority]
low = "P2"

[[rules]]
name = "local-quiet-company"
company = "acme-kogyo"
priority = "P4"
""",
        "local.toml",
    )
    shipped = write(
        tmp_path,
        """
[defaults]
notify_desk = false
ticket = true

[defaults.severity_priority]
low = "P4"

[[rules]]
name = "shipped-medium"
severity = "medium"
priority = "P2"
""",
        "shipped.toml",
    )
    local_first = load_playbooks([local, shipped])
    shipped_first = load_playbooks([shipped, local])
    assert [r.name for r in local_first.rules] == ["local-quiet-company", "shipped-medium"]
    medium = facts(severity="medium")
    assert local_first.evaluate(medium).priority == "P4"
    assert shipped_first.evaluate(medium).priority == "P2"
    assert local_first.evaluate(medium).matched == ("local-quiet-company", "shipped-medium")
    # [defaults] follow the same rule: the first file that sets a value wins
    other = facts(severity="low", company_key="beta-shoji")
    decided = local_first.evaluate(other)
    assert (decided.priority, decided.notify_desk, decided.ticket) == ("P2", True, True)
    decided = shipped_first.evaluate(other)
    assert (decided.priority, decided.notify_desk, decided.ticket) == ("P4", False, True)


def test_explain_names_rules_conditions_and_origins(tmp_path: Path) -> None:
    playbook = load(
        tmp_path,
        """
[[rules]]
name = "creds"
description = "Credential theft."
mitre = "T1003"
severity = "low"
priority = "P1"
ticket = true

[[rules]]
name = "lab-device"
device_name_regex = '^lab-'
suppress = "known-benign"
stop = true

[[rules]]
name = "never-reached"
notify_desk = true
""",
    )
    decision = playbook.evaluate(
        facts(severity="Low", mitre_techniques=("T1003.001",), device_names=("LAB-3",))
    )
    text = decision.explain()
    assert decision.matched == ("creds", "lab-device")
    assert "1. creds (rules.toml:2)" in text
    assert "why: Credential theft." in text
    assert "mitre technique T1003.001 (under T1003)" in text
    assert "severity is 'Low'" in text
    assert "2. lab-device (rules.toml:10)" in text
    assert "device 'LAB-3' matches /^lab-/" in text
    assert "stop: later rules were not evaluated" in text
    assert "never-reached" not in text
    assert "priority:        P1   by rule 'creds' (rules.toml:2)" in text
    assert (
        "ticket:          no   suppressed by rule 'lab-device' (rules.toml:10) "
        "(by rule 'creds' (rules.toml:2) asked for yes)" in text
    )


def test_explain_without_matches_points_at_the_defaults(tmp_path: Path) -> None:
    playbook = load(tmp_path, '[[rules]]\nname = "x"\ncompany = "nobody"\nticket = true\n')
    text = playbook.evaluate(facts(severity="UnSpecified")).explain()
    assert text.startswith("Decision: P4, no ticket")
    assert "default fallback (severity 'UnSpecified' is not in the table)" in text
    assert "Matched rules: none" in text
