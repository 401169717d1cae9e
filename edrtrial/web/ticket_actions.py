"""The desk's actions on a ticket: acknowledge, assign, note, notify the company, isolate
and release a device, resolve, reopen, close.

Each is a POST from the ticket page's forms (`ticket_actions.html.j2`), taken through the
same service the CLI's `edrtrial ticket …` uses (`edrtrial.service.desk_actions`), with the
signed-in person as the actor; it answers with the ticket page again (303) and a message
saying what happened. What the service refuses (a step the ticket's state does not allow,
an isolation already under way, a trial that ended) is that message, never an error page.
A ticket outside the person's cohorts is not found, whatever is asked of it.

Isolating or releasing a device asks first: a page naming the device, its company and its
tenant, with whatever would refuse it and any warning; only its confirming POST sends.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import copy_context

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from edrtrial import audit
from edrtrial.access.accounts import Person
from edrtrial.access.roles import Permission
from edrtrial.connectors.base import ActionKind
from edrtrial.desk import operator
from edrtrial.errors import EdrTrialError
from edrtrial.service import desk_actions as steps
from edrtrial.service.runtime import Runtime
from edrtrial.web.i18n import N_, _, say
from edrtrial.web.security import action, flash, need
from edrtrial.web.templating import render

STATUS_WORDS = {
    "planned": N_("it waits to be sent"),
    "sending": N_("it is being sent"),
    "unconfirmed": N_("it was sent; the EDR's answer is awaited"),
    "pending": N_("the EDR accepted it; it waits for the device to report"),
    "inprogress": N_("the EDR is carrying it out"),
    "succeeded": N_("the EDR carried it out"),
    "failed": N_("the EDR could not carry it out"),
    "timeout": N_("the EDR gave up waiting for the device"),
    "cancelled": N_("it was cancelled"),
}
"""An isolate's or release's status, as the message after sending it says it."""


def _ticket_id(request: Request) -> int:
    try:
        return int(request.path_params["ticket_id"])
    except ValueError:
        raise HTTPException(404) from None


def _within_scope(request: Request, who: Person) -> int:
    """The ticket's number when the person may see it; else the page is not found."""
    ticket_id = _ticket_id(request)
    runtime: Runtime = request.app.state.runtime
    with runtime.sessions() as session:
        if steps.ticket_in_scope(session, who.scope, ticket_id) is None:
            raise HTTPException(404)
    return ticket_id


def _back(ticket_id: int) -> Response:
    return RedirectResponse(f"/tickets/{ticket_id}", status_code=303)


def _field(request: Request, name: str) -> str:
    value = request.state.form.get(name, "")
    return value if isinstance(value, str) else ""


async def _step(
    request: Request,
    permission: Permission,
    work: Callable[[Runtime, int, Person], str],
) -> Response:
    """Take one step on the ticket through the service; the ticket page again, with the
    step's message (its own, or the service's refusal)."""
    who = need(request, permission)
    ticket_id = _within_scope(request, who)
    runtime: Runtime = request.app.state.runtime
    try:
        # In the request's context: the message is written in the person's language.
        said = await run_in_threadpool(copy_context().run, work, runtime, ticket_id, who)
    except EdrTrialError as err:
        flash(request, _("Not done: %(reason)s", reason=say(err)), "error")
    else:
        flash(request, said, "ok")
    return _back(ticket_id)


@action(Permission.DESK_ACT)
async def acknowledge(request: Request) -> Response:
    """Acknowledge: the person has the ticket; its deadline stops."""

    def work(rt: Runtime, ticket_id: int, who: Person) -> str:
        steps.acknowledge(rt, ticket_id, who.actor)
        return _("Ticket #%(id)s acknowledged.", id=ticket_id)

    return await _step(request, Permission.DESK_ACT, work)


@action(Permission.DESK_ACT)
async def start(request: Request) -> Response:
    """Mark the ticket in progress."""

    def work(rt: Runtime, ticket_id: int, who: Person) -> str:
        steps.start(rt, ticket_id, who.actor)
        return _("Ticket #%(id)s is in progress.", id=ticket_id)

    return await _step(request, Permission.DESK_ACT, work)


