"""The playbook engine: pure, fast rule evaluation that turns an alert into a decision."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import TypeVar

from edrtrial.errors import PlaybookError
from edrtrial.playbooks.explain import explain
from edrtrial.playbooks.facts import AlertFacts, FoldedFacts
from edrtrial.playbooks.loader import read_playbook
from edrtrial.playbooks.rules import Rule, compile_rule
from edrtrial.playbooks.schema import OUTCOME_KEYS, Correlate, DefaultsSpec, Isolate, Priority

__all__ = [
    "AlertFacts",
    "Decision",
    "Defaults",
    "Playbook",
    "default_playbook_paths",
    "load_playbooks",
]

_BUILTIN_TABLE: Mapping[str, Priority] = MappingProxyType(
    {"high": "P1", "medium": "P2", "low": "P3", "informational": "P4", "unknown": "P4"}
)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Defaults:
    """What an alert gets for each outcome no matching rule set."""

    priority: Priority = "P4"
    severity_priority: Mapping[str, Priority] = field(default_factory=lambda: _BUILTIN_TABLE)
    ticket: bool = False
    notify_desk: bool = False
    notify_company: bool = False
    correlate: Correlate = "incident"
    correlate_window_minutes: int = 60

    @classmethod
    def merged(cls, layers: Sequence[DefaultsSpec]) -> Defaults:
        """Merge files' `[defaults]`: like rules, the first file that sets a value wins."""
        table: dict[str, Priority] = {}
        for layer in [*layers, DefaultsSpec(severity_priority=dict(_BUILTIN_TABLE))]:
            for severity, priority in (layer.severity_priority or {}).items():
                table.setdefault(severity, priority)
        base = cls()
        return cls(
            priority=_first([layer.priority for layer in layers], base.priority),
            severity_priority=MappingProxyType(table),
            ticket=_first([layer.ticket for layer in layers], base.ticket),
            notify_desk=_first([layer.notify_desk for layer in layers], base.notify_desk),
            notify_company=_first([layer.notify_company for layer in layers], base.notify_company),
            correlate=_first([layer.correlate for layer in layers], base.correlate),
            correlate_window_minutes=_first(
                [layer.correlate_window_minutes for layer in layers], base.correlate_window_minutes
            ),
        )

    def priority_for(self, severity: str) -> Priority:
        """The priority for a (case-folded) severity; the fallback for severities not listed."""
        return self.severity_priority.get(severity, self.priority)


@dataclass(frozen=True, slots=True)
class Trace:
    """How a decision came about, kept only to explain it."""

    facts: AlertFacts
    hits: tuple[Rule, ...]
    set_by: Mapping[str, Rule]
    defaults: Defaults


@dataclass(frozen=True, slots=True)
class Decision:
    """What happens to one alert.

    `correlate` and its window tell the desk which ticket the alert joins; `escalate` names
    the desk channel to tell first; `isolate` proposes or requests isolating the alert's
    devices; `classification` and `determination` (lower-case, as Graph takes them
    case-insensitively) are the verdict to write back to the EDR.
    """

    priority: Priority
    ticket: bool
    notify_desk: bool
    notify_company: bool
    suppressed_reason: str | None
    mark_device_verified: bool
    matched: tuple[str, ...]
    correlate: Correlate = "incident"
    correlate_window_minutes: int = 60
    escalate: str | None = None
    isolate: Isolate | None = None
    classification: str | None = None
    determination: str | None = None
    suppressed_by: str | None = None  # the rule that suppressed it, for the audit log
    trace: Trace | None = field(default=None, compare=False, repr=False)

    def explain(self) -> str:
        """A human-readable account: each outcome and where it came from, each matched rule."""
        return explain(self)


