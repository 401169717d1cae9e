"""Admission at the secretariat's desk: the call, the pre-diagnosis, refusals and withdrawals,
and the cohorts' places. The decisions are `programme.admission`; this only takes the words in
and prints what happened. The commands join the `applications`, `cohorts` and `company` groups
in `cli/main.py`."""

from __future__ import annotations

from collections.abc import Sequence

import click

from edrtrial.cli.common import (
    ListTable,
    actor,
    console,
    list_options,
    print_json,
    print_list,
    runtime_of,
)
from edrtrial.db import transaction
from edrtrial.programme import cohorts as places
from edrtrial.programme.admission import POLICIES, Diagnosis, Outcome
from edrtrial.service import admission


def _report(outcome: Outcome, key: str) -> None:
    """Say where the step left the company, and who took a place it freed."""
    shown = outcome.state.value
    if outcome.position is not None:
        shown += f" (position {outcome.position} on cohort {outcome.cohort_key}'s list)"
    elif outcome.cohort_key is not None and outcome.state in places.HOLDING:
        shown += f" (a place in cohort {outcome.cohort_key})"
    console.print(f"{key}: {shown}", highlight=False)
    for reason in outcome.reasons:
        console.print(f"  reason: {reason['en']}", highlight=False)
        if reason["ja"] != reason["en"]:
            console.print(f"          {reason['ja']}", highlight=False)
    if outcome.event is not None:
        console.print(f"  mail queued to {key} ({outcome.event})", highlight=False)
    _report_moved(outcome.moved)


def _report_moved(moved: Sequence[places.Moved]) -> None:
    """Say who took a freed place (each was told by mail)."""
    for one in moved:
        console.print(
            f"{one.key}: moved up from the waiting list, now {one.state}; mail queued",
            highlight=False,
        )


@click.command("call")
@click.argument("key")
@click.option("--notes", default="", help="What was said: the rules explained, consent given.")
@click.option("--cohort", help="The cohort (key); default: the open cohort of its course.")
@click.pass_context
def call_command(ctx: click.Context, key: str, notes: str, cohort: str | None) -> None:
    """Record the confirmation call: the application is complete and a place is held, first
    come first served (or the company waits for one, and is told by mail)."""
    runtime = runtime_of(ctx)
    with transaction(runtime.sessions) as session:
        outcome = admission.call(
            session,
            runtime.config.settings,
            key,
            actor=actor(ctx),
            at=runtime.clock(),
            notes=notes,
            cohort=cohort,
        )
    _report(outcome, key)


def _existing_edr(name: str | None, none: bool) -> str | None:
    if (name is None) == (not none):
        raise click.UsageError("give --existing-edr NAME or --no-existing-edr (one of them)")
    return None if none else (name or "").strip()


