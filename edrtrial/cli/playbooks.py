"""`edrtrial playbooks`: check playbook files and see what they decide, without acting."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import click
from rich.text import Text

from edrtrial.cli.common import (
    config_of,
    configured_key,
    console,
    err_console,
    fails_cleanly,
)
from edrtrial.config import Config
from edrtrial.connectors import connector_class
from edrtrial.connectors.base import Connector
from edrtrial.db import ensure_current, existing_engine, make_sessions
from edrtrial.desk.calendar import DEFAULT, BusinessCalendar
from edrtrial.desk.playbook_trial import (
    Case,
    check_playbooks,
    configured_files,
    decide,
    payload_cases,
    read_alert_file,
)
from edrtrial.desk.triage import stored_facts
from edrtrial.errors import EdrTrialError, PlaybookError
from edrtrial.ingest.queries import alerts_by_reference, newest_alerts
from edrtrial.playbooks.engine import (
    Playbook,
    default_playbook_paths,
    load_playbooks,
)
from edrtrial.playbooks.explain import summary
from edrtrial.programme.companies import company_by_key
from edrtrial.untrusted import visible

_DEFAULT_LAST = 10
_DEFAULT_CONNECTOR = "defender"


@click.group()
def playbooks() -> None:
    """Playbook files: check them, and test them on alerts without acting."""


def _configured_paths(config: Config) -> list[Path]:
    return [config.resolve(p) for p in config.settings.playbooks] or default_playbook_paths()


@playbooks.command("check")
@click.argument("files", nargs=-1, type=click.Path())
@click.pass_context
@fails_cleanly
def check(ctx: click.Context, files: tuple[str, ...]) -> None:
    """Validate playbook files (default: the configured ones) and count their rules.

    Each file is checked on its own, then all together in the order given (rule names
    must be unique across files). Errors name the file and line; the exit status is 2.
    Rules that load but are unsafe (a suppression that free text alone can trigger) are
    warned about with their file and line; the exit status is then 1.
    """
    config: Config | None = None
    try:
        config = config_of(ctx)
    except EdrTrialError:
        if not files:
            raise  # the configured playbooks need the config
    named = [(str(f), Path(f)) for f in files] or configured_files(_require(config))
    known = None if config is None else [c.name for c in config.settings.desk.escalation_channels()]
    found = check_playbooks(named, known)
    for shown, count in found.counts:
        console.print(f"{shown}: {count} rules", markup=False, highlight=False)
    for warning in found.warned:
        err_console.print(f"warning: {warning}", markup=False, highlight=False)
    if found.errors:
        raise PlaybookError.listing(found.errors)
    if found.channels:
        console.print("escalates to: " + ", ".join(found.channels), markup=False, highlight=False)
    checked = f"{found.rules} rules in {found.files} file(s)"
    if found.warned:
        console.print(f"{len(found.warned)} warning(s): {checked}", markup=False, highlight=False)
        ctx.exit(1)
    console.print(f"ok: {checked}", markup=False, highlight=False)


@playbooks.command("test")
@click.argument(
    "alerts_json", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--alert", "alert_ids", multiple=True, help="A stored alert, by numeric id or source id."
)
@click.option("--company", help="Company key: its stored alerts, or the key for ALERTS_JSON.")
@click.option(
    "--connector",
    "connector_name",
    default=_DEFAULT_CONNECTOR,
    show_default=True,
    help="The connector whose API ALERTS_JSON comes from (defender, cycraft, …).",
)
@click.option(
    "--last",
    type=click.IntRange(min=1),
    help=f"With --company: its N most recent stored alerts (default {_DEFAULT_LAST}).",
)
@click.option(
    "--playbook",
    "playbook_files",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Test this file instead of the configured playbooks (repeatable, in order).",
)
@click.pass_context
@fails_cleanly
def test(
    ctx: click.Context,
    alerts_json: Path | None,
    alert_ids: tuple[str, ...],
    company: str | None,
    connector_name: str,
    last: int | None,
    playbook_files: tuple[Path, ...],
) -> None:
    """Show which rules match each alert and why, WITHOUT acting.

    Nothing is stored, mailed or sent to the EDR. ALERTS_JSON holds alerts as the
    --connector's API sends them, mapped the way polling maps them: a page, a list, or one
    alert. Defender: Graph alerts_v2 (`{"value": [...]}`; incidents with `$expand=alerts`
    give their alerts). CyCraft: its shipped mapping (`{"data": [...]}`; a tenant's mapping
    overrides are not applied). An alert that cannot be mapped is reported, not tested,
    and the exit status is then 1.
    """
    if last is not None and not company:
        raise click.UsageError("--last needs --company")
    given = ctx.get_parameter_source("connector_name") is click.core.ParameterSource.COMMANDLINE
    if given and alerts_json is None:
        raise click.UsageError("--connector needs ALERTS_JSON (stored alerts are already mapped)")
    from_store = bool(alert_ids) or (
        company is not None and (last is not None or alerts_json is None)
    )
    if alerts_json is None and not from_store:
        raise click.UsageError("give ALERTS_JSON, --alert ID or --company KEY [--last N]")
    connector = connector_class(connector_name) if alerts_json is not None else None
    config = config_of(ctx) if from_store or not playbook_files else None
    if company is not None and config is not None:
        # A mistyped key would judge the alerts as no company's: rules narrowed to it unmet.
        company = configured_key(config, company)
    playbook = load_playbooks(list(playbook_files) or _configured_paths(_require(config)))
    calendar = _calendar(config)
    cases: list[Case] = []
    if alerts_json is not None and connector is not None:
        cases += _json_cases(alerts_json, connector, company or "unknown", calendar)
    if from_store:
        cases += _stored_cases(_require(config), alert_ids, company, last, calendar)
    if not cases:
        raise EdrTrialError("no alerts to test")
    if _decide(cases, playbook):
        ctx.exit(1)


def _decide(cases: Sequence[Case], playbook: Playbook) -> int:
    """Print each case's decision and a tally; the number of cases that could not be read."""
    tally: Counter[str] = Counter()
    problems = 0
    for tried in decide(cases, playbook):
        case, decision = tried.case, tried.decision
        console.print(
            f"── {case.label} [{case.company}] {case.title!r} ({case.severity})",
            markup=False,
            highlight=False,
        )
        if decision is None:
            console.print(f"  not tested: {case.problem}", markup=False, highlight=False)
            problems += 1
            continue
        tally[summary(decision)] += 1
        # Several lines of our own; every value the alert sent is quoted inside them on one
        # line by its condition's `because` (playbooks/rules.py), so `visible` keeps only
        # our line breaks and marks any other control.
        console.print(Text(visible(decision.explain())), highlight=False)
        console.print()
    console.print(f"{sum(tally.values())} alert(s) decided:", markup=False, highlight=False)
    for line, count in tally.most_common():
        console.print(f"  {count:>4} × {line}", markup=False, highlight=False)
    if problems:
        console.print(f"{problems} alert(s) could not be read", markup=False, highlight=False)
    return problems


