"""`edrtrial ticket …`: the operator's desk actions, each audited with who and when."""

from __future__ import annotations

import getpass
import sys
import time
from collections.abc import Callable
from typing import Any

import click
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.orm import Session

from edrtrial.connectors.base import ActionKind, ActionStatus, Capability
from edrtrial.db import transaction
from edrtrial.desk import operator as tickets
from edrtrial.desk import queries
from edrtrial.desk.sla import describe_deadline
from edrtrial.devices import actions as responses
from edrtrial.devices import writeback
from edrtrial.errors import TicketError
from edrtrial.models import Device, Ticket
from edrtrial.service import jobs
from edrtrial.service.runtime import Runtime, TenantRef
from edrtrial.timeutil import to_jst


def _cli() -> Any:
    from edrtrial.cli import (
        main as cli,  # the shared console and error handling; imported late (cycle)
    )

    return cli


def _actor(ctx: click.Context) -> str:
    by = ctx.find_root().obj.get("by")
    return str(by) if by else f"cli:{getpass.getuser()}"


def _guarded(func: Callable[..., None]) -> Callable[..., None]:
    """Our errors end the command with their message (exit 2), not a traceback."""

    def wrapper(*args: Any, **kwargs: Any) -> None:
        _cli()._fails_cleanly(func)(*args, **kwargs)

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper


def _tenant_of(rt: Runtime, ticket_id: int) -> TenantRef:
    with rt.sessions() as session:
        ticket = tickets.get(session, ticket_id)
        tenant_id = ticket.tenant_id
    for tenant in rt.tenants():
        if tenant.id == tenant_id:
            return tenant
    raise TicketError(f"ticket #{ticket_id}'s company is no longer configured")


def _deliver(rt: Runtime) -> None:
    stats = jobs.deliver_outbox(rt)
    if stats.sent or stats.retried or stats.failed:
        _cli().console.print(
            f"mail: {stats.sent} sent, {stats.retried} to retry, {stats.failed} failed"
        )


@click.group()
@click.option("--by", help="Who is acting (default: cli:<login name>); written to the audit log.")
@click.pass_context
def ticket(ctx: click.Context, by: str | None) -> None:
    """Work a desk ticket: show, ack, start, assign, note, isolate, release, resolve, reopen."""
    ctx.find_root().obj["by"] = by


@ticket.command("show")
@click.argument("ticket_id", type=int)
@click.pass_context
@_guarded
def show(ctx: click.Context, ticket_id: int) -> None:
    """Everything about one ticket: alerts, devices, actions, deadline, notes and history."""
    cli = _cli()
    rt = cli._runtime(ctx)
    console = cli.console
    now = rt.clock()
    with rt.sessions() as session:
        t = tickets.get(session, ticket_id)
        tenant, company = queries.company_of(session, t)
        alerts = queries.ticket_alerts(session, t)
        actions = responses.actions_of(session, t)
        history = tickets.history(session, t)
    console.print(f"[bold]#{t.id} [{t.priority}] {t.title}[/]", highlight=False)
    console.print(
        f"{company.name} ({company.key}, tenant {tenant.external_id})  state: {t.state}"
        f"  assignee: {t.assignee or '-'}  channel: {t.channel}"
        f"  escalation level: {t.escalation_level}",
        highlight=False,
    )
    if t.state == "new" and t.ack_due_at is not None:
        console.print(f"acknowledge: {describe_deadline(t.ack_due_at, now)}", highlight=False)
    if t.summary:
        for key in tickets.SUMMARY_FIELDS:
            console.print(f"  {tickets.SUMMARY_LABELS[key]}: {t.summary.get(key, '')}")
    table = Table("alert", "when (JST)", "sev", "title", "devices", "rules")
    for a in alerts:
        table.add_row(
            str(a.id),
            f"{to_jst(a.created_at):%m/%d %H:%M}" if a.created_at else "",
            a.severity,
            a.title,
            ", ".join(a.device_names),
            ", ".join(a.matched_rules),
        )
    console.print(table)
    if actions:
        acts = Table("action", "kind", "device", "status", "by", "detail")
        for action, device in actions:
            acts.add_row(
                str(action.id),
                action.kind,
                device.name or device.source_id,
                action.status,
                action.requested_by,
                action.detail or action.reason,
            )
        console.print(acts)
    hist = Table("when (JST)", "who", "what", "detail")
    for entry in history:
        hist.add_row(f"{to_jst(entry.at):%m/%d %H:%M:%S}", entry.actor, entry.what, entry.detail)
    console.print(hist)


