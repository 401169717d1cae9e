"""The reports archive (and re-sending), and the CSV downloads of the programme.

The archive lists what each company was sent, when, to whom and by whom, and gives back
the very file its mail attached; a re-send is `edrtrial reports resend`, as the person. The
CSV files are those of `edrtrial seats --csv`, `trial calendar --csv` and `cohorts results
--csv` (the one Excel writer: UTF-8 with BOM), limited to what the person's `Scope` sees;
the secretariat's own reports (every company's seats) only to a person who sees everything.
"""

from __future__ import annotations

import logging
from datetime import date
from urllib.parse import quote

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from edrtrial.access.accounts import Person
from edrtrial.access.roles import Permission
from edrtrial.db import transaction
from edrtrial.errors import EdrTrialError
from edrtrial.models import ReportArchive
from edrtrial.notify.archive import archive_listing, archived_kinds, read_archived
from edrtrial.notify.report_mail import resend_archived
from edrtrial.programme import cohort_view, seats
from edrtrial.programme.cohort_results import cohort_report
from edrtrial.programme.companies import company_by_key
from edrtrial.programme.trial_calendar import trial_calendar
from edrtrial.reports.cohort_results import results_csv
from edrtrial.reports.seat_report import build_seat_report, seat_csv, seat_csv_filename
from edrtrial.reports.trial_calendar import calendar_csv
from edrtrial.service import jobs
from edrtrial.service.runtime import Runtime
from edrtrial.timeutil import jst_date
from edrtrial.untrusted import one_line
from edrtrial.web.i18n import N_, _, say
from edrtrial.web.security import action, flash, need
from edrtrial.web.templating import render

log = logging.getLogger(__name__)

CSV_TYPE = "text/csv; charset=utf-8"
KIND_WORDS = {
    "weekly": N_("weekly"),
    "monthly": N_("monthly"),
    "period": N_("period"),
    "incident": N_("incident"),
    "seats": N_("seats"),
}


def kind_label(kind: str) -> str:
    """A kind of report, in the request's language."""
    return _(KIND_WORDS[kind]) if kind in KIND_WORDS else kind


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _visible_report(session: Session, person: Person, report_id: int) -> ReportArchive:
    """The archived report if the person sees its company (the secretariat's own report:
    only everything); else the page is not found."""
    record = session.get(ReportArchive, report_id)
    if record is None:
        raise HTTPException(404)
    if record.company_id is None:
        if not person.scope.everything:
            raise HTTPException(404)
    elif not person.scope.sees_company(session, record.company_id):
        raise HTTPException(404)
    return record


def attachment(content: bytes, media_type: str, filename: str, fallback: str) -> Response:
    """A download named `filename` (Japanese names kept, RFC 5987), `fallback` for others."""
    disposition = f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename)}"
    return Response(content, media_type=media_type, headers={"content-disposition": disposition})


def _day(request: Request, name: str) -> date | None:
    """A day of the query (YYYY-MM-DD), or None when not given or not a day."""
    try:
        return date.fromisoformat(request.query_params.get(name, "").strip())
    except ValueError:
        return None


async def archive(request: Request) -> Response:
    """`GET /reports`: every archived report the person sees, newest first, with filters."""
    person = need(request, Permission.REPORTS_READ)
    runtime = _runtime(request)
    wanted_company = request.query_params.get("company", "").strip()
    wanted_kind = request.query_params.get("kind", "").strip()
    with runtime.sessions() as session:
        company_id = None
        if wanted_company:
            company = company_by_key(session, wanted_company)
            if company is None or not person.scope.sees_company(session, company.id):
                raise HTTPException(404)
            company_id = company.id
        kinds = archived_kinds(session)
        rows = archive_listing(
            session,
            company_id=company_id,
            kind=wanted_kind if wanted_kind in kinds else None,
            scope=person.scope,
        )
        companies = sorted({row.owner for row in rows if row.record.company_id is not None})
        since, until = _day(request, "from"), _day(request, "to")
        if since is not None:
            rows = [row for row in rows if row.record.period_end >= since]
        if until is not None:
            rows = [row for row in rows if row.record.period_start <= until]
        return render(
            request,
            "reports_archive.html.j2",
            section="reports",
            rows=list(reversed(rows)),
            kinds=kinds,
            companies=companies,
            wanted_company=wanted_company,
            wanted_kind=wanted_kind,
            since=since.isoformat() if since else "",
            until=until.isoformat() if until else "",
            cohorts=cohort_view.visible_cohorts(session, person.scope),
            kind_label=kind_label,
        )


