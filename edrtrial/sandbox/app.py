"""The sandbox web app: one HTTPS origin serving Entra login, Graph and MDE by path.

A Defender connection block for a sample tenant, with `base = https://127.0.0.1:8443`:
    authority_host = graph_base_url = mde_base_url = base
    ca_bundle      = "var/sandbox/ca.pem"
    client_id      = SAMPLE_CLIENT_ID
    client_secret  = "file:var/sandbox/secrets/<tenant_id>.secret"
Paths: login /{tenant}/v2.0/.well-known/openid-configuration, /{tenant}/oauth2/v2.0/token,
/{tenant}/adminconsent; Graph /v1.0/security/...; MDE /api/...; control /sandbox/...
(see control.py).
"""

from __future__ import annotations

import asyncio

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from edrtrial.sandbox.control import ControlApi
from edrtrial.sandbox.graph import GraphApi
from edrtrial.sandbox.login import LoginApi
from edrtrial.sandbox.mde import MdeApi
from edrtrial.sandbox.responses import graph_error, json_response, mde_error
from edrtrial.sandbox.world import SandboxWorld


class LatencyMiddleware:
    """Delays every non-control request by the world's configured latency."""

    def __init__(self, app: ASGIApp, world: SandboxWorld) -> None:
        self.app = app
        self.world = world

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Sleep (without blocking other requests), then answer."""
        if scope["type"] == "http" and not str(scope["path"]).startswith("/sandbox/"):
            delay = self.world.latency_seconds
            if delay > 0:
                await asyncio.sleep(delay)
        await self.app(scope, receive, send)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Unknown paths and wrong methods, in the envelope of the API the path belongs to."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    message = "Resource not found for the segment." if status == 404 else "Method not allowed."
    code = "NotFound" if status == 404 else "MethodNotAllowed"
    path = request.url.path
    if path.startswith("/v1.0/"):
        return graph_error(request, status, code, message)
    if path.startswith("/api/"):
        return mde_error(status, code, message)
    return json_response({"error": code, "error_description": message}, status)


def build_app(world: SandboxWorld) -> Starlette:
    """The Starlette app over a world."""
    routes = [
        *ControlApi(world).routes(),
        *GraphApi(world).routes(),
        *MdeApi(world).routes(),
        *LoginApi(world).routes(),  # last: its paths start with a {tenant} wildcard
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(LatencyMiddleware, world=world)],
        exception_handlers={404: _http_error, 405: _http_error},
    )
