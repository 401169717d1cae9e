"""The console's front door: each person lands where their work is."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from edrtrial.access.roles import Permission
from edrtrial.web.security import SignInNeeded, signed_in


async def home(request: Request) -> Response:
    """The desk's queue for whoever works tickets, else the programme's applications."""
    who = signed_in(request)
    if who is None:
        raise SignInNeeded
    if who.may(Permission.DESK_ACT) or not who.may(Permission.PROGRAMME_ACT):
        return RedirectResponse("/desk", status_code=303)
    return RedirectResponse("/programme", status_code=303)


async def healthz(request: Request) -> Response:
    """For a load balancer: the console answers (it says nothing else)."""
    return Response("ok\n", media_type="text/plain")


ROUTES = [
    Route("/", home, methods=["GET"], name="home"),
    Route("/healthz", healthz, methods=["GET"], name="healthz"),
]
