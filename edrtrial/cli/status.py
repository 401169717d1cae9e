"""`edrtrial status`: the service's health for a person, or as JSON for monitoring.

It only renders `service.status.read_status`; its exit status is 1 when something needs a
person (each reason listed), 0 when all is well, so a monitor can run it every minute.
It reads the store without the runtime: nothing is synchronised or written by looking.
Like every list it fits 100 columns (or the terminal), cutting long cells; `--wide` shows
every cell whole.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import datetime

import click
from rich.cells import cell_len
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from edrtrial.cli.common import (
    LIST_WIDTH,
    SafeConsole,
    config_of,
    console,
    fails_cleanly,
    styled,
    terminal_width,
)
from edrtrial.db import ensure_current, existing_engine, make_sessions
from edrtrial.service import ownership
from edrtrial.service.status import ServiceStatus, read_status
from edrtrial.timeutil import to_jst, utcnow
from edrtrial.untrusted import one_line

WIDTH = LIST_WIDTH


def _room() -> int:
    """100 columns, or the terminal's width when narrower: `$COLUMNS` or the terminal's own
    size, as every list reads it (a pipe without `$COLUMNS` gets 100)."""
    return min(console.width, terminal_width() or WIDTH, WIDTH)


def _print(wide: bool, *shown: RenderableType) -> None:
    """Print within `_room()`; with `--wide`, each line whole however long."""
    if not wide:
        console.print(*shown, width=_room())
        return
    options = console.options.update_width(10_000)
    width = max(_room(), *(console.measure(s, options=options).maximum for s in shown))
    SafeConsole(width=width, markup=False, emoji=False, highlight=False).print(*shown)


def _when(value: datetime | None) -> str:
    return f"{to_jst(value):%m/%d %H:%M}" if value else "never"


Cell = str | Text


def _width(cell: Cell) -> int:
    return cell.cell_len if isinstance(cell, Text) else cell_len(one_line(cell))


def _table(columns: Sequence[tuple[str, int]], rows: Sequence[Sequence[Cell]], wide: bool) -> Table:
    """Rows of one line each, cut with an ellipsis to fit: every column as wide as its
    longest cell up to its cap, the last one (the reason, the error) taking what is left;
    with `wide`, every cell whole."""
    room = _room()
    widths = [
        min(cap, max(cell_len(name), *(_width(row[i]) for row in rows)))
        for i, (name, cap) in enumerate(columns)
    ]
    if wide:
        widths = [
            max(cell_len(name), *(_width(row[i]) for row in rows))
            for i, (name, _) in enumerate(columns)
        ]
        room = sum(widths) + 2 * (len(columns) - 1)
    left = room - sum(widths[:-1]) - 2 * (len(columns) - 1)
    widths[-1] = max(LAST_MIN, min(widths[-1], left))
    table = Table(pad_edge=False, box=None, header_style="bold")
    for (name, _), width in zip(columns, widths, strict=True):
        table.add_column(name, no_wrap=True, overflow="ellipsis", width=width)
    for row in rows:
        table.add_row(*row)
    return table


TIME = 12  # "11/25 10:00" under a header like "last success"
KEY = 24  # a company key or a job's name; longer ones are cut
REST = WIDTH  # the last column: what is left of the width
LAST_MIN = 8


def _lease(found: ServiceStatus, wide: bool) -> None:
    lease = found.lease
    if lease is None:
        _print(wide, styled("scheduler: no scheduler running", "bold red"))
    elif not lease.alive:
        _print(
            wide,
            styled("scheduler: no scheduler running", "bold red"),
            f"(last: {lease.holder}, heartbeat {_when(lease.heartbeat_at)} JST)",
        )
    else:
        _print(
            wide,
            f"scheduler: {lease.holder} since {_when(lease.since)} JST, "
            f"heartbeat {to_jst(lease.heartbeat_at):%H:%M:%S} JST"
            + ("" if lease.beating else " (late)"),
        )


def _jobs(found: ServiceStatus, wide: bool) -> None:
    if not found.jobs:
        _print(wide, "jobs: none has run yet")
        return
    rows: list[list[Cell]] = []
    for job in found.jobs:
        detail = job.last_failure_error if job.failures else job.last_success_summary
        fails = styled(str(job.failures), "red") if job.failures else "0"
        rows.append(
            [job.name, _when(job.last_success_at), _when(job.last_failure_at), fails, detail]
        )
    columns = [("job", KEY), ("last success", TIME), ("last failure", TIME), ("fails", 5)]
    _print(wide, _table([*columns, ("done / error", REST)], rows, wide))


def _tenants(found: ServiceStatus, wide: bool) -> None:
    if not found.tenants:
        _print(wide, "tenants: all polling")
        return
    rows: list[list[Cell]] = [
        [
            t.company_key,
            styled(t.state, "red" if t.state == "parked" else "yellow"),
            _when(t.since),
            t.reason,
        ]
        for t in found.tenants
    ]
    columns = [("company", KEY), ("state", 7), ("since (JST)", TIME), ("reason", REST)]
    _print(wide, _table(columns, rows, wide))


def _outbox(found: ServiceStatus, wide: bool) -> None:
    box = found.outbox
    line = f"outbox: {box.pending} waiting"
    if box.oldest_at is not None:
        line += (
            f", oldest since {_when(box.oldest_at)} JST ({box.oldest_channel}, {box.oldest_kind})"
        )
    if box.failed:
        line += f"; {box.failed} given up lately (last {_when(box.failed_last_at)} JST)"
    _print(wide, line)


def _devices(found: ServiceStatus, wide: bool) -> None:
    if found.actions:
        rows: list[list[Cell]] = [
            [
                a.company_key,
                a.device,
                a.kind,
                styled(a.status, "red" if a.status == "unconfirmed" else ""),
                _when(a.since),
                a.requested_by,
            ]
            for a in found.actions
        ]
        columns = [("company", 20), ("device", 20), ("action", 7), ("status", 11)]
        _print(wide, _table([*columns, ("since (JST)", TIME), ("by", REST)], rows, wide))
    else:
        _print(wide, "device actions: none under way")
    if found.offboarding:
        counts: list[list[Cell]] = [
            [o.company_key, o.status, str(o.count), _when(o.oldest)] for o in found.offboarding
        ]
        columns = [("company", KEY), ("offboarding", 15), ("tasks", 6)]
        _print(wide, _table([*columns, ("oldest change (JST)", REST)], counts, wide))
    else:
        _print(wide, "offboarding: none in flight")


def _render(found: ServiceStatus, wide: bool) -> None:
    _lease(found, wide)
    _jobs(found, wide)
    _tenants(found, wide)
    _outbox(found, wide)
    _devices(found, wide)
    if not found.problems:
        _print(wide, styled("all is well", "green"))
        return
    _print(wide, styled(f"needs a person ({len(found.problems)}):", "bold red"))
    # Each reason whole (a cut reason hides what to do), wrapped under its dash.
    listing = Table.grid(padding=(0, 1))
    listing.add_column(no_wrap=True)
    listing.add_column(overflow="fold")
    for problem in found.problems:
        listing.add_row("-", problem)
    _print(wide, listing)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="The same facts as JSON (ISO times, UTC).")
@click.option("--wide", is_flag=True, help="Show every cell whole, however wide the rows.")
@click.pass_context
@fails_cleanly
def status(ctx: click.Context, as_json: bool, wide: bool) -> None:
    """The service's health; exits 1 when something needs a person (for monitoring)."""
    config = config_of(ctx)
    engine = existing_engine(config.database_url)
    try:
        ensure_current(engine)
        held = ownership.is_held(engine)
        with make_sessions(engine)() as session:
            found = read_status(session, config.settings, utcnow(), held=held)
    finally:
        engine.dispose()
    if as_json:
        # ASCII escapes: an EDR's text in a reason cannot act on the terminal it is read in.
        click.echo(json.dumps(found.as_json(), indent=2, sort_keys=True))
    else:
        _render(found, wide)
    if found.needs_person:
        sys.exit(1)


COMMANDS = (status,)
