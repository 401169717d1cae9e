"""The desk: the `tickets` queue and `ticket …`, each action audited with who and when."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from edrtrial import audit
from edrtrial.cli.common import (
    BY_HELP,
    ActingForGroup,
    ListTable,
    actor,
    body,
    company_key,
    console,
    fails_cleanly,
    iso,
    list_options,
    print_json,
    print_list,
    runtime_of,
    said_delivery,
    styled,
    take_by,
)
from edrtrial.desk import operator, queries
from edrtrial.desk.sla import describe_deadline, short_deadline
from edrtrial.devices import actions as responses
from edrtrial.models import Device, ResponseAction
from edrtrial.service import desk_actions as steps
from edrtrial.service.runtime import Runtime
from edrtrial.states import OPEN_TICKET_STATES, Priority, TicketState
from edrtrial.timeutil import to_jst


@click.command("tickets")
@click.option("--company", help="Only this company (key).")
@click.option("--all", "show_all", is_flag=True, help="Include resolved and closed tickets.")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice([s.value for s in TicketState]),
    help="Only tickets in this state (repeatable; resolved and closed ones too when named).",
)
@click.option(
    "--priority",
    "priorities",
    multiple=True,
    type=click.Choice([p.value for p in Priority], case_sensitive=False),
    help="Only this priority (repeatable).",
)
@click.option("--assignee", help="Only tickets assigned to this name.")
@click.option("--mine", is_flag=True, help="Only tickets assigned to you (your login).")
@list_options
@click.pass_context
@fails_cleanly
def tickets_command(
    ctx: click.Context,
    company: str | None,
    show_all: bool,
    states: tuple[str, ...],
    priorities: tuple[str, ...],
    assignee: str | None,
    mine: bool,
    wide: bool,
    as_json: bool,
) -> None:
    """The desk queue across all tenants, highest priority first."""
    if mine and assignee is not None:
        raise click.UsageError("give --mine or --assignee, not both")
    runtime = runtime_of(ctx)
    if company is not None:
        company = company_key(runtime, company)
    if mine:
        assignee = audit.person_of(actor(ctx))
    with runtime.sessions() as session:
        rows = queries.ticket_queue(
            session,
            company_key=company,
            states=states or (tuple(TicketState) if show_all else OPEN_TICKET_STATES),
            priorities=tuple(p.upper() for p in priorities),
            assignee=assignee,
        )
    now = runtime.clock()
    if as_json:
        print_json([_ticket_record(row, now) for row in rows])
        return
    table = ListTable(
        "#",
        "pri",
        "state",
        "company",
        "title",
        "al.",
        "devices",
        "who",
        "opened",
        "ack by",
        flex=("title", "devices", "who"),
        whole=("ack by",),
    )
    for row in rows:
        t = row.ticket
        due: str | Text = ""
        if t.state == TicketState.NEW and t.ack_due_at is not None:
            shown, overdue = short_deadline(t.ack_due_at, now)
            due = styled(shown, "red") if overdue else shown
        table.add_row(
            str(t.id),
            t.priority,
            t.state,
            row.company_key,
            t.title,
            str(row.alert_count),
            ", ".join(row.devices if wide else (_host(name) for name in row.devices)),
            t.assignee,
            _opened(t.created_at, now),
            due,
        )
    print_list(table, wide=wide)
    console.print(f"{len(rows)} ticket(s); times in JST")
    if rows:
        console.print("al.: alerts; who: assignee; ack by: +H:MM left, -H:MM or ! overdue")


def _opened(at: datetime, now: datetime) -> str:
    """When a ticket was opened: the time alone today (in Tokyo), else the date too."""
    local = to_jst(at)
    return f"{local:%H:%M}" if local.date() == to_jst(now).date() else f"{local:%m/%d %H:%M}"


def _host(name: str) -> str:
    """A device's host name without its domain (`pc-001.sakura.example.jp` → `pc-001`), as
    the list shows it: the company column already says whose it is (`--wide`: whole)."""
    host, dot, _ = name.partition(".")
    return host if dot and any(c.isalpha() for c in host) else name


def _ticket_record(row: queries.QueueRow, now: datetime) -> dict[str, Any]:
    """A ticket of the queue as `tickets --json` gives it."""
    t = row.ticket
    due = t.ack_due_at if t.state == TicketState.NEW else None
    return {
        "id": t.id,
        "priority": t.priority,
        "state": t.state,
        "company": row.company_key,
        "title": t.title,
        "alerts": row.alert_count,
        "devices": list(row.devices),
        "assignee": t.assignee,
        "opened_at": iso(t.created_at),
        "acknowledge_by": iso(due),
        "overdue": due is not None and due <= now,
    }


@click.group(cls=ActingForGroup)
@click.option("--by", help=BY_HELP)
@click.pass_context
@fails_cleanly
def ticket(ctx: click.Context, by: str | None) -> None:
    """Work a desk ticket: show, ack, start, assign, note, isolate, release, resolve, reopen.

    `--by NAME` goes before or after the sub-command.
    """
    take_by(ctx, by)


@ticket.command("show")
@click.argument("ticket_id", type=int)
@click.pass_context
@fails_cleanly
def show(ctx: click.Context, ticket_id: int) -> None:
    """Everything about one ticket: alerts, devices, actions, deadline, notes and history."""
    rt = runtime_of(ctx)
    now = rt.clock()
    with rt.sessions() as session:
        t = operator.get(session, ticket_id)
        tenant, company = queries.company_of(session, t)
        alerts = queries.ticket_alerts(session, t)
        actions = responses.actions_of(session, t)
        history = operator.history(session, t)
    console.print(styled(f"#{t.id} [{t.priority}] {t.title}", "bold"), highlight=False)
    console.print(
        f"{company.name} ({company.key}, tenant {tenant.external_id})  state: {t.state}"
        f"  assignee: {t.assignee or '-'}  channel: {t.channel}"
        f"  escalation level: {t.escalation_level}",
        highlight=False,
    )
    if t.state == "new" and t.ack_due_at is not None:
        console.print(f"acknowledge: {describe_deadline(t.ack_due_at, now)}", highlight=False)
    if t.summary:
        for key in operator.SUMMARY_FIELDS:
            label, text = operator.SUMMARY_LABELS[key], t.summary.get(key, "")
            console.print(body(label, text, indent="  "), highlight=False)
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
        console.print(_actions_table(actions))
    hist = Table("when (JST)", "who", "what", "detail")
    for entry in history:
        detail = ", ".join(
            part for part in (entry.detail, "text below" if entry.text else "") if part
        )
        hist.add_row(f"{to_jst(entry.at):%m/%d %H:%M:%S}", entry.who, entry.what, detail)
    console.print(hist)
    # Notes and messages keep the lines they were written with, each under its heading.
    for entry in history:
        if entry.text:
            label = f"{to_jst(entry.at):%m/%d %H:%M:%S} {entry.what} by {entry.who}"
            console.print(body(label, entry.text, indent="  "), highlight=False)


def _actions_table(actions: list[tuple[ResponseAction, Device]]) -> Table:
    """The ticket's device actions, as `ticket show` lists them."""
    table = Table("action", "kind", "device", "status", "by", "detail")
    for action, device in actions:
        table.add_row(
            str(action.id),
            action.kind,
            device.name or device.source_id,
            action.status,
            action.requested_by,
            action.detail or action.reason,
        )
    return table


