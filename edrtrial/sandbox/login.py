"""The Entra ID endpoints MSAL and the onboarding flow use, for authority https://HOST:PORT/{tenant}.

MSAL (with `instance_discovery=False`) first reads
`/{tenant}/v2.0/.well-known/openid-configuration`, then posts to its `token_endpoint`.
`/{tenant}/v2.0/adminconsent` (and the older `/{tenant}/adminconsent`) stand in for the
admin-consent link sent to a customer. The link may name no tenant ("organizations", or
"common"): Entra then asks the administrator to sign in and consents in the tenant of that
account. The sandbox has no sign-in, so it takes the tenant from a `login_hint`
(admin@sakura.example.jp) or `domain_hint` (sakura.example.jp) naming one of its domains,
and without either shows a page listing its tenants as accounts to pick, each a link to the
same consent with that tenant's `domain_hint`.
"""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from edrtrial.sandbox.auth import EntraError
from edrtrial.sandbox.responses import base_url, json_response
from edrtrial.sandbox.world import SandboxWorld


class LoginApi:
    """The login routes of one sandbox world."""

    def __init__(self, world: SandboxWorld) -> None:
        self.world = world

    def routes(self) -> list[Route]:
        """Starlette routes for the login paths."""
        return [
            Route("/{tenant}/v2.0/.well-known/openid-configuration", self.discovery),
            Route("/{tenant}/discovery/v2.0/keys", self.keys),
            Route("/{tenant}/oauth2/v2.0/token", self.token, methods=["POST"]),
            Route("/{tenant}/adminconsent", self.admin_consent),
            Route("/{tenant}/v2.0/adminconsent", self.admin_consent),
        ]

    def _entra_error(self, err: EntraError, error: str | None = None) -> Response:
        body = err.body(self.world.now())
        if error:
            body["error"] = error
        return json_response(body, err.status, {"Cache-Control": "no-store, no-cache"})

    async def discovery(self, request: Request) -> Response:
        """OpenID configuration naming this server's own endpoints for the tenant."""
        name = request.path_params["tenant"]
        tenant_id = self.world.find_tenant(name)
        if tenant_id is None:
            return self._entra_error(EntraError("unknown_tenant", tenant=name), "invalid_tenant")
        self.world.count_request(tenant_id, "login:discovery")
        return json_response(openid_configuration(base_url(request), tenant_id))

    async def keys(self, request: Request) -> Response:
        """The signing keys: none, since sandbox tokens are signed with a key no client gets
        (clients read their claims; only the sandbox checks them)."""
        if self.world.find_tenant(request.path_params["tenant"]) is None:
            return json_response({"error": "invalid_tenant"}, 400)
        return json_response({"keys": []})

    async def token(self, request: Request) -> Response:
        """Client-credentials grant: a bearer token for Graph or MDE, or Entra's refusal."""
        # Parsed by hand: Starlette's form parser needs python-multipart for nothing more.
        raw = (await request.body()).decode("utf-8", errors="replace")
        fields = dict(parse_qsl(raw, keep_blank_values=True))
        try:
            body = await run_in_threadpool(
                self.world.issue_token, request.path_params["tenant"], fields
            )
        except EntraError as err:
            return self._entra_error(err)
        return json_response(body, headers={"Cache-Control": "no-store, no-cache"})

    async def admin_consent(self, request: Request) -> Response:
        """Grant admin consent and redirect back, as login.microsoftonline.com/{t}/adminconsent
        (or its v2.0 form, which echoes the `scope` asked for)."""
        params = request.query_params
        named = request.path_params["tenant"]
        if named.lower() in _ANY_TENANT:
            hinted = _hinted_domain(params.get("login_hint", ""), params.get("domain_hint", ""))
            if not hinted:
                return _account_picker(request, self.world)
            named = hinted
        reply: dict[str, str] = {}
        tenant_id = self.world.find_tenant(named)
        if tenant_id is None:
            reply = {
                "error": "invalid_request",
                "error_description": "AADSTS90002: Tenant not found",
            }
        elif params.get("client_id", "").lower() != self.world.client_id:
            reply = {
                "error": "unauthorized_client",
                "error_description": "AADSTS700016: Application not found",
            }
        else:
            await run_in_threadpool(self.world.set_consent, tenant_id, True)
            reply = {"admin_consent": "True", "tenant": tenant_id}
            if "/v2.0/" in request.url.path and "scope" in params:
                reply["scope"] = params["scope"]
        if "state" in params:
            reply["state"] = params["state"]
        redirect_uri = params.get("redirect_uri")
        if not redirect_uri:  # Entra would use the app's registered reply URL: show the outcome
            return _consent_page(reply)
        separator = "&" if "?" in redirect_uri else "?"
        return RedirectResponse(f"{redirect_uri}{separator}{urlencode(reply)}", status_code=302)


_ANY_TENANT = ("organizations", "common")


def _hinted_domain(login_hint: str, domain_hint: str) -> str:
    """The domain a `login_hint` (an account) or `domain_hint` names, lower-case, or ""."""
    if "@" in login_hint:
        return login_hint.rpartition("@")[2].strip().lower()
    return domain_hint.strip().lower()


def _account_picker(request: Request, world: SandboxWorld) -> Response:
    """Entra's "pick an account" step: one link per tenant, as its global administrator."""
    items = []
    for tenant in world.tenants:
        query = urlencode([*request.query_params.multi_items(), ("domain_hint", tenant.domain)])
        link = f"{request.url.path}?{query}"
        items.append(
            f"<li><a href='{escape(link, quote=True)}'>admin@{escape(tenant.domain)}</a> "
            f"({escape(tenant.name)})</li>"
        )
    page = (
        "<!doctype html><html lang=en><meta charset=utf-8><title>Pick an account</title>"
        "<h1>Pick an account</h1><p>edrtrial sandbox: sign in as a global administrator of "
        f"the organisation that consents.</p><ul>{''.join(items)}</ul></html>"
    )
    return HTMLResponse(page)


def _consent_page(reply: dict[str, str]) -> Response:
    granted = reply.get("admin_consent") == "True"
    title = "Admin consent granted" if granted else "Admin consent failed"
    detail = (
        f"tenant {reply['tenant']}"
        if granted
        else reply.get("error_description", reply.get("error", ""))
    )
    page = (
        f"<!doctype html><html lang=en><meta charset=utf-8><title>{escape(title)}</title>"
        f"<h1>{escape(title)}</h1><p>edrtrial sandbox: {escape(detail)}</p></html>"
    )
    return HTMLResponse(page, status_code=200 if granted else 400)


def openid_configuration(base: str, tenant_id: str) -> dict[str, Any]:
    """The v2.0 discovery document, in Entra's shape, pointing at `base`."""
    root = f"{base}/{tenant_id}"
    return {
        "token_endpoint": f"{root}/oauth2/v2.0/token",
        "token_endpoint_auth_methods_supported": [
            "client_secret_post",
            "private_key_jwt",
            "client_secret_basic",
        ],
        "jwks_uri": f"{root}/discovery/v2.0/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": f"{root}/v2.0",
        "request_uri_parameter_supported": False,
        "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
        "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "end_session_endpoint": f"{root}/oauth2/v2.0/logout",
        "claims_supported": [
            "sub",
            "iss",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "acr",
            "nonce",
            "tid",
            "ver",
        ],
        "tenant_region_scope": "AS",
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
    }
