"""`verify_access` of the Defender connector against Entra's and the APIs' documented refusals:
each problem told in words an operator acts on, with who must act (`Remedy`)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from pytest_httpx import HTTPXMock

from edrtrial.connectors.base import AccessCheck, Remedy
from edrtrial.connectors.defender import DefenderForBusinessConnector
from edrtrial.sandbox.auth import EntraError

from test_defender_support import (
    ACTIONS_URL,
    ALERTS_URL,
    CLIENT_ID,
    DISCOVERY_URL,
    INCIDENTS_URL,
    MACHINES_URL,
    TENANT,
    TOKEN_URL,
    add_discovery,
    add_instance_discovery,
    make_connector,
    mde_error,
    payload,
    token_form,
    token_response,
)

GRAPH_ROLES = ["SecurityAlert.Read.All", "SecurityIncident.Read.All"]
MDE_ROLES = ["Machine.Read.All", "Machine.Isolate", "Machine.Offboard"]


@pytest.fixture
def connector(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[DefenderForBusinessConnector]:
    conn = make_connector(monkeypatch, tmp_path)
    yield conn
    conn.close()


def entra_refusal(reason: str, **fields: str) -> tuple[int, dict[str, Any]]:
    """Entra's documented error body (the shape of entra__error_invalid_client_7000215.json)."""
    err = EntraError(reason, **fields)
    return err.status, err.body(datetime(2024, 5, 1, 2, 2, 12, tzinfo=UTC))


def refused_sign_in(httpx_mock: HTTPXMock, reason: str, **fields: str) -> None:
    add_discovery(httpx_mock)
    status, body = entra_refusal(reason, **fields)
    httpx_mock.add_response(
        url=TOKEN_URL, method="POST", status_code=status, json=body, is_reusable=True
    )
    add_instance_discovery(httpx_mock)


def granted_sign_in(httpx_mock: HTTPXMock, graph: list[str], mde: list[str]) -> None:
    """Tokens whose `roles` claim lists what the tenant granted, per API."""
    add_discovery(httpx_mock)

    def token(request: httpx.Request) -> httpx.Response:
        scope = token_form(request)["scope"]
        body = token_response(scope)
        claims = jwt.decode(body["access_token"], options={"verify_signature": False})
        claims["roles"] = graph if "graph" in scope else mde
        body["access_token"] = jwt.encode(claims, "edrtrial-test-key-of-32-bytes-long!")
        return httpx.Response(200, json=body)

    httpx_mock.add_callback(token, url=TOKEN_URL, method="POST", is_reusable=True)


def readable(httpx_mock: HTTPXMock, *, skip: str = "") -> None:
    """Every endpoint read answers its documented list (except `skip`)."""
    lists = {
        ALERTS_URL: payload("graph__list_alerts_v2.json"),
        INCIDENTS_URL: payload("graph__list_incidents.json"),
        MACHINES_URL: payload("mde__list_machines.json"),
        ACTIONS_URL: payload("mde__list_machineactions.json"),
    }
    for url, body in lists.items():
        if url != skip:
            httpx_mock.add_response(url=url, match_params={"$top": "1"}, json=body)


def by_name(checks: list[AccessCheck]) -> dict[str, AccessCheck]:
    return {check.name: check for check in checks}


def failed(checks: list[AccessCheck]) -> list[AccessCheck]:
    return [check for check in checks if not check.ok]


def test_everything_granted_passes_every_check_with_one_read_per_endpoint(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector
) -> None:
    granted_sign_in(httpx_mock, GRAPH_ROLES, MDE_ROLES)
    readable(httpx_mock)

    checks = connector.verify_access()

    assert failed(checks) == []
    assert list(by_name(checks)) == [
        "sign-in to Microsoft Graph",
        "Graph alerts_v2 (SecurityAlert.Read.All)",
        "Graph incidents (SecurityIncident.Read.All)",
        "sign-in to Defender for Endpoint API",
        "MDE machines (Machine.Read.All)",
        "MDE machine actions (Machine.Read.All)",
        "Machine.Isolate (isolate and release a PC)",
        "Machine.Offboard (uninstall Defender from PCs at the trial's end)",
    ]
    # Nothing was sent that acts: every request a GET.
    assert {r.method for r in httpx_mock.get_requests() if "login" not in str(r.url)} == {"GET"}


def test_no_admin_consent_65001_says_send_the_consent_link(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector
) -> None:
    refused_sign_in(httpx_mock, "no_consent", client_id=CLIENT_ID)

    checks = connector.verify_access()

    sign_in = by_name(checks)["sign-in to Microsoft Graph"]
    assert sign_in.reason.startswith("AADSTS65001: no admin consent for the programme's app")
    assert sign_in.remedy is Remedy.CONSENT
    assert "consent URL" in sign_in.action
    assert by_name(checks)["MDE machines (Machine.Read.All)"].reason == "not tried: no sign-in"
    assert all(not check.ok for check in checks)


def test_a_wrong_or_expired_secret_7000215_is_the_programmes_app_not_the_company(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector
) -> None:
    refused_sign_in(httpx_mock, "bad_secret", client_id=CLIENT_ID)

    sign_in = by_name(connector.verify_access())["sign-in to Microsoft Graph"]

    assert "AADSTS7000215" in sign_in.reason
    assert "the programme's app registration, not the company" in sign_in.reason
    assert "secret" in sign_in.action.lower() and sign_in.remedy is Remedy.APP