def _step(
    ctx: click.Context, ticket_id: int, verb: str, act: Callable[[Runtime, str], str]
) -> None:
    """One step of the ticket's workflow (`edrtrial.service.desk_actions`), and its new state."""
    state = act(runtime_of(ctx), actor(ctx))
    console.print(f"ticket #{ticket_id} {verb} (now {state})", highlight=False)


@ticket.command("ack")
@click.argument("ticket_id", type=int)
@click.pass_context
@fails_cleanly
def ack(ctx: click.Context, ticket_id: int) -> None:
    """Acknowledge: you have it; the deadline stops and escalation ends."""
    _step(ctx, ticket_id, "acknowledged", lambda rt, who: steps.acknowledge(rt, ticket_id, who))


@ticket.command("start")
@click.argument("ticket_id", type=int)
@click.pass_context
@fails_cleanly
def start(ctx: click.Context, ticket_id: int) -> None:
    """Mark the ticket in progress."""
    _step(ctx, ticket_id, "in progress", lambda rt, who: steps.start(rt, ticket_id, who))


@ticket.command("assign")
@click.argument("ticket_id", type=int)
@click.argument("assignee")
@click.pass_context
@fails_cleanly
def assign(ctx: click.Context, ticket_id: int, assignee: str) -> None:
    """Give the ticket to someone."""
    _step(
        ctx,
        ticket_id,
        f"assigned to {assignee}",
        lambda rt, who: steps.assign(rt, ticket_id, assignee, who),
    )


