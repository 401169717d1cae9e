"""Client-credentials tokens for one customer tenant, via MSAL over the connector's httpx client."""

from __future__ import annotations

import logging
import re
import threading
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
import msal
from msal.authority import WELL_KNOWN_AUTHORITY_HOSTS
from msal.exceptions import MsalServiceError

from edrtrial.connectors.defender.config import DefenderSettings, is_guid
from edrtrial.connectors.defender.credential import ClientCredential
from edrtrial.errors import AuthError, SchemaDriftError, TransientError

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
        self._tenant_id: str | None = None  # the GUID, once known
        # Two threads must not build two applications (re-entrant: building resolves first).
        self._building = threading.RLock()

    @property
    def tenant_id(self) -> str:
        """The tenant's GUID: as configured, or resolved once from its domain's sign-in metadata.

        Guards compare it with the stored tenant, and each token's `tid` must equal it.
        """
        with self._building:
            if self._tenant_id is None:
                configured = self._settings.tenant_id
                self._tenant_id = configured if is_guid(configured) else self._resolve(configured)
            return self._tenant_id

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
            self._check_issued_to_us(access_token, scope)
            if result.get("token_source") == "identity_provider":
                log.info("tenant %s: new token for %s", self._tenant, scope)
            return access_token
        raise self._token_error(scope, result if isinstance(result, dict) else {})

    def _check_issued_to_us(self, access_token: str, scope: str) -> None:
        """Refuse a token whose `tid` is not this tenant: with it, another company's data
        would be read (and its PCs isolated) under this company's name.

        The signature is not checked: the token came over TLS from the authority, and the
        API that receives it checks it; what is checked here is which tenant it opens.
        """
        claims = token_claims(access_token)
        tid = claims.get("tid")
        issued_to = str(tid).lower() if isinstance(tid, str) and tid else None
        if issued_to == self.tenant_id:
            return
        log.error("tenant %s: a token for %s names tenant %s", self._tenant, scope, issued_to)
        settings = self._settings
        raise AuthError(
            f"tenant {self.tenant_id}: the sign-in service at {settings.authority_host} issued "
            f"a token for {scope} naming tenant {issued_to or '(none)'}; nothing is read or "
            "sent with it",
            operator_action=(
                f"Check tenant_id and authority_host of this company in the config: the token "
                f"must be Entra ID's for tenant {self.tenant_id}, then resume the tenant."
            ),
        )

    def _resolve(self, domain: str) -> str:
        """The GUID of the tenant owning `domain`, from the domain's OpenID metadata.

        Entra names the tenant in the metadata's `issuer` and `token_endpoint`
        (https://login.microsoftonline.com/{GUID}/v2.0); both must agree.
        """
        url = f"{self._settings.authority_host}/{domain}/v2.0/.well-known/openid-configuration"
        try:
            response = self._http.get(url)
        except httpx.RequestError as err:
            raise TransientError(
                f"tenant {domain}: cannot reach {url}: {type(err).__name__}"
            ) from err
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientError(
                f"tenant {domain}: sign-in metadata unavailable ({response.status_code})"
            )
        if response.status_code != 200:
            code = _first_code(response.text)
            raise AuthError(
                f"tenant {domain}: {self._settings.authority_host} knows no tenant with this "
                f"domain ({response.status_code}{f', AADSTS{code}' if code else ''})",
                operator_action=(
                    "Check tenant_id in the config: give the tenant's id (a GUID) or one of "
                    "its verified domains."
                ),
            )
        try:
            metadata = response.json()
        except ValueError:
            metadata = None
        named = {
            tenant
            for key in ("issuer", "token_endpoint")
            if isinstance(metadata, dict)
            for tenant in _tenants_in(metadata.get(key))
        }
        if len(named) != 1:
            raise SchemaDriftError(
                f"tenant {domain}: the sign-in metadata at {url} names "
                f"{'no tenant id' if not named else 'two tenant ids'}"
            )
        (tenant,) = named
        log.info("tenant %s is tenant %s", domain, tenant)
        return tenant

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
        authority = f"{settings.authority_host}/{self.tenant_id}"
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


def _tenants_in(url: Any) -> list[str]:
    """The tenant GUIDs in a metadata URL's path (https://host/{GUID}/v2.0), lower-case."""
    if not isinstance(url, str):
        return []
    try:
        path = urlsplit(url).path
    except ValueError:  # not a URL at all
        return []
    return [part.lower() for part in path.split("/") if is_guid(part)]


def token_claims(access_token: str) -> dict[str, Any]:
    """The claims of an access token, unverified (the API that receives it verifies it);
    empty when it is not a JWT."""
    try:
        claims = jwt.decode(access_token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return {}
    return claims if isinstance(claims, dict) else {}


def aadsts_code(text: str) -> int | None:
    """The first AADSTS code in an error's text (Entra's own numbering), if any."""
    return _first_code(text)


def _first_code(text: str) -> int | None:
    found = _AADSTS.search(text)
    return int(found.group(1)) if found else None
