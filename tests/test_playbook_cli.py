"""`edrtrial playbooks check` and `playbooks test`: what an operator sees, and that testing
changes nothing in the store."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from signatures import DOCUMENTED_COMMAND, TEST_TITLE, reshaped
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from edrtrial.cli.main import main
from edrtrial.config import load_config
from edrtrial.db import make_engine, make_sessions, transaction, upgrade
from edrtrial.models import Alert, Base, Company, Device, Tenant
from edrtrial.service.runtime import Runtime

from sandbox_config import settings, write_config

FIXTURES = Path(__file__).parent / "fixtures"
T0 = datetime(2026, 11, 18, 1, 0, tzinfo=UTC)  # a Wednesday, 10:00 JST


def invoke(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), *args])


def write(config: Path, database_url: str = "sqlite:///var/edrtrial.db") -> Path:
    return write_config(config, settings(database_url, mail_dir=config.parent / "mail"))


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """The sample config on a throw-away database (no sandbox: nothing is polled here)."""
    return write(tmp_path / "config.toml")


@pytest.fixture
def stored(config: Path, database_url: str) -> sessionmaker[Session]:
    """The config pointed at a migrated database holding a few alerts of one company."""
    write(config, database_url)
    engine = make_engine(database_url)
    upgrade(engine)
    Runtime.open(load_config(config)).close()  # companies and tenants
    sessions = make_sessions(engine)
    with transaction(sessions) as session:
        tenant = session.scalar(
            select(Tenant).join(Company).where(Company.key == "sakura-seisakusho")
        )
        assert tenant is not None
        session.add(Device(tenant_id=tenant.id, source_id="dev-vip", name="pc-001", tags=["VIP"]))
        alerts = [
            ("a-ransom", "Ransomware behavior detected", "high", "Ransomware", ["T1486"]),
            (
                "a-test",
                "[Test Alert] Suspicious Powershell commandline",
                "informational",
                "Execution",
                ["T1059.001"],
            ),
            ("a-low", "Suspicious file dropped", "low", "Malware", []),
        ]
        for n, (source_id, title, severity, category, mitre) in enumerate(alerts):
            session.add(
                Alert(
                    tenant_id=tenant.id,
                    source="defender",
                    source_id=source_id,
                    title=title,
                    severity=severity,
                    status="new",
                    category=category,
                    mitre_techniques=mitre,
                    device_source_ids=["dev-vip"],
                    device_names=["pc-001.sakura.example.jp"],
                    detection_source="microsoftDefenderForEndpoint",
                    evidence={"users": ["SAKURA\\tanaka"]}
                    | ({"command_lines": [DOCUMENTED_COMMAND]} if source_id == "a-test" else {}),
                    created_at=T0 + timedelta(minutes=n),
                    last_update_at=T0 + timedelta(minutes=n),
                )
            )
    return sessions


def row_counts(sessions: sessionmaker[Session]) -> dict[str, Any]:
    with sessions() as session:
        counts: dict[str, Any] = {
            table.name: session.scalar(select(func.count()).select_from(table))
            for table in Base.metadata.sorted_tables
        }
        counts["untriaged"] = session.scalar(
            select(func.count()).select_from(Alert).where(Alert.triaged_at.is_(None))
        )
        return counts


# --- check ------------------------------------------------------------------------------------


def test_check_counts_the_configured_rules(config: Path) -> None:
    result = invoke(config, "playbooks", "check")
    assert result.exit_code == 0, result.output
    assert "default.toml: 17 rules" in result.output
    assert "ok: 17 rules in 1 file(s)" in result.output
    assert "warning" not in result.output  # the shipped table suppresses nothing on text alone


QUIET_EICAR = """
# A title saying "eicar" is taken as the test file.
[[rules]]
name = "quiet-eicar"
title = ["eicar"]
category = "Malware"
suppress = "test-file"
"""


def test_check_warns_about_a_suppression_on_free_text_alone(config: Path, tmp_path: Path) -> None:
    local = tmp_path / "local.toml"
    local.write_text(QUIET_EICAR, encoding="utf-8")

    result = invoke(config, "playbooks", "check", str(local))

    assert result.exit_code == 1, result.output
    assert f"{local}: 1 rules" in result.output
    assert (
        "warning: local.toml:3: rule 'quiet-eicar': suppresses medium and high alerts on "
        "category, title alone; pin it to evidence an attacker cannot write (every_file_hash, "
        "or a command_line_regex / every_command_line_regex anchored with ^ and $ and spelling "
        "the command out, with no run of a broad class such as .*, \\S+, \\w+ or [^x]*; "
        "file_hash also holds beside another file, and company, tenant and device_tag only "
        'narrow whose alerts it sees), or add severity = ["low", "informational"]'
    ) in " ".join(result.output.split())
    assert "1 warning(s): 1 rules in 1 file(s)" in result.output


@pytest.mark.parametrize(
    "guard",
    [
        'severity = ["informational", "low"]',
        'every_file_hash = "44d88612fea8a8f36de82e1278abb02f"',
        "every_command_line_regex = '^eicar-drill\\.exe$'",
        "every_command_line_regex = '^eicar-drill\\.exe -n \\d+$'",
    ],
)
def test_check_accepts_a_suppression_pinned_or_kept_to_minor_alerts(
    config: Path, tmp_path: Path, guard: str
) -> None:
    local = tmp_path / "local.toml"
    local.write_text(QUIET_EICAR + guard + "\n", encoding="utf-8")

    result = invoke(config, "playbooks", "check", str(local))

    assert result.exit_code == 0, result.output
    assert "warning" not in result.output


@pytest.mark.parametrize(
    "pin",
    [
        # Anchored at both ends, yet any command line containing "eicar" matches them.
        "command_line_regex = '^.*eicar.*$'",
        "every_command_line_regex = '^.*$'",
        "every_command_line_regex = '^\\S+ eicar$'",
        "every_command_line_regex = '^\\w+\\.exe$'",
        "every_command_line_regex = '^[^;]*$'",
        # EICAR's hash beside a trojan's still meets the any-form.
        'file_hash = "44d88612fea8a8f36de82e1278abb02f"',
    ],
)
def test_check_warns_about_a_pin_an_attacker_can_meet(
    config: Path, tmp_path: Path, pin: str
) -> None:
    local = tmp_path / "local.toml"
    local.write_text(QUIET_EICAR + pin + "\n", encoding="utf-8")

    result = invoke(config, "playbooks", "check", str(local))

    assert result.exit_code == 1, result.output
    assert "rule 'quiet-eicar': suppresses medium and high alerts on " in " ".join(
        result.output.split()
    )


@pytest.mark.parametrize("scope", ['company = "sakura-seisakusho"', 'device_tag = "eicar-lab"'])
def test_check_warns_about_a_suppression_only_narrowed_to_a_company_or_tag(
    config: Path, tmp_path: Path, scope: str
) -> None:
    local = tmp_path / "local.toml"
    local.write_text(QUIET_EICAR + scope + "\n", encoding="utf-8")

    result = invoke(config, "playbooks", "check", str(local))

    assert result.exit_code == 1, result.output
    assert "rule 'quiet-eicar': suppresses medium and high alerts on category, " in " ".join(
        result.output.split()
    )


def test_check_warns_about_a_rule_that_opens_no_ticket_on_free_text(
    config: Path, tmp_path: Path
) -> None:
    local = tmp_path / "local.toml"
    local.write_text(
        '[[rules]]\nname = "drills"\ntitle = "eicar"\nticket = false\nstop = true\n',
        encoding="utf-8",
    )

    result = invoke(config, "playbooks", "check", str(local))

    assert result.exit_code == 1, result.output
    assert (
        "rule 'drills': takes medium and high alerts off the desk (no ticket, so no notice) "
        "on title alone"
    ) in " ".join(result.output.split())


def test_check_warns_about_a_suppression_that_names_medium(config: Path, tmp_path: Path) -> None:
    local = tmp_path / "local.toml"
    local.write_text(QUIET_EICAR + 'severity = ["low", "medium"]\n', encoding="utf-8")

    result = invoke(config, "playbooks", "check", str(local))

    assert result.exit_code == 1, result.output
    assert "rule 'quiet-eicar': suppresses medium alerts on category, title alone" in " ".join(
        result.output.split()
    )


def test_check_good_and_bad_files(config: Path, tmp_path: Path) -> None:
    good = tmp_path / "local.toml"
    good.write_text(
        '[[rules]]\nname = "vip"\ndevice_tag = "VIP"\npriority = "P1"\nescalate = "desk"\n',
        encoding="utf-8",
    )
    result = invoke(config, "playbooks", "check", str(good))
    assert result.exit_code == 0, result.output
    assert f"{good}: 1 rules" in result.output
    assert "escalates to: desk" in result.output

    bad = tmp_path / "bad.toml"
    bad.write_text(
        '# office network\n[[rules]]\nname = "office"\nip = "192.168.1.0/33"\nticket = true\n',
        encoding="utf-8",
    )
    result = invoke(config, "playbooks", "check", str(good), str(bad))
    assert result.exit_code == 2
    assert f"{good}: 1 rules" in result.output
    assert f"{bad}:2: rule 'office': ip: '192.168.1.0/33' is not an IP address" in " ".join(
        result.output.split()
    )
    assert "Traceback" not in result.output


def test_check_shows_each_problem_on_its_own_line(config: Path, tmp_path: Path) -> None:
    """Every problem of every file whole on a line, under the first."""
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rules]]\nname = "x"\nseverity = "hgh"\npriority = "P9"\n', "utf-8")
    other = tmp_path / "other.toml"
    other.write_text('[[rules]]\nname = "y"\nip = "10.0.0.0/33"\n', "utf-8")

    result = invoke(config, "playbooks", "check", str(bad), str(other))

    assert result.exit_code == 2, result.output
    assert "␊" not in result.output, result.output
    lines = result.output.splitlines()
    assert len(lines) == 3, lines
    assert lines[0].startswith(f"error: {bad}:1: rule 'x': priority: "), lines
    assert lines[1].startswith(f"    {bad}:1: rule 'x': severity: unknown severity 'hgh'"), lines
    assert lines[2].startswith(f"    {other}:1: rule 'y': ip: '10.0.0.0/33' is not"), lines


def test_check_refuses_a_channel_the_config_lacks(config: Path, tmp_path: Path) -> None:
    path = tmp_path / "local.toml"
    path.write_text('[[rules]]\nname = "vip"\nescalate = "teams-soc"\n', encoding="utf-8")
    result = invoke(config, "playbooks", "check", str(path))
    assert result.exit_code == 2
    assert "local.toml:1: rule 'vip': escalate: no desk channel 'teams-soc'" in " ".join(
        result.output.split()
    )


def test_check_names_duplicates_across_files(config: Path, tmp_path: Path) -> None:
    one, two = tmp_path / "one.toml", tmp_path / "two.toml"
    for path in (one, two):
        path.write_text('[[rules]]\nname = "same"\nticket = true\n', encoding="utf-8")
    result = invoke(config, "playbooks", "check", str(one), str(two))
    assert result.exit_code == 2
    assert f"{two}:1: rule 'same': duplicate rule name" in " ".join(result.output.split())


# --- test, on a JSON file ---------------------------------------------------------------------


def test_json_file_of_alerts_is_explained(config: Path, tmp_path: Path) -> None:
    page = json.loads((FIXTURES / "graph__list_alerts_v2.json").read_text(encoding="utf-8"))
    alert = page["value"][0]
    meterpreter = alert | {"id": "a2", "title": "Suspicious 'Meterpreter' behavior"}
    broken = alert | {"id": "a3", "lastUpdateDateTime": None}
    test_alert = reshaped(
        alert, title=TEST_TITLE, severity="informational", command=DOCUMENTED_COMMAND
    ) | {"id": "a4"}
    path = tmp_path / "alerts.json"
    path.write_text(json.dumps({"value": [alert, meterpreter, broken, test_alert]}), "utf-8")

    result = invoke(config, "playbooks", "test", str(path), "--company", "sakura-seisakusho")
    out = result.output
    assert result.exit_code == 1, out  # one alert could not be read
    assert (
        f"alerts.json[0] {alert['id']} [sakura-seisakusho] "
        "'Suspicious execution of hidden file' (low)"
    ) in out
    assert "Decision: P3, ticket" in out
    assert "1. hands-on-keyboard (default.toml:" in out
    assert """title "Suspicious 'Meterpreter' behavior" matches /hands-on-keyboard|""" in out
    assert "isolate:         request by rule 'hands-on-keyboard'" in out
    assert "alerts.json[2] a3" in out and "not tested: alert 2: no lastUpdateDateTime" in out
    assert "[Test Alert] Suspicious Powershell commandline" in out  # not eaten as markup
    assert "verdict informationalExpectedActivity / securityTesting" in out
    assert "3 alert(s) decided:" in out
    assert "1 × P1, ticket, notify desk, notify company, isolate (request)" in out
    assert "1 alert(s) could not be read" in out


def test_json_single_alert_with_a_playbook_being_edited(config: Path, tmp_path: Path) -> None:
    alert = json.loads((FIXTURES / "graph__list_alerts_v2.json").read_text("utf-8"))["value"][0]
    path = tmp_path / "alert.json"
    path.write_text(json.dumps(alert), encoding="utf-8")
    draft = tmp_path / "draft.toml"
    draft.write_text(
        '[[rules]]\nname = "hidden"\nmitre = "T1564"\npriority = "P2"\ncorrelate = "alert"\n',
        encoding="utf-8",
    )
    result = invoke(config, "playbooks", "test", str(path), "--playbook", str(draft))
    assert result.exit_code == 0, result.output
    assert "[unknown]" in result.output
    assert "1. hidden (draft.toml:1)" in result.output
    assert "- mitre technique T1564.001 (under T1564)" in result.output
    assert "correlate:       alert by rule 'hidden'" in result.output
    assert "1 × P2, no ticket (periodic report only)" in result.output


def test_testing_an_alert_keeps_its_command_line_on_one_line(config: Path, tmp_path: Path) -> None:
    """A command line with a line break cannot print a line that reads as the explanation's."""
    forged = "       stop: later rules were not evaluated"
    alert = json.loads((FIXTURES / "graph__list_alerts_v2.json").read_text("utf-8"))["value"][0]
    process = next(e for e in alert["evidence"] if "processCommandLine" in e)
    process["processCommandLine"] = "powershell.exe -c x\n" + forged
    path = tmp_path / "alert.json"
    path.write_text(json.dumps(alert), encoding="utf-8")
    draft = tmp_path / "draft.toml"
    draft.write_text(
        '[[rules]]\nname = "ps"\ncommand_line_regex = \'powershell\'\npriority = "P2"\n',
        encoding="utf-8",
    )

    out = invoke(config, "playbooks", "test", str(path), "--playbook", str(draft)).output

    assert "- command line 'powershell.exe -c x␊" + forged + "' matches /powershell/" in out
    assert not [line for line in out.splitlines() if line.startswith(forged)], out


