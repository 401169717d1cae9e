"""Client-credentials tokens and Entra ID's refusals, with the AADSTS codes Entra really uses.

Tokens are JWTs in Entra's shape, carrying the claims a client reads (`tid`, `aud`, `appid`,
`exp`, and `roles`: the application permissions granted in the tenant when it was issued),
signed with a key of this sandbox that no one is given: clients read them, only the sandbox
checks them, by looking each one up. An API call is answered for the token's tenant only, so
one tenant can never read another's data, and only with a permission its endpoint requires
(else a 403 naming the roles, as Graph and MDE answer).
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import jwt

GRAPH = "graph"
MDE = "mde"

#: The resource each audience's tokens name in `aud`, as Entra writes it.
RESOURCES = {GRAPH: "https://graph.microsoft.com", MDE: "https://api.securitycenter.microsoft.com"}

#: Accepted `scope` values → audience.
SCOPES = {
    "https://graph.microsoft.com/.default": GRAPH,
    "https://api.securitycenter.microsoft.com/.default": MDE,
    "https://securitycenter.onmicrosoft.com/windowsatpservice/.default": MDE,
}
TOKEN_LIFETIME = 3599

#: The application permissions the programme's app requests, per audience: what the service
#: needs (defender-api.md §1.4). Admin consent grants them all in the tenant.
APP_PERMISSIONS: dict[str, tuple[str, ...]] = {
    GRAPH: ("SecurityAlert.Read.All", "SecurityAlert.ReadWrite.All", "SecurityIncident.Read.All"),
    MDE: ("Machine.Read.All", "Machine.Isolate", "Machine.Scan", "Machine.Offboard"),
}
ALL_PERMISSIONS = frozenset(p for roles in APP_PERMISSIONS.values() for p in roles)

# Any one of these lets a call through, as each API's permissions table says.
READ_ALERTS = ("SecurityAlert.Read.All", "SecurityAlert.ReadWrite.All")
WRITE_ALERTS = ("SecurityAlert.ReadWrite.All",)
READ_INCIDENTS = ("SecurityIncident.Read.All", "SecurityIncident.ReadWrite.All")
WRITE_INCIDENTS = ("SecurityIncident.ReadWrite.All",)
READ_MACHINES = ("Machine.Read.All", "Machine.ReadWrite.All")

#: reason → (HTTP status, OAuth error, AADSTS code, description template).
ENTRA_ERRORS: dict[str, tuple[int, str, int, str]] = {
    "unknown_tenant": (
        400,
        "invalid_request",
        90002,
        "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and "
        "are signing into the correct cloud. Check with your subscription administrator, this "
        "may happen if there are no active subscriptions for the tenant.",
    ),
    "unknown_client": (
        400,
        "unauthorized_client",
        700016,
        "Application with identifier '{client_id}' was not found in the directory "
        "'{tenant_name}'. This can happen if the application has not been installed by the "
        "administrator of the tenant or consented to by any user in the tenant. You may have "
        "sent your authentication request to the wrong tenant.",
    ),
    "bad_secret": (
        401,
        "invalid_client",
        7000215,
        "Invalid client secret provided. Ensure the secret being sent in the request is the "
        "client secret value, not the client secret ID, for a secret added to app "
        "'{client_id}'.",
    ),
    "missing_secret": (
        401,
        "invalid_client",
        7000218,
        "The request body must contain the following parameter: 'client_assertion' or "
        "'client_secret'.",
    ),
    "missing_parameter": (
        400,
        "invalid_request",
        900144,
        "The request body must contain the following parameter: '{parameter}'.",
    ),
    "unknown_scope": (
        400,
        "invalid_resource",
        500011,
        "The resource principal named {resource} was not found in the tenant named "
        "{tenant_name}. This can happen if the application has not been installed by the "
        "administrator of the tenant or consented to by any user in the tenant. You might "
        "have sent your authentication request to the wrong tenant.",
    ),
    "scope_not_default": (
        400,
        "invalid_scope",
        1002012,
        "The provided value for scope {scope} is not valid. Client credential flows must have "
        "a scope value with /.default suffixed to the resource identifier (application ID "
        "URI).",
    ),
    "no_consent": (
        400,
        "invalid_grant",
        65001,
        "The user or administrator has not consented to use the application with ID "
        "'{client_id}' named 'edrtrial'. Send an interactive authorization request for this "
        "user and resource.",
    ),
    "bad_grant_type": (
        400,
        "unsupported_grant_type",
        70003,
        "The app requested an unsupported grant type '{grant_type}'.",
    ),
}


class EntraError(Exception):
    """A token request Entra ID would refuse; `reason` is a key of ENTRA_ERRORS."""

    def __init__(self, reason: str, **fields: str) -> None:
        self.status, self.error, self.code, template = ENTRA_ERRORS[reason]
        self.description = f"AADSTS{self.code}: {template.format(**fields)}"
        super().__init__(self.description)

    def body(self, now: datetime) -> dict[str, Any]:
        """The JSON Entra sends, with fresh trace and correlation ids."""
        trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
        stamp = now.strftime("%Y-%m-%d %H:%M:%SZ")
        return {
            "error": self.error,
            "error_description": (
                f"{self.description}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}"
                f"\r\nTimestamp: {stamp}"
            ),
            "error_codes": [self.code],
            "timestamp": stamp,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": f"https://login.microsoftonline.com/error?code={self.code}",
        }


@dataclass(frozen=True, slots=True)
class Grant:
    """What an access token stands for."""

    tenant_id: str
    audience: str
    client_id: str
    expires_at: datetime
    roles: frozenset[str] = frozenset()


class TokenStore:
    """Issued tokens. Not thread-safe on its own: the world's lock guards it."""

    def __init__(self) -> None:
        self._grants: dict[str, Grant] = {}
        self._key = secrets.token_bytes(32)

    def issue(
        self,
        tenant_id: str,
        audience: str,
        client_id: str,
        now: datetime,
        roles: frozenset[str] = frozenset(),
    ) -> str:
        """A new bearer token (a JWT naming `tenant_id` as `tid`, `roles` the audience's
        granted permissions); expired ones are dropped."""
        self._grants = {k: g for k, g in self._grants.items() if g.expires_at > now}
        expires = now + timedelta(seconds=TOKEN_LIFETIME)
        claims = {
            "aud": RESOURCES[audience],
            "iss": f"https://sts.windows.net/{tenant_id}/",
            "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()),
            "exp": int(expires.timestamp()),
            "appid": client_id,
            "idtyp": "app",
            "tid": tenant_id,
            "uti": secrets.token_urlsafe(16),
            "ver": "1.0",
        }
        if roles:  # Entra leaves the claim out when nothing is granted
            claims["roles"] = sorted(roles)
        token = jwt.encode(claims, self._key, algorithm="HS256", headers={"typ": "JWT"})
        self._grants[token] = Grant(tenant_id, audience, client_id, expires, roles)
        return token

    def lookup(self, token: str) -> Grant | None:
        """The grant of a token the sandbox issued, expired or not."""
        return self._grants.get(token)

    def expire(self, tenant_id: str | None, now: datetime) -> int:
        """Make a tenant's tokens (or all) expire now; returns how many were live."""
        count = 0
        for token, grant in list(self._grants.items()):
            if (tenant_id is None or grant.tenant_id == tenant_id) and grant.expires_at > now:
                self._grants[token] = replace(grant, expires_at=now)
                count += 1
        return count


def missing_roles(granted: frozenset[str], required: tuple[str, ...]) -> str | None:
    """Graph's and MDE's 403 message when none of `required` is granted, else None.

    Both APIs answer so (code "Forbidden"): "Missing application roles. API required roles:
    SecurityAlert.Read.All,SecurityAlert.ReadWrite.All, application roles: Machine.Read.All."
    """
    if not required or granted & set(required):
        return None
    held = ",".join(sorted(granted))
    return (
        f"Missing application roles. API required roles: {','.join(required)}, "
        f"application roles: {held}."
    )
