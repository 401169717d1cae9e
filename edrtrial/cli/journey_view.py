"""Where the companies stand: `applications list` (the call's deadline, cohort and place of
each) and `company show` (one company's whole journey, what is due next and who did what).
The queries and judgements are `programme.journey_view`; this only renders them. The commands
join the `applications` and `company` groups in `cli/main.py`."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import click
from rich.text import Text

from edrtrial.cli.common import (
    ListTable,
    body,
    console,
    iso,
    list_options,
    print_json,
    print_list,
    runtime_of,
    styled,
)
from edrtrial.programme import cohorts as places
from edrtrial.programme import journey_view
from edrtrial.programme.companies import company_named
from edrtrial.programme.journey_view import ApplicationRow, CompanyView
from edrtrial.service import admission
from edrtrial.states import JourneyState
from edrtrial.timeutil import jst_date, to_jst


def _state(state: JourneyState, wide: bool) -> str:
    return f"{state.value} {state.ja}" if wide else state.value


def _due_cell(row: ApplicationRow) -> str | Text:
    if row.call_due_on is None:
        return ""
    shown = f"{row.call_due_on:%m/%d %a}"
    return styled(shown + " !", "red") if row.overdue else shown


def _application_record(row: ApplicationRow) -> dict[str, Any]:
    return {
        "key": row.key,
        "name": row.name,
        "state": row.state.value,
        "state_ja": row.state.ja,
        "received_at": iso(row.received_at),
        "call_due_on": row.call_due_on.isoformat() if row.call_due_on else None,
        "overdue": row.overdue,
        "cohort": row.cohort or None,
        "place": row.place or None,
        "reasons": list(row.reasons),
    }


@click.command("list")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice([s.value for s in JourneyState]),
    help="Only companies in this journey state (repeatable).",
)
@click.option("--cohort", help="Only this cohort's companies (key).")
@click.option("--overdue", is_flag=True, help="Only confirmation calls past their day.")
@list_options
@click.pass_context
def list_command(
    ctx: click.Context,
    statuses: tuple[str, ...],
    cohort: str | None,
    overdue: bool,
    wide: bool,
    as_json: bool,
) -> None:
    """Where each company stands: its state, the call's deadline, its cohort and place."""
    runtime = runtime_of(ctx)
    today = jst_date(runtime.clock())
    with runtime.sessions() as session:
        chosen = places.get(session, cohort) if cohort is not None else None
        rows = journey_view.application_rows(
            session,
            admission.due_on(runtime.config.settings),
            today,
            states=statuses,
            cohort=chosen,
            overdue_only=overdue,
        )
    if as_json:
        print_json([_application_record(row) for row in rows])
        return
    table = ListTable(
        "key",
        "name",
        "state",
        "received",
        "call due",
        "cohort",
        "place",
        "reasons",
        flex=("name", "reasons"),
        whole=("call due",),
    )
    for row in rows:
        table.add_row(
            row.key,
            row.name,
            _state(row.state, wide),
            f"{to_jst(row.received_at):%m/%d %H:%M}" if row.received_at else "",
            _due_cell(row),
            row.cohort,
            row.place,
            ", ".join(row.reasons),
        )
    print_list(table, wide=wide)
    late = sum(row.overdue for row in rows)
    console.print(
        f"{len(rows)} compan{'y' if len(rows) == 1 else 'ies'}; "
        f"{late} call(s) overdue; times in JST",
        highlight=False,
    )
    if late:
        days = runtime.config.settings.programme.call_business_days
        console.print(
            f"call due: ! past its day ({days} business days after the application)",
            highlight=False,
        )


# One company's whole journey.


def _when(value: datetime | None) -> str:
    return f"{to_jst(value):%Y-%m-%d %H:%M}" if value is not None else "-"


def _day(value: date | None) -> str:
    return f"{value:%Y-%m-%d (%a)}" if value is not None else ""


def _line(label: str, value: object) -> None:
    console.print(f"  {label}: {value}", highlight=False)


def _heading(text: str) -> None:
    console.print(styled(text, "bold"), highlight=False)


@click.command("show")
@click.argument("key")
@click.pass_context
def show_command(ctx: click.Context, key: str) -> None:
    """One company's whole journey on one screen, what is due next, and its audited history."""
    runtime = runtime_of(ctx)
    settings = runtime.config.settings
    today = jst_date(runtime.clock())
    with runtime.sessions() as session:
        found = company_named(session, key)
        view = journey_view.company_view(
            session, settings.programme, found, admission.due_on(settings), today
        )
        _show(view)


