"""The app's proof of identity for one tenant: a certificate (preferred) or a client secret.

The private key and the secret live only in `SecretStr`s and are redacted from any message.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from edrtrial.connectors.defender.config import DefenderSettings
from edrtrial.errors import ConfigError
from edrtrial.secrets import resolve_secret
from edrtrial.timeutil import utcnow

log = logging.getLogger(__name__)

# Warn this long before the certificate expires: renewing it needs the company's admin.
_EXPIRY_WARNING = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class ClientCredential:
    """What MSAL signs in with; `reference` says where it lives, for the operator."""

    kind: Literal["secret", "certificate"]
    reference: str
    value: SecretStr  # the client secret, or the private key as PKCS#8 PEM
    thumbprint: str = ""  # the certificate's SHA-1 hex (certificates only)

    def for_msal(self) -> str | dict[str, str]:
        """MSAL's `client_credential`: the secret string, or the documented key/thumbprint dict."""
        if self.kind == "secret":
            return self.value.get_secret_value()
        return {"private_key": self.value.get_secret_value(), "thumbprint": self.thumbprint}

    def redact(self, text: str) -> str:
        """The text without the secret or key, for anything that might reach a log."""
        return text.replace(self.value.get_secret_value(), "**********")


def secret_credential(reference: str, secret: SecretStr) -> ClientCredential:
    """A client-secret credential (kept for tenants not yet moved to a certificate)."""
    return ClientCredential("secret", reference, secret)


def load_credential(settings: DefenderSettings, base_dir: Path) -> ClientCredential:
    """Read the configured secret or certificate; any problem is a ConfigError naming the key."""
    tenant = settings.tenant_id
    if settings.client_certificate is None:
        reference = settings.client_secret or ""
        what = f"defender tenant {tenant} client_secret"
        return secret_credential(reference, resolve_secret(reference, base_dir, what))
    what = f"defender tenant {tenant} client_certificate"
    pem = resolve_secret(settings.client_certificate, base_dir, what)
    key_pem, thumbprint = _key_and_thumbprint(pem, settings.certificate_thumbprint, what)
    return ClientCredential("certificate", settings.client_certificate, key_pem, thumbprint)


def _key_and_thumbprint(pem: SecretStr, configured: str | None, what: str) -> tuple[SecretStr, str]:
    """The PKCS#8 key and the SHA-1 thumbprint, checked against the certificate beside the key."""
    data = pem.get_secret_value().encode()
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError as err:  # cryptography's way of saying "encrypted, no password given"
        raise ConfigError(f"{what}: the private key is encrypted; store it unencrypted") from err
    except ValueError as err:
        raise ConfigError(f"{what}: no readable PEM private key found") from err
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(f"{what}: Entra ID signs in with RSA keys only")
    cert = _matching_certificate(data, key, what)
    if cert is None and configured is None:
        raise ConfigError(
            f"{what}: the PEM holds no certificate to compute the thumbprint from; add the "
            "certificate to the file or set certificate_thumbprint"
        )
    thumbprint = configured or ""
    if cert is not None:
        computed = cert.fingerprint(hashes.SHA1()).hex().upper()  # Entra matches the x5t (SHA-1)
        if configured is not None and configured != computed:
            raise ConfigError(
                f"{what}: certificate_thumbprint {configured} does not match the certificate "
                f"in the file (SHA-1 {computed})"
            )
        thumbprint = computed
        _warn_if_expiring(cert, what)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return SecretStr(key_pem), thumbprint


def _matching_certificate(
    data: bytes, key: rsa.RSAPrivateKey, what: str
) -> x509.Certificate | None:
    """The certificate of this key among those in the file (a chain may follow the leaf)."""
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        return None  # a key-only file: the thumbprint must then be configured
    public = key.public_key().public_numbers()
    for cert in certs:
        cert_key = cert.public_key()
        if isinstance(cert_key, rsa.RSAPublicKey) and cert_key.public_numbers() == public:
            return cert
    raise ConfigError(f"{what}: no certificate in the file belongs to its private key")


def _warn_if_expiring(cert: x509.Certificate, what: str) -> None:
    left = cert.not_valid_after_utc - utcnow()
    if left <= _EXPIRY_WARNING:
        state = "has expired" if left.total_seconds() <= 0 else f"expires in {left.days} days"
        log.warning(
            "%s: certificate %s (%s); upload a new one to the app registration",
            what,
            state,
            cert.not_valid_after_utc.date().isoformat(),
        )
