"""The `edrtrial` command: every job and operator task, from one place."""

from __future__ import annotations

import getpass
import signal
import sys
import threading
from collections.abc import Callable
from datetime import date
from functools import wraps
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from edrtrial import logsetup
from edrtrial.config import Config, default_config_path, load_config
from edrtrial.db import current_revision, head_revision, make_engine, transaction, upgrade
from edrtrial.desk import queries
from edrtrial.devices import offboarding as lifecycle
from edrtrial.errors import EdrTrialError
from edrtrial.models import Company, QuarantinedRecord, Tenant
from edrtrial.programme import seats
from edrtrial.service import jobs
from edrtrial.service.runtime import Runtime
from edrtrial.states import OPEN_TICKET_STATES, TicketState
from edrtrial.timeutil import jst_date, to_jst

P = ParamSpec("P")
T = TypeVar("T")
# Piped or captured output is not cut to 80 columns (rich's default off a terminal).
console = Console(width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True)


def _fails_cleanly(func: Callable[P, T]) -> Callable[P, T]:
    """Our own errors end the command with their message, not a traceback."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return func(*args, **kwargs)
        except EdrTrialError as err:
            err_console.print(f"[bold red]error:[/] {err}", highlight=False)
            sys.exit(2)

    return wrapper


def _config(ctx: click.Context) -> Config:
    found = ctx.obj.get("config")
    if isinstance(found, Config):
        return found
    path: Path = ctx.obj["config_path"]
    if path.name == "config.example.toml" and not ctx.obj.get("explicit"):
        err_console.print(
            f"using {path} (copy it to config.toml to make your own)", style="dim", highlight=False
        )
    config = load_config(path)
    logsetup.configure(
        ctx.obj.get("log_level") or config.settings.logging.level,
        config.settings.logging.json_lines,
    )
    ctx.obj["config"] = config
    return config


def _runtime(ctx: click.Context) -> Runtime:
    runtime = Runtime.open(_config(ctx))
    ctx.call_on_close(runtime.close)
    return runtime


@click.group()
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    help="Config file (default: $EDRTRIAL_CONFIG, ./config.toml, ./config.example.toml)",
)
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]))
@click.version_option(package_name="edrtrial")
@click.pass_context
def main(ctx: click.Context, config_path: Path | None, log_level: str | None) -> None:
    """Run the EDR trial programme: polling, triage, desk, reports, offboarding."""
    ctx.ensure_object(dict)
    ctx.obj["config_path"] = config_path or default_config_path()
    ctx.obj["explicit"] = config_path is not None
    ctx.obj["log_level"] = log_level


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.pass_context
@_fails_cleanly
def db_upgrade(ctx: click.Context) -> None:
    """Apply pending migrations."""
    engine = make_engine(_config(ctx).database_url)
    before, after = upgrade(engine)
    engine.dispose()
    console.print(
        f"database at {after}" + ("" if before == after else f" (was {before or 'empty'})")
    )


@db.command("current")
@click.pass_context
@_fails_cleanly
def db_current(ctx: click.Context) -> None:
    """Show the schema revision and whether it is the newest."""
    engine = make_engine(_config(ctx).database_url)
    current, head = current_revision(engine), head_revision()
    engine.dispose()
    console.print(f"{current or 'empty'} (newest: {head})")


def _start_sandbox(config: Config) -> Any:
    from edrtrial.sandbox import SandboxServer, SandboxWorld

    settings = config.settings.sandbox
    world = SandboxWorld(
        seed=settings.seed,
        tenants=settings.tenants,
        alert_interval_seconds=settings.alert_interval_seconds,
    )
    server = SandboxServer(
        world, host=settings.host, port=settings.port, state_dir=config.resolve(settings.state_dir)
    )
    server.start()
    return server


@main.command()
@click.option("--with-sandbox", is_flag=True, help="Also run the built-in Defender sandbox.")
@click.pass_context
@_fails_cleanly
def serve(ctx: click.Context, with_sandbox: bool) -> None:
    """Run the scheduler (polling, inventory, outbox, reports, trial lifecycle) until stopped."""
    from edrtrial.service.scheduler import (
        acquire_lock,
        build_scheduler,
        holder_id,
        on_lease_lost,
        release_lock,
    )

    config = _config(ctx)
    sandbox = _start_sandbox(config) if with_sandbox else None
    if sandbox is not None:
        console.print(f"sandbox serving the Defender APIs at {sandbox.base_url}")
    runtime = _runtime(ctx)
    holder = holder_id()
    acquire_lock(runtime.sessions, holder, runtime.clock())
    scheduler = build_scheduler(runtime)
    stop = threading.Event()
    lost = threading.Event()

    def lease_lost() -> None:
        lost.set()
        stop.set()

    on_lease_lost(lease_lost)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    scheduler.resume()
    console.print(f"edrtrial serving {len(runtime.tenants())} tenants; Ctrl-C stops")
    try:
        stop.wait()
    finally:
        scheduler.shutdown(wait=True)
        if not lost.is_set():
            release_lock(runtime.sessions, holder)
        if sandbox is not None:
            sandbox.stop()
    if lost.is_set():
        err_console.print("[bold red]stopped:[/] another scheduler took over this store")
        sys.exit(3)
    console.print("stopped")


@main.command()
@click.option("--host", help="Address to bind (default from config).")
@click.option("--port", type=int, help="Port (default from config).")
@click.pass_context
@_fails_cleanly
def sandbox(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Serve the built-in stand-in for the Defender and Graph APIs."""
    from edrtrial.sandbox import SandboxServer, SandboxWorld

    config = _config(ctx)
    settings = config.settings.sandbox
    world = SandboxWorld(
        seed=settings.seed,
        tenants=settings.tenants,
        alert_interval_seconds=settings.alert_interval_seconds,
    )
    server = SandboxServer(
        world,
        host=host or settings.host,
        port=settings.port if port is None else port,
        state_dir=config.resolve(settings.state_dir),
    )
    server.start()
    console.print(
        f"sandbox serving the Microsoft login, Graph and Defender APIs at {server.base_url}"
    )
    console.print(f"CA certificate: {server.ca_path}   client id: {world.client_id}")
    for tenant in world.tenants[:5]:
        console.print(
            f"  tenant {tenant.tenant_id}  {tenant.name}  secret: "
            f"{server.secret_path(tenant.tenant_id)}"
        )
    console.print("Ctrl-C stops")
    server.run_forever()


