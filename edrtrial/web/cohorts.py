"""The secretariat's cohort dashboard: seats against the cap, the trial calendar with its
days left and decisions, the uninstall's progress, and how each tenant is polled.

The figures are those of `edrtrial seats` and `edrtrial trial calendar`, read through the
person's `Scope` and cut to the cohort; a cohort outside the scope is "not found".
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from edrtrial.access.roles import Permission
from edrtrial.db import transaction
from edrtrial.errors import EdrTrialError
from edrtrial.programme import cohort_view, seats
from edrtrial.programme import cohorts as places
from edrtrial.programme.trial_calendar import trial_calendar
from edrtrial.reports.seat_report import build_seat_report
from edrtrial.reports.trial_calendar import Offboarding
from edrtrial.service import admission
from edrtrial.service.runtime import Runtime
from edrtrial.timeutil import jst_date
from edrtrial.web.i18n import _, say
from edrtrial.web.programme import decision_label, state_label
from edrtrial.web.security import action, flash, need
from edrtrial.web.templating import render


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def cohort_list(request: Request) -> Response:
    """`GET /cohorts`: each cohort the person sees, with its places and seats."""
    person = need(request, Permission.PROGRAMME_READ)
    runtime = _runtime(request)
    now = runtime.clock()
    with runtime.sessions() as session:
        cohorts = cohort_view.visible_cohorts(session, person.scope)
        counted = [places.places(session, cohort) for cohort in cohorts]
        report = build_seat_report(seats.seat_counts(session, now, person.scope), jst_date(now))
        troubled = {
            cohort.key: sum(1 for t in cohort_view.tenant_health(session, cohort) if t.troubled)
            for cohort in cohorts
        }
        months = {
            cohort.key: places.trial_months(runtime.config.settings.programme, cohort)
            for cohort in cohorts
        }
        return render(
            request,
            "cohorts.html.j2",
            section="cohorts",
            counted=counted,
            totals={t.cohort_key: t for t in report.cohorts},
            troubled=troubled,
            months=months,
        )


async def cohort_page(request: Request) -> Response:
    """`GET /cohorts/{key}`: the cohort's seats, trial calendar, uninstalls and tenants."""
    person = need(request, Permission.PROGRAMME_READ)
    runtime = _runtime(request)
    now = runtime.clock()
    today = jst_date(now)
    with runtime.sessions() as session:
        cohort = cohort_view.visible_cohort(session, person.scope, request.path_params["key"])
        if cohort is None:
            raise HTTPException(404)
        rows = [
            r for r in seats.seat_counts(session, now, person.scope) if r.cohort_key == cohort.key
        ]
        report = build_seat_report(rows, today)
        calendar = [
            e for e in trial_calendar(session, today, person.scope) if e.cohort_key == cohort.key
        ]
        uninstall = Offboarding(
            sum(e.offboarding.planned for e in calendar),
            sum(e.offboarding.sent for e in calendar),
            sum(e.offboarding.done for e in calendar),
            sum(e.offboarding.manual for e in calendar),
            sum(e.offboarding.trouble for e in calendar),
        )
        soon = max(runtime.config.settings.programme.reminder_days, default=0)
        return render(
            request,
            "cohort.html.j2",
            section="cohorts",
            cohort=cohort,
            counted=places.places(session, cohort),
            report=report,
            total=report.total,
            calendar=calendar,
            uninstall=uninstall,
            health=cohort_view.tenant_health(session, cohort),
            soon=soon,
            label=state_label,
            decision_label=decision_label,
            today=today,
        )


@action(Permission.PROGRAMME_ACT)
async def cohort_settings(request: Request) -> Response:
    """`POST /cohorts/{key}/settings`: its capacity, and whether it takes new companies, as
    `edrtrial cohorts set` changes them; places a larger capacity adds go to its waiting
    list at once, and each company that moves up is told by mail."""
    person = need(request, Permission.PROGRAMME_ACT)
    runtime = _runtime(request)
    form = request.state.form
    with runtime.sessions() as session:
        cohort = cohort_view.visible_cohort(session, person.scope, request.path_params["key"])
        if cohort is None:
            raise HTTPException(404)
        key, capacity_was, closed_was = cohort.key, cohort.capacity, cohort.closed
    back = RedirectResponse(f"/cohorts/{key}", status_code=303)
    text = str(form.get("capacity", "")).strip()
    if not text.isdigit() or int(text) < 1:
        flash(request, _("Not changed: the capacity is a whole number of at least 1."), "error")
        return back
    capacity, closed = int(text), form.get("taking") == "closed"
    if capacity == capacity_was and closed == closed_was:
        flash(request, _("Nothing to change."), "info")
        return back

    def change() -> list[str]:
        with transaction(runtime.sessions) as session:
            moved = admission.change_cohort(
                session,
                runtime.config.settings,
                key,
                actor=person.actor,
                at=runtime.clock(),
                capacity=capacity if capacity != capacity_was else None,
                closed=closed if closed != closed_was else None,
            )
            return [one.key for one in moved]

    try:
        moved = await run_in_threadpool(change)
    except EdrTrialError as err:
        flash(request, _("Not changed: %(why)s", why=say(err)), "error")
        return back
    said = _(
        "Cohort %(key)s: %(capacity)s places, %(taking)s.",
        key=key,
        capacity=capacity,
        taking=_("closed to new companies") if closed else _("open to new companies"),
    )
    if moved:
        said += " " + _(
            "Moved up from the waiting list (each told by mail): %(companies)s.",
            companies=", ".join(moved),
        )
    flash(request, said, "ok")
    return back


ROUTES = [
    Route("/cohorts", cohort_list, methods=["GET"], name="cohorts"),
    Route("/cohorts/{key}", cohort_page, methods=["GET"], name="cohort"),
    Route("/cohorts/{key}/settings", cohort_settings, methods=["POST"], name="cohort_settings"),
]