class _Chosen:
    """Outcomes collected while rules run; the first rule that sets a field wins."""

    __slots__ = ("set_by", *OUTCOME_KEYS)

    def __init__(self) -> None:
        self.set_by: dict[str, Rule] = {}
        self.priority: Priority | None = None
        self.ticket: bool | None = None
        self.notify_desk: bool | None = None
        self.notify_company: bool | None = None
        self.suppress: str | None = None
        self.mark_device_verified: bool | None = None
        self.correlate: Correlate | None = None
        self.correlate_window_minutes: int | None = None
        self.escalate: str | None = None
        self.isolate: Isolate | None = None
        self.classification: str | None = None
        self.determination: str | None = None

    def take(self, rule: Rule) -> None:
        for key in _TAKEN:
            if getattr(self, key) is None:
                value = getattr(rule, key)
                if value is not None:
                    setattr(self, key, value)
                    self.set_by[key] = rule
        # A determination belongs to its classification: both come from the same rule.
        if self.set_by.get("classification") is rule and rule.determination is not None:
            self.determination = rule.determination
            self.set_by["determination"] = rule


_TAKEN = tuple(key for key in OUTCOME_KEYS if key != "determination")


@dataclass(frozen=True, slots=True)
class Playbook:
    """Compiled rules in evaluation order, plus the defaults for outcomes no rule set."""

    rules: tuple[Rule, ...]
    defaults: Defaults = field(default_factory=Defaults)

    def evaluate(self, facts: AlertFacts) -> Decision:
        """Run the rules over one alert. Pure: no I/O, no clock, no state."""
        folded = FoldedFacts.of(facts)
        chosen = _Chosen()
        hits: list[Rule] = []
        for rule in self.rules:
            if rule.matches(folded):
                hits.append(rule)
                chosen.take(rule)
                if rule.stop:
                    break
        defaults = self.defaults
        quiet = chosen.suppress is not None  # never tickets, notifies, escalates or isolates
        return Decision(
            priority=chosen.priority or defaults.priority_for(folded.severity),
            ticket=not quiet and _pick(chosen.ticket, defaults.ticket),
            notify_desk=not quiet and _pick(chosen.notify_desk, defaults.notify_desk),
            notify_company=not quiet and _pick(chosen.notify_company, defaults.notify_company),
            suppressed_reason=chosen.suppress,
            mark_device_verified=bool(chosen.mark_device_verified),
            matched=tuple(rule.name for rule in hits),
            correlate=chosen.correlate or defaults.correlate,
            correlate_window_minutes=(
                chosen.correlate_window_minutes or defaults.correlate_window_minutes
            ),
            escalate=None if quiet else chosen.escalate,
            isolate=None if quiet else chosen.isolate,
            classification=chosen.classification,
            determination=chosen.determination,
            suppressed_by=chosen.set_by["suppress"].name if quiet else None,
            trace=Trace(facts, tuple(hits), MappingProxyType(chosen.set_by), defaults),
        )

    def channels(self) -> frozenset[str]:
        """Every desk channel the rules escalate to, so a config lacking one can refuse them."""
        return frozenset(rule.escalate for rule in self.rules if rule.escalate is not None)


def _pick(value: bool | None, default: bool) -> bool:
    return default if value is None else value


def _first(values: Sequence[T | None], fallback: T) -> T:
    return next((value for value in values if value is not None), fallback)


def load_playbooks(paths: Sequence[Path]) -> Playbook:
    """Load playbook files; rules run in the order of the files, then of the rules in each."""
    if not paths:
        raise PlaybookError("no playbook files given")
    rules: list[Rule] = []
    layers: list[DefaultsSpec] = []
    first_seen: dict[str, str] = {}
    for path in map(Path, paths):
        parsed = read_playbook(path)
        for spec, line in zip(parsed.spec.rules, parsed.rule_lines, strict=True):
            where = f"{path}:{line}"
            earlier = first_seen.get(spec.name.casefold())
            if earlier is not None:
                raise PlaybookError(
                    f"{where}: rule {spec.name!r}: duplicate rule name "
                    f"(first defined at {earlier}); names must be unique across all files"
                )
            first_seen[spec.name.casefold()] = where
            rules.append(compile_rule(spec, source=f"{path.name}:{line}"))
        layers.append(parsed.spec.defaults)
    return Playbook(rules=tuple(rules), defaults=Defaults.merged(layers))


def default_playbook_paths() -> list[Path]:
    """The playbook files shipped in this package, sorted by file name."""
    package = resources.files("edrtrial.playbooks")
    found = [Path(str(entry)) for entry in package.iterdir() if entry.name.endswith(".toml")]
    return sorted(found, key=lambda p: p.name)
