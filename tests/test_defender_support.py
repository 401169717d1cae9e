"""Shared helpers for the Defender connector tests: documented payloads and a faked Entra sign-in.

Every Microsoft answer comes from tests/fixtures (copies of the documented payloads); where a
test needs a variant (a second page, a Pending status) it derives it from such a payload.
"""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from pytest_httpx import HTTPXMock

from edrtrial.connectors.defender import DefenderForBusinessConnector
from edrtrial.connectors.defender.budget import Clock

FIXTURES = Path(__file__).parent / "fixtures"
TENANT = "b3c1b5fc-828c-45fa-a1e1-10d74f6d6e9c"  # the tenantId in the documented payloads
CLIENT_ID = "6731de76-14a6-49ae-97bc-6eba6914391e"
SECRET = "Xq8~unit-test-client-secret.VALUE"
SECRET_ENV = "EDRTRIAL_TEST_DEFENDER_SECRET"
LOGIN = f"https://login.microsoftonline.com/{TENANT}"
DISCOVERY_URL = f"{LOGIN}/v2.0/.well-known/openid-configuration"
TOKEN_URL = f"{LOGIN}/oauth2/v2.0/token"
GRAPH = "https://graph.microsoft.com"
MDE = "https://api.securitycenter.microsoft.com"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
MDE_SCOPE = "https://api.securitycenter.microsoft.com/.default"
ALERTS_URL = f"{GRAPH}/v1.0/security/alerts_v2"
INCIDENTS_URL = f"{GRAPH}/v1.0/security/incidents"
MACHINES_URL = f"{MDE}/api/machines"
ACTIONS_URL = f"{MDE}/api/machineactions"


def payload(name: str) -> Any:
    """A fresh copy of a documented payload from tests/fixtures."""
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def access_token(scope: str, tenant: str = TENANT) -> str:
    """A whole access token for `scope`, issued in `tenant` (its `tid`), as Entra's are.

    The documented token responses show the token cut short; a client reads its claims,
    so the tests give it a whole one (signed with a test key: the client checks no signature).
    """
    claims = {
        "aud": scope.removesuffix("/.default"),
        "iss": f"https://sts.windows.net/{tenant}/",
        "appid": CLIENT_ID,
        "idtyp": "app",
        "tid": tenant,
        "ver": "1.0",
    }
    return jwt.encode(claims, "edrtrial-test-signing-key-of-32-bytes", algorithm="HS256")


def token_response(scope: str, tenant: str = TENANT) -> dict[str, Any]:
    """The documented token response for `scope`, carrying a whole token of `tenant`."""
    body: dict[str, Any] = payload(_TOKENS[scope])
    body["access_token"] = access_token(scope, tenant)
    return body


GRAPH_TOKEN = access_token(GRAPH_SCOPE)
MDE_TOKEN = access_token(MDE_SCOPE)
_TOKENS = {
    GRAPH_SCOPE: "graph__token_response_client_credentials.json",
    MDE_SCOPE: "mde__token_response_client_credentials.json",
}


def connection(**overrides: Any) -> dict[str, Any]:
    """A tenant's connection block as the config file would give it."""
    block: dict[str, Any] = {
        "connector": "defender",
        "tenant_id": TENANT,
        "client_id": CLIENT_ID,
        "client_secret": f"env:{SECRET_ENV}",
    }
    return block | overrides


class FakeClock:
    """Time that moves only when the client sleeps (or the test says so); sleeps are recorded."""

    def __init__(self) -> None:
        self.start = datetime(2024, 5, 1, 3, 0, tzinfo=UTC)
        self.elapsed = 0.0
        self.sleeps: list[float] = []
        self.jitter = 0.0  # the backoff's random part; 0 makes the waits exact

    def advance(self, seconds: float) -> None:
        """Let time pass without the client sleeping."""
        self.elapsed += seconds

    def clock(self) -> Clock:
        """The connector-facing clock."""
        return Clock(
            monotonic=lambda: 10_000.0 + self.elapsed,
            sleep=self._sleep,
            now=lambda: self.start + timedelta(seconds=self.elapsed),
            jitter=lambda: self.jitter,
        )

    def _sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.elapsed += seconds


def make_connector(
    monkeypatch: pytest.MonkeyPatch,
    base_dir: Path,
    clock: FakeClock | None = None,
    **overrides: Any,
) -> DefenderForBusinessConnector:
    """A connector built the way the runtime builds it: from the block, secret from the env.

    Time is always fake, so a retry in any test costs nothing.
    """
    monkeypatch.setenv(SECRET_ENV, SECRET)
    return DefenderForBusinessConnector.from_settings(
        connection(**overrides), base_dir, clock=(clock or FakeClock()).clock()
    )


