"""Defender connector: signing in with a certificate instead of a secret, and its config errors."""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from typing import Any

import jwt
import pytest
from pytest_httpx import HTTPXMock

from edrtrial.connectors.defender import DefenderForBusinessConnector
from edrtrial.errors import AuthError, ConfigError

from test_defender_support import (
    CLIENT_ID,
    MACHINES_URL,
    MDE_SCOPE,
    TENANT,
    TOKEN_URL,
    add_discovery,
    add_instance_discovery,
    connection,
    make_connector,
    payload,
    token_form,
    token_response,
    write_certificate,
)

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
FIRST_PAGE = {"$top": "10000", "$skip": "0"}


def _cert_connection(**overrides: Any) -> dict[str, Any]:
    block = connection(client_certificate="file:app.pem") | overrides
    del block["client_secret"]
    return block


def _thumbprint_of(x5t: str) -> str:
    return base64.urlsafe_b64decode(x5t + "=" * (-len(x5t) % 4)).hex().upper()


def _list_machines(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(
        url=MACHINES_URL, match_params=FIRST_PAGE, json=payload("mde__list_machines.json")
    )


def test_the_token_request_carries_a_client_assertion_signed_for_the_thumbprint(
    httpx_mock: HTTPXMock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    thumbprint = write_certificate(tmp_path / "app.pem")
    add_discovery(httpx_mock)
    httpx_mock.add_response(url=TOKEN_URL, method="POST", json=token_response(MDE_SCOPE))
    _list_machines(httpx_mock)
    caplog.set_level(logging.DEBUG)
    conn = DefenderForBusinessConnector.from_settings(_cert_connection(), tmp_path)

    assert len(conn.fetch_devices().records) == 1
    conn.close()

    [token_request] = httpx_mock.get_requests(url=TOKEN_URL)
    form = token_form(token_request)
    assert form["client_assertion_type"] == JWT_BEARER
    assert "client_secret" not in form
    header = jwt.get_unverified_header(form["client_assertion"])
    assert _thumbprint_of(header["x5t"]) == thumbprint  # SHA-1, computed from the file
    claims = jwt.decode(form["client_assertion"], options={"verify_signature": False})
    assert (claims["iss"], claims["sub"]) == (CLIENT_ID, CLIENT_ID)
    assert claims["aud"] == TOKEN_URL
    assert "PRIVATE KEY" not in caplog.text


def test_a_configured_thumbprint_may_carry_colons_and_must_match_the_certificate(
    httpx_mock: HTTPXMock, tmp_path: Path
) -> None:
    thumbprint = write_certificate(tmp_path / "app.pem")
    with_colons = ":".join(thumbprint[i : i + 2] for i in range(0, 40, 2)).lower()
    conn = DefenderForBusinessConnector.from_settings(
        _cert_connection(certificate_thumbprint=with_colons), tmp_path
    )
    conn.close()

    with pytest.raises(ConfigError, match="does not match") as caught:
        DefenderForBusinessConnector.from_settings(
            _cert_connection(certificate_thumbprint="AB" * 20), tmp_path
        )
    assert thumbprint in str(caught.value)  # what the file really holds


def test_a_key_only_file_needs_the_thumbprint(tmp_path: Path) -> None:
    thumbprint = write_certificate(tmp_path / "app.pem", with_cert=False)

    with pytest.raises(ConfigError, match="no certificate to compute the thumbprint"):
        DefenderForBusinessConnector.from_settings(_cert_connection(), tmp_path)
    conn = DefenderForBusinessConnector.from_settings(
        _cert_connection(certificate_thumbprint=thumbprint), tmp_path
    )
    conn.close()


def test_a_file_without_the_key_or_with_a_stranger_certificate_is_refused(
    tmp_path: Path,
) -> None:
    write_certificate(tmp_path / "cert-only.pem", with_key=False)
    with pytest.raises(ConfigError, match="no readable PEM private key"):
        DefenderForBusinessConnector.from_settings(
            _cert_connection(client_certificate="file:cert-only.pem"), tmp_path
        )

    write_certificate(tmp_path / "key.pem", with_cert=False)
    write_certificate(tmp_path / "other.pem", with_key=False)
    mixed = (tmp_path / "key.pem").read_text() + (tmp_path / "other.pem").read_text()
    (tmp_path / "app.pem").write_text(mixed, "utf-8")
    with pytest.raises(ConfigError, match="no certificate in the file belongs to its private key"):
        DefenderForBusinessConnector.from_settings(_cert_connection(), tmp_path)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"client_secret": "env:X", "client_certificate": "file:app.pem"}, "exactly one"),
        ({"client_secret": None}, "exactly one"),
        ({"certificate_thumbprint": "AB" * 20}, "needs client_certificate"),
        (
            {
                "client_secret": None,
                "client_certificate": "file:a.pem",
                "certificate_thumbprint": "x",
            },
            "certificate_thumbprint: must be the certificate's SHA-1 thumbprint",
        ),
        ({"isolation_type": "Partial"}, "isolation_type"),
        ({"mde_calls_per_minute": 500}, "mde_calls_per_minute"),
    ],
)
def test_credential_and_budget_settings_are_checked(
    tmp_path: Path, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        DefenderForBusinessConnector.from_settings(connection(**overrides), tmp_path)


def test_an_unreadable_or_encrypted_key_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "app.pem").write_text("-----BEGIN PRIVATE KEY-----\nnot base64\n", "utf-8")
    with pytest.raises(ConfigError, match="client_certificate: no readable PEM private key"):
        DefenderForBusinessConnector.from_settings(_cert_connection(), tmp_path)

    (tmp_path / "app.pem").write_text(_encrypted_key_pem(), "utf-8")
    with pytest.raises(ConfigError, match="encrypted"):
        DefenderForBusinessConnector.from_settings(_cert_connection(), tmp_path)


def _encrypted_key_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    ).decode()


def test_a_certificate_entra_does_not_know_tells_the_operator_to_upload_it(
    httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    thumbprint = write_certificate(tmp_path / "app.pem")
    add_discovery(httpx_mock)
    refusal = payload("entra__error_invalid_client_7000215.json")
    refusal |= {
        "error_description": "AADSTS700027: The certificate with identifier used to sign the "
        f"client assertion is not registered on application. [Reason - The key was not found., "
        f"Thumbprint of key used by client: '{thumbprint}']",
        "error_codes": [700027],
    }
    httpx_mock.add_response(url=TOKEN_URL, method="POST", status_code=401, json=refusal)
    add_instance_discovery(httpx_mock)
    conn = make_connector(
        monkeypatch, tmp_path, client_secret=None, client_certificate="file:app.pem"
    )

    with pytest.raises(AuthError) as caught:
        conn.fetch_devices()
    conn.close()

    action = caught.value.operator_action
    assert thumbprint in action
    assert "Certificates & secrets > Certificates" in action
    assert "file:app.pem" in action
    assert TENANT in str(caught.value)


def test_a_pem_pasted_into_the_config_is_refused_without_echoing_it(tmp_path: Path) -> None:
    pem = _encrypted_key_pem()
    with pytest.raises(ConfigError) as caught:
        DefenderForBusinessConnector.from_settings(
            _cert_connection(client_certificate=pem), tmp_path
        )
    assert "client_certificate" in str(caught.value)
    assert "PRIVATE KEY" not in str(caught.value)
