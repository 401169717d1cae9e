"""Running the service: `db`, `serve`, `sandbox`, `poll` and `run-job`."""

from __future__ import annotations

import errno
import os
import secrets
import signal
import sys
import threading
from typing import TYPE_CHECKING

import click
from rich.text import Text

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
    print_legend,
    print_list,
    print_notes,
    runtime_of,
    styled,
)
from edrtrial.config import Config
from edrtrial.db import (
    check_integrity,
    current_revision,
    head_revision,
    make_engine,
    missing_store,
    transaction,
    upgrade,
)
from edrtrial.errors import ConfigError, StoreError
from edrtrial.programme.sample import seed_sample_programme
from edrtrial.service import jobs, runs, summaries
from edrtrial.service.runtime import Runtime

if TYPE_CHECKING:
    from edrtrial.sandbox import SandboxServer, SandboxWorld
    from edrtrial.web.server import ConsoleServer


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
    """Show the schema revision and whether it is the newest; exits 2 on a damaged store.

    The store is checked whole (`PRAGMA quick_check` on SQLite, a round trip on
    PostgreSQL): a damaged SQLite file often still opens and tells its revision.
    """
    url = config_of(ctx).database_url
    if missing := missing_store(url):
        raise StoreError(missing)
    engine = make_engine(url)
    try:
        current, head = current_revision(engine), head_revision()
        damage = check_integrity(engine)
    finally:
        engine.dispose()
    if damage:
        raise StoreError(damage)
    console.print(f"{current or 'empty'} (newest: {head}); the store checks whole")


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
    try:
        server.start()
    except OSError as err:
        busy = err.errno == errno.EADDRINUSE
        raise ConfigError(
            f"the sandbox cannot listen on {server.host}:{settings.port if port is None else port}"
            f" ({'the port is already in use' if busy else err.strerror}): stop what listens "
            "there, or give sandbox.port in the config (or --port) another port"
        ) from err
    return world, server


EXIT_TAKEN_OVER = 3
"""`serve` lost its hold on the store (another service has it): restarting is refused."""
EXIT_CANNOT_GO_ON = 4
"""`serve` stopped because its scheduler cannot go on (the store down too long, the
scheduler's thread ended, the sandbox it serves with ended): a supervisor restarts it."""
WATCH_SECONDS = 2.0


def _console(runtime: Runtime, config: Config, port: int | None = None) -> ConsoleServer:
    """The web console, started (a port it cannot take: one line saying so)."""
    from edrtrial.web.server import ConsoleServer

    server = ConsoleServer(runtime, config, port)
    try:
        server.start()
    except OSError as err:
        raise ConfigError(str(err)) from None
    return server