@action(Permission.DESK_ACT)
async def assign(request: Request) -> Response:
    """Give the ticket to a name, or to the person asking ("me")."""
    to_me = bool(_field(request, "to_me"))
    named = _field(request, "assignee")

    def work(rt: Runtime, ticket_id: int, who: Person) -> str:
        assignee = audit.person_of(who.actor) if to_me else named
        steps.assign(rt, ticket_id, assignee, who.actor)
        return _("Ticket #%(id)s assigned to %(name)s.", id=ticket_id, name=assignee.strip())

    return await _step(request, Permission.DESK_ACT, work)


@action(Permission.DESK_ACT)
async def note(request: Request) -> Response:
    """Add a note (its lines kept) to the ticket's history."""
    text = _field(request, "text")

    def work(rt: Runtime, ticket_id: int, who: Person) -> str:
        steps.note(rt, ticket_id, text, who.actor)
        return _("Note added to ticket #%(id)s.", id=ticket_id)

    return await _step(request, Permission.DESK_ACT, work)


@action(Permission.DESK_ACT)
async def notify(request: Request) -> Response:
    """Mail the company about the ticket (in the company's language), sent at once."""
    text = _field(request, "text")

    def work(rt: Runtime, ticket_id: int, who: Person) -> str:
        stats = steps.notify_company(rt, ticket_id, text, who.actor)
        message = _("Message to the company of ticket #%(id)s queued.", id=ticket_id)
        if stats.sent:
            message += " " + _("Mail sent: %(n)s.", n=stats.sent)
        return message

    return await _step(request, Permission.DESK_ACT, work)


@action(Permission.DESK_ACT)
async def resolve(request: Request) -> Response:
    """Resolve with the programme's five-part incident summary; the company receives its
    incident report unless the box is cleared; the verdict goes back to the EDR."""
    summary = {key: _field(request, key) for key in operator.SUMMARY_FIELDS}
    classification = _field(request, "classification")
    determination = _field(request, "determination")
    report = bool(_field(request, "report"))

    def work(rt: Runtime, ticket_id: int, who: Person) -> str:
        done = steps.resolve(
            rt,
            ticket_id,
            summary,
            who.actor,
            classification=classification,
            determination=determination,
            report=report,
        )
        parts = [_("Ticket #%(id)s resolved.", id=ticket_id)]
        if report:
            parts.append(_("The incident report is on its way to the company."))
        if (written := done.written_back) is not None and written.written:
            parts.append(_("Written back to the EDR: %(n)s alert(s).", n=written.written))
        return " ".join(parts)

    return await _step(request, Permission.DESK_ACT, work)


@action(Permission.DESK_ACT)
async def reopen(request: Request) -> Response:
    """Take a resolved or closed ticket back into work, saying why."""
    reason = _field(request, "reason")

    def work(rt: Runtime, ticket_id: int, who: Person) -> str:
        steps.reopen(rt, ticket_id, reason, who.actor)
        return _("Ticket #%(id)s reopened.", id=ticket_id)

    return await _step(request, Permission.DESK_ACT, work)


@action(Permission.DESK_ACT)
async def close(request: Request) -> Response:
    """Close a resolved ticket."""

    def work(rt: Runtime, ticket_id: int, who: Person) -> str:
        steps.close(rt, ticket_id, who.actor)
        return _("Ticket #%(id)s closed.", id=ticket_id)

    return await _step(request, Permission.DESK_ACT, work)


# --- isolate and release, confirmed first ---------------------------------------------------