def test_a_broken_draft_is_reported_not_tested(config: Path, tmp_path: Path) -> None:
    draft = tmp_path / "draft.toml"
    draft.write_text('[[rules]]\nname = "x"\ndetermination = "clean"\n', encoding="utf-8")
    alerts = FIXTURES / "graph__list_alerts_v2.json"
    result = invoke(config, "playbooks", "test", str(alerts), "--playbook", str(draft))
    assert result.exit_code == 2
    assert f"{draft}:1: rule 'x': determination needs a classification" in " ".join(
        result.output.split()
    )


CYCRAFT_ALERT = {  # the shape of the shipped CyCraft mapping (connectors/cycraft/defaults.toml)
    "id": "al-2001",
    "title": "Suspicious PowerShell download cradle",
    "severity": "Critical",
    "status": "Open",
    "created_at": "2026-11-18T01:02:03Z",
    "updated_at": "2026-11-18T01:05:00Z",
    "incident_id": "inc-9",
    "category": "Execution",
    "mitre_techniques": ["T1059.001"],
    "endpoint": {"id": "ep-01", "hostname": "PC-001"},
    "user": {"name": "SAKURA\\tanaka"},
    "evidence": {
        "files": [{"sha256": "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08"}],
        "network": [{"remote_ip": "198.51.100.20", "url": "https://dl.evil.example/a.ps1"}],
    },
}