@click.command("prediagnose")
@click.argument("key")
@click.option("--edr-users", type=click.IntRange(min=0), required=True, help="Planned EDR seats.")
@click.option("--utm-devices", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--free-hub-ports", type=click.IntRange(min=0))
@click.option("--existing-utm/--no-existing-utm", default=False, show_default=True)
@click.option("--existing-edr", "existing_edr", metavar="NAME", help="The EDR already installed.")
@click.option("--no-existing-edr", "no_existing_edr", is_flag=True, help="No EDR installed.")
@click.option("--antivirus", default="", metavar="NAME", help="The antivirus in use.")
@click.option("--policy", type=click.Choice(POLICIES), default="none", show_default=True)
@click.option("--network", default="", help="The network topology, in words.")
@click.option("--notes", default="", help="Anything else the expert noted.")
@click.pass_context
def prediagnose_command(
    ctx: click.Context,
    key: str,
    edr_users: int,
    utm_devices: int,
    free_hub_ports: int | None,
    existing_utm: bool,
    existing_edr: str | None,
    no_existing_edr: bool,
    antivirus: str,
    policy: str,
    network: str,
    notes: str,
) -> None:
    """Record the expert's pre-diagnosis (事前診断): admitted, or refused with the reason (an
    EDR already installed, more planned seats than the course's cap). The company is told."""
    found = Diagnosis(
        edr_users=edr_users,
        utm_devices=utm_devices,
        free_hub_ports=free_hub_ports,
        existing_utm=existing_utm,
        existing_edr=_existing_edr(existing_edr, no_existing_edr),
        antivirus=antivirus,
        policy=policy,
        network=network,
        notes=notes,
    )
    runtime = runtime_of(ctx)
    with transaction(runtime.sessions) as session:
        outcome = admission.prediagnose(
            session, runtime.config.settings, key, found, actor=actor(ctx), at=runtime.clock()
        )
    _report(outcome, key)


@click.command("refuse")
@click.argument("key")
@click.option("--reason", required=True, help="Why; the company is told it in the mail.")
@click.pass_context
def refuse_command(ctx: click.Context, key: str, reason: str) -> None:
    """Refuse an application before admission; its place goes to the first waiting."""
    runtime = runtime_of(ctx)
    with transaction(runtime.sessions) as session:
        outcome = admission.refuse(
            session, runtime.config.settings, key, reason, actor=actor(ctx), at=runtime.clock()
        )
    _report(outcome, key)


@click.command("withdraw")
@click.argument("key")
@click.option("--reason", required=True, help="Why the company withdraws.")
@click.pass_context
def withdraw_command(ctx: click.Context, key: str, reason: str) -> None:
    """The company withdraws: before its tenant is connected it leaves and its place goes to
    the first waiting; once connected its devices are offboarded."""
    runtime = runtime_of(ctx)
    with transaction(runtime.sessions) as session:
        outcome = admission.withdraw(
            session, runtime.config.settings, key, reason, actor=actor(ctx), at=runtime.clock()
        )
    _report(outcome, key)


@click.command("add")
@click.argument("key")
@click.option("--name", required=True, help="The cohort's name, e.g. 第1期.")
@click.option("--course", default="edr", show_default=True, help="A course of the config.")
@click.option("--capacity", type=click.IntRange(min=1), required=True, help="Companies it takes.")
@click.option("--trial-months", type=click.IntRange(1, 24), help="Default: the course's.")
@click.option("--closed", is_flag=True, help="Add it closed to new companies.")
@click.pass_context
def cohort_add_command(
    ctx: click.Context,
    key: str,
    name: str,
    course: str,
    capacity: int,
    trial_months: int | None,
    closed: bool,
) -> None:
    """Add a cohort of a course: its places go first come, first served."""
    runtime = runtime_of(ctx)
    with transaction(runtime.sessions) as session:
        added = places.add(
            session,
            runtime.config.settings.programme,
            key=key,
            name=name,
            course=course,
            capacity=capacity,
            trial_months=trial_months,
            closed=closed,
        )
        months = places.trial_months(runtime.config.settings.programme, added)
    console.print(
        f"cohort {key}: {capacity} places, course {course}, trials of {months} months"
        + (" (closed)" if closed else ""),
        highlight=False,
    )


@click.command("set")
@click.argument("key")
@click.option("--capacity", type=click.IntRange(min=1), help="Companies it takes.")
@click.option(
    "--closed/--open", "closed", default=None, help="Close it to new companies, or reopen it."
)
@click.pass_context
def cohort_set_command(
    ctx: click.Context, key: str, capacity: int | None, closed: bool | None
) -> None:
    """Change a cohort's capacity, or close or reopen it (audited). Places a larger capacity
    adds go to its waiting list at once, first come first served; each company is told."""
    if capacity is None and closed is None:
        raise click.UsageError("give --capacity N, --closed or --open")
    runtime = runtime_of(ctx)
    with transaction(runtime.sessions) as session:
        moved = admission.change_cohort(
            session,
            runtime.config.settings,
            key,
            actor=actor(ctx),
            at=runtime.clock(),
            capacity=capacity,
            closed=closed,
        )
        counted = places.places(session, places.get(session, key))
    state = "closed" if counted.cohort.closed else "open"
    console.print(
        f"cohort {key}: {counted.cohort.capacity} places, {counted.held} held, "
        f"{counted.waiting} waiting, {state}",
        highlight=False,
    )
    _report_moved(moved)


@click.command("list")
@list_options
@click.pass_context
def cohort_list_command(ctx: click.Context, wide: bool, as_json: bool) -> None:
    """Each cohort's places: capacity, held, waiting, free."""
    runtime = runtime_of(ctx)
    programme = runtime.config.settings.programme
    with runtime.sessions() as session:
        counted = [places.places(session, c) for c in places.all_cohorts(session)]
    records = [
        {
            "key": p.cohort.key,
            "name": p.cohort.name,
            "course": p.cohort.course,
            "capacity": p.cohort.capacity,
            "held": p.held,
            "waiting": p.waiting,
            "free": p.free,
            "trial_months": places.trial_months(programme, p.cohort),
            "closed": p.cohort.closed,
        }
        for p in counted
    ]
    if as_json:
        print_json(records)
        return
    table = ListTable(
        "key", "name", "course", "capacity", "held", "waiting", "free", "months", "open",
        flex=("name",),
    )  # fmt: skip
    for p in counted:
        table.add_row(
            p.cohort.key,
            p.cohort.name,
            p.cohort.course,
            *map(str, (p.cohort.capacity, p.held, p.waiting, p.free)),
            str(places.trial_months(programme, p.cohort)),
            "closed" if p.cohort.closed else "open",
        )
    print_list(table, wide=wide)
    console.print(f"{len(records)} cohort(s)")


APPLICATION_COMMANDS = (call_command, prediagnose_command, refuse_command)
COHORT_COMMANDS = (cohort_add_command, cohort_set_command, cohort_list_command)
COMPANY_COMMANDS = (withdraw_command,)
