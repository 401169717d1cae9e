"""Signing in and out, and the language a person reads the console in."""

from __future__ import annotations

from datetime import timedelta

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from edrtrial.access import accounts
from edrtrial.db import transaction
from edrtrial.web import i18n
from edrtrial.web.i18n import _
from edrtrial.web.security import (
    action,
    begin_session,
    end_session,
    safe_next,
    signed_in,
)
from edrtrial.web.templating import render


def client_address(request: Request) -> str:
    """The address a sign-in came from: the peer's, or, when the peer is one of
    `web.trusted_proxies`, the nearest address it forwards that is not a proxy of ours
    (the entries before it are the client's own word and are not believed)."""
    peer = request.client.host if request.client else "unknown"
    proxies = request.app.state.web.trusted_proxies
    if peer not in proxies:
        return peer
    forwarded = [a.strip() for a in request.headers.get("x-forwarded-for", "").split(",")]
    for address in reversed([a for a in forwarded if a]):
        if address not in proxies:
            return address
    return peer


async def login_page(request: Request) -> Response:
    """The sign-in form (already signed in: on to where the person was going)."""
    if signed_in(request) is not None:
        return RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
    return render(
        request,
        "login.html.j2",
        next=safe_next(request.query_params.get("next")),
        error="",
        username="",
        entra=request.app.state.web.entra is not None,
    )


@action(None)
async def login(request: Request) -> Response:
    """Check the password; a refusal says the same whatever was wrong (429 when limited)."""
    form = request.state.form
    username, password = str(form.get("username", "")), str(form.get("password", ""))
    target = safe_next(str(form.get("next", "")))
    runtime, web = request.app.state.runtime, request.app.state.web
    limits = accounts.Limits(
        per_account=web.login_failures_per_account,
        per_address=web.login_failures_per_address,
        window=timedelta(minutes=web.login_window_minutes),
    )
    with transaction(runtime.sessions) as session:
        user = accounts.sign_in(
            session,
            username,
            password,
            address=client_address(request),
            at=runtime.clock(),
            limits=limits,
        )
        if user is not None:
            begin_session(request, user)
        # Tries older than a day count for nothing; the table keeps no more than that.
        accounts.forget_attempts(session, runtime.clock() - max(limits.window, timedelta(days=1)))
    if user is None:
        return render(
            request,
            "login.html.j2",
            status_code=401,
            next=target,
            error=_(
                "The username or password is wrong, or there were too many tries. "
                "Wait a few minutes and try again."
            ),
            username=username,
            entra=web.entra is not None,
        )
    return RedirectResponse(target, status_code=303)


@action(None)
async def logout(request: Request) -> Response:
    """Sign out: this person's sessions end everywhere, a copy of the cookie included."""
    who = signed_in(request)
    if who is not None:
        runtime = request.app.state.runtime
        with transaction(runtime.sessions) as session:
            accounts.sign_out(session, who.id, actor=who.actor, at=runtime.clock())
    end_session(request)
    return RedirectResponse("/login", status_code=303)


@action(None)
async def choose_language(request: Request) -> Response:
    """Read the console in Japanese or English from now on (kept in the session)."""
    chosen = str(request.state.form.get("lang", ""))
    if chosen in i18n.LANGUAGES:
        request.session["lang"] = chosen
    return RedirectResponse(safe_next(str(request.state.form.get("next", ""))), status_code=303)


ROUTES = [
    Route("/login", login_page, methods=["GET"], name="login"),
    Route("/login", login, methods=["POST"], name="login_post"),
    Route("/logout", logout, methods=["POST"], name="logout"),
    Route("/language", choose_language, methods=["POST"], name="language"),
]