@main.command()
@click.option("--company", help="Only this company (key).")
@click.option("--no-deliver", is_flag=True, help="Queue notices without sending them.")
@click.pass_context
@_fails_cleanly
def poll(ctx: click.Context, company: str | None, no_deliver: bool) -> None:
    """One full cycle now: inventory, alerts, triage, and the mail it causes."""
    runtime = _runtime(ctx)
    if company:
        runtime.config.company(company)
    jobs.inventory(runtime, company)
    outcomes = jobs.poll(runtime, company)
    table = Table(
        "company",
        "new alerts",
        "updated",
        "tickets opened",
        "suppressed",
        "notices",
        "quarantined",
        "problem",
    )

    for o in outcomes:
        table.add_row(
            o.company_key,
            str(o.new_alerts),
            str(o.updated_alerts),
            str(o.triage.tickets_opened),
            str(o.triage.suppressed),
            str(o.triage.notices_queued),
            str(o.quarantined),
            o.error,
        )
    console.print(table)
    if not no_deliver:
        stats = jobs.deliver_outbox(runtime)
        console.print(f"mail: {stats.sent} sent, {stats.retried} to retry, {stats.failed} failed")
    if any(o.error for o in outcomes):
        sys.exit(1)


@main.command()
@click.option("--company", help="Only this company (key).")
@click.option("--all", "show_all", is_flag=True, help="Include resolved and closed tickets.")
@click.pass_context
@_fails_cleanly
def tickets(ctx: click.Context, company: str | None, show_all: bool) -> None:
    """The desk queue across all tenants, highest priority first."""
    runtime = _runtime(ctx)
    with runtime.sessions() as session:
        states = tuple(TicketState) if show_all else OPEN_TICKET_STATES
        rows = queries.ticket_queue(session, company_key=company, states=states)
    table = Table(
        "#",
        "pri",
        "state",
        "company",
        "title",
        "alerts",
        "devices",
        "assignee",
        "opened (JST)",
        "acknowledge",
    )
    now = runtime.clock()
    for row in rows:
        t = row.ticket
        due = ""
        if t.state == TicketState.NEW and t.ack_due_at is not None:
            due = f"{to_jst(t.ack_due_at):%m/%d %H:%M}"
            due = f"[red]overdue since {due}[/]" if t.ack_due_at <= now else f"by {due}"
        table.add_row(
            str(t.id),
            t.priority,
            t.state,
            row.company_key,
            t.title,
            str(row.alert_count),
            ", ".join(row.devices),
            t.assignee,
            f"{to_jst(t.created_at):%m/%d %H:%M}",
            due,
        )
    console.print(table)
    console.print(f"{len(rows)} ticket(s)")


