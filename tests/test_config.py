"""A bad config file is refused with its file and key named; the shipped one loads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from edrtrial.cli.main import main
from edrtrial.config import ProgrammeConfig, load_config
from edrtrial.errors import ConfigError
from edrtrial.sandbox import SAMPLE_CLIENT_ID

from sandbox_config import settings, write_config

ROOT = Path(__file__).parent.parent
EXAMPLE = (ROOT / "config.example.toml").read_text(encoding="utf-8")
APP = 'connector = "defender"\nclient_id'  # the start of [programme.app]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_shipped_example_loads_with_the_programmes_app_on_the_sandbox_and_no_companies():
    config = load_config(ROOT / "config.example.toml")
    assert config.settings.companies == []  # companies live in the store
    app = config.settings.programme.app
    assert app is not None
    assert app.connection("t") == {
        "connector": "defender",
        "client_id": SAMPLE_CLIENT_ID,
        "client_secret": "file:var/sandbox/secrets/app.secret",
        "authority_host": "https://127.0.0.1:8443",
        "graph_base_url": "https://127.0.0.1:8443",
        "mde_base_url": "https://127.0.0.1:8443",
        "ca_bundle": "var/sandbox/ca.pem",
        "tenant_id": "t",
    }
    assert config.database_url == f"sqlite:///{ROOT / 'var' / 'edrtrial.db'}"


def test_the_examples_programme_rules_are_the_codes_defaults():
    """The thresholds are written out in the example for the secretariat to read and change;
    left out, the same rules hold."""
    shipped = load_config(ROOT / "config.example.toml").settings.programme
    assert shipped.model_dump(exclude={"app"}) == ProgrammeConfig().model_dump(exclude={"app"})
    rows = {r.key: (r.max_capital_yen, r.max_employees) for r in shipped.eligibility.industries}
    assert rows == {
        "manufacturing": (300_000_000, 300),
        "wholesale": (100_000_000, 100),
        "services": (50_000_000, 100),
        "retail": (50_000_000, 50),
    }
    assert len(shipped.eligibility.attestations) == 7
    assert shipped.courses["edr"].seat_cap == 300


def test_tests_run_the_shipped_settings(tmp_path):
    """sandbox_config.py writes the example's config but for the database."""
    shipped = load_config(ROOT / "config.example.toml").settings.model_dump()
    path = write_config(tmp_path / "config.toml", settings("sqlite:///x.db"), companies=0)
    tests = load_config(path).settings.model_dump()
    for dump in (shipped, tests):
        del dump["database"]
        del dump["web"]["port"]  # the tests' consoles take any free port
    assert tests == shipped


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            (
                'connector = "defender"\nclient_id',
                'connector = "defender"\ntenant_idd = "x"\nclient_id',
            ),
            "programme.app.tenant_idd: unknown key",
        ),
        (
            (
                'connector = "defender"\nclient_id',
                'connector = "defender"\ntenant_id = "x"\nclient_id',
            ),
            "programme.app.tenant_id: the app serves every consented tenant",
        ),
        (("max_employees = 300", "max_employees = -1"), "programme.eligibility.industries[0]"),
        (("poll_seconds = 30", "poll_secs = 30"), "schedules.poll_secs: unknown key"),
        (
            ('weekly_report = "mon 09:00"', 'weekly_report = "monday 9am"'),
            "schedules.weekly_report:",
        ),
        (
            (APP, 'connector = "carbonblack"\nclient_id'),
            "programme.app.connector: unknown connector 'carbonblack'",
        ),
        (
            (
                'client_secret = "file:var/sandbox/secrets/app.secret"',
                'client_secret = "s3cr3t-value"',
            ),
            "programme.app.client_secret:",
        ),
        (('closes = "17:00"', 'closes = "08:00"'), "calendar: Value error, calendar opens"),
        (('opens = "09:00"', 'opens = "9am"'), "calendar.opens: Value error, must look like"),
        (
            ('year_end_closure = ["12-29", "01-03"]', 'year_end_closure = ["12-32"]'),
            "calendar.year_end_closure:",
        ),
        (("P3 = 480, ", ""), "sla.acknowledge_minutes: Value error, missing priorities: P3"),
        (
            (
                '# [[desk.channels]]\n# name = "desk"\n# kind = "mail"\n# to = "desk@example.jp"',
                '[[desk.channels]]\nname = "desk"\nkind = "webhook"\nurl = "env:HOOK"',
            ),
            "desk.channels[0]: Value error, channel 'desk': a webhook channel needs",
        ),
        (
            (
                '# [[desk.channels]]\n# name = "desk"\n# kind = "mail"\n# to = "desk@example.jp"',
                '[[desk.channels]]\nname = "desk"\nkind = "teams"\nurl = "https://x/y?sig=s3cr3t-value"',
            ),
            "desk.channels[0].url:",
        ),
    ],
)
def test_a_mistake_names_the_file_and_the_key(tmp_path, change, expected):
    old, new = change
    assert old in EXAMPLE
    path = write(tmp_path, EXAMPLE.replace(old, new, 1))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert str(path) in message
    assert expected in message
    assert "s3cr3t-value" not in message