def test_json_file_of_cycraft_alerts_is_explained_through_its_connector(
    config: Path, tmp_path: Path
) -> None:
    low = CYCRAFT_ALERT | {"id": 2002, "title": "Unsigned tool ran", "severity": 2}
    no_id = {k: v for k, v in CYCRAFT_ALERT.items() if k != "id"} | {"title": "Nameless"}
    path = tmp_path / "cycraft.json"
    path.write_text(json.dumps({"data": [CYCRAFT_ALERT, low, no_id], "total": 3}), "utf-8")

    args = ("playbooks", "test", str(path), "--connector", "cycraft", "--company", "midori-shoji")
    result = invoke(config, *args)
    out = result.output
    assert result.exit_code == 1, out  # one alert could not be read, as for Defender
    cradle = "'Suspicious PowerShell download cradle' (high)"
    assert f"cycraft.json[0] al-2001 [midori-shoji] {cradle}" in out
    assert "1. high-severity (default.toml:" in out  # Critical: high, through severity_map
    assert "cycraft.json[1] 2002 [midori-shoji] 'Unsigned tool ran' (low)" in out
    assert "cycraft.json[2] (no id) [midori-shoji] 'Nameless' (Critical)" in out
    assert "not tested: alert 2: no id at 'id'" in out
    assert "2 alert(s) decided:" in out
    assert "1 alert(s) could not be read" in out

    draft = tmp_path / "draft.toml"
    draft.write_text(
        '[[rules]]\nname = "cradle"\nuser = "tanaka"\nmitre = "T1059"\nip = "198.51.100.0/24"\n'
        'file_hash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"\n'
        'priority = "P2"\n',
        encoding="utf-8",
    )
    single = tmp_path / "one.json"
    single.write_text(json.dumps({"data": CYCRAFT_ALERT}), "utf-8")  # one alert, as GET sends it
    result = invoke(
        config, "playbooks", "test", str(single), "--connector", "cycraft", "--playbook", str(draft)
    )
    assert result.exit_code == 0, result.output
    assert "1. cradle (draft.toml:1)" in result.output  # evidence and MITRE reached the facts
    assert "- user 'SAKURA\\tanaka' matches listed 'tanaka'" in result.output
    assert "- IP 198.51.100.20 is in 198.51.100.0/24" in result.output
    assert "1 × P2" in result.output


