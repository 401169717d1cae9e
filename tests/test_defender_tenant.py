"""Which tenant a Defender connector talks to: a domain resolved to its GUID from Entra's
sign-in metadata, and a token naming another tenant refused before anything is read."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from pytest_httpx import HTTPXMock

from edrtrial.errors import AuthError, SchemaDriftError

from test_defender_support import (
    FIXTURES,
    GRAPH_SCOPE,
    MACHINES_URL,
    TENANT,
    TOKEN_URL,
    add_discovery,
    fake_sign_in,
    make_connector,
    payload,
    token_form,
    token_response,
)

DOMAIN = "contoso.onmicrosoft.com"
DOMAIN_DISCOVERY = (
    f"https://login.microsoftonline.com/{DOMAIN}/v2.0/.well-known/openid-configuration"
)
OTHER = "0d5f3c2b-1a09-4e8d-9c7b-6a5f4e3d2c1b"  # another customer's tenant


def add_domain_discovery(httpx_mock: HTTPXMock) -> None:
    """Entra's metadata for the domain: it names the tenant's GUID, as for the GUID itself."""
    text = (FIXTURES / "entra__openid_configuration_v2.json").read_text(encoding="utf-8")
    text = text.replace("{tenant}", TENANT)
    httpx_mock.add_response(url=DOMAIN_DISCOVERY, method="GET", text=text)


def test_a_tenant_configured_by_domain_is_its_guid_from_the_sign_in_metadata(
    httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    add_domain_discovery(httpx_mock)
    fake_sign_in(httpx_mock)  # then MSAL signs in at the GUID's authority
    httpx_mock.add_response(
        url=MACHINES_URL,
        match_params={"$top": "10000", "$skip": "0"},
        json=payload("mde__list_machines.json"),
    )
    conn = make_connector(monkeypatch, tmp_path, tenant_id="Contoso.onmicrosoft.com")

    assert conn.tenant_id == TENANT
    assert len(conn.fetch_devices().records) == 1
    assert conn.tenant_id == TENANT
    conn.close()
    # Resolved once, then held: one look-up per connector, not one per call.
    assert len(httpx_mock.get_requests(url=DOMAIN_DISCOVERY)) == 1


def test_a_domain_no_tenant_has_is_an_auth_error_naming_it(
    httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    unknown = payload("entra__error_invalid_client_7000215.json") | {
        "error": "invalid_tenant",
        "error_description": f"AADSTS90002: Tenant '{DOMAIN}' not found.",
        "error_codes": [90002],
    }
    httpx_mock.add_response(url=DOMAIN_DISCOVERY, method="GET", status_code=400, json=unknown)
    conn = make_connector(monkeypatch, tmp_path, tenant_id=DOMAIN)

    with pytest.raises(AuthError) as caught:
        list(conn.fetch_alerts(None))
    assert str(caught.value) == (
        f"tenant {DOMAIN}: https://login.microsoftonline.com knows no tenant with this domain "
        "(400, AADSTS90002)"
    )
    assert "Check tenant_id" in caught.value.operator_action
    assert not httpx_mock.get_requests(url=TOKEN_URL)
    conn.close()


def _documented_token(scope: str) -> dict[str, object]:
    """The token response exactly as documented: its token cut short, no readable claims."""
    return payload("graph__token_response_client_credentials.json")


@pytest.mark.parametrize(
    ("answer", "named"),
    [
        (lambda scope: token_response(scope, OTHER), OTHER),
        (_documented_token, "(none)"),
    ],
    ids=["another tenant", "no tenant"],
)
def test_a_token_not_issued_in_the_tenant_is_refused_before_anything_is_read(
    httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, answer, named
) -> None:
    add_discovery(httpx_mock)
    httpx_mock.add_callback(
        lambda request: httpx.Response(200, json=answer(token_form(request)["scope"])),
        url=TOKEN_URL,
        method="POST",
    )
    conn = make_connector(monkeypatch, tmp_path)

    with pytest.raises(AuthError) as caught:
        list(conn.fetch_alerts(None))
    assert str(caught.value) == (
        f"tenant {TENANT}: the sign-in service at https://login.microsoftonline.com issued a "
        f"token for {GRAPH_SCOPE} naming tenant {named}; nothing is read or sent with it"
    )
    assert "resume the tenant" in caught.value.operator_action
    # The token never left this machine: nothing was asked of Graph.
    assert [r for r in httpx_mock.get_requests() if r.url.host == "graph.microsoft.com"] == []
    conn.close()


def test_sign_in_metadata_naming_no_tenant_is_schema_drift_and_nothing_is_signed_in(
    httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    text = (FIXTURES / "entra__openid_configuration_v2.json").read_text(encoding="utf-8")
    httpx_mock.add_response(
        url=DOMAIN_DISCOVERY, method="GET", text=text.replace("{tenant}", DOMAIN)
    )
    conn = make_connector(monkeypatch, tmp_path, tenant_id=DOMAIN)

    with pytest.raises(
        SchemaDriftError, match=f"tenant {DOMAIN}: the sign-in metadata at .* names no tenant id"
    ):
        conn.fetch_devices()
    assert not httpx_mock.get_requests(url=TOKEN_URL)
    conn.close()