@main.command("seats")
@click.pass_context
@_fails_cleanly
def seats_command(ctx: click.Context) -> None:
    """Per company: planned seats, onboarded devices, active in 7 days, cap, trial dates."""
    runtime = _runtime(ctx)
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
        onboarded = f"[red]{r.onboarded}[/]" if r.over_cap else str(r.onboarded)
        trial = f"{r.trial_start} → {r.trial_end}" if r.trial_start else ""
        table.add_row(
            f"{r.company_key}\n{r.company_name}",
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


@main.command()
@click.option("--company", required=True, help="Company key.")
@click.option("--from", "start", required=True, help="First day (JST), YYYY-MM-DD.")
@click.option("--to", "end", required=True, help="Last day (JST), YYYY-MM-DD, inclusive.")
@click.option("--output", type=click.Path(path_type=Path), help="HTML file to write.")
@click.option("--no-mail", is_flag=True, help="Write the file only; do not mail the company.")
@click.pass_context
@_fails_cleanly
def report(
    ctx: click.Context, company: str, start: str, end: str, output: Path | None, no_mail: bool
) -> None:
    """Write a company's Japanese detection report for a period, and mail it."""
    from edrtrial.notify.report_mail import detection_report_for, queue_detection_report
    from edrtrial.reports.render import render_detection_report_html

    first, last = _date(start), _date(end)
    if last < first:
        raise click.BadParameter("--to is before --from")
    runtime = _runtime(ctx)
    runtime.config.company(company)
    with transaction(runtime.sessions) as session:
        from edrtrial.programme.companies import company_by_key

        stored = company_by_key(session, company)
        assert stored is not None  # synced from the config by Runtime.open
        if no_mail:
            html = render_detection_report_html(
                detection_report_for(
                    session,
                    stored.id,
                    first,
                    last,
                    now=runtime.clock(),
                    desk=runtime.config.settings.desk,
                )
            )
        else:
            html = queue_detection_report(
                session,
                stored.id,
                first,
                last,
                now=runtime.clock(),
                desk=runtime.config.settings.desk,
            ).html
    target = (
        output or runtime.config.resolve(Path("var/reports")) / f"{company}_{first}_{last}.html"
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(html, encoding="utf-8")
    console.print(f"report written to {target}")
    if not no_mail:
        stats = jobs.deliver_outbox(runtime)
        console.print(f"mail: {stats.sent} sent, {stats.retried} to retry, {stats.failed} failed")


@main.command()
@click.option("--company", help="Only this company (key).")
@click.option("--plan", is_flag=True, help="Run the trial-lifecycle check now.")
@click.option("--execute", is_flag=True, help="Send the planned offboarding of --company.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
@_fails_cleanly
def offboarding(
    ctx: click.Context, company: str | None, plan: bool, execute: bool, yes: bool
) -> None:
    """Offboarding tasks of companies whose trial ended without continuing."""
    runtime = _runtime(ctx)
    if plan:
        console.print(f"{jobs.trial_lifecycle(runtime)} new task(s) planned")
    if execute:
        if not company:
            raise click.UsageError("--execute needs --company (one tenant at a time)")
        tenant = runtime.tenants(company)[0] if runtime.tenants(company) else None
        if tenant is None:
            raise click.UsageError(f"no tenant configured for {company}")
        with runtime.sessions() as session:
            planned = [
                r for r in lifecycle.offboarding_progress(session, company) if r.status == "planned"
            ]
        if not planned:
            console.print("nothing planned to send")
        elif yes or click.confirm(
            f"Uninstall the EDR from {len(planned)} device(s) of "
            f"{company} (tenant {tenant.external_id})?"
        ):
            done = lifecycle.execute_offboarding(
                runtime.sessions,
                tenant.id,
                runtime.connector(tenant),
                f"cli:{getpass.getuser()}",
                runtime.clock,
            )
            console.print(f"{len(done)} task(s) sent or handed over for manual uninstall")
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


@main.group(invoke_without_command=True)
@click.pass_context
@_fails_cleanly
def tenants(ctx: click.Context) -> None:
    """Tenants and their polling state (active, failing, parked) with the reason."""
    if ctx.invoked_subcommand is not None:
        return
    runtime = _runtime(ctx)
    with runtime.sessions() as session:
        rows = session.execute(
            select(Company.key, Tenant)
            .join(Tenant, Tenant.company_id == Company.id)
            .order_by(Company.key)
        ).all()
    table = Table("company", "connector", "tenant", "state", "last success (JST)", "reason")
    for key, t in rows:
        last = f"{to_jst(t.last_success_at):%m/%d %H:%M}" if t.last_success_at else "never"
        style = {"parked": "red", "failing": "yellow"}.get(t.state, "")
        table.add_row(
            key,
            t.connector,
            t.external_id,
            f"[{style}]{t.state}[/]" if style else t.state,
            last,
            t.state_reason,
        )
    console.print(table)


@tenants.command("resume")
@click.argument("company")
@click.pass_context
@_fails_cleanly
def tenants_resume(ctx: click.Context, company: str) -> None:
    """Poll a parked tenant again once its credentials or consent are fixed."""
    from edrtrial.ingest.health import resume_tenant

    runtime = _runtime(ctx)
    with transaction(runtime.sessions) as session:
        resume_tenant(session, company, f"cli:{getpass.getuser()}", runtime.clock())
    console.print(f"{company}: polling resumes with the next cycle")


@main.command("quarantine")
@click.option("--company", help="Only this company (key).")
@click.pass_context
@_fails_cleanly
def quarantine_command(ctx: click.Context, company: str | None) -> None:
    """Records an EDR sent that could not be read, with the reason (nothing else was lost)."""
    runtime = _runtime(ctx)
    query = (
        select(QuarantinedRecord, Company.key)
        .join(Tenant, QuarantinedRecord.tenant_id == Tenant.id)
        .join(Company, Tenant.company_id == Company.id)
        .order_by(QuarantinedRecord.last_seen.desc())
    )
    if company:
        query = query.where(Company.key == company)
    with runtime.sessions() as session:
        rows = session.execute(query).all()
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


@main.command("run-job")
@click.argument("name", type=click.Choice(sorted(jobs.JOBS)))
@click.pass_context
@_fails_cleanly
def run_job(ctx: click.Context, name: str) -> None:
    """Run one scheduled job now, exactly as the scheduler would."""
    result = jobs.JOBS[name](_runtime(ctx))
    console.print(f"{name}: {result}")


from edrtrial.cli.playbooks import playbooks  # noqa: E402  (registers after `main` exists)

main.add_command(playbooks)

from edrtrial.cli.desk import ticket  # noqa: E402

main.add_command(ticket)
