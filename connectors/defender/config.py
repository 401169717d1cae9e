"""The settings of one Defender for Business tenant connection, as the config file gives them."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edrtrial.secrets import SecretRef

# Tenant and client ids end up in URL paths and consent links: keep them to safe characters.
_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class DefenderSettings(BaseModel):
    """One tenant's `connection` block; unknown keys are refused so typos surface at start-up."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    connector: Literal["defender"]
    tenant_id: str = Field(pattern=_ID_PATTERN, max_length=256)
    client_id: str = Field(pattern=_ID_PATTERN, max_length=256)
    client_secret: SecretRef
    authority_host: str = "https://login.microsoftonline.com"
    graph_base_url: str = "https://graph.microsoft.com"
    mde_base_url: str = "https://api.securitycenter.microsoft.com"
    graph_scope: str = "https://graph.microsoft.com/.default"
    mde_scope: str = "https://api.securitycenter.microsoft.com/.default"
    ca_bundle: Path | None = None
    alert_page_size: int = Field(100, ge=1, le=1000)
    timeout_seconds: float = Field(30.0, gt=0, le=600)
    overlap_seconds: int = Field(120, ge=0, le=86_400)

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
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s):// URL")
        return value.rstrip("/")


def describe_errors(err: ValidationError) -> str:
    """Name each bad key and why, without echoing the input (it may be a pasted secret)."""
    parts = []
    for item in err.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            message = "unknown key (check the spelling)"
        elif item["type"] == "missing":
            message = "required key is missing"
        else:
            message = item["msg"]
        parts.append(f"{where}: {message}")
    return "; ".join(parts)
