"""The programme: `seats`, `report`, `offboarding`, `tenants` and `quarantine`."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import click

from edrtrial import files
from edrtrial.cli.common import (
    BY_HELP,
    ActingForGroup,
    ListTable,
    SafeConsole,
    acting_for,
    actor,
    company_key,
    console,
    deliver,
    err_console,
    fails_cleanly,
    iso,
    list_options,
    print_json,
    print_list,
    print_notes,
    runtime_of,
    styled,
    take_by,
)
from edrtrial.db import transaction
from edrtrial.devices import offboarding as lifecycle
from edrtrial.devices.send import Outcome
from edrtrial.errors import ActionRefused, ReportError
from edrtrial.ingest.health import resume_tenant
from edrtrial.ingest.queries import quarantined_records
from edrtrial.models import OutboxMessage
from edrtrial.notify.archive import archive_dir_of, read_archived
from edrtrial.notify.report_mail import (
    detection_report_for,
    queue_detection_report,
    report_mailings,
)
from edrtrial.programme import seats
from edrtrial.programme.companies import company_by_key, tenants_by_company
from edrtrial.reports import seat_report
from edrtrial.reports.detection import period_kind
from edrtrial.reports.render import detection_report_pdf, render_detection_report_html
from edrtrial.service import jobs
from edrtrial.service.runtime import Runtime
from edrtrial.states import OutboxState
from edrtrial.timeutil import jst_date, to_jst
from edrtrial.untrusted import one_line


@click.command("seats")
@list_options
@click.option(
    "--csv",
    "csv_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the report as CSV for Excel (UTF-8 with BOM, Japanese headings, owner-only).",
)
@click.pass_context
@fails_cleanly
def seats_command(ctx: click.Context, wide: bool, as_json: bool, csv_file: Path | None) -> None:
    """Per company: planned seats, onboarded and offboarded devices, active in 7 days, cap,
    trial dates; each cohort's totals and the programme's; a warning for each company over
    or near its cap."""
    runtime = runtime_of(ctx)
    now = runtime.clock()
    with runtime.sessions() as session:
        rows = seats.seat_counts(session, now)
    today = jst_date(now)
    report = seat_report.build_seat_report(rows, today)
    if csv_file is not None:
        files.write_private_bytes(csv_file, seat_report.seat_csv(report))
        (err_console if as_json else console).print(f"CSV written to {csv_file}")
    if as_json:
        print_json([_seat_record(r, today) for r in rows])
        return
    table = ListTable(
        "company",
        "name",
        "plan",
        "onb.",
        "offb.",
        "7d",
        "test",
        "cap",
        "trial ends",
        "decision",
        flex=("name",),
        whole=("trial ends",),
    )
    for r in rows:
        style = "red" if r.over_cap else "yellow" if r.near_cap else ""
        table.add_row(
            r.company_key,
            r.company_name,
            str(r.planned),
            styled(str(r.onboarded), style),
            str(r.offboarded),
            str(r.active_7d),
            str(r.verified),
            str(r.cap),
            _trial(r, today, wide=wide),
            r.decision,
        )
    print_list(table, wide=wide)
    if rows:
        console.print("plan: seats planned; onb./offb.: devices onboarded / offboarded;")
        console.print("7d: active in the last 7 days; test: detection test seen")
        _print_totals(report, wide=wide)
    for r in rows:
        if warning := r.cap_warning():
            console.print(styled(f"warning: {warning}", "red" if r.over_cap else "yellow"))


def _print_totals(report: seat_report.SeatReport, *, wide: bool) -> None:
    """Each cohort's totals (when there are several) and the programme's."""
    table = ListTable(
        "cohort",
        "companies",
        "plan",
        "onb.",
        "offb.",
        "7d",
        "test",
        "cap",
        "over/near",
        flex=("cohort",),
    )
    groups = [*report.cohorts, report.total] if len(report.cohorts) > 1 else [report.total]
    for t in groups:
        label = t.name if t is not report.total else "all cohorts"
        table.add_row(
            label,
            str(t.companies),
            str(t.planned),
            str(t.onboarded),
            str(t.offboarded),
            str(t.active_7d),
            str(t.verified),
            str(t.cap),
            f"{t.over}/{t.near}",
        )
    print_list(table, wide=wide)


def _trial(row: seats.SeatRow, today: date, *, wide: bool) -> str:
    """When the trial ends, and the days left: "12/25 (30d)", "11/15 ended" (the year
    when not this one); `--wide` gives its start and end whole."""
    if row.trial_end is None:
        return ""
    days = (row.trial_end - today).days
    left = f"({days}d)" if days >= 0 else "ended"
    if wide and row.trial_start:
        return f"{row.trial_start} → {row.trial_end} {left}"
    shown = "%m/%d" if row.trial_end.year == today.year else "%Y-%m-%d"
    return f"{row.trial_end.strftime(shown)} {left}"


def _seat_record(r: seats.SeatRow, today: date) -> dict[str, Any]:
    """A company's seats as `seats --json` gives them."""
    return {
        "company": r.company_key,
        "name": r.company_name,
        "planned": r.planned,
        "onboarded": r.onboarded,
        "offboarded": r.offboarded,
        "active_7d": r.active_7d,
        "tested": r.verified,
        "cap": r.cap,
        "cohort": r.cohort_key,
        "over_cap": r.over_cap,
        "near_cap": r.near_cap,
        "cap_warning": r.cap_warning(),
        "trial_start": r.trial_start.isoformat() if r.trial_start else None,
        "trial_end": r.trial_end.isoformat() if r.trial_end else None,
        "days_left": (r.trial_end - today).days if r.trial_end else None,
        "decision": r.decision,
    }


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as err:
        raise click.BadParameter(f"{value!r} is not a date like 2026-11-01") from err


