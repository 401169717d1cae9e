"""`ticket isolate` and `ticket release`: an operator's action on a ticket's device, followed."""

from __future__ import annotations

import time
from datetime import timedelta

import click

from edrtrial.cli.common import (
    BY_HELP,
    ActingForGroup,
    ListTable,
    actor,
    console,
    deliver,
    fails_cleanly,
    iso,
    list_options,
    print_json,
    print_list,
    runtime_of,
    take_by,
    ticket_tenant,
)
from edrtrial.connectors.base import ActionKind, ActionStatus
from edrtrial.db import transaction
from edrtrial.desk import operator, queries
from edrtrial.devices import actions, settle
from edrtrial.devices import queries as device_queries
from edrtrial.devices.states import FOLLOWED
from edrtrial.errors import ActionRefused, TicketError
from edrtrial.models import Device, Ticket
from edrtrial.service.runtime import Runtime, TenantRef
from edrtrial.timeutil import to_jst
from edrtrial.untrusted import one_line


def _pick_device(t: Ticket, devices: list[Device], name: str | None) -> Device:
    """The device the operator named, or the ticket's only device."""
    known = ", ".join(d.name or d.source_id for d in devices) or "none"
    if name:
        found = [
            d for d in devices if name.casefold() in (d.name.casefold(), d.source_id.casefold())
        ]
        if not found:
            raise TicketError(f"ticket #{t.id} names no device {name!r} (devices: {known})")
        return found[0]
    if len(devices) != 1:
        raise TicketError(
            f"ticket #{t.id} names {len(devices)} devices ({known}); choose one with --device"
        )
    return devices[0]


def _device_action(
    ctx: click.Context,
    ticket_id: int,
    device_name: str | None,
    kind: ActionKind,
    yes: bool,
    wait: float,
) -> None:
    """Plan, confirm and send the action, then follow it for up to `wait` seconds.

    What would refuse it is said before the question; a device silent for days is a warning.
    """
    rt = runtime_of(ctx)
    who = actor(ctx)
    tenant = ticket_tenant(rt, ticket_id)
    with rt.sessions() as session:
        t = operator.get(session, ticket_id)
        device = _pick_device(t, queries.ticket_devices(session, t), device_name)
        _, company = queries.company_of(session, t)
        label = f"{device.name or device.source_id} of {company.name} (tenant {tenant.external_id})"
        now = rt.clock()
        if (why := actions.refusal(session, device, kind.value, t, now)) is not None:
            raise ActionRefused(why)
        silent = actions.silence_warning(device, now, rt.config.settings.desk.silent_device_days)
    if silent:
        console.print(f"warning: {silent}", style="yellow", markup=False, highlight=False)
    verb = "Isolate" if kind is ActionKind.ISOLATE else "Release"
    if not yes and not click.confirm(one_line(f"{verb} {label}?")):
        console.print("nothing done")
        return
    with transaction(rt.sessions) as session:
        t = operator.get(session, ticket_id)
        action = actions.plan(
            session,
            device_queries.device(session, device.id),
            kind,
            actor=who,
            at=rt.clock(),
            ticket=t,
            reason=f"operator, ticket #{ticket_id}",
        )
        action_id = action.id
    window = timedelta(minutes=rt.config.settings.desk.reconcile_minutes)
    connector, desk = rt.connector(tenant), rt.config.settings.desk
    sent = actions.send(rt.sessions, action_id, connector, who, rt.clock, window, desk=desk)
    console.print(f"{kind.value} of {label}: {sent.status} ({sent.detail})", highlight=False)
    status = _follow(rt, tenant, action_id, sent.status, wait)
    if wait:
        console.print(f"{kind.value} of {label}: {status}", highlight=False)
    if status in (s.value for s in ActionStatus if s.terminal):
        deliver(rt, always=False)


def _follow(rt: Runtime, tenant: TenantRef, action_id: int, status: str, wait: float) -> str:
    """Follow the action until it ends or `wait` seconds pass; its last known status."""
    deadline = time.monotonic() + wait
    while wait and status in FOLLOWED and time.monotonic() < deadline:
        time.sleep(min(2.0, max(deadline - time.monotonic(), 0)))
        actions.follow(
            rt.sessions, tenant.id, rt.connector(tenant), rt.config.settings.desk, rt.clock()
        )
        with rt.sessions() as session:
            status = device_queries.action_status(session, action_id)
    return status


