"""Evidence conditions (user, file hash, IP, URL, command line, device tag, tenant) and the
desk outcomes (correlate, escalate, isolate, verdict) on small hand-written playbooks."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from edrtrial.errors import PlaybookError
from edrtrial.playbooks import AlertFacts, Playbook, load_playbooks

SHA256 = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"
SHA1 = "3395856ce81f2b7382dee72602f798b642f14140"
MD5 = "44d88612fea8a8f36de82e1278abb02f"


def load(tmp_path: Path, text: str, name: str = "rules.toml") -> Playbook:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return load_playbooks([path])


def facts(**overrides: Any) -> AlertFacts:
    base: dict[str, Any] = {
        "title": "Suspicious activity",
        "severity": "medium",
        "company_key": "acme-kogyo",
        "business_hours": True,
    }
    return AlertFacts(**(base | overrides))


# (condition, alert it accepts, alert it refuses, words explain() gives for the accepted one)
CONDITIONS = [
    (
        'user = "alice"',
        {"users": ("CONTOSO\\Alice",)},
        {"users": ("CONTOSO\\alicia",)},
        "user 'CONTOSO\\Alice' matches listed 'alice'",
    ),
    (
        'user = "alice"',
        {"users": ("Alice@Contoso.com",)},
        {"users": ("bob@contoso.com", "CONTOSO\\malice")},
        "user 'Alice@Contoso.com' matches listed 'alice'",
    ),
    (
        'user = "alice@contoso.com"',
        {"users": ("ALICE@contoso.com",)},
        {"users": ("CONTOSO\\alice",)},
        "user 'ALICE@contoso.com' is listed",
    ),
    (
        'user = "contoso\\\\alice"',
        {"users": ("CONTOSO\\ALICE",)},
        {"users": ("alice",)},
        "user 'CONTOSO\\ALICE' is listed",
    ),
    (
        "user_regex = '^svc-'",
        {"users": ("bob", "SVC-backup")},
        {"users": ("CONTOSO\\svc-x",)},
        "user 'SVC-backup' matches /^svc-/",
    ),
    (
        f'file_hash = "{SHA256.upper()}"',
        {"file_hashes": (SHA1, SHA256)},
        {"file_hashes": (SHA1,)},
        f"file hash '{SHA256}' is listed",
    ),
    (
        f'file_hash = ["{MD5}", "{SHA1}"]',
        {"file_hashes": (SHA1.upper(),)},
        {"file_hashes": (SHA256,)},
        f"file hash '{SHA1.upper()}' is listed",
    ),
    (
        'ip = ["10.0.0.0/8", "192.168.1.5"]',
        {"ips": ("not-an-ip", "10.20.30.40")},
        {"ips": ("11.0.0.1", "192.168.1.6", "", "300.1.1.1")},
        "IP 10.20.30.40 is in 10.0.0.0/8",
    ),
    (
        'ip = "192.168.1.5"',
        {"ips": (" 192.168.1.5 ",)},
        {"ips": ("192.168.1.50",)},
        "IP 192.168.1.5 is in 192.168.1.5/32",
    ),
    (
        'ip = "2001:db8::/32"',
        {"ips": ("2001:DB8::1",)},
        {"ips": ("2001:db9::1", "10.0.0.1")},
        "IP 2001:DB8::1 is in 2001:db8::/32",
    ),
    (
        'ip = "10.0.0.0/8"',
        {"ips": ("::ffff:10.1.2.3",)},
        {"ips": ("fe80::1%eth0",)},
        "IP ::ffff:10.1.2.3 is in 10.0.0.0/8",
    ),
    (
        'url = ["login-verify", "invoice"]',
        {"urls": ("https://SharePoint-INVOICE.example/x",)},
        {"urls": ("https://example.jp/",)},
        "URL 'https://SharePoint-INVOICE.example/x' contains 'invoice'",
    ),
    (
        r"url_regex = '^https?://[^/]*\.example/'",
        {"urls": ("HTTPS://a.Example/x",)},
        {"urls": ("https://example.jp/a.example/",)},
        "URL 'HTTPS://a.Example/x' matches /^https?://[^/]*\\.example/",
    ),
    (
        'command_line = "-ExecutionPolicy Bypass"',
        {"command_lines": ("cmd.exe /c dir", "powershell.exe -executionpolicy bypass -File a.ps1")},
        {"command_lines": ("powershell.exe -ExecutionPolicy RemoteSigned",)},
        "command line 'powershell.exe -executionpolicy bypass -File a.ps1' contains "
        "'-executionpolicy bypass'",
    ),
    (
        "command_line_regex = '''(?x)\n  ^ powershell(\\.exe)? \\s+ -enc \\s '''",
        {"command_lines": ("PowerShell.exe  -Enc SQBFAFgA",)},
        {"command_lines": ("cmd.exe /c powershell -enc SQBFAFgA",)},
        # a verbose regex, written over lines, is shown on one
        "command line 'PowerShell.exe  -Enc SQBFAFgA' matches /(?x) ^ powershell(\\.exe)? "
        "\\s+ -enc \\s/",
    ),
    (
        f'every_file_hash = ["{SHA256}", "{SHA1}"]',
        {"file_hashes": (SHA1.upper(), SHA256)},
        {"file_hashes": (SHA256, MD5)},  # one file that is not listed
        "every file hash (2) is listed",
    ),
    (
        "every_command_line_regex = '^whoami$'",
        {"command_lines": ("WHOAMI", "whoami")},
        {"command_lines": ("whoami", "net user /domain")},  # one process that does not match
        "every command line (2) matches /^whoami$/",
    ),
    (
        'device_tag = ["VIP", "server"]',
        {"device_tags": ("kiosk", "vip")},
        {"device_tags": ("vip-2",)},
        "device tag 'vip' is listed",
    ),
    (
        'tenant = "5F1B2C3D-0000-4A6B-8C7D-0E1F2A3B4C01"',
        {"tenant_id": "5f1b2c3d-0000-4a6b-8c7d-0e1f2a3b4c01"},
        {"tenant_id": ""},
        "tenant is '5f1b2c3d-0000-4a6b-8c7d-0e1f2a3b4c01'",
    ),
]


@pytest.mark.parametrize(
    ("condition", "accepted", "refused", "because"),
    CONDITIONS,
    ids=[f"{i}-{c[0].split(' ')[0]}" for i, c in enumerate(CONDITIONS)],
)
def test_each_evidence_condition_accepts_refuses_and_explains(
    tmp_path: Path,
    condition: str,
    accepted: dict[str, Any],
    refused: dict[str, Any],
    because: str,
) -> None:
    playbook = load(tmp_path, f'[[rules]]\nname = "r"\n{condition}\npriority = "P1"\n')
    decision = playbook.evaluate(facts(**accepted))
    assert decision.matched == ("r",)
    assert f"- {because}" in decision.explain()
    assert playbook.evaluate(facts(**refused)).matched == ()
    assert playbook.evaluate(facts()).matched == ()  # no evidence at all never matches


def test_evidence_conditions_combine_with_the_others(tmp_path: Path) -> None:
    playbook = load(
        tmp_path,
        f"""
