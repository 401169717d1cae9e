"""`edrtrial status`: the service's health for a person, or as JSON for monitoring.

It only renders `service.status.read_status`; its exit status is 1 when something needs a
person (each reason listed), 0 when all is well, so a monitor can run it every minute.
It reads the store without the runtime: nothing is synchronised or written by looking.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime

import click
from rich.table import Table

from edrtrial.cli.common import config_of, console, fails_cleanly, styled
from edrtrial.db import ensure_current, make_engine, make_sessions
from edrtrial.service.status import ServiceStatus, read_status
from edrtrial.timeutil import to_jst, utcnow

WIDTH = 100


def _when(value: datetime | None) -> str:
    return f"{to_jst(value):%m/%d %H:%M}" if value else "never"


def _table(*columns: str) -> Table:
    """A table whose cells stay on one line, cut with an ellipsis to fit the width."""
    table = Table(pad_edge=False, box=None, header_style="bold")
    for name in columns:
        table.add_column(name, no_wrap=True, overflow="ellipsis")
    return table


def _lease(found: ServiceStatus) -> None:
    lease = found.lease
    if lease is None:
        console.print(styled("scheduler: no scheduler running", "bold red"))
    elif not lease.alive:
        console.print(
            styled("scheduler: no scheduler running", "bold red"),
            f"(last: {lease.holder}, heartbeat {_when(lease.heartbeat_at)} JST)",
        )
    else:
        console.print(
            f"scheduler: {lease.holder} since {_when(lease.since)} JST, "
            f"heartbeat {to_jst(lease.heartbeat_at):%H:%M:%S} JST"
        )


def _jobs(found: ServiceStatus) -> None:
    if not found.jobs:
        console.print("jobs: none has run yet")
        return
    table = _table("job", "last success", "last failure", "fails", "done / error")
    for job in found.jobs:
        detail = job.last_failure_error if job.failures else job.last_success_summary
        fails = styled(str(job.failures), "red") if job.failures else "0"
        table.add_row(
            job.name, _when(job.last_success_at), _when(job.last_failure_at), fails, detail
        )
    console.print(table, width=min(console.width, WIDTH))


def _tenants(found: ServiceStatus) -> None:
    if not found.tenants:
        console.print("tenants: all polling")
        return
    table = _table("company", "state", "since (JST)", "reason")
    for t in found.tenants:
        style = "red" if t.state == "parked" else "yellow"
        table.add_row(t.company_key, styled(t.state, style), _when(t.since), t.reason)
    console.print(table, width=min(console.width, WIDTH))


def _outbox(found: ServiceStatus) -> None:
    box = found.outbox
    line = f"outbox: {box.pending} waiting"
    if box.oldest_at is not None:
        line += (
            f", oldest since {_when(box.oldest_at)} JST ({box.oldest_channel}, {box.oldest_kind})"
        )
    if box.failed:
        line += f"; {box.failed} given up lately (last {_when(box.failed_last_at)} JST)"
    console.print(line)


def _devices(found: ServiceStatus) -> None:
    if found.actions:
        table = _table("company", "device", "action", "status", "since (JST)", "by")
        for a in found.actions:
            style = "red" if a.status == "unconfirmed" else ""
            table.add_row(
                a.company_key,
                a.device,
                a.kind,
                styled(a.status, style),
                _when(a.since),
                a.requested_by,
            )
        console.print(table, width=min(console.width, WIDTH))
    else:
        console.print("device actions: none under way")
    if found.offboarding:
        table = _table("company", "offboarding", "tasks", "oldest change (JST)")
        for o in found.offboarding:
            table.add_row(o.company_key, o.status, str(o.count), _when(o.oldest))
        console.print(table, width=min(console.width, WIDTH))
    else:
        console.print("offboarding: none in flight")


def _render(found: ServiceStatus) -> None:
    _lease(found)
    _jobs(found)
    _tenants(found)
    _outbox(found)
    _devices(found)
    if not found.problems:
        console.print(styled("all is well", "green"))
        return
    console.print(styled(f"needs a person ({len(found.problems)}):", "bold red"))
    for problem in found.problems:
        console.print(f"- {problem}", width=min(console.width, WIDTH))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="The same facts as JSON (ISO times, UTC).")
@click.pass_context
@fails_cleanly
def status(ctx: click.Context, as_json: bool) -> None:
    """The service's health; exits 1 when something needs a person (for monitoring)."""
    config = config_of(ctx)
    engine = make_engine(config.database_url)
    try:
        ensure_current(engine)
        with make_sessions(engine)() as session:
            found = read_status(session, config.settings.desk, utcnow())
    finally:
        engine.dispose()
    if as_json:
        # ASCII escapes: an EDR's text in a reason cannot act on the terminal it is read in.
        click.echo(json.dumps(found.as_json(), indent=2, sort_keys=True))
    else:
        _render(found)
    if found.needs_person:
        sys.exit(1)


COMMANDS = (status,)