def _step(
    ctx: click.Context, ticket_id: int, verb: str, act: Callable[[Any, Runtime, str], Ticket]
) -> Runtime:
    rt: Runtime = _cli()._runtime(ctx)
    with transaction(rt.sessions) as session:
        t = act(session, rt, _actor(ctx))
        state = t.state
    _cli().console.print(f"ticket #{ticket_id} {verb} (now {state})", highlight=False)
    return rt


@ticket.command("ack")
@click.argument("ticket_id", type=int)
@click.pass_context
@_guarded
def ack(ctx: click.Context, ticket_id: int) -> None:
    """Acknowledge: you have it; the deadline stops and escalation ends."""
    _step(
        ctx,
        ticket_id,
        "acknowledged",
        lambda s, rt, who: tickets.acknowledge(s, ticket_id, who, rt.clock()),
    )


@ticket.command("start")
@click.argument("ticket_id", type=int)
@click.pass_context
@_guarded
def start(ctx: click.Context, ticket_id: int) -> None:
    """Mark the ticket in progress."""
    _step(
        ctx,
        ticket_id,
        "in progress",
        lambda s, rt, who: tickets.start(s, ticket_id, who, rt.clock()),
    )


@ticket.command("assign")
@click.argument("ticket_id", type=int)
@click.argument("assignee")
@click.pass_context
@_guarded
def assign(ctx: click.Context, ticket_id: int, assignee: str) -> None:
    """Give the ticket to someone."""
    _step(
        ctx,
        ticket_id,
        f"assigned to {assignee}",
        lambda s, rt, who: tickets.assign(s, ticket_id, assignee, who, rt.clock()),
    )


@ticket.command("note")
@click.argument("ticket_id", type=int)
@click.argument("text")
@click.pass_context
@_guarded
def note(ctx: click.Context, ticket_id: int, text: str) -> None:
    """Add a note to the ticket's history."""
    rt: Runtime = _cli()._runtime(ctx)
    with transaction(rt.sessions) as session:
        tickets.note(session, ticket_id, text, _actor(ctx), rt.clock())
    _cli().console.print(f"note added to ticket #{ticket_id}")


@ticket.command("close")
@click.argument("ticket_id", type=int)
@click.pass_context
@_guarded
def close(ctx: click.Context, ticket_id: int) -> None:
    """Close a resolved ticket."""
    _step(ctx, ticket_id, "closed", lambda s, rt, who: tickets.close(s, ticket_id, who, rt.clock()))


@ticket.command("reopen")
@click.argument("ticket_id", type=int)
@click.option("--reason", required=True, help="Why the ticket needs work again.")
@click.pass_context
@_guarded
def reopen(ctx: click.Context, ticket_id: int, reason: str) -> None:
    """Take a resolved or closed ticket back into work."""
    _step(
        ctx,
        ticket_id,
        "reopened",
        lambda s, rt, who: tickets.reopen(s, ticket_id, reason, who, rt.clock()),
    )


@ticket.command("notify")
@click.argument("ticket_id", type=int)
@click.argument("text")
@click.pass_context
@_guarded
def notify(ctx: click.Context, ticket_id: int, text: str) -> None:
    """Mail the company contact about the ticket (in the company's language)."""
    rt: Runtime = _cli()._runtime(ctx)
    with transaction(rt.sessions) as session:
        tickets.message_company(session, ticket_id, text, _actor(ctx), rt.clock(), rt.policy)
    _cli().console.print(f"message to the company of ticket #{ticket_id} queued")
    _deliver(rt)


@ticket.command("resolve")
@click.argument("ticket_id", type=int)
@click.option("--when", "when", help="発生日時: when it happened.")
@click.option("--what", help="インシデント内容: what happened.")
@click.option("--cause", help="インシデントの原因: the cause.")
@click.option("--handling", help="対応方法: how it was handled.")
@click.option("--effect", help="対応の効果: the effect of the handling.")
@click.option(
    "--classification",
    type=click.Choice(
        ["truePositive", "falsePositive", "informationalExpectedActivity"], case_sensitive=False
    ),
    help="The verdict, written back to the EDR where the tenant's switch is on.",
)
@click.option("--determination", default="", help="e.g. malware, phishing, securityTesting.")
@click.option("--no-report", is_flag=True, help="Do not send the company its incident report.")
@click.pass_context
@_guarded
def resolve(
    ctx: click.Context,
    ticket_id: int,
    when: str | None,
    what: str | None,
    cause: str | None,
    handling: str | None,
    effect: str | None,
    classification: str | None,
    determination: str,
    no_report: bool,
) -> None:
    """Resolve with the incident summary; the company receives its incident report."""
    rt: Runtime = _cli()._runtime(ctx)
    given = {"when": when, "what": what, "cause": cause, "handling": handling, "effect": effect}
    summary: dict[str, str] = {}
    interactive = sys.stdin.isatty()
    for key, value in given.items():
        if value is None and interactive:
            value = click.prompt(tickets.SUMMARY_LABELS[key])
        summary[key] = value or ""
    tenant = _tenant_of(rt, ticket_id)
    connector = rt.connector(tenant)
    write_back = Capability.WRITE_BACK in connector.capabilities
    with transaction(rt.sessions) as session:
        tickets.resolve(
            session,
            ticket_id,
            summary,
            _actor(ctx),
            rt.clock(),
            rt.policy,
            classification=classification or "",
            determination=determination,
            write_back=write_back,
            report=not no_report,
        )
    console = _cli().console
    console.print(f"ticket #{ticket_id} resolved")
    if write_back:
        result = writeback.write_back_pending(rt.sessions, tenant.id, connector)
        console.print(
            f"written back to the EDR: {result.written} alert(s)"
            + (f", {result.failed} failed" if result.failed else "")
            + (f", {result.deferred} deferred" if result.deferred else "")
        )
    _deliver(rt)