async def report_file(request: Request) -> Response:
    """`GET /reports/{id}/file`: the file the report's mail attached, as it was sent."""
    person = need(request, Permission.REPORTS_READ)
    runtime = _runtime(request)
    with runtime.sessions() as session:
        record = _visible_report(session, person, request.path_params["report_id"])
        try:
            content = read_archived(record)
        except EdrTrialError as err:
            log.warning("console: archived report %s: %s", record.id, err)
            raise HTTPException(404) from err
        extension = record.filename.rpartition(".")[2] or "bin"
        return attachment(
            content, record.content_type, record.filename, f"report-{record.id}.{extension}"
        )


@action(Permission.REPORTS_SEND)
async def resend(request: Request) -> Response:
    """`POST /reports/{id}/resend`: the same file, sent again as the person (audited)."""
    person = need(request, Permission.REPORTS_SEND)
    runtime = _runtime(request)
    report_id = request.path_params["report_id"]
    to = request.state.form.get("to", "")
    to = to.strip() if isinstance(to, str) and to.strip() else None
    with runtime.sessions() as session:
        _visible_report(session, person, report_id)
    try:
        with transaction(runtime.sessions) as session:
            queued = resend_archived(
                session, report_id, actor=person.actor, now=runtime.clock(), to=to
            )
            record = queued.record
            assert record is not None  # a re-send is archived before it is queued
            said = _(
                "Report %(id)s queued again as report %(new)s to %(to)s.",
                id=report_id,
                new=record.id,
                to=queued.message.recipient,
            )
    except EdrTrialError as err:
        flash(request, _("Not done: %(why)s", why=one_line(say(err))[:400]), "error")
        return RedirectResponse("/reports", status_code=303)
    flash(request, said, "ok")
    try:
        await run_in_threadpool(jobs.deliver_outbox, runtime)
    except Exception:  # the outbox keeps the mail; the scheduler sends it on its next run
        log.exception("console: delivering the outbox after a re-send")
    return RedirectResponse("/reports", status_code=303)


def _cohort_filter(request: Request, session: Session, person: Person) -> str | None:
    """The `cohort` asked for (a key the person sees), None for all; an unseen one: 404."""
    key = request.query_params.get("cohort", "").strip()
    if not key:
        return None
    cohort = cohort_view.visible_cohort(session, person.scope, key)
    if cohort is None:
        raise HTTPException(404)
    return cohort.key


async def seats_csv(request: Request) -> Response:
    """`GET /reports/seats.csv`: `edrtrial seats --csv`, of the companies in scope."""
    person = need(request, Permission.REPORTS_READ)
    runtime = _runtime(request)
    now = runtime.clock()
    with runtime.sessions() as session:
        cohort = _cohort_filter(request, session, person)
        rows = seats.seat_counts(session, now, person.scope)
    if cohort is not None:
        rows = [r for r in rows if r.cohort_key == cohort]
    report = build_seat_report(rows, jst_date(now))
    name = seat_csv_filename(report)
    return attachment(seat_csv(report), CSV_TYPE, name, name)


async def calendar_csv_download(request: Request) -> Response:
    """`GET /reports/trial-calendar.csv`: `trial calendar --csv`, of the companies in scope."""
    person = need(request, Permission.REPORTS_READ)
    runtime = _runtime(request)
    today = jst_date(runtime.clock())
    with runtime.sessions() as session:
        cohort = _cohort_filter(request, session, person)
        entries = trial_calendar(session, today, person.scope)
    if cohort is not None:
        entries = [e for e in entries if e.cohort_key == cohort]
    name = f"trial_calendar_{today.isoformat()}.csv"
    return attachment(calendar_csv(entries), CSV_TYPE, name, name)


async def results_csv_download(request: Request) -> Response:
    """`GET /cohorts/{key}/results.csv`: `cohorts results --csv` for a cohort in scope."""
    person = need(request, Permission.REPORTS_READ)
    runtime = _runtime(request)
    with runtime.sessions() as session:
        cohort = cohort_view.visible_cohort(session, person.scope, request.path_params["key"])
        if cohort is None:
            raise HTTPException(404)
        results = cohort_report(session, runtime.config.settings.programme, cohort.key)
    name = f"cohort_results_{cohort.key}.csv"
    return attachment(results_csv(results), CSV_TYPE, name, name)


ROUTES = [
    Route("/reports", archive, methods=["GET"], name="reports"),
    Route("/reports/seats.csv", seats_csv, methods=["GET"], name="seats_csv"),
    Route("/reports/trial-calendar.csv", calendar_csv_download, methods=["GET"]),
    Route("/reports/{report_id:int}/file", report_file, methods=["GET"], name="report_file"),
    Route("/reports/{report_id:int}/resend", resend, methods=["POST"], name="report_resend"),
    Route("/cohorts/{key}/results.csv", results_csv_download, methods=["GET"]),
]
