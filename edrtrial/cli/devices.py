"""`ticket isolate` and `ticket release`: an operator's action on a ticket's device, followed."""

from __future__ import annotations

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
)
from edrtrial.connectors.base import ActionKind
from edrtrial.devices import settle
from edrtrial.errors import ActionRefused
from edrtrial.service import desk_actions as steps
from edrtrial.timeutil import to_jst
from edrtrial.untrusted import one_line


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
    plan = steps.plan_device_action(rt, ticket_id, kind, name=device_name)
    if plan.refusal is not None:
        raise ActionRefused(plan.refusal)
    if plan.silent:
        console.print(f"warning: {plan.silent}", style="yellow", markup=False, highlight=False)
    verb = "Isolate" if kind is ActionKind.ISOLATE else "Release"
    if not yes and not click.confirm(one_line(f"{verb} {plan.label}?")):
        console.print("nothing done")
        return
    sent = steps.send_device_action(rt, plan, who)
    label = plan.label
    console.print(f"{kind.value} of {label}: {sent.status} ({sent.detail})", highlight=False)
    status = (
        steps.follow_device_action(rt, ticket_id, sent.action_id, wait) if wait else sent.status
    )
    if wait:
        console.print(f"{kind.value} of {label}: {status}", highlight=False)
    if steps.finished(status):
        deliver(rt, always=False)


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
