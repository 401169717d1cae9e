"""Signing in with Microsoft Entra (MSAL's auth-code flow), when `[web.entra]` is set.

`/login/entra` starts the flow (state, nonce and PKCE kept in the signed session) and sends
the browser to Microsoft; `/login/entra/done` is where Microsoft sends it back. The code is
exchanged for tokens at the token endpoint, directly over TLS, so the ID token's issuer is
known by the connection (OpenID Connect Core 3.1.3.7, item 6); MSAL checks the state and the
nonce, and the console checks the token is for this app (`aud`), from the configured tenant
(`iss`, `tid`) and current (`exp`). The person's console roles are the app roles and group
ids of the token mapped through `web.entra.roles`; a token naming none of them is refused.
Every refusal brings the person back to the sign-in page with a message, never an error page.
Microsoft sends the code back in the query, not as a form post: the session cookie is
SameSite=Lax, and a browser does not send it with another site's POST.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import httpx
import jwt
import msal
from msal.authority import WELL_KNOWN_AUTHORITY_HOSTS
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from edrtrial.access import accounts
from edrtrial.config import EntraConfig
from edrtrial.db import transaction
from edrtrial.errors import SignInRefused
from edrtrial.secrets import resolve_secret
from edrtrial.untrusted import one_line
from edrtrial.web.i18n import _
from edrtrial.web.security import begin_session, safe_next
from edrtrial.web.templating import render

log = logging.getLogger(__name__)

FLOW = "entra_flow"
NEXT = "entra_next"
TIMEOUT = httpx.Timeout(15.0)
SKEW = 300  # seconds of clock difference allowed on the ID token's times
GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
# What MSAL's auth-code flow keeps between the two steps; its `auth_uri` is only needed once.
_KEPT = ("state", "redirect_uri", "scope", "code_verifier", "nonce", "claims_challenge")


class _Http:
    """An httpx client as MSAL's `http_client` (requests' `get`/`post`/`close`)."""

    def __init__(self) -> None:
        self._http = httpx.Client(timeout=TIMEOUT, follow_redirects=False)

    def post(
        self, url: str, params: Any = None, data: Any = None, headers: Any = None, **kw: Any
    ) -> httpx.Response:
        if isinstance(data, dict):
            data = {k: v.decode() if isinstance(v, bytes) else v for k, v in data.items()}
        return self._http.post(url, params=params, data=data, headers=headers, **kw)

    def get(self, url: str, params: Any = None, headers: Any = None, **kw: Any) -> httpx.Response:
        return self._http.get(url, params=params, headers=headers, **kw)

    def close(self) -> None:
        self._http.close()


class EntraRefused(Exception):
    """A sign-in with Microsoft that cannot go on; the message is for the person."""


def _settings(request: Request) -> EntraConfig | None:
    entra: EntraConfig | None = request.app.state.web.entra
    return entra


def _redirect_uri(request: Request) -> str:
    base = request.app.state.web.public_url or str(request.base_url)
    return base.rstrip("/") + "/login/entra/done"


def _app(request: Request, entra: EntraConfig, http: _Http) -> Any:
    """MSAL's application for the console's app registration (reads the tenant's metadata)."""
    config = request.app.state.runtime.config
    secret = resolve_secret(entra.client_secret, config.base_dir, "web.entra.client_secret")
    known = httpx.URL(entra.authority_host).host in WELL_KNOWN_AUTHORITY_HOSTS
    return msal.ConfidentialClientApplication(
        entra.client_id,
        client_credential=secret.get_secret_value(),
        authority=f"{entra.authority_host}/{entra.tenant_id}",
        http_client=http,
        # A private authority (a test's) is unknown to Microsoft's discovery service.
        instance_discovery=None if known else False,
    )


def _refused(request: Request, message: str, target: str, status_code: int = 403) -> Response:
    """The sign-in page again, saying why (and where the person was going)."""
    return render(
        request,
        "login.html.j2",
        status_code=status_code,
        next=target,
        error=message,
        username="",
        entra=_settings(request) is not None,
    )


def _start(request: Request, entra: EntraConfig) -> dict[str, Any]:
    http = _Http()
    try:
        flow: dict[str, Any] = _app(request, entra, http).initiate_auth_code_flow(
            scopes=[], redirect_uri=_redirect_uri(request)
        )
        return flow
    finally:
        http.close()


async def start(request: Request) -> Response:
    """Send the browser to Microsoft's sign-in, keeping the flow in the session."""
    entra = _settings(request)
    if entra is None:
        return render(request, "not_found.html.j2", status_code=404)
    target = safe_next(request.query_params.get("next"))
    request.session[NEXT] = target
    try:
        flow = await run_in_threadpool(_start, request, entra)
    except Exception as err:  # noqa: BLE001  (MSAL raises ValueError, httpx its own; all alike)
        log.warning("console: Microsoft sign-in cannot start: %s", one_line(str(err))[:300])
        return _refused(
            request, _("Microsoft's sign-in cannot be reached now. Try again later."), target, 502
        )
    request.session[FLOW] = {key: flow[key] for key in _KEPT if key in flow}
    return RedirectResponse(flow["auth_uri"], status_code=303)


def _claims(id_token: str, entra: EntraConfig) -> dict[str, Any]:
    """The ID token's claims, once it is known to be for this app, from the configured tenant,
    and current; else EntraRefused."""
    try:
        claims: dict[str, Any] = jwt.decode(
            id_token,
            # The signature is vouched for by the TLS connection it came over (above); every
            # other check is asked for by name, since PyJWT skips them with the signature.
            options={
                "verify_signature": False,
                "verify_aud": True,
                "verify_exp": True,
                "verify_nbf": True,
                "verify_iat": True,
                "require": ["iss", "aud", "exp", "oid", "tid"],
            },
            audience=entra.client_id,
            leeway=SKEW,
        )
    except jwt.PyJWTError as err:
        raise EntraRefused(f"ID token refused: {err}") from err
    tid = str(claims.get("tid", ""))
    if GUID.fullmatch(entra.tenant_id) and tid.lower() != entra.tenant_id.lower():
        raise EntraRefused(f"ID token of another tenant ({tid})")
    if claims.get("iss") != f"{entra.authority_host}/{tid}/v2.0":
        raise EntraRefused(f"ID token from an unexpected issuer ({claims.get('iss')})")
    if int(claims.get("iat", time.time())) > time.time() + SKEW:
        raise EntraRefused("ID token issued in the future")
    return claims


def _finish(request: Request, entra: EntraConfig, flow: dict[str, Any]) -> dict[str, Any]:
    http = _Http()
    try:
        result: dict[str, Any] = _app(request, entra, http).acquire_token_by_auth_code_flow(
            flow, dict(request.query_params)
        )
        return result
    finally:
        http.close()


def console_roles(claims: dict[str, Any], entra: EntraConfig) -> list[str]:
    """The console roles the token's app roles and groups map to (`web.entra.roles`)."""
    named: list[str] = []
    for claim in ("roles", "groups"):
        values = claims.get(claim) or []
        if isinstance(values, list):
            named += [str(v) for v in values]
    return sorted({entra.roles[value] for value in named if value in entra.roles})


async def done(request: Request) -> Response:
    """Microsoft sends the browser back here: finish the flow and begin the session."""
    entra = _settings(request)
    if entra is None:
        return render(request, "not_found.html.j2", status_code=404)
    flow = request.session.pop(FLOW, None)
    target = safe_next(request.session.pop(NEXT, None))
    refused = _("The sign-in with Microsoft did not succeed. Try again.")
    if not isinstance(flow, dict):
        return _refused(request, refused, target, 400)
    try:
        if request.query_params.get("error"):  # the person declined, or Microsoft refused
            raise EntraRefused(f"{request.query_params['error']} from the sign-in page")
        result = await run_in_threadpool(_finish, request, entra, flow)
        if "error" in result:
            raise EntraRefused(f"{result.get('error')}: {result.get('error_description', '')}")
        claims = _claims(str(result.get("id_token", "")), entra)
    except Exception as err:  # noqa: BLE001  (MSAL: ValueError on a state, its own on a 5xx)
        log.warning("console: Microsoft sign-in refused: %s", one_line(str(err))[:300])
        return _refused(request, refused, target)
    roles = console_roles(claims, entra)
    username = str(claims.get("preferred_username") or claims.get("upn") or claims["oid"])
    if not roles:
        log.warning("console: %s signed in with Microsoft but holds no console role", username)
        return _refused(
            request,
            _(
                "Your Microsoft account holds no role in this console. Ask an administrator "
                "to give you one."
            ),
            target,
        )
    runtime = request.app.state.runtime
    try:
        with transaction(runtime.sessions) as session:
            user = accounts.entra_sign_in(
                session,
                object_id=str(claims["oid"]),
                username=username,
                display_name=str(claims.get("name") or ""),
                roles=roles,
                at=runtime.clock(),
            )
            begin_session(request, user)
    except SignInRefused as err:
        log.warning("console: Microsoft sign-in of %s refused: %s", username, err)
        return _refused(
            request,
            _(
                "This Microsoft account cannot sign in to the console: the account is "
                "disabled, or a local account has the same name. Ask an administrator."
            ),
            target,
        )
    return RedirectResponse(target, status_code=303)


ROUTES = [
    Route("/login/entra", start, methods=["GET"], name="entra_start"),
    Route("/login/entra/done", done, methods=["GET"], name="entra_done"),
]