@click.command()
@click.option("--company", required=True, help="Company key.")
@click.option("--from", "start", required=True, help="First day (JST), YYYY-MM-DD.")
@click.option("--to", "end", required=True, help="Last day (JST), YYYY-MM-DD, inclusive.")
@click.option(
    "--monthly",
    is_flag=True,
    help="The monthly report's form (default: weekly for 7 days, monthly for a calendar "
    "month, else a report of the period).",
)
@click.option(
    "--output",
    type=click.Path(path_type=Path),
    help="A .pdf (the report as mailed) or .html file to write, readable by you only "
    "(default: the archived PDF when mailed).",
)
@click.option("--no-mail", is_flag=True, help="Write the file only; do not mail the company.")
@click.option("--resend", is_flag=True, help="Mail the period's report again (audited).")
@acting_for
@click.pass_context
@fails_cleanly
def report(
    ctx: click.Context,
    company: str,
    start: str,
    end: str,
    monthly: bool,
    output: Path | None,
    no_mail: bool,
    resend: bool,
) -> None:
    """Write a company's detection report for a period as PDF, and mail it with the PDF.

    A period already mailed is not mailed again (you are told when and to whom) unless
    --resend is given. The mailed PDF is archived (`edrtrial reports list`). Seven days
    make a weekly report, a calendar month (or --monthly) a monthly one, any other run of
    days a report of that period, compared with as many days just before it.
    """
    first, last = _date(start), _date(end)
    if last < first:
        raise click.BadParameter("--to is before --from")
    if resend and no_mail:
        raise click.UsageError("--resend mails the report; it cannot go with --no-mail")
    if output is not None and output.suffix.lower() not in _OUTPUTS:
        raise ReportError(f"--output {one_line(str(output))!r}: give a .pdf or .html file")
    runtime = runtime_of(ctx)
    company = company_key(runtime, company)
    today = jst_date(runtime.clock())
    if last > today:
        raise ReportError(
            f"the period {first} to {last} has not ended: a report covers days up to today "
            f"({today} JST)"
        )
    kind = period_kind(first, last, monthly=monthly)
    with runtime.sessions() as session:
        earlier = report_mailings(session, company, first, last, kind)
    for message in earlier:
        console.print(f"{company} {first} to {last}: {_mailed(message)}")
    mail = not no_mail and (resend or not earlier)
    if earlier and not no_mail and not resend:
        console.print("not mailed again (--resend mails it again)")
    made = _made_report(runtime, company, first, last, kind, mail=not no_mail, resend=resend)
    if output is None and made.archived is not None:
        console.print(f"report archived at {made.archived}")
    else:
        target = output or archive_dir_of(runtime.config) / f"{company}_{first}_{last}.pdf"
        if target.suffix.lower() == ".pdf":
            files.write_private_bytes(target, made.pdf())
        else:
            files.write_private_text(target, made.html)
        console.print(f"report written to {target}")
    if mail:
        deliver(runtime)


_OUTPUTS = (".pdf", ".html", ".htm")


@dataclass(frozen=True, slots=True)
class _Made:
    """A report as the command has it: its HTML, its PDF, and the archived file if mailed."""

    html: str
    pdf: Callable[[], bytes]
    archived: Path | None = None


def _mailed(message: OutboxMessage) -> str:
    """When and to whom a report mail went, or why it has not gone yet."""
    if message.sent_at is not None:
        return f"mailed {to_jst(message.sent_at):%Y-%m-%d %H:%M} JST to {message.recipient}"
    queued = f"{to_jst(message.created_at):%Y-%m-%d %H:%M} JST"
    if message.status == OutboxState.FAILED:
        return f"queued {queued} to {message.recipient}, given up: never received"
    return f"queued {queued} to {message.recipient}, not sent yet ({message.status})"