def _require(config: Config | None) -> Config:
    """The config, where the command's options mean it was loaded."""
    assert config is not None  # loaded whenever the store or the configured playbooks are used
    return config


def _calendar(config: Config | None) -> BusinessCalendar:
    """The configured business calendar, or the default one without a config."""
    return DEFAULT if config is None else BusinessCalendar.from_config(config.settings.calendar)


def _json_cases(
    path: Path, connector: type[Connector], company: str, calendar: BusinessCalendar
) -> list[Case]:
    """The alerts of a saved API answer, each mapped through the connector's public contract."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise EdrTrialError(f"{path}: not a readable JSON file: {err}") from err
    return payload_cases(read_alert_file(data, str(path)), path.name, connector, company, calendar)


def _stored_cases(
    config: Config,
    alert_ids: Sequence[str],
    company: str | None,
    last: int | None,
    calendar: BusinessCalendar,
) -> list[Case]:
    """Stored alerts' facts, read in a session that is rolled back: nothing is written."""
    engine = existing_engine(config.database_url)
    try:
        ensure_current(engine)
        with make_sessions(engine)() as session:
            if company and company_by_key(session, company) is None:
                raise EdrTrialError(f"no company {company!r} in the store")
            wanted = [(f"alert {a}", alerts_by_reference(session, a, company)) for a in alert_ids]
            if company and (last is not None or not alert_ids):
                newest = newest_alerts(session, company, last or _DEFAULT_LAST)
                wanted += [(f"alert {alert.id}", [alert]) for alert in newest]
            cases = []
            for name, alerts in wanted:
                if not alerts:
                    cases.append(Case(name, "", "", company or "?", problem="no such alert"))
                for alert in alerts:
                    facts = stored_facts(session, alert, calendar=calendar)
                    label = f"alert {alert.id} ({alert.source_id})"
                    cases.append(Case(label, alert.title, alert.severity, facts.company_key, facts))
            session.rollback()
            return cases
    finally:
        engine.dispose()


COMMANDS = (playbooks,)
