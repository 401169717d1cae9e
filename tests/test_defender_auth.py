"""Defender connector: settings, MSAL sign-in per tenant, two scopes, what the operator is told."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme
from pytest_httpx import HTTPXMock

from edrtrial.connectors import connector_class
from edrtrial.connectors.base import Capability, Connector
from edrtrial.connectors.defender import DefenderForBusinessConnector, DefenderSettings
from edrtrial.errors import AuthError, ConfigError, TransientError

from test_defender_support import (
    ALERTS_URL,
    CLIENT_ID,
    DISCOVERY_URL,
    GRAPH_SCOPE,
    GRAPH_TOKEN,
    MACHINES_URL,
    MDE_SCOPE,
    MDE_TOKEN,
    SECRET,
    SECRET_ENV,
    TENANT,
    TOKEN_URL,
    add_discovery,
    add_instance_discovery,
    bearer,
    connection,
    fake_sign_in,
    make_connector,
    payload,
    scopes_requested,
    sign_in_requests,
    token_response,
)


@pytest.fixture
def connector(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[DefenderForBusinessConnector]:
    conn = make_connector(monkeypatch, tmp_path)
    yield conn
    conn.close()


def test_registered_under_its_name_and_meets_the_protocol(
    connector: DefenderForBusinessConnector,
) -> None:
    assert connector_class("defender") is DefenderForBusinessConnector
    assert isinstance(connector, Connector)
    assert DefenderForBusinessConnector.settings_model is DefenderSettings
    assert Capability.WRITE_BACK not in connector.capabilities  # off unless the tenant says so
    assert connector.capabilities == frozenset(Capability) - {Capability.WRITE_BACK}


def test_first_token_costs_discovery_plus_token_request_then_comes_from_cache(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector
) -> None:
    fake_sign_in(httpx_mock)
    httpx_mock.add_response(
        url=ALERTS_URL,
        match_params={"$top": "100"},
        json=payload("graph__list_alerts_v2.json"),
        is_reusable=True,
    )

    list(connector.fetch_alerts(None))
    list(connector.fetch_alerts(None))

    login = sign_in_requests(httpx_mock)
    assert [(r.method, str(r.url)) for r in login] == [("GET", DISCOVERY_URL), ("POST", TOKEN_URL)]
    alert_calls = httpx_mock.get_requests(url=ALERTS_URL, match_params={"$top": "100"})
    assert len(alert_calls) == 2
    assert all(bearer(r) == GRAPH_TOKEN for r in alert_calls)


def test_graph_and_mde_each_get_a_token_of_their_own_scope(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector
) -> None:
    fake_sign_in(httpx_mock)
    httpx_mock.add_response(
        url=ALERTS_URL, match_params={"$top": "100"}, json=payload("graph__list_alerts_v2.json")
    )
    httpx_mock.add_response(
        url=MACHINES_URL,
        match_params={"$top": "10000", "$skip": "0"},
        json=payload("mde__list_machines.json"),
    )

    list(connector.fetch_alerts(None))
    connector.fetch_devices()

    assert scopes_requested(httpx_mock) == [GRAPH_SCOPE, MDE_SCOPE]
    assert len(httpx_mock.get_requests(url=DISCOVERY_URL)) == 1  # one MSAL app per tenant
    [alerts] = httpx_mock.get_requests(url=ALERTS_URL, match_params={"$top": "100"})
    [machines] = httpx_mock.get_requests(
        url=MACHINES_URL, match_params={"$top": "10000", "$skip": "0"}
    )
    assert bearer(alerts) == GRAPH_TOKEN
    assert bearer(machines) == MDE_TOKEN


def test_wrong_secret_tells_the_operator_to_renew_it_without_revealing_it(
    httpx_mock: HTTPXMock,
    connector: DefenderForBusinessConnector,
    caplog: pytest.LogCaptureFixture,
) -> None:
    add_discovery(httpx_mock)
    refusal = payload("entra__error_invalid_client_7000215.json")
    refusal["error_description"] = refusal["error_description"].replace("{client_id}", CLIENT_ID)
    httpx_mock.add_response(url=TOKEN_URL, method="POST", status_code=401, json=refusal)
    add_instance_discovery(httpx_mock)
    caplog.set_level(logging.DEBUG)

    with pytest.raises(AuthError) as caught:
        list(connector.fetch_alerts(None))

    err = caught.value
    assert "AADSTS7000215" in str(err)
    assert TENANT in str(err)
    assert "secret" in err.operator_action.lower()
    assert f"env:{SECRET_ENV}" in err.operator_action  # where to put the new one
    for text in (str(err), err.operator_action, caplog.text):
        assert SECRET not in text


def test_unknown_tenant_at_discovery_says_check_the_tenant_id(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector
) -> None:
    # Entra's documented error envelope, as it answers discovery for a tenant that does not exist.
    refusal = payload("entra__error_invalid_client_7000215.json")
    refusal |= {
        "error": "invalid_tenant",
        "error_description": f"AADSTS90002: Tenant '{TENANT}' not found.",
        "error_codes": [90002],
    }
    httpx_mock.add_response(url=DISCOVERY_URL, status_code=400, json=refusal)

    with pytest.raises(AuthError) as caught:
        list(connector.fetch_alerts(None))

    assert "AADSTS90002" in str(caught.value)
    assert "tenant_id" in caught.value.operator_action


def test_unreachable_sign_in_is_transient(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector
) -> None:
    httpx_mock.add_exception(httpx.ConnectError("connection refused"), url=DISCOVERY_URL)

    with pytest.raises(TransientError):
        list(connector.fetch_alerts(None))


def test_consent_url_for_an_app_unknown_in_the_tenant(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector
) -> None:
    add_discovery(httpx_mock)
    refusal = payload("entra__error_invalid_client_7000215.json")
    refusal |= {
        "error": "unauthorized_client",
        "error_description": f"AADSTS700016: Application with identifier '{CLIENT_ID}' was "
        f"not found in the directory '{TENANT}'.",
        "error_codes": [700016],
    }
    httpx_mock.add_response(url=TOKEN_URL, method="POST", status_code=400, json=refusal)
    add_instance_discovery(httpx_mock)

    with pytest.raises(AuthError) as caught:
        connector.fetch_devices()

    action = caught.value.operator_action
    assert (
        f"https://login.microsoftonline.com/{TENANT}/adminconsent?client_id={CLIENT_ID}" in action
    )


def test_unknown_key_in_the_block_is_a_config_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tenant_idd: unknown key"):
        DefenderForBusinessConnector.from_settings(connection(tenant_idd="x"), tmp_path)


def test_a_pasted_secret_is_refused_without_echoing_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        DefenderForBusinessConnector.from_settings(connection(client_secret=SECRET), tmp_path)
    assert "client_secret" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_ca_bundle_is_read_relative_to_the_config_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    trustme.CA().cert_pem.write_to_path(str(tmp_path / "sandbox-ca.pem"))
    conn = make_connector(
        monkeypatch, tmp_path, ca_bundle="sandbox-ca.pem", authority_host="https://127.0.0.1:8443"
    )
    conn.close()

    with pytest.raises(ConfigError, match="ca_bundle"):
        make_connector(monkeypatch, tmp_path, ca_bundle="missing.pem")


def test_sandbox_authority_skips_microsoft_instance_discovery(
    httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sandbox = "https://127.0.0.1:8443"
    add_discovery(httpx_mock, sandbox)
    httpx_mock.add_response(
        url=f"{sandbox}/{TENANT}/oauth2/v2.0/token",
        method="POST",
        json=token_response(MDE_SCOPE),
    )
    httpx_mock.add_response(
        url=f"{sandbox}/api/machines",
        match_params={"$top": "10000", "$skip": "0"},
        json=payload("mde__list_machines.json"),
    )
    conn = make_connector(
        monkeypatch, tmp_path, authority_host=sandbox, graph_base_url=sandbox, mde_base_url=sandbox
    )

    assert len(conn.fetch_devices().records) == 1
    conn.close()
    # Only the sandbox was asked: no instance discovery at login.microsoftonline.com.
    assert {r.url.host for r in httpx_mock.get_requests()} == {"127.0.0.1"}
