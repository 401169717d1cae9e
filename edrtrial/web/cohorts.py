"""The secretariat's cohort dashboard: seats against the cap, the trial calendar with its
days left and decisions, the uninstall's progress, and how each tenant is polled.

The figures are those of `edrtrial seats` and `edrtrial trial calendar`, read through the
person's `Scope` and cut to the cohort; a cohort outside the scope is "not found".
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from edrtrial.access.roles import Permission
from edrtrial.programme import cohort_view, seats
from edrtrial.programme import cohorts as places
from edrtrial.programme.trial_calendar import trial_calendar
from edrtrial.reports.seat_report import build_seat_report
from edrtrial.reports.trial_calendar import Offboarding
from edrtrial.service.runtime import Runtime
from edrtrial.timeutil import jst_date
from edrtrial.web.programme import decision_label, state_label
from edrtrial.web.security import need
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


ROUTES = [
    Route("/cohorts", cohort_list, methods=["GET"], name="cohorts"),
    Route("/cohorts/{key}", cohort_page, methods=["GET"], name="cohort"),
]
