"""A company's connection as `companies import-config` reads it (the config loader's own
checks): one tenant in one spelling, held by one company, and credentials (bearer tokens,
API keys, the SMTP password) never sent in cleartext."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edrtrial.config import CompanyConfig, Config, load_companies, load_config
from edrtrial.errors import ConfigError

from sandbox_config import sample_companies, settings, to_toml, write_config

SAKURA = "5f1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c01"


def programme(count: int = 3, **changes: dict[str, Any]) -> list[dict[str, Any]]:
    """The sample programme's `[[companies]]` blocks, with `changes[key]` merged into that
    company's connection block."""
    blocks = sample_companies(settings("sqlite:///x.db"), count)
    for company in blocks:
        company["connection"] |= changes.get(company["key"], {})
    return blocks


def load(tmp_path: Path, blocks: list[dict[str, Any]]) -> list[CompanyConfig]:
    path = tmp_path / "companies.toml"
    path.write_text(to_toml({"companies": blocks}), encoding="utf-8")
    return load_companies(path)


def refusal(tmp_path: Path, blocks: list[dict[str, Any]]) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, blocks)
    message = str(caught.value)
    assert str(tmp_path / "companies.toml") in message
    return message


def tenant_ids(companies: list[CompanyConfig]) -> dict[str, str]:
    return {c.key: c.connection.model_dump()["tenant_id"] for c in companies}


@pytest.mark.parametrize(
    ("typed", "kept"),
    [
        (SAKURA.upper(), SAKURA),
        ("5F1B2C3D-4e5f-4A6B-8c7d-0E1F2A3B4C01", SAKURA),
        ("{" + SAKURA.upper() + "}", SAKURA),
        ("Sakura.Example.JP", "sakura.example.jp"),
        ("sakura.onmicrosoft.com.", "sakura.onmicrosoft.com"),
    ],
)
def test_a_tenant_id_is_kept_in_its_one_spelling(tmp_path, typed, kept):
    config = load(tmp_path, programme(**{"sakura-seisakusho": {"tenant_id": typed}}))
    assert tenant_ids(config)["sakura-seisakusho"] == kept


@pytest.mark.parametrize(
    "spelling",
    [SAKURA.upper(), "{" + SAKURA + "}", "5F1B2C3D-4E5F-4a6b-8c7d-0e1f2a3b4c01"],
)
def test_one_tenant_in_another_spelling_under_a_second_company_is_refused_naming_both(
    tmp_path, spelling
):
    message = refusal(tmp_path, programme(**{"midori-shoji": {"tenant_id": spelling}}))
    assert (
        f"companies[1].connection.tenant_id: tenant {SAKURA} is configured for two companies, "
        "'sakura-seisakusho' (companies[0]) and 'midori-shoji'"
    ) in message
    assert len(message.splitlines()) == 1


def test_one_domain_in_two_spellings_under_two_companies_is_refused(tmp_path):
    data = programme(
        **{
            "sakura-seisakusho": {"tenant_id": "sakura.example.jp"},
            "aozora-design": {"tenant_id": "SAKURA.Example.jp"},
        }
    )
    message = refusal(tmp_path, data)
    assert "tenant sakura.example.jp is configured for two companies" in message
    assert "'sakura-seisakusho' (companies[0]) and 'aozora-design'" in message


@pytest.mark.parametrize(
    "typed", ["common", "organizations", "consumers", "5f1b2c3d-4e5f", "sakura example jp"]
)
def test_a_tenant_id_that_names_no_one_tenant_is_refused(tmp_path, typed):
    """`common` or `organizations` would sign in wherever the app is consented: any tenant."""
    message = refusal(tmp_path, programme(**{"sakura-seisakusho": {"tenant_id": typed}}))
    assert (
        "companies[0].connection.tenant_id: Value error, must be the tenant's id (a GUID" in message
    )


@pytest.mark.parametrize("key", ["graph_base_url", "mde_base_url"])
def test_a_defender_api_url_must_be_https(tmp_path, key):
    """The bearer token on these calls may isolate and offboard the company's PCs."""
    url = "http://graph.example.jp"
    message = refusal(tmp_path, programme(**{"midori-shoji": {key: url}}))
    assert f"companies[1].connection.{key}:" in message
    assert "https://" in message


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8443", "http://[::1]:8443", "http://localhost:8443/"]
)
def test_a_defender_api_url_on_loopback_may_be_plain_http(tmp_path, url):
    companies = load(
        tmp_path,
        programme(**{"midori-shoji": {"graph_base_url": url, "mde_base_url": url}}),
    )
    block = next(c for c in companies if c.key == "midori-shoji").connection.model_dump()
    assert block["graph_base_url"] == url


def _cycraft(base_url: str) -> dict[str, Any]:
    return {
        "connector": "cycraft",
        "tenant_id": "org-42",
        "base_url": base_url,
        "api_key": "env:CYCRAFT_KEY",
    }


def test_a_cycraft_api_url_must_be_https_except_on_loopback(tmp_path):
    blocks = programme(1)
    blocks[0]["connection"] = _cycraft("http://air.example.jp")
    message = refusal(tmp_path, blocks)
    assert "companies[0].connection.base_url:" in message and "https://" in message

    blocks[0]["connection"] = _cycraft("http://127.0.0.1:9000")
    assert load(tmp_path, blocks)[0].connection.connector == "cycraft"


def _smtp(**smtp: Any) -> dict[str, Any]:
    data = settings("sqlite:///x.db")
    data["mail"]["smtp"] = {"host": "smtp.example.jp", "username": "edr"} | smtp
    return data


def load_settings(tmp_path: Path, data: dict[str, Any]) -> Config:
    return load_config(write_config(tmp_path / "config.toml", data, companies=0))


def test_an_smtp_password_without_tls_is_refused(tmp_path):
    data = _smtp(starttls=False, password="env:EDRTRIAL_SMTP_PASSWORD")
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path, data)
    message = str(caught.value)
    assert str(tmp_path / "config.toml") in message
    assert "mail.smtp.password: Value error, a password needs TLS" in message


@pytest.mark.parametrize(
    "smtp",
    [
        {"password": "env:P"},  # STARTTLS is the default
        {"starttls": False, "ssl": True, "port": 465, "password": "env:P"},
        {"starttls": False, "host": "127.0.0.1", "password": "env:P"},
        {"starttls": False, "host": "localhost", "password": "env:P"},
        {"starttls": False},  # no password to protect
    ],
)
def test_an_smtp_password_goes_over_tls_or_stays_on_this_machine(tmp_path, smtp):
    assert load_settings(tmp_path, _smtp(**smtp)).settings.mail.smtp is not None
