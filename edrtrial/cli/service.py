"""Running the service: `db`, `serve`, `sandbox`, `poll` and `run-job`."""

from __future__ import annotations

import signal
import sys
import threading
from typing import TYPE_CHECKING

import click

from edrtrial.cli.common import (
    ListTable,
    company_key,
    config_of,
    console,
    deliver,
    err_console,
    fails_cleanly,
    list_options,
    print_json,
    print_list,
    runtime_of,
    styled,
)
from edrtrial.config import Config
from edrtrial.db import current_revision, head_revision, make_engine, upgrade
from edrtrial.service import jobs, runs, summaries

if TYPE_CHECKING:
    from edrtrial.sandbox import SandboxServer, SandboxWorld


@click.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.pass_context
@fails_cleanly
def db_upgrade(ctx: click.Context) -> None:
    """Apply pending migrations."""
    engine = make_engine(config_of(ctx).database_url)
    before, after = upgrade(engine)
    engine.dispose()
    console.print(
        f"database at {after}" + ("" if before == after else f" (was {before or 'empty'})")
    )


@db.command("current")
@click.pass_context
@fails_cleanly
def db_current(ctx: click.Context) -> None:
    """Show the schema revision and whether it is the newest."""
    engine = make_engine(config_of(ctx).database_url)
    current, head = current_revision(engine), head_revision()
    engine.dispose()
    console.print(f"{current or 'empty'} (newest: {head})")


def _sandbox(
    config: Config, host: str | None = None, port: int | None = None
) -> tuple[SandboxWorld, SandboxServer]:
    """The configured sandbox world and its server, started."""
    # Imported here: the sandbox (a web app) is only loaded by the commands that run it.
    from edrtrial.sandbox import SandboxServer, SandboxWorld

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
    return world, server


@click.command()
@click.option("--with-sandbox", is_flag=True, help="Also run the built-in Defender sandbox.")
@click.pass_context
@fails_cleanly
def serve(ctx: click.Context, with_sandbox: bool) -> None:
    """Run the scheduler (polling, inventory, outbox, reports, trial lifecycle) until stopped."""
    # Imported here: the scheduler (APScheduler) is only loaded by the command that runs it.
    from edrtrial.service.scheduler import (
        acquire_lock,
        build_scheduler,
        holder_id,
        on_lease_lost,
        release_lock,
    )

    config = config_of(ctx)
    sandbox = _sandbox(config)[1] if with_sandbox else None
    if sandbox is not None:
        console.print(f"sandbox serving the Defender APIs at {sandbox.base_url}")
    runtime = runtime_of(ctx)
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
        err_console.print(styled("stopped:", "bold red"), "another scheduler took over this store")
        sys.exit(3)
    console.print("stopped")


@click.command()
@click.option("--host", help="Address to bind (default from config).")
@click.option("--port", type=int, help="Port (default from config).")
@click.pass_context
@fails_cleanly
def sandbox(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Serve the built-in stand-in for the Defender and Graph APIs."""
    world, server = _sandbox(config_of(ctx), host, port)
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


@click.command()
@click.option("--company", help="Only this company (key).")
@click.option("--no-deliver", is_flag=True, help="Queue notices without sending them.")
@list_options
@click.pass_context
@fails_cleanly
def poll(
    ctx: click.Context, company: str | None, no_deliver: bool, wide: bool, as_json: bool
) -> None:
    """One full cycle now: inventory, alerts, triage, and the mail it causes."""
    runtime = runtime_of(ctx)
    if company is not None:
        company = company_key(runtime, company)
    runs.run(runtime, "inventory", company, lambda: jobs.inventory(runtime, company))
    outcomes = runs.run(runtime, "poll", company, lambda: jobs.poll(runtime, company))
    if as_json:
        print_json(
            [
                {
                    "company": o.company_key,
                    "new_alerts": o.new_alerts,
                    "updated_alerts": o.updated_alerts,
                    "tickets_opened": o.triage.tickets_opened,
                    "history": o.triage.history,
                    "suppressed": o.triage.suppressed,
                    "notices_queued": o.triage.notices_queued,
                    "quarantined": o.quarantined,
                    "problem": o.error,
                }
                for o in outcomes
            ]
        )
    else:
        table = ListTable(
            "company",
            "new alerts",
            "updated",
            "tickets",
            "history",
            "suppressed",
            "notices",
            "quarantined",
            "problem",
            flex=("problem",),
        )
        for o in outcomes:
            table.add_row(
                o.company_key,
                str(o.new_alerts),
                str(o.updated_alerts),
                str(o.triage.tickets_opened),
                str(o.triage.history),
                str(o.triage.suppressed),
                str(o.triage.notices_queued),
                str(o.quarantined),
                o.error,
            )
        print_list(table, wide=wide)
    if not no_deliver:
        if as_json:  # stdout holds the JSON alone
            jobs.deliver_outbox(runtime)
        else:
            deliver(runtime)
    if any(o.error for o in outcomes):
        sys.exit(1)


@click.command("run-job")
@click.argument("name", type=click.Choice(sorted(jobs.JOBS)))
@click.pass_context
@fails_cleanly
def run_job(ctx: click.Context, name: str) -> None:
    """Run one scheduled job now, exactly as the scheduler would, and say what it did."""
    runtime = runtime_of(ctx)
    result = runs.run(runtime, name, None, lambda: jobs.JOBS[name](runtime))
    console.print(f"{name}: {summaries.describe(name, result)}", soft_wrap=True)


COMMANDS = (db, serve, sandbox, poll, run_job)