@ticket.command("note")
@click.argument("ticket_id", type=int)
@click.argument("text")
@click.pass_context
@fails_cleanly
def note(ctx: click.Context, ticket_id: int, text: str) -> None:
    """Add a note to the ticket's history."""
    steps.note(runtime_of(ctx), ticket_id, text, actor(ctx))
    console.print(f"note added to ticket #{ticket_id}")


@ticket.command("close")
@click.argument("ticket_id", type=int)
@click.pass_context
@fails_cleanly
def close(ctx: click.Context, ticket_id: int) -> None:
    """Close a resolved ticket."""
    _step(ctx, ticket_id, "closed", lambda rt, who: steps.close(rt, ticket_id, who))


@ticket.command("reopen")
@click.argument("ticket_id", type=int)
@click.option("--reason", required=True, help="Why the ticket needs work again.")
@click.pass_context
@fails_cleanly
def reopen(ctx: click.Context, ticket_id: int, reason: str) -> None:
    """Take a resolved or closed ticket back into work."""
    _step(ctx, ticket_id, "reopened", lambda rt, who: steps.reopen(rt, ticket_id, reason, who))


@ticket.command("notify")
@click.argument("ticket_id", type=int)
@click.argument("text")
@click.pass_context
@fails_cleanly
def notify(ctx: click.Context, ticket_id: int, text: str) -> None:
    """Mail the company contact about the ticket (in the company's language)."""
    rt = runtime_of(ctx)
    stats = steps.notify_company(rt, ticket_id, text, actor(ctx))
    console.print(f"message to the company of ticket #{ticket_id} queued")
    said_delivery(stats, always=False)


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
@fails_cleanly
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
    rt = runtime_of(ctx)
    given = {"when": when, "what": what, "cause": cause, "handling": handling, "effect": effect}
    done = steps.resolve(
        rt,
        ticket_id,
        _summary(given),
        actor(ctx),
        classification=classification or "",
        determination=determination,
        report=not no_report,
    )
    console.print(f"ticket #{ticket_id} resolved")
    if (result := done.written_back) is not None:
        console.print(
            f"written back to the EDR: {result.written} alert(s)"
            + (f", {result.failed} failed" if result.failed else "")
            + (f", {result.deferred} deferred" if result.deferred else "")
        )
    said_delivery(done.mail, always=False)


def _summary(given: dict[str, str | None]) -> dict[str, str]:
    """The incident summary as given, asking for what is missing when someone is at the terminal."""
    summary: dict[str, str] = {}
    interactive = sys.stdin.isatty()
    for key, value in given.items():
        if value is None and interactive:
            value = click.prompt(operator.SUMMARY_LABELS[key])
        summary[key] = value or ""
    return summary


COMMANDS = (tickets_command, ticket)