def _device_id(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


async def _plan(
    request: Request, kind: ActionKind, device: int | None
) -> Response | steps.DevicePlan:
    """What the action would act on, or the ticket page with the reason it cannot."""
    who = need(request, Permission.DEVICE_ACT)
    ticket_id = _within_scope(request, who)
    runtime: Runtime = request.app.state.runtime
    if device is None:
        flash(request, _("Choose the device from the ticket's list."), "error")
        return _back(ticket_id)
    try:
        return await run_in_threadpool(
            steps.plan_device_action, runtime, ticket_id, kind, device_id=device
        )
    except EdrTrialError as err:
        flash(request, _("Not done: %(reason)s", reason=say(err)), "error")
        return _back(ticket_id)


def _confirmation(request: Request, plan: steps.DevicePlan) -> Response:
    return render(
        request,
        "confirm_device_action.html.j2",
        section="desk",
        plan=plan,
        kind=plan.kind.value,
    )


async def _ask(request: Request, kind: ActionKind) -> Response:
    """The page that asks before an isolate or release: it names the device, its company
    and tenant, and says what stands in the way."""
    found = await _plan(request, kind, _device_id(request.query_params.get("device")))
    if isinstance(found, Response):
        return found
    return _confirmation(request, found)


async def _send(request: Request, kind: ActionKind) -> Response:
    """Send the confirmed isolate or release; without the confirmation, ask first."""
    device = _device_id(_field(request, "device"))
    found = await _plan(request, kind, device)
    if isinstance(found, Response):
        return found
    plan = found
    if _device_id(_field(request, "confirm")) != plan.device_id:
        return _confirmation(request, plan)
    who = need(request, Permission.DEVICE_ACT)
    runtime: Runtime = request.app.state.runtime
    try:
        sent = await run_in_threadpool(steps.send_device_action, runtime, plan, who.actor)
        if steps.finished(sent.status):
            await run_in_threadpool(steps.deliver, runtime)
    except EdrTrialError as err:
        flash(request, _("Not done: %(reason)s", reason=say(err)), "error")
        return _back(plan.ticket_id)
    status = STATUS_WORDS.get(sent.status)
    values = {
        "device": plan.device_name,
        "company": plan.company_name,
        "status": _(status) if status else sent.status,
    }
    if kind is ActionKind.ISOLATE:
        said = _("Isolation of %(device)s (%(company)s): %(status)s.", **values)
    else:
        said = _("Release of %(device)s (%(company)s): %(status)s.", **values)
    if sent.detail:
        said += " " + sent.detail
    bad = sent.status in ("failed", "timeout", "cancelled")
    flash(request, said, "error" if bad else "ok")
    return _back(plan.ticket_id)


async def ask_isolate(request: Request) -> Response:
    """Confirm isolating a device of the ticket (`?device=<id>`)."""
    return await _ask(request, ActionKind.ISOLATE)


async def ask_release(request: Request) -> Response:
    """Confirm releasing an isolated device of the ticket (`?device=<id>`)."""
    return await _ask(request, ActionKind.RELEASE)


@action(Permission.DEVICE_ACT)
async def isolate(request: Request) -> Response:
    """Isolate the device the confirmation named."""
    return await _send(request, ActionKind.ISOLATE)


@action(Permission.DEVICE_ACT)
async def release(request: Request) -> Response:
    """Release the device the confirmation named."""
    return await _send(request, ActionKind.RELEASE)


ROUTES: list[BaseRoute] = [
    Route("/tickets/{ticket_id}/acknowledge", acknowledge, methods=["POST"]),
    Route("/tickets/{ticket_id}/start", start, methods=["POST"]),
    Route("/tickets/{ticket_id}/assign", assign, methods=["POST"]),
    Route("/tickets/{ticket_id}/note", note, methods=["POST"]),
    Route("/tickets/{ticket_id}/notify", notify, methods=["POST"]),
    Route("/tickets/{ticket_id}/resolve", resolve, methods=["POST"]),
    Route("/tickets/{ticket_id}/reopen", reopen, methods=["POST"]),
    Route("/tickets/{ticket_id}/close", close, methods=["POST"]),
    Route("/tickets/{ticket_id}/isolate", ask_isolate, methods=["GET"]),
    Route("/tickets/{ticket_id}/isolate", isolate, methods=["POST"]),
    Route("/tickets/{ticket_id}/release", ask_release, methods=["GET"]),
    Route("/tickets/{ticket_id}/release", release, methods=["POST"]),
]
