"""The console's Starlette application: its routes, middleware and error pages.

Each part of the console keeps its routes in its own module (`auth`, `desk`, `programme`,
`admin`); this module only puts them together with the protections every request gets
(`edrtrial.web.security`).
"""

from __future__ import annotations

from importlib import resources

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from edrtrial.config import WebConfig
from edrtrial.service.runtime import Runtime
from edrtrial.web import (
    admin,
    auth,
    cohorts,
    desk,
    entra,
    home,
    programme,
    reports_archive,
    ticket_actions,
)
from edrtrial.web.i18n import N_
from edrtrial.web.security import (
    Language,
    NotAllowed,
    SecurityHeaders,
    SignInNeeded,
    login_url,
)
from edrtrial.web.templating import render

SESSION_COOKIE = "console"


def _static() -> StaticFiles:
    # follow_symlink: an editable install links each file to its source.
    folder = resources.files("edrtrial.web").joinpath("static")
    return StaticFiles(directory=str(folder), follow_symlink=True)


async def _sign_in_needed(request: Request, exc: Exception) -> Response:
    target = login_url(request)
    if request.headers.get("hx-request"):
        # An htmx fragment of a page whose session ended: the whole page goes to sign in.
        return Response(status_code=200, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


async def _not_allowed(request: Request, exc: Exception) -> Response:
    return render(request, "refused.html.j2", status_code=403, why=N_("not allowed for your role"))


async def _not_found(request: Request, exc: Exception) -> Response:
    return render(request, "not_found.html.j2", status_code=404)


def routes() -> list[BaseRoute]:
    """Every route of the console."""
    found: list[BaseRoute] = [Mount("/static", app=_static(), name="static")]
    parts = (auth, entra, home, desk, ticket_actions, programme, cohorts, reports_archive, admin)
    for part in parts:
        found.extend(part.ROUTES)
    return found


def create_app(runtime: Runtime, web: WebConfig, session_key: str) -> Starlette:
    """The console over `runtime`'s store and services."""
    app = Starlette(
        routes=routes(),
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(
                SessionMiddleware,
                secret_key=session_key,
                session_cookie=SESSION_COOKIE,
                max_age=web.session_hours * 3600,
                same_site="lax",
                https_only=web.secure_cookies,
            ),
            Middleware(Language, default=web.language),
        ],
        exception_handlers={
            SignInNeeded: _sign_in_needed,
            NotAllowed: _not_allowed,
            404: _not_found,
        },
    )
    app.state.runtime = runtime
    app.state.web = web
    return app


__all__ = ["create_app", "Route"]