def test_an_unknown_connector_names_the_known_ones(config: Path) -> None:
    alerts = FIXTURES / "graph__list_alerts_v2.json"
    result = invoke(config, "playbooks", "test", str(alerts), "--connector", "sentinelone")
    assert result.exit_code == 2
    assert "unknown connector 'sentinelone' (known: cycraft, defender)" in result.output

    stored = invoke(config, "playbooks", "test", "--alert", "1", "--connector", "cycraft")
    assert stored.exit_code == 2
    assert "--connector needs ALERTS_JSON" in stored.output


def test_test_needs_something_to_test(config: Path) -> None:
    result = invoke(config, "playbooks", "test")
    assert result.exit_code == 2
    assert "give ALERTS_JSON, --alert ID or --company KEY" in result.output


# --- test, on stored alerts -------------------------------------------------------------------


def test_stored_alert_by_id_or_source_id_changes_nothing(
    config: Path, stored: sessionmaker[Session]
) -> None:
    before = row_counts(stored)
    with stored() as session:
        ransom_id = session.scalar(select(Alert.id).where(Alert.source_id == "a-ransom"))
    result = invoke(config, "playbooks", "test", "--alert", str(ransom_id), "--alert", "a-test")
    out = result.output
    assert result.exit_code == 0, out
    assert (
        f"alert {ransom_id} (a-ransom) [sakura-seisakusho] 'Ransomware behavior detected' (high)"
    ) in out
    assert "isolate:         request by rule 'ransomware-category'" in out
    assert "suppressed (detection-test)" in out
    assert "2 alert(s) decided:" in out
    assert row_counts(stored) == before


