"""Playbooks checked and tried without acting: what `edrtrial playbooks check` and `test`
print and what the console's playbook page shows, decided in one place so the two never
disagree.

Nothing here stores, mails or sends anything: a file of alerts as an EDR's API sends them
is mapped the way polling maps it and judged by the rules; the decision is only shown.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edrtrial.config import Config
from edrtrial.connectors.base import Connector
from edrtrial.desk.calendar import BusinessCalendar
from edrtrial.errors import EdrTrialError, PlaybookError, Unmappable
from edrtrial.playbooks.checks import PlaybookWarning, warnings
from edrtrial.playbooks.engine import (
    AlertFacts,
    Decision,
    Playbook,
    default_playbook_paths,
    load_playbooks,
)
from edrtrial.playbooks.live import channel_check
from edrtrial.timeutil import utcnow


@dataclass(frozen=True, slots=True)
class Case:
    """One alert to try: how to name it, and its facts (or why there are none)."""

    label: str
    title: str
    severity: str
    company: str
    facts: AlertFacts | None = None
    problem: str = ""


@dataclass(frozen=True, slots=True)
class Tried:
    """A case and what the playbook decided for it (None: it could not be read)."""

    case: Case
    decision: Decision | None


def read_alert_file(data: bytes, name: str) -> Any:
    """The JSON of an alert file, or an EdrTrialError naming the file and what is wrong."""
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise EdrTrialError(f"{name}: not a readable JSON file: {err}") from err


def payload_cases(
    payload: Any,
    name: str,
    connector: type[Connector],
    company: str,
    calendar: BusinessCalendar,
) -> list[Case]:
    """The alerts of a saved API answer (a page, a list or one alert), each mapped through
    the connector's public contract; one that cannot be mapped is a case with its problem."""
    cases = []
    for index, item in enumerate(connector.alert_payloads(payload)):
        raw = item if isinstance(item, dict) else {}
        label = f"{name}[{index}] {raw.get('id') or '(no id)'}"
        title, severity = str(raw.get("title") or ""), str(raw.get("severity") or "")
        try:
            record = connector.map_alert(item)
        except Unmappable as err:
            problem = f"alert {index}: {err.reason}"
            cases.append(Case(label, title, severity, company, problem=problem))
            continue
        tenant = raw.get("tenantId")  # Graph alerts name their tenant; other EDRs may not
        facts = AlertFacts.from_record(
            record,
            company_key=company,
            business_hours=calendar.is_business_hours(record.created_at or utcnow()),
            tenant_id=tenant if isinstance(tenant, str) else "",
        )
        cases.append(Case(label, record.title, record.severity, company, facts))
    return cases


def decide(cases: Iterable[Case], playbook: Playbook) -> list[Tried]:
    """What the playbook decides for each case, acting on nothing."""
    return [
        Tried(case, None if case.facts is None else playbook.evaluate(case.facts)) for case in cases
    ]


@dataclass
class PlaybookCheck:
    """Playbook files checked: each file's rule count, the warnings, the errors (each naming
    its file and line), and for files that load together their channels and rule count."""

    counts: list[tuple[str, int]] = field(default_factory=list)
    warned: list[PlaybookWarning] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    rules: int = 0
    files: int = 0
    channels: list[str] = field(default_factory=list)


def configured_files(config: Config) -> list[tuple[str, Path]]:
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


def check_playbooks(
    named: Sequence[tuple[str, Path]], known_channels: Iterable[str] | None = None
) -> PlaybookCheck:
    """Check each file on its own, then all together in the order given (rule names must be
    unique across files), then, with `known_channels` (the config's desk channels), that
    every rule escalates to one of them. Problems are collected, never raised."""
    found = PlaybookCheck(files=len(named))
    for shown, path in named:
        try:
            loaded = load_playbooks([path])
        except PlaybookError as err:
            found.errors += [_as_written(line, named) for line in err.lines or (str(err),)]
            continue
        found.counts.append((shown, len(loaded.rules)))
        found.warned += warnings(loaded)
    if found.errors:
        return found
    try:
        combined = load_playbooks([path for _, path in named])
    except PlaybookError as err:  # e.g. a rule name used in two files
        found.errors = [_as_written(line, named) for line in err.lines or (str(err),)]
        return found
    found.channels = sorted(combined.channels())
    if found.channels and known_channels is not None:
        try:
            channel_check(known_channels)(combined)
        except PlaybookError as err:
            found.errors = list(err.lines or (str(err),))
            return found
    found.rules = len(combined.rules)
    return found