[[rules]]
name = "backup-server-tool"
device_tag = "backup"
user = "svc-backup"
file_hash = "{SHA1}"
severity = "low"
suppress = "known-benign"
""",
    )
    hit: dict[str, Any] = {
        "severity": "Low",
        "device_tags": ("Backup",),
        "users": ("CORP\\svc-backup",),
        "file_hashes": (SHA1,),
    }
    assert playbook.evaluate(facts(**hit)).suppressed_reason == "known-benign"
    for change in (
        {"device_tags": ()},
        {"users": ("CORP\\tanaka",)},
        {"severity": "high"},
        {"file_hashes": (SHA256,)},
    ):
        assert playbook.evaluate(facts(**(hit | change))).matched == ()


OUTCOMES = """
[[rules]]
name = "ransom"
category = "Ransomware"
priority = "P1"
ticket = true
escalate = "oncall-phone"
isolate = "request"
correlate = "device-technique"
correlate_window_minutes = 240
classification = "TruePositive"
determination = "Malware"

[[rules]]
name = "creds"
category = ["Ransomware", "CredentialAccess"]
isolate = "propose"
escalate = "desk-mail"
correlate = "alert"
classification = "truePositive"
determination = "compromisedUser"

[[rules]]
name = "drill"
device_tag = "drill"
suppress = "security-drill"
classification = "informationalExpectedActivity"
determination = "securityTesting"
"""


def test_new_outcomes_first_writer_wins_and_defaults(tmp_path: Path) -> None:
    playbook = load(tmp_path, OUTCOMES)
    ransom = playbook.evaluate(facts(category="ransomware"))
    assert ransom.matched == ("ransom", "creds")
    assert (
        ransom.isolate,
        ransom.escalate,
        ransom.correlate,
        ransom.correlate_window_minutes,
        ransom.classification,
        ransom.determination,
    ) == ("request", "oncall-phone", "device-technique", 240, "truepositive", "malware")
    creds = playbook.evaluate(facts(category="CredentialAccess"))
    assert (
        creds.isolate,
        creds.escalate,
        creds.correlate,
        creds.correlate_window_minutes,
        creds.classification,
        creds.determination,
    ) == ("propose", "desk-mail", "alert", 60, "truepositive", "compromiseduser")
    plain = playbook.evaluate(facts())
    assert (
        plain.isolate,
        plain.escalate,
        plain.correlate,
        plain.correlate_window_minutes,
        plain.classification,
        plain.determination,
    ) == (None, None, "incident", 60, None, None)


def test_a_suppressed_alert_never_escalates_or_isolates_but_keeps_its_verdict(
    tmp_path: Path,
) -> None:
    playbook = load(tmp_path, OUTCOMES)
    decision = playbook.evaluate(facts(category="Ransomware", device_tags=("DRILL",)))
    assert decision.matched == ("ransom", "creds", "drill")
    assert decision.suppressed_reason == "security-drill"
    assert (decision.ticket, decision.escalate, decision.isolate) == (False, None, None)
    # The first verdict stays: the drill rule came too late to change it.
    assert (decision.classification, decision.determination) == ("truepositive", "malware")
    text = decision.explain()
    assert (
        "isolate:         no   suppressed by rule 'drill' (rules.toml:23) "
        "(by rule 'ransom' (rules.toml:2) asked for 'request')" in text
    )
    assert "escalate to:     no   suppressed by rule 'drill'" in text
    assert "classification:  truePositive by rule 'ransom' (rules.toml:2)" in text
    assert "determination:   malware by rule 'ransom' (rules.toml:2)" in text

    drill = playbook.evaluate(facts(device_tags=("drill",)))
    assert (drill.classification, drill.determination, drill.isolate) == (
        "informationalexpectedactivity",
        "securitytesting",
        None,
    )
    assert "verdict informationalExpectedActivity / securityTesting" in drill.explain()


def test_a_determination_comes_only_with_its_own_classification(tmp_path: Path) -> None:
    playbook = load(
        tmp_path,
        """
