"""`edrtrial playbooks`: check playbook files and see what they decide, without acting."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
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
from edrtrial.desk.triage import stored_facts
from edrtrial.errors import EdrTrialError, PlaybookError, Unmappable
from edrtrial.ingest.queries import alerts_by_reference, newest_alerts
from edrtrial.playbooks.checks import PlaybookWarning, warnings
from edrtrial.playbooks.engine import (
    AlertFacts,
    Playbook,
    default_playbook_paths,
    load_playbooks,
)
from edrtrial.playbooks.explain import summary
from edrtrial.playbooks.live import channel_check
from edrtrial.programme.companies import company_by_key
from edrtrial.timeutil import utcnow
from edrtrial.untrusted import visible

_DEFAULT_LAST = 10
_DEFAULT_CONNECTOR = "defender"


@dataclass(frozen=True, slots=True)
class _Case:
    """One alert to test: how to name it, and its facts (or why there are none)."""

    label: str
    title: str
    severity: str
    company: str
    facts: AlertFacts | None = None
    problem: str = ""


@click.group()
def playbooks() -> None:
    """Playbook files: check them, and test them on alerts without acting."""


def _configured_paths(config: Config) -> list[Path]:
    return [config.resolve(p) for p in config.settings.playbooks] or default_playbook_paths()


def _configured_names(config: Config) -> list[tuple[str, Path]]:
    """The configured playbook files as the config names them, each with the file read; the
    shipped defaults by their name."""
    if config.settings.playbooks:
        return [(str(p), config.resolve(p)) for p in config.settings.playbooks]
    return [(f"built-in {p.name}", p) for p in default_playbook_paths()]


def _as_written(line: str, named: Sequence[tuple[str, Path]]) -> str:
    """A problem's line with each file named as the operator wrote it, not as it was read."""
    for shown, path in named:
        line = line.replace(str(path), shown)
    return line


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
    named = [(str(f), Path(f)) for f in files] or _configured_names(_require(config))
    paths = [path for _, path in named]
    errors: list[str] = []
    warned: list[PlaybookWarning] = []
    for shown, path in named:
        try:
            loaded = load_playbooks([path])
        except PlaybookError as err:
            errors += [_as_written(line, named) for line in err.lines or (str(err),)]
            continue
        console.print(f"{shown}: {len(loaded.rules)} rules", markup=False, highlight=False)
        warned += warnings(loaded)
    for warning in warned:
        err_console.print(f"warning: {warning}", markup=False, highlight=False)
    if errors:
        raise PlaybookError.listing(errors)
    try:
        combined = load_playbooks(paths)
    except PlaybookError as err:  # e.g. a rule name used in two files
        raise PlaybookError.listing(
            [_as_written(line, named) for line in err.lines or (str(err),)]
        ) from None
    channels = sorted(combined.channels())
    if channels and config is not None:
        channel_check(c.name for c in config.settings.desk.escalation_channels())(combined)
    if channels:
        console.print("escalates to: " + ", ".join(channels), markup=False, highlight=False)
    checked = f"{len(combined.rules)} rules in {len(paths)} file(s)"
    if warned:
        console.print(f"{len(warned)} warning(s): {checked}", markup=False, highlight=False)
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
    cases: list[_Case] = []
    if alerts_json is not None and connector is not None:
        cases += _json_cases(alerts_json, connector, company or "unknown", calendar)
    if from_store:
        cases += _stored_cases(_require(config), alert_ids, company, last, calendar)
    if not cases:
        raise EdrTrialError("no alerts to test")
    if _decide(cases, playbook):
        ctx.exit(1)


def _decide(cases: Sequence[_Case], playbook: Playbook) -> int:
    """Print each case's decision and a tally; the number of cases that could not be read."""
    tally: Counter[str] = Counter()
    problems = 0
    for case in cases:
        console.print(
            f"── {case.label} [{case.company}] {case.title!r} ({case.severity})",
            markup=False,
            highlight=False,
        )
        if case.facts is None:
            console.print(f"  not tested: {case.problem}", markup=False, highlight=False)
            problems += 1
            continue
        decision = playbook.evaluate(case.facts)
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
) -> list[_Case]:
    """The alerts of a saved API answer, each mapped through the connector's public contract."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise EdrTrialError(f"{path}: not a readable JSON file: {err}") from err
    cases = []
    for index, item in enumerate(connector.alert_payloads(payload)):
        raw = item if isinstance(item, dict) else {}
        label = f"{path.name}[{index}] {raw.get('id') or '(no id)'}"
        title, severity = str(raw.get("title") or ""), str(raw.get("severity") or "")
        try:
            record = connector.map_alert(item)
        except Unmappable as err:
            problem = f"alert {index}: {err.reason}"
            cases.append(_Case(label, title, severity, company, problem=problem))
            continue
        tenant = raw.get("tenantId")  # Graph alerts name their tenant; other EDRs may not
        facts = AlertFacts.from_record(
            record,
            company_key=company,
            business_hours=calendar.is_business_hours(record.created_at or utcnow()),
            tenant_id=tenant if isinstance(tenant, str) else "",
        )
        cases.append(_Case(label, record.title, record.severity, company, facts))
    return cases


def _stored_cases(
    config: Config,
    alert_ids: Sequence[str],
    company: str | None,
    last: int | None,
    calendar: BusinessCalendar,
) -> list[_Case]:
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
                    cases.append(_Case(name, "", "", company or "?", problem="no such alert"))
                for alert in alerts:
                    facts = stored_facts(session, alert, calendar=calendar)
                    label = f"alert {alert.id} ({alert.source_id})"
                    cases.append(
                        _Case(label, alert.title, alert.severity, facts.company_key, facts)
                    )
            session.rollback()
            return cases
    finally:
        engine.dispose()


COMMANDS = (playbooks,)
