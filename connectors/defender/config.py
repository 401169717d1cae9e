"""The settings of one Defender for Business tenant connection, as the config file gives them."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from edrtrial.secrets import SecretRef
from edrtrial.transport import require_https

# Tenant and client ids end up in URL paths and consent links: keep them to safe characters.
_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
_SHA1_HEX = re.compile(r"^[0-9A-F]{40}$")
_GUID = re.compile(r"^\{?[0-9A-Fa-f]{8}(-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}\}?$")
# A DNS name of the tenant (contoso.onmicrosoft.com, a verified custom domain), as long as
# the store keeps a tenant id.
_DOMAIN = re.compile(r"^(?=.{4,64}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


def tenant_spelling(value: str) -> str:
    """A tenant id in its one spelling: a GUID lower-case, a domain name lower-case.

    Entra ids are GUIDs, which compare case-insensitively; written in upper case, or as one
    of the tenant's domains, they must still name one tenant, or two companies configured
    with two spellings would share its alerts. Anything else ("common", "organizations", a
    typo) would sign in to some other tenant, so it is refused.
    """
    text = value.strip()
    if _GUID.match(text):
        return str(uuid.UUID(text.strip("{}")))
    lowered = text.lower().rstrip(".")
    if _DOMAIN.match(lowered):
        return lowered
    raise ValueError(
        "must be the tenant's id (a GUID such as 00000000-0000-0000-0000-000000000000) or "
        "one of its domains (such as contoso.onmicrosoft.com)"
    )


def is_guid(tenant: str) -> bool:
    """Whether a tenant spelling is already the GUID (else it is a domain to resolve)."""
    return bool(_GUID.match(tenant))


class DefenderSettings(BaseModel):
    """One tenant's `connection` block; unknown keys are refused so typos surface at start-up."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    connector: Literal["defender"]
    tenant_id: str = Field(max_length=256)  # the GUID or a domain; see tenant_spelling
    client_id: str = Field(pattern=_ID_PATTERN, max_length=256)
    # Exactly one of the two; a certificate is preferred (no shared secret to leak or expire).
    client_secret: SecretRef | None = None
    client_certificate: SecretRef | None = None  # PEM: unencrypted private key + certificate
    certificate_thumbprint: str | None = None  # SHA-1 hex; computed from the certificate if unset
    authority_host: str = "https://login.microsoftonline.com"
    graph_base_url: str = "https://graph.microsoft.com"
    mde_base_url: str = "https://api.securitycenter.microsoft.com"
    graph_scope: str = "https://graph.microsoft.com/.default"
    mde_scope: str = "https://api.securitycenter.microsoft.com/.default"
    ca_bundle: Path | None = None
    alert_page_size: int = Field(100, ge=1, le=1000)
    timeout_seconds: float = Field(30.0, gt=0, le=600)
    overlap_seconds: int = Field(120, ge=0, le=86_400)
    # Longest the client waits in one call (for a budget slot, a Retry-After or a backoff);
    # anything longer becomes a TransientError carrying retry_after for the scheduler.
    max_wait_seconds: float = Field(10.0, ge=0, le=300)
    # Microsoft's documented quotas per app and tenant; set lower if another tool shares the app.
    graph_calls_per_minute: int = Field(150, ge=1, le=150)
    mde_calls_per_minute: int = Field(100, ge=1, le=100)
    mde_calls_per_hour: int = Field(1500, ge=1, le=1500)
    isolation_type: Literal["Full", "Selective"] = "Full"
    write_back: bool = False

    @field_validator("tenant_id")
    @classmethod
    def _tenant(cls, value: str) -> str:
        return tenant_spelling(value)

    @field_validator("authority_host")
    @classmethod
    def _https_authority(cls, value: str) -> str:
        # MSAL refuses a non-HTTPS authority; say so here, naming the key, not deep in MSAL.
        if not value.startswith("https://"):
            raise ValueError("must be an https:// URL (MSAL refuses anything else)")
        return value.rstrip("/")

    @field_validator("graph_base_url", "mde_base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        # The bearer token may isolate and offboard the company's PCs: never in cleartext.
        return require_https(value)

    @field_validator("certificate_thumbprint")
    @classmethod
    def _thumbprint(cls, value: str | None) -> str | None:
        # The portal shows it as hex, tools often add colons or spaces.
        if value is None:
            return None
        cleaned = re.sub(r"[\s:]", "", value).upper()
        if not _SHA1_HEX.match(cleaned):
            raise ValueError("must be the certificate's SHA-1 thumbprint: 40 hex digits")
        return cleaned

    @model_validator(mode="after")
    def _one_credential(self) -> Self:
        if (self.client_secret is None) == (self.client_certificate is None):
            raise ValueError(
                "set exactly one of client_secret or client_certificate (a certificate is "
                "preferred)"
            )
        if self.certificate_thumbprint is not None and self.client_certificate is None:
            raise ValueError("certificate_thumbprint needs client_certificate")
        return self