def _first_admin(runtime: Runtime, config: Config) -> None:
    """With the sandbox and no console account yet, an `admin` to sign in with: its random
    password goes to an owner-only file beside the session key, never to the screen."""
    from edrtrial.access import accounts
    from edrtrial.web.keys import sample_admin_file

    with transaction(runtime.sessions) as session:
        if accounts.listed(session):
            return
        password = secrets.token_urlsafe(18)
        accounts.add(
            session,
            "admin",
            password,
            ["admin"],
            actor="sandbox",
            at=runtime.clock(),
            display_name="Sandbox admin",
        )
    path = sample_admin_file(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(f"username: admin\npassword: {password}\n")
    console.print(f"console account made: admin (its password is in {path})", highlight=False)


def _wait_for_signal() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


@click.command()
@click.option("--with-sandbox", is_flag=True, help="Also run the built-in Defender sandbox.")
@click.option("--no-web", is_flag=True, help="Leave the web console out.")
@click.pass_context
@fails_cleanly
def serve(ctx: click.Context, with_sandbox: bool, no_web: bool) -> None:
    """Run the scheduler (polling, inventory, outbox, reports, trial lifecycle) and the web
    console until stopped.

    Exits 0 when stopped (Ctrl-C, SIGTERM), 2 when it cannot start (the line says why),
    3 when another service holds the store, 4 when its scheduler cannot go on.
    """
    # Imported here: the scheduler (APScheduler) is only loaded by the command that runs it.
    from edrtrial.service import ownership, scheduler

    config = config_of(ctx)
    # The service's own log says that config companies are ignored (a WARNING line).
    runtime = Runtime.open(config)
    ctx.call_on_close(runtime.close)
    holder = scheduler.holder_id()
    # The store's lock first: a second service is refused before it starts anything.
    owned = ownership.take(runtime.engine, holder, runtime.clock())
    ctx.call_on_close(owned.release)
    scheduler.record_holder(runtime.sessions, holder, runtime.clock())
    world, sandbox = _sandbox(config) if with_sandbox else (None, None)
    if world is not None and sandbox is not None:
        ctx.call_on_close(sandbox.stop)
        console.print(f"sandbox serving the Defender APIs at {sandbox.base_url}")
        with transaction(runtime.sessions) as session:
            seeded = seed_sample_programme(
                session, config.settings.programme, world.tenants, at=runtime.clock()
            )
        if seeded:
            console.print(f"seeded the sample programme: {seeded} companies (empty store)")
        _first_admin(runtime, config)
    web = None if no_web else _console(runtime, config)
    if web is not None:
        ctx.call_on_close(web.stop)
    running = scheduler.build_scheduler(runtime)
    stop = _wait_for_signal()
    running.resume()
    if web is not None:
        console.print(f"web console at {web.base_url}/", highlight=False)
    console.print(f"edrtrial serving {len(runtime.tenants())} tenants; Ctrl-C stops")
    # The watchdog: a process whose scheduler cannot go on ends, never stays up idle.
    code, why = 0, ""
    while not stop.wait(WATCH_SECONDS):
        if lost := owned.lost():
            code, why = EXIT_TAKEN_OVER, lost
        elif cannot := (
            scheduler.why_stopped(running)
            or (sandbox and sandbox.why_stopped())
            or (web and web.why_stopped())
        ):
            code, why = EXIT_CANNOT_GO_ON, cannot
        if code:
            break
    scheduler.stop(running)
    if code != EXIT_TAKEN_OVER:
        scheduler.release_lock(runtime.sessions, holder)
    if code:
        line = Text.assemble(styled("stopped:", "bold red"), " ", styled(why, ""))
        err_console.print(line, soft_wrap=True)
        sys.exit(code)
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
    console.print(f"the app's client secret (every tenant): {server.app_secret_path}")
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
            "new",
            "upd.",
            "tickets",
            "hist.",
            "supp.",
            "notices",
            "quar.",
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
        print_legend(
            "new / upd.: alerts new or updated; hist.: already resolved in the EDR at a first "
            "poll (kept, no ticket); supp.: suppressed; quar.: records set aside unread"
        )
        if not wide:
            print_notes([(o.company_key, o.error) for o in outcomes if o.error])
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


@click.command("web")
@click.option("--port", type=int, help="Port (default: web.port from the config).")
@click.pass_context
@fails_cleanly
def web_command(ctx: click.Context, port: int | None) -> None:
    """Run the web console alone (no scheduler) until stopped: `serve` runs both."""
    config = config_of(ctx)
    runtime = runtime_of(ctx)
    server = _console(runtime, config, port)
    ctx.call_on_close(server.stop)
    stop = _wait_for_signal()
    console.print(f"web console at {server.base_url}/; Ctrl-C stops", highlight=False)
    while not stop.wait(WATCH_SECONDS):
        if why := server.why_stopped():
            err_console.print(Text.assemble(styled("stopped:", "bold red"), " ", why))
            sys.exit(EXIT_CANNOT_GO_ON)
    console.print("stopped")


COMMANDS = (db, serve, sandbox, poll, run_job, web_command)
