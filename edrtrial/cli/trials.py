"""`trial start`, `trial decide` and `trial uninstalled`: a company's trial as the
secretariat records it; what follows at its end is the daily trial-lifecycle job's.
`trial calendar`: every trial's dates, days left, decision and uninstall progress.

`cli/main.py` adds these to the journey's `trial` group (a command module imports only
`cli.common`)."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import click

from edrtrial import files
from edrtrial.cli.common import (
    ListTable,
    actor,
    console,
    err_console,
    fails_cleanly,
    list_options,
    print_json,
    print_list,
    runtime_of,
    styled,
)
from edrtrial.db import transaction
from edrtrial.programme.trial_calendar import trial_calendar
from edrtrial.programme.trial_steps import DECISIONS, start_trial
from edrtrial.reports.trial_calendar import calendar_csv, days_left_text, progress_text
from edrtrial.service.trial_lifecycle import company_by_key, decide, uninstalled_by_hand
from edrtrial.timeutil import jst_date

_DECIDED = {
    "continue": "continues with the vendor: nothing will be uninstalled",
    "offboard": "does not continue: the EDR is uninstalled from every device after the end",
    "undecided": "undecided: the reminders ask again before the new end",
}


def _day(value: datetime | None) -> date | None:
    return None if value is None else value.date()


@click.command("start")
@click.argument("company")
@click.option(
    "--on", "on", type=click.DateTime(["%Y-%m-%d"]), help="First day (default: today, JST)."
)
@click.pass_context
@fails_cleanly
def trial_start(ctx: click.Context, company: str, on: datetime | None) -> None:
    """Start a verified company's trial; it ends `trial_months` later (the cohort's, else
    its course's), the day before the same date."""
    runtime = runtime_of(ctx)
    starts_on = _day(on) or jst_date(runtime.clock())
    with transaction(runtime.sessions) as session:
        found = company_by_key(session, company)
        started = start_trial(
            session,
            runtime.config.settings.programme,
            found,
            starts_on,
            actor=actor(ctx),
            at=runtime.clock(),
        )
        name, key = found.name, found.key
        ends_on = started.ends_on
    console.print(
        f"{name} ({key}): trial from {starts_on.isoformat()} to {ends_on.isoformat()} "
        "(both days included)"
    )


@click.command("decide")
@click.argument("company")
@click.argument("decision", type=click.Choice(DECISIONS))
@click.option(
    "--until",
    type=click.DateTime(["%Y-%m-%d"]),
    help="With extend: the trial's new last day (after today and after its current end).",
)
@click.option("--reason", default="", help="Why, in the secretariat's words (kept in the audit).")
@click.pass_context
@fails_cleanly
def trial_decide(
    ctx: click.Context, company: str, decision: str, until: datetime | None, reason: str
) -> None:
    """Record the company's answer: continue (with the vendor), offboard, or extend --until."""
    if until is not None and decision != "extend":
        raise click.UsageError("--until goes with extend only")
    runtime = runtime_of(ctx)
    decided, cancelled = decide(
        runtime, company, decision, actor=actor(ctx), until=_day(until), reason=reason
    )
    console.print(
        f"{company}: {_DECIDED[decided.decision]} (trial end {decided.ends_on.isoformat()}, "
        f"journey: {decided.journey.value})"
    )
    if cancelled:
        console.print(f"{cancelled} planned offboarding task(s) cancelled")


@click.command("uninstalled")
@click.argument("company")
@click.argument("device")
@click.option("--note", default="", help="How it was done (kept in the audit).")
@click.pass_context
@fails_cleanly
def trial_uninstalled(ctx: click.Context, company: str, device: str, note: str) -> None:
    """Confirm that the EDR was uninstalled by hand from a device (the offboarding script),
    for one the EDR cannot uninstall remotely or one still reporting."""
    uninstalled_by_hand(runtime_of(ctx), company, device, actor=actor(ctx), note=note)
    console.print(f"{company}: {device} confirmed uninstalled")


@click.command("calendar")
@list_options
@click.option(
    "--csv",
    "csv_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the calendar as CSV for Excel (UTF-8 with BOM, Japanese headings, "
    "owner-only).",
)
@click.pass_context
@fails_cleanly
def trial_calendar_command(
    ctx: click.Context, wide: bool, as_json: bool, csv_file: Path | None
) -> None:
    """Every company's trial, the soonest end first: start, end, days left (JST), journey,
    decision, and the uninstall's progress for a company that does not continue."""
    runtime = runtime_of(ctx)
    today = jst_date(runtime.clock())
    with runtime.sessions() as session:
        entries = trial_calendar(session, today)
    if csv_file is not None:
        files.write_private_bytes(csv_file, calendar_csv(entries))
        (err_console if as_json else console).print(f"CSV written to {csv_file}")
    if as_json:
        print_json(
            [
                {
                    "company": e.company_key,
                    "name": e.company_name,
                    "cohort": e.cohort_key,
                    "starts_on": e.starts_on.isoformat(),
                    "ends_on": e.ends_on.isoformat(),
                    "days_left": e.days_left,
                    "journey": e.journey.value,
                    "decision": e.decision,
                    "offboarding": {
                        "devices": e.offboarding.total,
                        "planned": e.offboarding.planned,
                        "sent": e.offboarding.sent,
                        "done": e.offboarding.done,
                        "manual": e.offboarding.manual,
                        "to_check": e.offboarding.trouble,
                    },
                }
                for e in entries
            ]
        )
        return
    # Undecided within the first reminder's days: the secretariat's call is due.
    soon = max(runtime.config.settings.programme.reminder_days, default=0)
    # The end and the days left are what the secretariat acts on: never cut. Like `seats`,
    # the end is compact (the year only when not this one) and the start is for --wide.
    headers = ("company", "name", "cohort", *(("start",) if wide else ()), "end", "days left")
    table = ListTable(
        *headers,
        "journey",
        "decision",
        "uninstall",
        flex=("name", "uninstall"),
        whole=("end", "days left"),
    )
    for e in entries:
        style = "yellow" if 0 <= e.days_left <= soon and e.decision == "undecided" else ""
        dates = (
            (e.starts_on.isoformat(), e.ends_on.isoformat())
            if wide
            else (_short_date(e.ends_on, today),)
        )
        table.add_row(
            e.company_key,
            e.company_name,
            e.cohort_key,
            *dates,
            styled(days_left_text(e.days_left), style),
            e.journey.value,
            e.decision,
            progress_text(e.offboarding),
        )
    print_list(table, wide=wide)
    if soon:
        console.print(f"days left in yellow: undecided, ending within {soon} days")
    console.print(f"{len(entries)} trial(s); days counted from {today.isoformat()} (JST)")


def _short_date(day: date, today: date) -> str:
    """A date in a narrow list: "12/27" this year, "2027-01-26" another (as `seats` shows it)."""
    return f"{day:%m/%d}" if day.year == today.year else day.isoformat()


TRIAL_COMMANDS = (trial_start, trial_decide, trial_uninstalled, trial_calendar_command)
