"""The programme: `seats`, `report`, `offboarding`, `tenants` and `quarantine`."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from edrtrial import files
from edrtrial.cli.common import actor, console, deliver, fails_cleanly, runtime_of, styled
from edrtrial.db import transaction
from edrtrial.devices import offboarding as lifecycle
from edrtrial.errors import ActionRefused
from edrtrial.ingest.health import resume_tenant
from edrtrial.ingest.queries import quarantined_records
from edrtrial.notify.report_mail import detection_report_for, queue_detection_report
from edrtrial.programme import seats
from edrtrial.programme.companies import company_by_key, tenants_by_company
from edrtrial.reports.render import render_detection_report_html
from edrtrial.service import jobs
from edrtrial.service.runtime import Runtime
from edrtrial.timeutil import jst_date, to_jst
from edrtrial.untrusted import one_line


@click.command("seats")
@click.pass_context
@fails_cleanly
def seats_command(ctx: click.Context) -> None:
    """Per company: planned seats, onboarded devices, active in 7 days, cap, trial dates."""
    runtime = runtime_of(ctx)
    now = runtime.clock()
    with runtime.sessions() as session:
        rows = seats.seat_counts(session, now)
    today = jst_date(now)
    table = Table(
        "company",
        "planned",
        "onboarded",
        "active 7d",
        "tested",
        "cap",
        "trial",
        "days left",
        "decision",
    )
    for r in rows:
        left = ""
        if r.trial_end is not None:
            days = (r.trial_end - today).days
            left = str(days) if days >= 0 else "ended"
        onboarded = styled(str(r.onboarded), "red") if r.over_cap else str(r.onboarded)
        trial = f"{r.trial_start} → {r.trial_end}" if r.trial_start else ""
        table.add_row(
            Text(f"{one_line(r.company_key)}\n{one_line(r.company_name)}"),
            str(r.planned),
            onboarded,
            str(r.active_7d),
            str(r.verified),
            str(r.cap),
            trial,
            left,
            r.decision,
        )
    console.print(table)


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
    "--output",
    type=click.Path(path_type=Path),
    help="HTML file to write (a new file is readable by you only).",
)
@click.option("--no-mail", is_flag=True, help="Write the file only; do not mail the company.")
@click.pass_context
@fails_cleanly
def report(
    ctx: click.Context, company: str, start: str, end: str, output: Path | None, no_mail: bool
) -> None:
    """Write a company's Japanese detection report for a period, and mail it."""
    first, last = _date(start), _date(end)
    if last < first:
        raise click.BadParameter("--to is before --from")
    runtime = runtime_of(ctx)
    runtime.config.company(company)
    html = _report_html(runtime, company, first, last, mail=not no_mail, by=actor(ctx))
    target = (
        output or runtime.config.resolve(Path("var/reports")) / f"{company}_{first}_{last}.html"
    )
    files.write_private_text(target, html)
    console.print(f"report written to {target}")
    if not no_mail:
        deliver(runtime)


def _report_html(
    runtime: Runtime, company: str, first: date, last: date, *, mail: bool, by: str
) -> str:
    """The company's report as HTML; with `mail`, also queued for the company's contact."""
    with transaction(runtime.sessions) as session:
        stored = company_by_key(session, company)
        assert stored is not None  # synced from the config by Runtime.open
        now, desk = runtime.clock(), runtime.config.settings.desk
        if mail:
            queued = queue_detection_report(
                session, stored.id, first, last, now=now, desk=desk, actor=by
            )
            return queued.html
        return render_detection_report_html(
            detection_report_for(session, stored.id, first, last, now=now, desk=desk)
        )


@click.command()
@click.option("--company", help="Only this company (key).")
@click.option("--plan", is_flag=True, help="Run the trial-lifecycle check now.")
@click.option("--execute", is_flag=True, help="Send the planned offboarding of --company.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
@fails_cleanly
def offboarding(
    ctx: click.Context, company: str | None, plan: bool, execute: bool, yes: bool
) -> None:
    """Offboarding tasks of companies whose trial ended without continuing."""
    runtime = runtime_of(ctx)
    if plan:
        console.print(f"{jobs.trial_lifecycle(runtime)} new task(s) planned")
    if execute:
        if not company:
            raise click.UsageError("--execute needs --company (one tenant at a time)")
        _execute_offboarding(ctx, runtime, company, yes)
    with runtime.sessions() as session:
        rows = lifecycle.offboarding_progress(session, company)
    table = Table("company", "device", "platform", "status", "detail", "updated (JST)")
    for r in rows:
        table.add_row(
            r.company_key,
            r.device_name,
            r.os_platform,
            r.status,
            r.detail,
            f"{to_jst(r.updated_at):%m/%d %H:%M}",
        )
    console.print(table)


def _execute_offboarding(ctx: click.Context, runtime: Runtime, company: str, yes: bool) -> None:
    """Send the company's planned offboarding tasks, once confirmed."""
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
        console.print("nothing planned to send")
    elif yes or click.confirm(one_line(plan.question(tenant.external_id))):
        window = timedelta(minutes=runtime.config.settings.desk.reconcile_minutes)
        connector = runtime.connector(tenant)
        done = lifecycle.execute_offboarding(
            runtime.sessions, tenant.id, connector, actor(ctx), runtime.clock, window
        )
        console.print(f"{len(done)} task(s) sent or handed over for manual uninstall")


@click.group(invoke_without_command=True)
@click.pass_context
@fails_cleanly
def tenants(ctx: click.Context) -> None:
    """Tenants and their polling state (active, failing, parked) with the reason."""
    if ctx.invoked_subcommand is not None:
        return
    runtime = runtime_of(ctx)
    with runtime.sessions() as session:
        rows = tenants_by_company(session)
    table = Table("company", "connector", "tenant", "state", "last success (JST)", "reason")
    for key, t in rows:
        last = f"{to_jst(t.last_success_at):%m/%d %H:%M}" if t.last_success_at else "never"
        style = {"parked": "red", "failing": "yellow"}.get(t.state, "")
        table.add_row(
            key,
            t.connector,
            t.external_id,
            styled(t.state, style),
            last,
            t.state_reason,
        )
    console.print(table)


@tenants.command("resume")
@click.argument("company")
@click.pass_context
@fails_cleanly
def tenants_resume(ctx: click.Context, company: str) -> None:
    """Poll a parked tenant again once its credentials or consent are fixed."""
    runtime = runtime_of(ctx)
    with transaction(runtime.sessions) as session:
        resume_tenant(session, company, actor(ctx), runtime.clock())
    console.print(f"{company}: polling resumes with the next cycle")


@click.command("quarantine")
@click.option("--company", help="Only this company (key).")
@click.pass_context
@fails_cleanly
def quarantine_command(ctx: click.Context, company: str | None) -> None:
    """Records an EDR sent that could not be read, with the reason (nothing else was lost)."""
    runtime = runtime_of(ctx)
    with runtime.sessions() as session:
        rows = quarantined_records(session, company)
    table = Table("company", "kind", "id", "reason", "seen", "last (JST)")
    for row, key in rows:
        table.add_row(
            key,
            row.kind,
            row.source_id,
            row.reason,
            str(row.times_seen),
            f"{to_jst(row.last_seen):%m/%d %H:%M}",
        )
    console.print(table)
    console.print(f"{len(rows)} record(s) in quarantine")


COMMANDS = (seats_command, report, offboarding, tenants, quarantine_command)
