"""A bad config file is refused with its file and key named; the shipped one loads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edrtrial.config import load_config
from edrtrial.errors import ConfigError

ROOT = Path(__file__).parent.parent
EXAMPLE = (ROOT / "config.example.toml").read_text(encoding="utf-8")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_shipped_example_loads_with_three_companies():
    config = load_config(ROOT / "config.example.toml")
    assert [c.key for c in config.settings.companies] == [
        "sakura-seisakusho",
        "midori-shoji",
        "aozora-design",
    ]
    assert config.database_url == f"sqlite:///{ROOT / 'var' / 'edrtrial.db'}"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ('tenant_id = "5f1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c01"', 'tenant_idd = "x"'),
            "companies[0].connection.tenant_idd: unknown key",
        ),
        (
            ('contact_email = "soumu@midori.example.jp"\n', ""),
            "companies[1].contact_email: required key is missing",
        ),
        (("poll_seconds = 30", "poll_secs = 30"), "schedules.poll_secs: unknown key"),
        (
            ('weekly_report = "mon 09:00"', 'weekly_report = "monday 9am"'),
            "schedules.weekly_report:",
        ),
        (
            ('connector = "defender"', 'connector = "carbonblack"'),
            "companies[0].connection.connector: unknown connector 'carbonblack'",
        ),
        (
            (
                'client_secret = "file:var/sandbox/secrets/'
                '5f1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c02.secret"',
                'client_secret = "s3cr3t-value"',
            ),
            "companies[1].connection.client_secret:",
        ),
        (("end = 2026-11-30", "end = 2026-08-30"), "is before its start"),
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


def test_two_companies_on_one_tenant_are_refused(tmp_path):
    text = EXAMPLE.replace("4c02", "4c01")
    with pytest.raises(ConfigError, match="configured for two companies"):
        load_config(write(tmp_path, text))


def test_a_company_whose_tenant_id_changes_is_refused_rather_than_mixed(tmp_path, database_url):
    from edrtrial.db import make_engine, upgrade
    from edrtrial.runtime import Runtime

    text = EXAMPLE.replace('url = "sqlite:///var/edrtrial.db"', f'url = "{database_url}"')
    upgrade(make_engine(database_url))
    Runtime.open(load_config(write(tmp_path, text))).close()
    changed = text.replace("8c7d-0e1f2a3b4c01", "8c7d-0e1f2a3b4c99")
    with pytest.raises(ConfigError, match="sakura-seisakusho.*tenant changed"):
        Runtime.open(load_config(write(tmp_path, changed)))
