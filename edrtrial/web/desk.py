"""The desk's pages: the queue across all companies and each ticket, with its actions.

The queue's rows are a fragment the page asks for again every `web.queue_refresh_seconds`
(htmx), carrying the version of the rows it shows: the answer is 204 (nothing to swap)
while nothing changed, so a desk left open all night costs one small query a poll. Every
read goes through the reader's `Scope` (`edrtrial.desk.board`): what is outside it is
answered 404, as if it did not exist.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from edrtrial import audit
from edrtrial.access.accounts import Person
from edrtrial.access.roles import Permission
from edrtrial.desk import board
from edrtrial.states import Priority
from edrtrial.web.i18n import N_
from edrtrial.web.security import need
from edrtrial.web.templating import render

STATE_LABELS = {
    "open": N_("open (not resolved)"),
    "new": N_("new"),
    "acknowledged": N_("acknowledged"),
    "in_progress": N_("in progress"),
    "resolved": N_("resolved"),
    "closed": N_("closed"),
}
SUMMARY_LABELS = {
    "when": N_("When it happened"),
    "what": N_("What happened"),
    "cause": N_("The cause"),
    "handling": N_("How it was handled"),
    "effect": N_("The effect of the handling"),
}
"""The five fields of a resolved ticket's summary (`operator.SUMMARY_LABELS`), as the
incident report names them."""


def _filter(request: Request, person: Person) -> board.QueueFilter:
    """The queue's filters from the query string; anything unknown is ignored."""
    q = request.query_params
    state = q.get("state", "open")
    priority = q.get("priority", "").upper()
    return board.QueueFilter(
        state=state if state in board.STATE_CHOICES else "open",
        priority=priority if priority in {p.value for p in Priority} else "",
        assignee=audit.person_of(person.actor) if q.get("mine") else None,
        company_key=q.get("company", "").strip()[:64],
        overdue=bool(q.get("overdue")),
    )


def _query(given: board.QueueFilter) -> dict[str, str]:
    """The filters as the query string carries them (only those set)."""
    found = {
        "state": given.state if given.state != "open" else "",
        "priority": given.priority,
        "mine": "1" if given.assignee is not None else "",
        "company": given.company_key,
        "overdue": "1" if given.overdue else "",
    }
    return {k: v for k, v in found.items() if v}


def _rows_context(request: Request, given: board.QueueFilter, found: board.Board) -> dict[str, Any]:
    query = _query(given)
    return {
        "board": found,
        "now": request.app.state.runtime.clock(),
        "rows_url": "/desk/rows?" + urlencode({**query, "v": found.version}),
        "state_labels": STATE_LABELS,
    }


def _now(request: Request) -> datetime:
    now: datetime = request.app.state.runtime.clock()
    return now


async def queue_page(request: Request) -> Response:
    """Every open ticket the person may see, what needs a person first."""
    person = need(request, Permission.DESK_READ)
    given = _filter(request, person)
    now = _now(request)
    with request.app.state.runtime.sessions() as session:
        found = board.queue(session, person.scope, given, now)
        companies = board.companies(session, person.scope)
        return render(
            request,
            "desk_queue.html.j2",
            section="desk",
            given=given,
            companies=companies,
            states=board.STATE_CHOICES,
            priorities=[p.value for p in Priority],
            **_rows_context(request, given, found),
        )


async def queue_rows(request: Request) -> Response:
    """The queue's rows alone, for the page's refresh: 204 when they have not changed."""
    person = need(request, Permission.DESK_READ)
    given = _filter(request, person)
    now = _now(request)
    with request.app.state.runtime.sessions() as session:
        held = request.query_params.get("v", "")
        if held and held == board.queue_version(session, person.scope, given, now):
            return Response(status_code=204)
        found = board.queue(session, person.scope, given, now)
        return render(request, "desk_rows.html.j2", **_rows_context(request, given, found))


async def ticket_page(request: Request) -> Response:
    """One ticket: its alerts and their evidence, devices, actions and history."""
    person = need(request, Permission.DESK_READ)
    try:
        ticket_id = int(request.path_params["ticket_id"])
    except (KeyError, ValueError):
        raise HTTPException(404) from None
    runtime = request.app.state.runtime
    now = _now(request)
    with runtime.sessions() as session:
        page = board.ticket_page(
            session,
            person.scope,
            ticket_id,
            now,
            silent_days=runtime.config.settings.desk.silent_device_days,
        )
        if page is None:
            raise HTTPException(404)
        return render(
            request,
            "ticket.html.j2",
            section="desk",
            page=page,
            ticket=page.ticket,
            company=page.company,
            tenant=page.tenant,
            devices=page.devices,
            now=now,
            state_labels=STATE_LABELS,
            summary_labels=SUMMARY_LABELS,
        )


ROUTES = [
    Route("/desk", queue_page, methods=["GET"], name="desk"),
    Route("/desk/rows", queue_rows, methods=["GET"], name="desk_rows"),
    Route("/tickets/{ticket_id:int}", ticket_page, methods=["GET"], name="ticket"),
]