def _show(view: CompanyView) -> None:
    c = view.company
    console.print(styled(f"{c.name} ({c.key})", "bold"), highlight=False)
    since = f" since {_when(c.state_since)}" if c.state_since else ""
    console.print(f"state: {view.state.value} {view.state.ja}{since}", highlight=False)
    if c.state_reason:
        console.print(body("why", c.state_reason), highlight=False)
    _identity(view)
    _applications(view)
    _admission(view)
    _connection(view)
    _heading("due next")
    for due in view.due:
        on = f" on {_day(due.on)}" if due.on else ""
        text = f"  {due.what}{on}" + (f": {due.command}" if due.command else "")
        console.print(styled(text + "  (overdue)", "red") if due.late else text, highlight=False)
    _heading("history (JST)")
    for h in view.history:
        who = h.actor + (f" for {h.on_behalf_of}" if h.on_behalf_of else "")
        moved = f" {h.moved}" if h.moved else ""
        console.print(f"  {_when(h.at)}  {h.action}{moved}  by {who}", highlight=False)
        if h.why:
            console.print(body("why", h.why, indent="      "), highlight=False)


def _identity(view: CompanyView) -> None:
    c = view.company
    _heading("identity")
    kind = "sole proprietor (個人事業主)" if c.kind == "sole_proprietor" else "corporation"
    _line("kind", kind + (f", 法人番号 {c.corporate_number}" if c.corporate_number else ""))
    _line("representative", c.representative or "-")
    _line("address", f"{c.address or '-'} ({c.prefecture or 'prefecture unknown'})")
    capital = f"¥{c.capital_yen:,}" if c.capital_yen is not None else "-"
    _line("industry", f"{c.industry or '-'}; capital {capital}; employees {c.employees or '-'}")
    _line("contact", f"{c.contact_name or '-'} <{c.contact_email}> {c.contact_phone}".strip())
    _line("language", c.language)


def _applications(view: CompanyView) -> None:
    for application in view.applications:
        current = application is view.application
        label = "application" if current else f"application #{application.id} (repeat)"
        _heading(f"{label}: received {_when(application.received_at)} from {application.source}")
        _line("course", application.course)
        for column, value in application.raw.items():
            _line(f"as received: {column}", value)
        verdict = application.eligibility or "undecided"
        _line(
            "eligibility",
            verdict + (f" ({_when(application.decided_at)})" if application.decided_at else ""),
        )
        for reason in application.eligibility_reasons:
            _line("  reason", f"{reason.get('ja', '')} / {reason.get('en', '')}")
        if not current:
            continue
        if application.call_done_at is not None:
            _line("call", f"done {_when(application.call_done_at)} by {application.call_by}")
            if application.call_notes:
                console.print(body("call notes", application.call_notes, indent="  "))
        elif view.call_due_on is not None:
            late = " (overdue)" if view.call_overdue else ""
            _line("call", f"due on {_day(view.call_due_on)}{late}")


def _admission(view: CompanyView) -> None:
    d = view.diagnosis
    if d is not None:
        _heading(f"pre-diagnosis: {d.outcome}, {_when(d.done_at)} by {d.done_by}")
        edr = (d.existing_edr_name or "yes") if d.existing_edr else "none"
        _line("EDR users planned", f"{d.edr_users}; UTM devices {d.utm_devices}")
        _line("existing", f"EDR {edr}; UTM {'yes' if d.existing_utm else 'no'}; "
              f"antivirus {d.existing_antivirus or '-'}")  # fmt: skip
        ports = "-" if d.free_hub_ports is None else d.free_hub_ports
        _line("network", f"free hub ports {ports}; policy {d.security_policy}")
        if d.network_notes:
            console.print(body("topology", d.network_notes, indent="  "))
        if d.notes:
            console.print(body("notes", d.notes, indent="  "))
        for reason in d.reasons:
            _line("refused", f"{reason.get('ja', '')} / {reason.get('en', '')}")
    if view.cohort is not None:
        p = view.places
        counts = f" ({p.held} of {p.cohort.capacity} held, {p.waiting} waiting)" if p else ""
        _heading(f"cohort: {view.cohort.key} {view.cohort.name}{counts}")
        if view.position is not None:
            _line(
                "waiting list", f"position {view.position}, since {_when(view.company.queued_at)}"
            )
        elif view.company.place_since is not None:
            _line("place", f"held since {_when(view.company.place_since)}")
        else:
            _line("place", "none")
        planned = f"{view.company.planned_seats}"
        if d is None and view.application is not None:  # not diagnosed yet: the form's
            planned = f"{view.application.planned_seats} as applied"
        _line("planned seats", f"{planned} (cap {view.company.seat_cap})")


def _connection(view: CompanyView) -> None:
    t, trial = view.tenant, view.trial
    if t is not None:
        _heading(f"tenant: {t.external_id} ({t.connector})")
        _line("consented", _when(t.consented_at))
        _line("verified", _when(t.verified_at))
        if t.credentials_dropped_at is not None:
            _line("credentials dropped", _when(t.credentials_dropped_at))
    if trial is not None:
        _heading(f"trial: {_day(trial.starts_on)} to {_day(trial.ends_on)}")
        decided = f" ({_when(trial.decided_at)} by {trial.decided_by})" if trial.decided_at else ""
        _line("decision", trial.decision + decided)
    if view.company.withdrawn_at is not None:
        _line("withdrew", _when(view.company.withdrawn_at))


APPLICATION_COMMANDS = (list_command,)
COMPANY_COMMANDS = (show_command,)