def _device_command(kind: ActionKind, name: str, help_text: str) -> click.Command:
    """`ticket isolate` / `ticket release`: the same options, one action each."""

    @click.command(name, help=help_text)
    @click.argument("ticket_id", type=int)
    @click.option("--device", "device_name", help="Device name or id (needed when several).")
    @click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
    @click.option("--wait", type=float, default=0, help="Seconds to follow the action to its end.")
    @click.pass_context
    @fails_cleanly
    def command(
        ctx: click.Context, ticket_id: int, device_name: str | None, yes: bool, wait: float
    ) -> None:
        _device_action(ctx, ticket_id, device_name, kind, yes, wait)

    return command


isolate = _device_command(
    ActionKind.ISOLATE,
    "isolate",
    "Isolate a ticket's device from the network (refused while one is under way).",
)
release = _device_command(
    ActionKind.RELEASE, "release", "Release a ticket's isolated device back onto the network."
)
# Subcommands of `ticket` (cli/desk.py); cli/main.py adds them to that group.
TICKET_COMMANDS = (isolate, release)


@click.group(cls=ActingForGroup)
@click.option("--by", help=BY_HELP)
@click.pass_context
@fails_cleanly
def action(ctx: click.Context, by: str | None) -> None:
    """Device actions the EDR never answered: list them, settle them after a look.

    `--by NAME` (whom `settle` acts for) goes before or after the sub-command.
    """
    take_by(ctx, by)


@action.command("list")
@list_options
@click.pass_context
@fails_cleanly
def list_unanswered(ctx: click.Context, wide: bool, as_json: bool) -> None:
    """Isolations, releases and offboardings sent without an answer, oldest first."""
    rt = runtime_of(ctx)
    with rt.sessions() as session:
        rows = settle.unanswered(session, rt.clock())
    if as_json:
        print_json(
            [
                {
                    "id": r.action_id,
                    "company": r.company_key,
                    "device": r.device,
                    "action": r.kind,
                    "status": r.status,
                    "being_sent": r.being_sent,
                    "since": iso(r.since),
                    "detail": r.detail,
                }
                for r in rows
            ]
        )
        return
    if not rows:
        console.print("no action is waiting for an answer")
        return
    table = ListTable(
        "#", "company", "device", "action", "status", "since", "detail", flex=("detail",)
    )
    for r in rows:
        table.add_row(
            str(r.action_id),
            r.company_key,
            r.device,
            r.kind,
            f"{r.status} (being sent)" if r.being_sent else r.status,
            f"{to_jst(r.since):%m/%d %H:%M}",
            r.detail,
        )
    print_list(table, wide=wide)
    console.print(f"{len(rows)} action(s); times in JST")


@action.command("settle")
@click.argument("action_id", type=int)
@click.option("--found", "found", metavar="EDR_ACTION_ID", help="The EDR's id of the action.")
@click.option("--absent", is_flag=True, help="The EDR's console shows no such action.")
@click.pass_context
@fails_cleanly
def settle_unanswered(ctx: click.Context, action_id: int, found: str | None, absent: bool) -> None:
    """Record what the EDR's console shows for an action sent without an answer."""
    if (found is None) == (not absent):
        raise click.UsageError("give either --found EDR_ACTION_ID or --absent")
    rt = runtime_of(ctx)
    with rt.sessions() as session:
        tenant_id = settle.tenant_of_action(session, action_id)
    tenant = next((t for t in rt.tenants() if t.id == tenant_id), None)
    if tenant is None:
        raise ActionRefused(f"action #{action_id}'s company is no longer configured")
    done = settle.settle(
        rt.sessions,
        action_id,
        rt.connector(tenant),
        found=found,
        actor=actor(ctx),
        at=rt.clock(),
        desk=rt.config.settings.desk,
    )
    console.print(f"action #{action_id}: {done.status} ({done.detail})", highlight=False)
    deliver(rt, always=False)


COMMANDS = (action,)
