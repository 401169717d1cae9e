"""Who is signed in, what they may do, and the protections every request gets.

- **Session**: Starlette's signed cookie (`console`), HttpOnly, SameSite=Lax, Secure unless
  the console is reached on this machine in plain HTTP. It carries the account id and the
  account's `epoch`: a new password, a disabled account or new roles end the session at
  its next request, because the person is read from the store on every request. A session
  idle past `web.idle_minutes` or older than `web.session_hours` is over.
- **CSRF**: every session carries a random token; every POST must give it back (the form's
  `csrf` field, or htmx's `X-CSRF-Token` header), and a POST whose Origin is another site
  is refused. `action` wraps every POST endpoint; a test lists the routes and checks each.
- **Permissions**: a page or action names the permission it needs (`edrtrial.access.roles`);
  a refused POST is answered 403 and written to the audit log.
- **Headers**: a Content-Security-Policy with no inline script or style, no framing, no
  sniffing, no referrer to other sites.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode, urlsplit

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edrtrial import audit
from edrtrial.access import accounts
from edrtrial.access.accounts import Person
from edrtrial.access.roles import Permission
from edrtrial.db import transaction
from edrtrial.models import ConsoleUser
from edrtrial.untrusted import one_line
from edrtrial.web import i18n
from edrtrial.web.i18n import N_

log = logging.getLogger(__name__)

CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"

CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    )
)
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}


class SecurityHeaders:
    """Adds `HEADERS` to every response, and `no-store` to every page that is not a static
    file (a page shows what a person may see; a shared machine's cache must not keep it)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers.setdefault(name, value)
                if not static:
                    headers["cache-control"] = "no-store"
            await send(message)

        await self.app(scope, receive, with_headers)


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made on first use."""
    token = request.session.get(CSRF_FIELD)
    if not isinstance(token, str) or len(token) < 32:
        token = secrets.token_urlsafe(32)
        request.session[CSRF_FIELD] = token
    return token


def flash(request: Request, text: str, kind: str = "info") -> None:
    """A message shown once, on the next page this person sees (`info`, `ok`, `error`)."""
    messages = list(request.session.get("flash", []))[-4:]
    messages.append({"kind": kind, "text": text})
    request.session["flash"] = messages


def take_flashes(request: Request) -> list[dict[str, str]]:
    """The messages waiting for this person, removed from the session."""
    return list(request.session.pop("flash", []) or [])


def begin_session(request: Request, user: ConsoleUser) -> None:
    """A fresh session for the person who just signed in (a new CSRF token: whatever the
    session held before signing in is gone)."""
    language = request.session.get("lang")
    request.session.clear()
    now = int(time.time())
    request.session.update({"uid": user.id, "epoch": user.epoch, "since": now, "seen": now})
    if language:
        request.session["lang"] = language
    csrf_token(request)


def end_session(request: Request) -> None:
    """Sign out: nothing of the session is kept but the chosen language."""
    language = request.session.get("lang")
    request.session.clear()
    if language:
        request.session["lang"] = language


def signed_in(request: Request) -> Person | None:
    """The person this request's session belongs to, read afresh from the store; None when
    nobody is signed in, or the session is over (idle, too old, the account changed)."""
    if "person" in request.scope:
        found: Person | None = request.scope["person"]
        return found
    found = None
    uid, epoch = request.session.get("uid"), request.session.get("epoch")
    if isinstance(uid, int) and isinstance(epoch, int):
        web = request.app.state.web
        now = int(time.time())
        since, seen = int(request.session.get("since", 0)), int(request.session.get("seen", 0))
        fresh = now - since < web.session_hours * 3600 and now - seen < web.idle_minutes * 60
        if fresh:
            with request.app.state.runtime.sessions() as session:
                user = session.get(ConsoleUser, uid)
                if user is not None and user.disabled_at is None and user.epoch == epoch:
                    found = accounts.person(user)
        if found is None:
            end_session(request)
        elif now - seen >= 60:  # the idle clock, kept to the minute (the cookie is rewritten)
            request.session["seen"] = now
    request.scope["person"] = found
    if found is not None and found.language and not request.session.get("lang"):
        i18n.set_language(found.language)
    return found


class Language:
    """Speak the request's language: the one chosen in the session, else the console's
    default (`web.language`); a signed-in person's own setting comes in `signed_in`."""

    def __init__(self, app: ASGIApp, default: str) -> None:
        self.app = app
        self.default = default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            chosen = scope.get("session", {}).get("lang")
            i18n.set_language(chosen if isinstance(chosen, str) else self.default)
        await self.app(scope, receive, send)


def page_context(request: Request) -> dict[str, Any]:
    """What every page's layout needs."""
    who = signed_in(request)
    return {
        "request": request,
        "person": who,
        "P": Permission,
        "csrf": csrf_token(request),
        "lang": i18n.language(),
        "flashes": take_flashes(request),
        "refresh_seconds": request.app.state.web.queue_refresh_seconds,
        "section": "",
    }


def _same_origin(request: Request) -> bool:
    """A POST from our own pages: no Origin header (an older browser, a script), or one
    naming this console."""
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    public = request.app.state.web.public_url
    parts = urlsplit(origin)
    return parts.netloc == host or (bool(public) and origin.rstrip("/") == public)


def refuse(request: Request, who: Person | None, why: str, permission: str = "") -> Response:
    """A 403 for a refused POST, written to the audit log with who tried what."""
    from edrtrial.web.templating import render

    runtime = request.app.state.runtime
    with transaction(runtime.sessions) as session:
        audit.record(
            session,
            at=runtime.clock(),
            actor=who.actor if who else "web:anonymous",
            action="web.refused",
            tenant_id=None,
            target=one_line(f"{request.method} {request.url.path}")[:200],
            detail={"why": why, "permission": permission},
        )
    log.warning("console: refused %s %s (%s)", request.method, request.url.path, why)
    return render(request, "refused.html.j2", status_code=403, why=why)


Endpoint = Callable[[Request], Awaitable[Response]]


def _accepts_csrf(request: Request, form: Any) -> bool:
    expected = request.session.get(CSRF_FIELD)
    given = request.headers.get(CSRF_HEADER) or (form.get(CSRF_FIELD) if form else None)
    return (
        isinstance(expected, str)
        and isinstance(given, str)
        and accounts.same_secret(expected, given)
    )


FORM_BYTES = 256 * 1024
"""The largest POST a form of the console sends (an upload says its own)."""


def action(
    permission: Permission | None, *, max_bytes: int = FORM_BYTES
) -> Callable[[Endpoint], Endpoint]:
    """Wrap a POST endpoint: same origin, the session's CSRF token, a signed-in person (for
    `permission` None, anyone, signed in or not: the sign-in form itself), the permission.

    Each refusal is a 403 written to the audit log; the form is parsed once and kept in
    `request.state.form` for the endpoint. A body larger than `max_bytes` (or of no stated
    length) is refused before it is read: nobody can make the console spool files to disk
    before being checked.
    """

    def wrap(endpoint: Endpoint) -> Endpoint:
        @wraps(endpoint)
        async def checked(request: Request) -> Response:
            length = request.headers.get("content-length", "")
            if not length.isdigit():
                return Response("a form's length must be given\n", status_code=411)
            if int(length) > max_bytes:
                return Response("the form is too large\n", status_code=413)
            form = await request.form(max_files=1 if max_bytes > FORM_BYTES else 0)
            request.state.form = form
            who = signed_in(request)
            if not _same_origin(request):
                return refuse(request, who, N_("cross-site request"))
            if not _accepts_csrf(request, form):
                return refuse(request, who, N_("missing or wrong CSRF token"))
            if permission is not None:
                if who is None:
                    return RedirectResponse(login_url(request), status_code=303)
                if not who.may(permission):
                    return refuse(request, who, N_("not allowed for your role"), permission.value)
            return await endpoint(request)

        checked.__dict__["csrf_checked"] = True
        return checked

    return wrap


def login_url(request: Request) -> str:
    """The sign-in page, coming back here afterwards (a local path only)."""
    back = request.url.path
    if request.method == "GET" and request.url.query:
        back += "?" + request.url.query
    return "/login?" + urlencode({"next": back})


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a local path of ours only, never another site."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


class NotAllowed(Exception):
    """The signed-in person may not see this page (answered 403)."""


class SignInNeeded(Exception):
    """Nobody is signed in (answered with the sign-in page)."""


def need(request: Request, permission: Permission) -> Person:
    """The signed-in person, who may do `permission`; else SignInNeeded or NotAllowed."""
    who = signed_in(request)
    if who is None:
        raise SignInNeeded
    if not who.may(permission):
        raise NotAllowed(permission.value)
    return who