def test_stored_facts_include_tags_and_evidence(
    config: Path, stored: sessionmaker[Session], tmp_path: Path
) -> None:
    draft = tmp_path / "vip.toml"
    draft.write_text(
        '[[rules]]\nname = "vip"\ndevice_tag = "vip"\nuser = "tanaka"\n'
        'tenant = "5f1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c01"\npriority = "P1"\n',
        encoding="utf-8",
    )
    result = invoke(config, "playbooks", "test", "--alert", "a-low", "--playbook", str(draft))
    assert result.exit_code == 0, result.output
    assert "- device tag 'VIP' is listed" in result.output
    assert "- user 'SAKURA\\tanaka' matches listed 'tanaka'" in result.output
    assert "- tenant is '5f1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c01'" in result.output


def test_company_last_n_newest_first_and_unknown_alerts(
    config: Path, stored: sessionmaker[Session]
) -> None:
    before = row_counts(stored)
    result = invoke(config, "playbooks", "test", "--company", "sakura-seisakusho", "--last", "2")
    out = result.output
    assert result.exit_code == 0, out
    assert out.index("(a-low)") < out.index("(a-test)")
    assert "(a-ransom)" not in out
    assert "2 alert(s) decided:" in out

    missing = invoke(config, "playbooks", "test", "--alert", "nope", "--alert", "a-low")
    assert missing.exit_code == 1
    assert "alert nope" in missing.output and "not tested: no such alert" in missing.output
    assert "1 alert(s) decided:" in missing.output

    other = invoke(config, "playbooks", "test", "--company", "no-such-company")
    assert other.exit_code == 2
    assert "no company 'no-such-company'" in other.output
    assert "sakura-seisakusho" in other.output  # the keys there are
    assert row_counts(stored) == before


@pytest.mark.parametrize("given", ["sakura-seisakusyo", "Sakura-Seisakusho"])
def test_a_file_of_alerts_tested_for_an_unknown_company_is_an_error(
    config: Path, tmp_path: Path, given: str
) -> None:
    # Judged as no company's, rules narrowed to the company meant would silently not match.
    alert = json.loads((FIXTURES / "graph__list_alerts_v2.json").read_text("utf-8"))["value"][0]
    path = tmp_path / "alert.json"
    path.write_text(json.dumps(alert), encoding="utf-8")
    result = invoke(config, "playbooks", "test", str(path), "--company", given)
    assert result.exit_code == 2, result.output
    assert f"no company {given!r}" in result.output
    assert "sakura-seisakusho" in result.output  # the key meant, among those there are
    assert result.output.count("\n") == 1 and "Decision" not in result.output
