"""Client-credentials tokens for one customer tenant, via MSAL over the connector's httpx client."""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

import httpx
import msal
from msal.authority import WELL_KNOWN_AUTHORITY_HOSTS
from msal.exceptions import MsalServiceError

from edrtrial.connectors.defender.config import DefenderSettings
from edrtrial.connectors.defender.credential import ClientCredential
from edrtrial.errors import AuthError, TransientError

log = logging.getLogger(__name__)

_AADSTS = re.compile(r"AADSTS(\d+)")
# OAuth error values that mean "the identity service is busy", not "your setup is wrong".
_TRANSIENT_OAUTH_ERRORS = frozenset({"temporarily_unavailable", "server_error"})
_SECRET_CODES = frozenset({7000215, 7000222})
# Bad signature, or a certificate the app registration does not hold (or no longer holds).
_CERTIFICATE_CODES = frozenset({700027})
_CONSENT_CODES = frozenset({65001, 650052, 500011})


class _MsalHttp:
    """The connector's httpx client as MSAL's `http_client`, with form values made text.

    MSAL puts the signed client assertion in the token form as bytes; requests sends bytes
    as they are, httpx as the text "b'...'", which Entra would refuse as a malformed JWT.
    """

    def __init__(self, http: httpx.Client) -> None:
        self._http = http

    def post(
        self,
        url: str,
        params: Any = None,
        data: Any = None,
        headers: Any = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """POST a form (the token request), bytes values decoded."""
        if isinstance(data, dict):
            data = {k: v.decode() if isinstance(v, bytes) else v for k, v in data.items()}
        return self._http.post(url, params=params, data=data, headers=headers, **kwargs)

    def get(
        self, url: str, params: Any = None, headers: Any = None, **kwargs: Any
    ) -> httpx.Response:
        """GET (discovery documents)."""
        return self._http.get(url, params=params, headers=headers, **kwargs)

    def close(self) -> None:
        """The connector owns the httpx client and closes it; nothing to do here."""


class TokenProvider:
    """One MSAL application per tenant; MSAL caches each scope's token until near expiry."""

    def __init__(
        self, settings: DefenderSettings, credential: ClientCredential, http: httpx.Client
    ) -> None:
        self._settings = settings
        self._credential = credential
        self._http = http
        self._app: Any = None  # built on first use: building it already calls the network
        self._building = threading.Lock()  # two threads must not build two applications

    def token(self, scope: str) -> str:
        """A bearer token for `scope`, from MSAL's cache or freshly requested."""
        app = self._application()
        try:
            result = app.acquire_token_for_client(scopes=[scope])
        except httpx.RequestError as err:
            raise TransientError(
                f"tenant {self._tenant}: token request for {scope} failed: {type(err).__name__}"
            ) from err
        except MsalServiceError as err:  # MSAL raises this for a 5xx from the token endpoint
            raise TransientError(
                f"tenant {self._tenant}: token endpoint error for {scope}: {err.error or err}"
            ) from err
        except ValueError as err:  # a token response that is not JSON
            raise TransientError(
                f"tenant {self._tenant}: token endpoint answered with a body that is not JSON"
            ) from err
        access_token = result.get("access_token") if isinstance(result, dict) else None
        if isinstance(access_token, str) and access_token:
            if result.get("token_source") == "identity_provider":
                log.info("tenant %s: new token for %s", self._tenant, scope)
            return access_token
        raise self._token_error(scope, result if isinstance(result, dict) else {})

    @property
    def _tenant(self) -> str:
        return self._settings.tenant_id

    def _application(self) -> Any:
        with self._building:
            if self._app is None:
                self._app = self._build()
            return self._app

    def _build(self) -> Any:
        settings = self._settings
        authority = f"{settings.authority_host}/{settings.tenant_id}"
        known_host = httpx.URL(settings.authority_host).host in WELL_KNOWN_AUTHORITY_HOSTS
        try:
            app = msal.ConfidentialClientApplication(
                settings.client_id,
                client_credential=self._credential.for_msal(),
                authority=authority,
                http_client=_MsalHttp(self._http),
                # A sandbox or private authority is unknown to Microsoft's discovery service.
                instance_discovery=None if known_host else False,
            )
        except httpx.RequestError as err:
            raise TransientError(
                f"tenant {self._tenant}: cannot reach {authority}: {type(err).__name__}"
            ) from err
        except MsalServiceError as err:  # 5xx from the OpenID discovery document
            raise TransientError(
                f"tenant {self._tenant}: sign-in metadata of {authority} unavailable"
            ) from err
        except ValueError as err:  # 4xx from discovery: MSAL wraps the body (with AADSTS code)
            raise self._discovery_refused(authority, err) from err
        return app

    def _discovery_refused(self, authority: str, err: ValueError) -> AuthError:
        # MSAL raises its own ValueError while handling the one that quoted Entra's answer.
        code = _first_code(f"{err} {err.__context__ or ''}")
        log.warning("tenant %s: sign-in metadata refused (AADSTS%s)", self._tenant, code)
        action = (
            self._operator_action(code)
            if code
            else (f"Check tenant_id ({self._tenant}) and authority_host in the config.")
        )
        suffix = f" (AADSTS{code})" if code else ""
        return AuthError(
            self._redact(f"tenant {self._tenant}: {authority} refused discovery{suffix}"),
            operator_action=action,
        )

    def _token_error(self, scope: str, result: dict[str, Any]) -> AuthError | TransientError:
        error = str(result.get("error") or "unknown_error")
        description = str(result.get("error_description") or "")
        codes = result.get("error_codes")
        listed = codes[0] if isinstance(codes, list) and codes else None
        code = listed if isinstance(listed, int) else _first_code(description)
        summary = description.splitlines()[0] if description else error
        message = self._redact(
            f"tenant {self._tenant}: token request for {scope} refused: {error}: {summary}"
        )
        if error in _TRANSIENT_OAUTH_ERRORS:
            log.warning("tenant %s: identity service busy (%s)", self._tenant, error)
            return TransientError(message)
        log.warning("tenant %s: token refused for %s (AADSTS%s)", self._tenant, scope, code)
        return AuthError(message, operator_action=self._operator_action(code))

    def _operator_action(self, code: int | None) -> str:
        settings = self._settings
        consent = (
            f"{settings.authority_host}/{settings.tenant_id}/adminconsent"
            f"?client_id={settings.client_id}"
        )
        credential = self._credential
        if code in _SECRET_CODES:
            return (
                f"The client secret of app {settings.client_id} is wrong or expired: create a new "
                "secret in Entra ID (App registrations > Certificates & secrets), put its value "
                f"where client_secret points ({credential.reference}), then resume the tenant."
            )
        if code in _CERTIFICATE_CODES and credential.kind == "certificate":
            return (
                f"Entra ID refused the certificate (SHA-1 thumbprint {credential.thumbprint}) of "
                f"app {settings.client_id}: upload that certificate's public part in Entra ID "
                "(App registrations > Certificates & secrets > Certificates), or put a registered, "
                f"unexpired key and certificate where client_certificate points "
                f"({credential.reference}), then resume the tenant."
            )
        if code == 700024:
            return "The client assertion was out of its time range: check this server's clock."
        if code == 700016:
            return (
                f"App {settings.client_id} is not known in tenant {settings.tenant_id}: a global "
                f"administrator of the company must grant admin consent at {consent}"
            )
        if code in _CONSENT_CODES:
            return (
                "Consent or a service principal is missing (Defender not provisioned yet?): the "
                "company opens security.microsoft.com > Assets > Devices to finish Defender for "
                "Business provisioning (up to 24 hours), then a global administrator grants "
                f"admin consent again at {consent}"
            )
        if code == 90002:
            return f"Tenant {settings.tenant_id} does not exist: check tenant_id in the config."
        if code == 7000112:
            return (
                f"App {settings.client_id} is disabled: re-enable it (app owner) or the company's "
                "enterprise application (Enterprise applications > Properties > Enabled)."
            )
        if code is None:
            return "The sign-in was refused without an AADSTS code: check the app registration."
        return f"Look up AADSTS{code} at https://login.microsoftonline.com/error?code={code}"

    def _redact(self, text: str) -> str:
        # Entra never echoes the secret, but a message that might reach a log must not carry it.
        return self._credential.redact(text)


def _first_code(text: str) -> int | None:
    found = _AADSTS.search(text)
    return int(found.group(1)) if found else None