def test_broken_toml_names_the_line(tmp_path):
    path = write(tmp_path, EXAMPLE.replace("[desk]", "[desk", 1))
    with pytest.raises(ConfigError, match=re.escape(str(path)) + r".*line \d+"):
        load_config(path)


RULE = """
[[rules]]
name = "everything-p3"
severity = ["high", "medium", "low", "informational"]
priority = "P3"
ticket = true
{extra}
"""


def test_the_service_keeps_its_last_good_playbook_when_an_edit_breaks_it(
    tmp_path, database_url, caplog
):
    import os

    from edrtrial.db import make_engine, upgrade
    from edrtrial.service.runtime import Runtime

    upgrade(make_engine(database_url))
    playbook = tmp_path / "site.toml"
    playbook.write_text(RULE.format(extra=""), encoding="utf-8")
    text = EXAMPLE.replace('url = "sqlite:///var/edrtrial.db"', f'url = "{database_url}"').replace(
        '# playbooks = ["my-playbook.toml"]', 'playbooks = ["site.toml"]'
    )
    rt = Runtime.open(load_config(write(tmp_path, text)))
    try:
        assert [r.name for r in rt.playbook.rules] == ["everything-p3"]
        playbook.write_text(RULE.format(extra='priority_typo = "P1"'), encoding="utf-8")
        os.utime(playbook, ns=(1, 1))  # a distinct stamp even within the clock's resolution
        error = rt.refresh_playbooks()
        assert error is not None and f"{playbook}:2" in error and "priority_typo" in error
        assert [r.name for r in rt.playbook.rules] == ["everything-p3"]
        assert "previous 1 rules stay in force" in caplog.text
    finally:
        rt.close()


def test_a_playbook_escalating_to_an_unknown_channel_stops_the_start(tmp_path, database_url):
    from edrtrial.db import make_engine, upgrade
    from edrtrial.errors import PlaybookError
    from edrtrial.service.runtime import Runtime

    upgrade(make_engine(database_url))
    (tmp_path / "site.toml").write_text(RULE.format(extra='escalate = "pager"'), encoding="utf-8")
    text = EXAMPLE.replace('url = "sqlite:///var/edrtrial.db"', f'url = "{database_url}"').replace(
        '# playbooks = ["my-playbook.toml"]', 'playbooks = ["site.toml"]'
    )
    with pytest.raises(PlaybookError, match="pager"):
        Runtime.open(load_config(write(tmp_path, text)))


def test_the_command_shows_each_mistake_of_a_config_on_its_own_line(tmp_path):
    text = EXAMPLE.replace("P3 = 480, ", "", 1).replace("[desk]", "[desk]\ncolour = 1", 1)
    path = write(tmp_path, text)

    result = CliRunner().invoke(main, ["--config", str(path), "playbooks", "check"])

    assert result.exit_code == 2, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"error: {path}: invalid configuration", lines
    assert sorted(line.split(":")[0] for line in lines[1:]) == [
        "      desk.colour",
        "      sla.acknowledge_minutes",
    ], lines