def write_certificate(path: Path, *, with_key: bool = True, with_cert: bool = True) -> str:
    """A self-signed RSA certificate (and its key) as one PEM file; returns its SHA-1 hex."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edrtrial-test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    path.write_bytes((key_pem if with_key else b"") + (cert_pem if with_cert else b""))
    return cert.fingerprint(hashes.SHA1()).hex().upper()


def _token_endpoint(request: httpx.Request) -> httpx.Response:
    form = token_form(request)
    assert form["grant_type"] == "client_credentials"
    assert form["client_id"] == CLIENT_ID
    return httpx.Response(200, json=token_response(form["scope"]))


def token_form(request: httpx.Request) -> dict[str, str]:
    """The form fields of a token request."""
    return dict(parse_qsl(request.content.decode()))


def add_discovery(
    httpx_mock: HTTPXMock, authority: str = "https://login.microsoftonline.com"
) -> None:
    """Entra's OpenID discovery document for the tenant, served once by `authority`."""
    text = (FIXTURES / "entra__openid_configuration_v2.json").read_text(encoding="utf-8")
    text = text.replace("https://login.microsoftonline.com/{tenant}", f"{authority}/{TENANT}")
    httpx_mock.add_response(
        url=f"{authority}/{TENANT}/v2.0/.well-known/openid-configuration", method="GET", text=text
    )


def add_instance_discovery(httpx_mock: HTTPXMock) -> None:
    """Entra's authority-alias metadata, which MSAL fetches once after a refused token request."""
    text = (FIXTURES / "entra__instance_discovery.json").read_text(encoding="utf-8")
    httpx_mock.add_response(
        url=re.compile(r"https://login\.microsoftonline\.com/common/discovery/instance\?.*"),
        method="GET",
        text=text.replace("{tenant}", TENANT),
    )


def fake_sign_in(httpx_mock: HTTPXMock) -> None:
    """Entra's OpenID discovery (expected once) and token endpoint (once per scope)."""
    add_discovery(httpx_mock)
    httpx_mock.add_callback(_token_endpoint, url=TOKEN_URL, method="POST", is_reusable=True)


def sign_in_requests(httpx_mock: HTTPXMock) -> list[httpx.Request]:
    """Requests that went to Entra (discovery and token)."""
    return [r for r in httpx_mock.get_requests() if r.url.host == "login.microsoftonline.com"]


def scopes_requested(httpx_mock: HTTPXMock) -> list[str]:
    """The scope of each token request, in order."""
    return [
        dict(parse_qsl(r.content.decode()))["scope"]
        for r in httpx_mock.get_requests(url=TOKEN_URL, method="POST")
    ]


def bearer(request: httpx.Request) -> str:
    """The token a request carried."""
    return request.headers["Authorization"].removeprefix("Bearer ")


def graph_list(items: list[Any], next_link: str | None = None) -> dict[str, Any]:
    """A Graph list envelope around documented items."""
    body: dict[str, Any] = {"value": copy.deepcopy(items)}
    if next_link is not None:
        body["@odata.nextLink"] = next_link
    return body


def fixture_text(name: str) -> str:
    """A documented payload as the bytes on the wire would read."""
    return (FIXTURES / name).read_text(encoding="utf-8")


def mde_list(items: list[Any]) -> dict[str, Any]:
    """An MDE machine-actions list envelope (context from the documented list) around items."""
    body: dict[str, Any] = payload("mde__list_machineactions.json")
    body["value"] = copy.deepcopy(items)
    return body


def mde_error(code: str, message: str) -> dict[str, Any]:
    """The documented MDE error envelope with another documented code and message."""
    body: dict[str, Any] = payload("mde__error_invalid_request_body_400.json")
    body["error"]["code"] = code
    body["error"]["message"] = message
    return body


def test_an_unusable_ca_bundle_is_a_config_error_naming_the_tenant_and_file(tmp_path):
    import ssl

    import trustme

    from edrtrial.connectors.support import tls_verify
    from edrtrial.errors import ConfigError

    assert tls_verify(None, tmp_path, "defender tenant t1") is True  # the system's trust store
    trustme.CA().cert_pem.write_to_path(str(tmp_path / "good.pem"))
    assert isinstance(tls_verify(Path("good.pem"), tmp_path, "t"), ssl.SSLContext)
    (tmp_path / "ca.pem").write_text("not a certificate", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"defender tenant t1: ca_bundle .*ca\.pem is unusable"):
        tls_verify(Path("ca.pem"), tmp_path, "defender tenant t1")
    with pytest.raises(ConfigError, match="missing.pem is unusable"):
        tls_verify(tmp_path / "missing.pem", tmp_path, "cycraft tenant c1")