def _device_of(session: Session, t: Ticket, name: str | None) -> Device:
    alerts = queries.ticket_alerts(session, t)
    ids = list(dict.fromkeys(s for a in alerts for s in a.device_source_ids))
    devices: list[Device] = [
        d
        for d in session.scalars(
            select(Device).where(Device.tenant_id == t.tenant_id, Device.source_id.in_(ids))
        )
    ]
    if name:
        found = [
            d for d in devices if name.casefold() in (d.name.casefold(), d.source_id.casefold())
        ]
        if not found:
            known = ", ".join(d.name or d.source_id for d in devices) or "none"
            raise TicketError(f"ticket #{t.id} names no device {name!r} (devices: {known})")
        return found[0]
    if len(devices) != 1:
        known = ", ".join(d.name or d.source_id for d in devices) or "none"
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
    cli = _cli()
    rt: Runtime = cli._runtime(ctx)
    console = cli.console
    actor = _actor(ctx)
    tenant = _tenant_of(rt, ticket_id)
    with rt.sessions() as session:
        t = tickets.get(session, ticket_id)
        device = _device_of(session, t, device_name)
        _, company = queries.company_of(session, t)
        label = f"{device.name or device.source_id} of {company.name} (tenant {tenant.external_id})"
    verb = "Isolate" if kind is ActionKind.ISOLATE else "Release"
    if not yes and not click.confirm(f"{verb} {label}?"):
        console.print("nothing done")
        return
    with transaction(rt.sessions) as session:
        t = tickets.get(session, ticket_id)
        action = responses.plan(
            session,
            session.get_one(Device, device.id),
            kind,
            actor=actor,
            at=rt.clock(),
            ticket=t,
            reason=f"operator, ticket #{ticket_id}",
        )
        action_id = action.id
    sent = responses.send(rt.sessions, action_id, rt.connector(tenant), actor, rt.clock)
    console.print(f"{kind.value} of {label}: {sent.status} ({sent.detail})", highlight=False)
    deadline = time.monotonic() + wait
    status = sent.status
    while wait and status in ("pending", "inprogress") and time.monotonic() < deadline:
        time.sleep(min(2.0, max(deadline - time.monotonic(), 0)))
        responses.follow(
            rt.sessions, tenant.id, rt.connector(tenant), rt.config.settings.desk, rt.clock()
        )
        with rt.sessions() as session:
            from edrtrial.models import ResponseAction

            status = session.get_one(ResponseAction, action_id).status
    if wait:
        console.print(f"{kind.value} of {label}: {status}", highlight=False)
    if status in (s.value for s in ActionStatus if s.terminal):
        _deliver(rt)


def _device_command(kind: ActionKind, name: str, help_text: str) -> None:
    """Register `ticket isolate` / `ticket release`: the same options, one action each."""

    @ticket.command(name, help=help_text)
    @click.argument("ticket_id", type=int)
    @click.option("--device", "device_name", help="Device name or id (needed when several).")
    @click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
    @click.option("--wait", type=float, default=0, help="Seconds to follow the action to its end.")
    @click.pass_context
    @_guarded
    def command(
        ctx: click.Context, ticket_id: int, device_name: str | None, yes: bool, wait: float
    ) -> None:
        _device_action(ctx, ticket_id, device_name, kind, yes, wait)


_device_command(
    ActionKind.ISOLATE,
    "isolate",
    "Isolate a ticket's device from the network (refused while one is under way).",
)
_device_command(
    ActionKind.RELEASE, "release", "Release a ticket's isolated device back onto the network."
)