def test_an_app_not_in_the_tenant_700016_says_consent_or_wrong_tenant(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector
) -> None:
    refused_sign_in(httpx_mock, "unknown_client", client_id=CLIENT_ID, tenant_name=TENANT)

    sign_in = by_name(connector.verify_access())["sign-in to Microsoft Graph"]

    assert "AADSTS700016" in sign_in.reason
    assert "consent was not given there, or the tenant id recorded" in sign_in.reason
    assert sign_in.remedy is Remedy.CONSENT


def test_no_such_tenant_90002_says_check_the_tenant_id(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector
) -> None:
    status, body = entra_refusal("unknown_tenant", tenant=TENANT)
    httpx_mock.add_response(url=DISCOVERY_URL, status_code=status, json=body, is_reusable=True)

    sign_in = by_name(connector.verify_access())["sign-in to Microsoft Graph"]

    assert sign_in.reason == f"AADSTS90002: no tenant {TENANT} exists"
    assert sign_in.remedy is Remedy.TENANT_ID
    assert "tenant id" in sign_in.action


def test_a_403_names_the_permission_the_endpoint_needs(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector
) -> None:
    granted_sign_in(httpx_mock, GRAPH_ROLES, MDE_ROLES)
    readable(httpx_mock, skip=MACHINES_URL)
    message = (
        "Missing application roles. API required roles: Machine.Read.All,Machine.ReadWrite.All, "
        "application roles: Machine.Isolate,Machine.Offboard."
    )
    httpx_mock.add_response(
        url=MACHINES_URL,
        match_params={"$top": "1"},
        status_code=403,
        json=mde_error("Forbidden", message),
    )

    [problem] = failed(connector.verify_access())

    assert problem.name == "MDE machines (Machine.Read.All)"
    assert "lacks Machine.Read.All or Machine.ReadWrite.All" in problem.reason
    assert message in problem.reason  # Microsoft's own words, quoted
    assert problem.action.startswith("Add Machine.Read.All (Defender for Endpoint API")
    assert "consent URL again" in problem.action and problem.remedy is Remedy.PERMISSION


def test_a_role_missing_from_the_token_is_named_without_trying_the_action(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector
) -> None:
    granted_sign_in(httpx_mock, GRAPH_ROLES, ["Machine.Read.All", "Machine.Isolate"])
    readable(httpx_mock)

    [problem] = failed(connector.verify_access())

    assert problem.name.startswith("Machine.Offboard")
    assert problem.reason == "not granted: the token's roles lack Machine.Offboard"
    assert problem.remedy is Remedy.PERMISSION


def test_write_back_needs_alert_write_permission(
    httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    granted_sign_in(httpx_mock, GRAPH_ROLES, MDE_ROLES)
    readable(httpx_mock)
    conn = make_connector(monkeypatch, tmp_path, write_back=True)

    [problem] = failed(conn.verify_access())
    conn.close()

    assert problem.name == "SecurityAlert.ReadWrite.All (write the desk's verdicts)"


def test_disabled_feature_says_defender_is_not_provisioned_yet(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector
) -> None:
    granted_sign_in(httpx_mock, GRAPH_ROLES, MDE_ROLES)
    readable(httpx_mock, skip=MACHINES_URL)
    httpx_mock.add_response(
        url=MACHINES_URL,
        match_params={"$top": "1"},
        status_code=403,
        json=mde_error("DisabledFeature", "Tenant feature is not enabled"),
    )

    [problem] = failed(connector.verify_access())

    assert "Defender is not provisioned in the tenant yet" in problem.reason
    assert problem.remedy is Remedy.PROVISIONING


def test_no_recent_machines_404_is_readable(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector
) -> None:
    granted_sign_in(httpx_mock, GRAPH_ROLES, MDE_ROLES)
    readable(httpx_mock, skip=MACHINES_URL)
    httpx_mock.add_response(
        url=MACHINES_URL,
        match_params={"$top": "1"},
        status_code=404,
        json=payload("mde__error_resource_not_found_404.json"),
    )

    checks = connector.verify_access()

    assert failed(checks) == []
    assert "nothing there yet" in by_name(checks)["MDE machines (Machine.Read.All)"].reason


def test_a_sign_in_service_that_does_not_answer_is_a_timeout_not_a_verdict(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector
) -> None:
    httpx_mock.add_exception(
        httpx.ConnectTimeout("timed out"), url=re.compile(r"https://login\..*"), is_reusable=True
    )

    checks = connector.verify_access()

    assert all(not check.ok for check in checks)
    sign_in = by_name(checks)["sign-in to Microsoft Graph"]
    assert sign_in.remedy is Remedy.NETWORK
    assert "no answer from https://login.microsoftonline.com" in sign_in.reason


def test_a_tenant_lacking_the_defender_service_650052_says_provision_then_consent(
    httpx_mock: HTTPXMock, connector: DefenderForBusinessConnector
) -> None:
    add_discovery(httpx_mock)
    body = {
        "error": "invalid_client",
        "error_description": (
            "AADSTS650052: The app is trying to access a service "
            "'fc780465-2017-40d4-a0c5-307022471b92'(WindowsDefenderATP) that your organization "
            f"'{TENANT}' lacks a service principal for. Contact your IT Admin to review the "
            "configuration of your service subscriptions or consent to the application in "
            "order to create the required service principal."
        ),
        "error_codes": [650052],
    }
    httpx_mock.add_response(
        url=TOKEN_URL, method="POST", status_code=400, json=body, is_reusable=True
    )
    add_instance_discovery(httpx_mock)

    sign_in = by_name(connector.verify_access())["sign-in to Microsoft Graph"]

    assert "AADSTS650052" in sign_in.reason and "not provisioned" in sign_in.reason
    assert sign_in.remedy is Remedy.PROVISIONING
    assert "security.microsoft.com" in sign_in.action and "consent URL" in sign_in.action