def _made_report(
    runtime: Runtime,
    company: str,
    first: date,
    last: date,
    kind: str,
    *,
    mail: bool,
    resend: bool,
) -> _Made:
    """The company's report; with `mail`, archived and queued for the company's contact
    (or, mailed before and no `resend`, the report as it was mailed)."""
    with transaction(runtime.sessions) as session:
        stored = company_by_key(session, company)
        assert stored is not None  # checked by company_key
        now, settings = runtime.clock(), runtime.config.settings
        if mail:
            queued = queue_detection_report(
                session,
                stored.id,
                first,
                last,
                now=now,
                settings=settings,
                archive_dir=archive_dir_of(runtime.config),
                kind=kind,
                actor=actor(click.get_current_context()),
                resend=resend,
            )
            if queued.record is not None:
                content = read_archived(queued.record)  # as mailed, digest checked
                return _Made(queued.html, lambda: content, Path(queued.record.path))
            # Mailed before reports were archived: no file was kept, so today's render.
        found = detection_report_for(
            session, stored.id, first, last, now=now, settings=settings, kind=kind
        )
        return _Made(render_detection_report_html(found), lambda: detection_report_pdf(found))


@click.command()
@click.option("--company", help="Only this company (key).")
@click.option(
    "--plan", is_flag=True, help="Run the trial-lifecycle check now; send nothing (--execute does)."
)
@click.option("--execute", is_flag=True, help="Send the planned offboarding of --company.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@list_options
@acting_for
@click.pass_context
@fails_cleanly
def offboarding(
    ctx: click.Context,
    company: str | None,
    plan: bool,
    execute: bool,
    yes: bool,
    wide: bool,
    as_json: bool,
) -> None:
    """Offboarding tasks of companies whose trial ended without continuing."""
    runtime = runtime_of(ctx)
    if company is not None:
        company = company_key(runtime, company)
    # With --json, stdout holds the JSON alone: what was planned or sent is said on stderr.
    said = err_console if as_json else console
    if plan:
        said.print(f"{jobs.trial_lifecycle(runtime, send=False).planned} new task(s) planned")
    if execute:
        if not company:
            raise click.UsageError("--execute needs --company (one tenant at a time)")
        _execute_offboarding(ctx, runtime, company, yes, said)
    with runtime.sessions() as session:
        rows = lifecycle.offboarding_progress(session, company)
    if as_json:
        print_json(
            [
                {
                    "company": r.company_key,
                    "device": r.device_name,
                    "platform": r.os_platform,
                    "status": r.status,
                    "detail": r.detail,
                    "updated_at": iso(r.updated_at),
                }
                for r in rows
            ]
        )
        return
    table = ListTable(
        "company", "device", "platform", "status", "detail", "updated", flex=("detail",)
    )
    for r in rows:
        table.add_row(
            r.company_key,
            r.device_name,
            r.os_platform,
            r.status,
            r.detail,
            f"{to_jst(r.updated_at):%m/%d %H:%M}",
        )
    print_list(table, wide=wide)
    console.print(f"{len(rows)} task(s); times in JST")


_SENT = {
    Outcome.SENT: "sent",
    Outcome.MANUAL: "needs a manual uninstall",
    Outcome.REFUSED: "not sent, the EDR refused it (still planned)",
    Outcome.UNCONFIRMED: "sent, no answer yet (looked for at the EDR)",
    Outcome.LOST: "sent, no answer and no action at the EDR (can be sent again)",
    Outcome.CANCELLED: "not sent, no longer due",
    Outcome.NOT_PLANNED: "not sent, taken by another operator",
}


def _execute_offboarding(
    ctx: click.Context, runtime: Runtime, company: str, yes: bool, said: SafeConsole
) -> None:
    """Send the company's planned offboarding tasks, once confirmed; say per device (on
    `said`) what was sent and what became manual work, and why."""
    tenant = runtime.tenants(company)[0] if runtime.tenants(company) else None
    if tenant is None:
        raise click.UsageError(f"no tenant configured for {company}")
    with runtime.sessions() as session:
        plan = lifecycle.offboarding_plan(session, tenant.id, runtime.clock())
    if plan.not_due is not None:  # refused even with --yes: it would undo the decision
        raise ActionRefused(
            f"{plan.company_name} ({company}) is not to be offboarded: {plan.not_due}; "
            "nothing is sent"
        )
    if not plan.devices:
        said.print("nothing planned to send")
    elif yes or click.confirm(one_line(plan.question(tenant.external_id)), err=said.stderr):
        window = timedelta(minutes=runtime.config.settings.desk.reconcile_minutes)
        connector = runtime.connector(tenant)
        done = lifecycle.send_offboarding(
            runtime.sessions, tenant.id, connector, actor(ctx), runtime.clock, window
        )
        for sent in done:
            why = f": {sent.detail}" if sent.detail and sent.outcome != Outcome.SENT else ""
            said.print(f"  {sent.device}: {_SENT[sent.outcome]}{why}")
        counts = Counter(sent.outcome for sent in done)
        said.print(
            f"{counts[Outcome.SENT]} sent, {counts[Outcome.MANUAL]} manual uninstall(s), "
            f"{len(done) - counts[Outcome.SENT] - counts[Outcome.MANUAL]} not settled"
        )


_URL = re.compile(r"https?://[^\s\u3000]+")


def _links(reason: str) -> list[str]:
    """The web addresses in a tenant's reason (an admin-consent link), whole."""
    return [url.rstrip(".,;)") for url in _URL.findall(reason)]


@click.group(cls=ActingForGroup, invoke_without_command=True)
@list_options
@click.option("--by", help=BY_HELP)
@click.pass_context
@fails_cleanly
def tenants(ctx: click.Context, wide: bool, as_json: bool, by: str | None) -> None:
    """Tenants and their polling state (active, failing, parked) with the reason.

    An address in a reason (the admin-consent link a company must open) is printed whole
    on its own line under the list, never cut. `--by NAME` (whom `resume` acts for) goes
    before or after the sub-command.
    """
    if ctx.invoked_subcommand is not None:
        take_by(ctx, by)
        return
    runtime = runtime_of(ctx)
    with runtime.sessions() as session:
        rows = tenants_by_company(session)
    if as_json:
        print_json(
            [
                {
                    "company": key,
                    "connector": t.connector,
                    "tenant": t.external_id,
                    "state": t.state,
                    "last_success_at": iso(t.last_success_at),
                    "reason": t.state_reason,
                    "links": _links(t.state_reason),
                }
                for key, t in rows
            ]
        )
        return
    table = ListTable("company", "edr", "tenant", "state", "last ok", "reason", flex=("reason",))
    for key, t in rows:
        last = f"{to_jst(t.last_success_at):%m/%d %H:%M}" if t.last_success_at else "never"
        style = {"parked": "red", "failing": "yellow"}.get(t.state, "")
        table.add_row(key, t.connector, t.external_id, styled(t.state, style), last, t.state_reason)
    print_list(table, wide=wide)
    console.print(f"{len(rows)} tenant(s); last ok: last successful poll (JST)")
    if not wide:  # the reason is why an operator looks: whole, wrapped, under the list
        print_notes(
            [
                (f"{key} ({t.state})", _URL.sub("[the link below]", t.state_reason))
                for key, t in rows
                if t.state_reason
            ]
        )
    for key, t in rows:
        for link in _links(t.state_reason):
            console.print(f"{key}: the link in its reason, whole:", highlight=False)
            console.print(link, soft_wrap=True, highlight=False)


@tenants.command("resume")
@click.argument("company")
@click.pass_context
@fails_cleanly
def tenants_resume(ctx: click.Context, company: str) -> None:
    """Poll a parked tenant again once its credentials or consent are fixed."""
    runtime = runtime_of(ctx)
    company = company_key(runtime, company)
    with transaction(runtime.sessions) as session:
        resume_tenant(session, company, actor(ctx), runtime.clock())
    console.print(f"{company}: polling resumes with the next cycle")


@click.command("quarantine")
@click.option("--company", help="Only this company (key).")
@list_options
@click.pass_context
@fails_cleanly
def quarantine_command(ctx: click.Context, company: str | None, wide: bool, as_json: bool) -> None:
    """Records an EDR sent that could not be read, with the reason (nothing else was lost)."""
    runtime = runtime_of(ctx)
    if company is not None:
        company = company_key(runtime, company)
    with runtime.sessions() as session:
        rows = quarantined_records(session, company)
    if as_json:
        print_json(
            [
                {
                    "company": key,
                    "kind": row.kind,
                    "id": row.source_id,
                    "reason": row.reason,
                    "times_seen": row.times_seen,
                    "last_seen_at": iso(row.last_seen),
                }
                for row, key in rows
            ]
        )
        return
    table = ListTable("company", "kind", "id", "reason", "seen", "last", flex=("reason", "id"))
    for row, key in rows:
        table.add_row(
            key,
            row.kind,
            row.source_id,
            row.reason,
            str(row.times_seen),
            f"{to_jst(row.last_seen):%m/%d %H:%M}",
        )
    print_list(table, wide=wide)
    console.print(f"{len(rows)} record(s) in quarantine; times in JST")


COMMANDS = (seats_command, report, offboarding, tenants, quarantine_command)