[[rules]]
name = "verdict-only"
severity = "high"
classification = "truePositive"

[[rules]]
name = "with-determination"
classification = "falsePositive"
determination = "clean"
""",
    )
    high = playbook.evaluate(facts(severity="high"))
    assert (high.classification, high.determination) == ("truepositive", None)
    low = playbook.evaluate(facts(severity="low"))
    assert (low.classification, low.determination) == ("falsepositive", "clean")


def test_defaults_set_correlation_first_file_wins(tmp_path: Path) -> None:
    local = tmp_path / "local.toml"
    local.write_text("[defaults]\ncorrelate_window_minutes = 15\n", encoding="utf-8")
    shipped = tmp_path / "shipped.toml"
    shipped.write_text(
        '[defaults]\ncorrelate = "alert"\ncorrelate_window_minutes = 90\n', encoding="utf-8"
    )
    decision = load_playbooks([local, shipped]).evaluate(facts())
    assert (decision.correlate, decision.correlate_window_minutes) == ("alert", 15)
    text = decision.explain()
    assert "correlate:       alert default" in text
    assert "window:          15 min default" in text


def test_summary_names_isolation_and_escalation(tmp_path: Path) -> None:
    playbook = load(tmp_path, OUTCOMES)
    assert playbook.evaluate(facts(category="ransomware")).explain().splitlines()[0] == (
        "Decision: P1, ticket, isolate (request), escalate to oncall-phone, "
        "verdict truePositive / malware"
    )


def test_channels_lists_every_escalation_target(tmp_path: Path) -> None:
    assert load(tmp_path, OUTCOMES).channels() == frozenset({"oncall-phone", "desk-mail"})
    assert load(tmp_path, '[[rules]]\nname = "x"\nticket = true\n').channels() == frozenset()


def test_a_rule_may_only_set_a_desk_outcome(tmp_path: Path) -> None:
    playbook = load(tmp_path, '[[rules]]\nname = "vip"\ndevice_tag = "vip"\nescalate = "vip"\n')
    assert playbook.evaluate(facts(device_tags=("VIP",))).escalate == "vip"


GOOD = '[[rules]]\nname = "ok"\nseverity = "high"\npriority = "P1"\n\n'

# (case id, rule body after `name = "b"`, words the message must contain)
ERRORS = [
    ("hash-not-hex", f'file_hash = "{"z" * 64}"', ["file_hash", "is not hexadecimal"]),
    (
        "hash-bad-length",
        f'file_hash = ["{MD5}", "{SHA1[:39]}"]',
        ["file_hash", "has 39 hex digits", "32, 40 and 64"],
    ),
    (
        "bad-cidr",
        'ip = ["10.0.0.0/8", "10.0.0.0/33"]',
        ["ip", "'10.0.0.0/33' is not an IP address or CIDR network"],
    ),
    (
        "cidr-host-bits",
        'ip = "10.1.2.3/8"',
        ["ip", "has host bits set", "did you mean '10.0.0.0/8'?"],
    ),
    (
        "every-hash-bad-length",
        f'every_file_hash = "{SHA1[:39]}"',
        ["every_file_hash", "has 39 hex digits"],
    ),
    (
        "bad-every-command-line-regex",
        "every_command_line_regex = 'a(b'",
        ["every_command_line_regex", "'a(b' does not compile"],
    ),
    ("bad-user-regex", "user_regex = '(svc'", ["user_regex", "'(svc' does not compile"]),
    ("bad-url-regex", "url_regex = '[a-'", ["url_regex", "'[a-' does not compile"]),
    ("blank-user", 'user = " "', ["user", "would match every alert"]),
    ("blank-url", 'url = ""', ["url", "would match every alert"]),
    ("blank-command-line", 'command_line = " "', ["command_line", "would match every alert"]),
    (
        "bad-command-line-regex",
        "command_line_regex = 'a(b'",
        ["command_line_regex", "'a(b' does not compile"],
    ),
    ("blank-tag", 'device_tag = ["vip", ""]', ["device_tag", "would match every alert"]),
    ("blank-tenant", 'tenant = ""', ["tenant", "would match every alert"]),
    (
        "unknown-correlate",
        'correlate = "ticket"',
        ["correlate must be one of incident, device-technique, alert", "'ticket'"],
    ),
    (
        "window-zero",
        "correlate_window_minutes = 0",
        ["correlate_window_minutes must be from 1 to 10080"],
    ),
    ("window-too-long", "correlate_window_minutes = 10081", ["from 1 to 10080", "10081"]),
    ("window-text", 'correlate_window_minutes = "60"', ["whole number", "'60'"]),
    ("bad-channel", 'escalate = "Teams SOC"', ["escalate", "'Teams SOC'", "lower-case"]),
    ("bad-isolate", 'isolate = "yes"', ["isolate must be one of propose, request", "'yes'"]),
    (
        "unknown-classification",
        'classification = "benign"',
        ["unknown classification 'benign'", "informationalExpectedActivity"],
    ),
    (
        "determination-alone",
        'determination = "securityTesting"',
        ["rule 'b'", "determination needs a classification"],
    ),
    (
        "unknown-determination",
        'classification = "truePositive"\ndetermination = "ransomware"',
        ["unknown determination 'ransomware'", "securityTesting"],
    ),
    (
        "determination-of-other-classification",
        'classification = "falsePositive"\ndetermination = "malware"',
        [
            "determination 'malware' does not go with classification 'falsePositive'",
            "clean, insufficientData, other",
        ],
    ),
]


@pytest.mark.parametrize(("body", "words"), [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS])
def test_new_keys_are_refused_with_file_line_and_reason(
    tmp_path: Path, body: str, words: list[str]
) -> None:
    path = tmp_path / "operator.toml"
    path.write_text(GOOD + f'# mine\n[[rules]]\nname = "b"\n{body}\nticket = true\n', "utf-8")
    with pytest.raises(PlaybookError) as caught:
        load_playbooks([path])
    message = str(caught.value)
    assert re.match(rf"^{re.escape(str(path))}:7: rule 'b': ", message), message
    for word in words:
        assert word in message, message


def test_bad_correlation_default_names_the_defaults_line(tmp_path: Path) -> None:
    path = tmp_path / "operator.toml"
    path.write_text('# x\n[defaults]\nticket = true\ncorrelate = "device"\n', "utf-8")
    with pytest.raises(
        PlaybookError,
        match=re.escape(
            f"{path}:4: [defaults]: correlate: correlate must be one of incident, device-technique"
        ),
    ):
        load_playbooks([path])


FORGED = "       stop: later rules were not evaluated"  # a line of explain()'s own


@pytest.mark.parametrize(
    ("condition", "alert"),
    [
        ('user = "alice"', {"users": ("CORP\n" + FORGED + "\\alice",)}),  # DOMAIN\\user
        ("user_regex = '^alice'", {"users": ("alice\n" + FORGED,)}),
        ('ip = "fe80::/10"', {"ips": ("fe80::1%eth0\n" + FORGED,)}),  # a scope is free text
        ('url = "invoice"', {"urls": ("https://invoice.example/\n" + FORGED,)}),
        ("url_regex = 'invoice'", {"urls": ("https://invoice.example/\n" + FORGED,)}),
        ("command_line = 'powershell'", {"command_lines": ("powershell -c x\n" + FORGED,)}),
        ("command_line_regex = 'powershell'", {"command_lines": ("powershell\n" + FORGED,)}),
        ("device_name_regex = '^pc-'", {"device_names": ("pc-01\n" + FORGED,)}),
        ('title = "update"', {"title": "update\n" + FORGED}),
        ("title_regex = 'update'", {"title": "update\n" + FORGED}),
    ],
)
def test_explain_quotes_what_the_alert_sent_on_one_line(tmp_path, condition, alert) -> None:
    """A value with a line break in it cannot write a line that reads as the explanation's."""
    playbook = load(tmp_path, f'[[rules]]\nname = "r"\n{condition}\npriority = "P2"\n')

    decision = playbook.evaluate(facts(**alert))

    assert decision.matched == ("r",)
    assert not [line for line in decision.explain().splitlines() if line.startswith(FORGED)]
