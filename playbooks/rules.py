"""Compiled rules: conditions prepared once at load so evaluating an alert is cheap."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from edrtrial.playbooks.facts import AlertFacts, FoldedFacts, ip_key, user_forms
from edrtrial.playbooks.schema import CONDITION_KEYS, Correlate, Isolate, Priority, RuleSpec
from edrtrial.untrusted import one_line


class Condition(Protocol):
    """One condition of a rule."""

    @property
    def cost(self) -> int:
        """Rough cost of `holds`; cheap conditions run first so most rules fail fast."""
        ...

    def holds(self, folded: FoldedFacts) -> bool:
        """Whether the alert meets the condition."""
        ...

    def because(self, facts: AlertFacts) -> str:
        """Why it held for this alert, in words, for `explain()`: one line, every value the
        alert brought quoted with `!r` or `one_line`, so a command line cannot write a line
        of the explanation."""
        ...


@dataclass(frozen=True, slots=True)
class BusinessHours:
    """Inside (or outside) the support desk's business hours, as the caller computed it."""

    wanted: bool
    cost: int = 0

    def holds(self, folded: FoldedFacts) -> bool:
        """Whether the alert meets the condition."""
        return folded.business_hours is self.wanted

    def because(self, facts: AlertFacts) -> str:
        """Why it held for this alert."""
        return "inside business hours" if self.wanted else "outside business hours"


@dataclass(frozen=True, slots=True)
class OneOf:
    """An enum-like field equals one of the values, ignoring case."""

    key: str
    attr: str
    values: frozenset[str]
    cost: int = 1

    def holds(self, folded: FoldedFacts) -> bool:
        """Whether the alert meets the condition."""
        return getattr(folded, self.attr) in self.values

    def because(self, facts: AlertFacts) -> str:
        """Why it held for this alert."""
        return f"{self.key} is {getattr(facts, self.attr)!r}"


@dataclass(frozen=True, slots=True)
class Mitre:
    """The alert names one of the techniques; a parent id also covers its sub-techniques."""

    ids: frozenset[str]
    cost: int = 2

    def holds(self, folded: FoldedFacts) -> bool:
        """Whether the alert meets the condition."""
        return not self.ids.isdisjoint(folded.mitre_techniques)

    def because(self, facts: AlertFacts) -> str:
        """Why it held for this alert."""
        hits = []
        for technique in facts.mitre_techniques:
            upper = technique.strip().upper()
            parent = upper.partition(".")[0]
            if upper in self.ids:
                hits.append(upper)
            elif parent in self.ids:
                hits.append(f"{upper} (under {parent})")
        return "mitre technique " + ", ".join(hits)


@dataclass(frozen=True, slots=True)
class TitleContains:
    """The title contains one of the texts, ignoring case."""

    needles: tuple[str, ...]
    cost: int = 3

    def holds(self, folded: FoldedFacts) -> bool:
        """Whether the alert meets the condition."""
        title = folded.title
        return any(needle in title for needle in self.needles)

    def because(self, facts: AlertFacts) -> str:
        """Why it held for this alert."""
        found = [n for n in self.needles if n in facts.title.casefold()]
        return f"title {facts.title!r} contains {found[0]!r}" if found else "title"


@dataclass(frozen=True, slots=True)
class TitleMatches:
    """The title matches one of the regular expressions (search, ignoring case)."""

    patterns: tuple[re.Pattern[str], ...]
    cost: int = 4

    def holds(self, folded: FoldedFacts) -> bool:
        """Whether the alert meets the condition."""
        return any(p.search(folded.raw_title) for p in self.patterns)

    def because(self, facts: AlertFacts) -> str:
        """Why it held for this alert."""
        found = [p.pattern for p in self.patterns if p.search(facts.title)]
        return f"title {facts.title!r} matches /{found[0]}/" if found else "title_regex"


@dataclass(frozen=True, slots=True)
class DeviceMatches:
    """A device named in the alert matches one of the regular expressions."""

    patterns: tuple[re.Pattern[str], ...]
    cost: int = 5

    def holds(self, folded: FoldedFacts) -> bool:
        """Whether the alert meets the condition."""
        return any(p.search(name) for name in folded.device_names for p in self.patterns)

    def because(self, facts: AlertFacts) -> str:
        """Why it held for this alert."""
        for name in facts.device_names:
            for pattern in self.patterns:
                if pattern.search(name):
                    return f"device {name!r} matches /{pattern.pattern}/"
        return "device_name_regex"


@dataclass(frozen=True, slots=True)
class AnyOf:
    """A many-valued field (users, hashes, device tags) holds one of the values."""

    key: str
    attr: str
    values: frozenset[str]
    fold: Callable[[str], tuple[str, ...]]
    cost: int = 2

    def holds(self, folded: FoldedFacts) -> bool:
        """Whether the alert meets the condition."""
        return not self.values.isdisjoint(getattr(folded, self.attr))

    def because(self, facts: AlertFacts) -> str:
        """Why it held for this alert."""
        for value in getattr(facts, self.attr):
            hits = [form for form in self.fold(value) if form in self.values]
            if hits and hits[0] == value.strip().casefold():
                return f"{self.key} '{one_line(value)}' is listed"
            if hits:
                return f"{self.key} '{one_line(value)}' matches listed '{one_line(hits[0])}'"
        return self.key


def _shown(pattern: re.Pattern[str]) -> str:
    """A regex as one line: a verbose one, written over several lines, with its layout undone."""
    if pattern.flags & re.VERBOSE:
        return " ".join(pattern.pattern.split())
    return pattern.pattern


def _folded_one(value: str) -> tuple[str, ...]:
    return (value.strip().casefold(),)


@dataclass(frozen=True, slots=True)
class InNetworks:
    """An IP of the alert lies in one of the networks; unparsable alert IPs never match."""

    networks: tuple[tuple[int, int, int, str], ...]  # (version, mask, network, written)
    cost: int = 3

    def holds(self, folded: FoldedFacts) -> bool:
        """Whether the alert meets the condition."""
        for version, address in folded.ips:
            for net_version, mask, network, _ in self.networks:
                if version == net_version and address & mask == network:
                    return True
        return False

    def because(self, facts: AlertFacts) -> str:
        """Why it held for this alert."""
        for text in facts.ips:
            key = ip_key(text)
            if key is None:
                continue
            for version, mask, network, written in self.networks:
                if key[0] == version and key[1] & mask == network:
                    return f"IP {one_line(text.strip())} is in {written}"
        return "ip"


@dataclass(frozen=True, slots=True)
class AnyContains:
    """One of a many-valued text field (URLs, command lines) contains one of the texts."""

    key: str
    label: str
    attr: str
    needles: tuple[str, ...]
    cost: int = 4

    def holds(self, folded: FoldedFacts) -> bool:
        """Whether the alert meets the condition."""
        values = getattr(folded, self.attr)
        return any(needle in value for value in values for needle in self.needles)

    def because(self, facts: AlertFacts) -> str:
        """Why it held for this alert."""
        for value in getattr(facts, self.attr):
            for needle in self.needles:
                if needle in value.casefold():
                    return f"{self.label} {value!r} contains {needle!r}"
        return self.key


@dataclass(frozen=True, slots=True)
class AnyMatches:
    """One of a many-valued text field (users, URLs) matches one of the regular expressions."""

    key: str
    label: str
    attr: str
    patterns: tuple[re.Pattern[str], ...]
    cost: int = 5

    def holds(self, folded: FoldedFacts) -> bool:
        """Whether the alert meets the condition."""
        return any(p.search(value) for value in getattr(folded, self.attr) for p in self.patterns)

    def because(self, facts: AlertFacts) -> str:
        """Why it held for this alert."""
        for value in getattr(facts, self.attr.removeprefix("raw_")):
            for pattern in self.patterns:
                if pattern.search(value):
                    return f"{self.label} '{one_line(value)}' matches /{_shown(pattern)}/"
        return self.key


@dataclass(frozen=True, slots=True)
class EveryOf:
    """The alert names at least one value of a many-valued field (hashes), and each is listed.

    A signature must be the alert's whole evidence: the EICAR hash beside a trojan's is not
    the test file, so one unlisted value fails the condition.
    """

    key: str
    attr: str
    values: frozenset[str]
    cost: int = 2

    def holds(self, folded: FoldedFacts) -> bool:
        """Whether the alert meets the condition."""
        found: frozenset[str] = getattr(folded, self.attr)
        return bool(found) and found <= self.values

    def because(self, facts: AlertFacts) -> str:
        """Why it held for this alert."""
        count = len(getattr(facts, self.attr))
        return f"every {self.key} ({count}) is listed"


@dataclass(frozen=True, slots=True)
class EveryMatches:
    """The alert names at least one value of a text field (command lines), and each matches.

    The onboarding test's command beside `powershell -enc …` is not the test: every process
    the evidence names must be the documented command.
    """

    key: str
    label: str
    attr: str
    patterns: tuple[re.Pattern[str], ...]
    cost: int = 6

    def holds(self, folded: FoldedFacts) -> bool:
        """Whether the alert meets the condition."""
        values: tuple[str, ...] = getattr(folded, self.attr)
        return bool(values) and all(any(p.search(value) for p in self.patterns) for value in values)

    def because(self, facts: AlertFacts) -> str:
        """Why it held for this alert."""
        values = getattr(facts, self.attr.removeprefix("raw_"))
        shown = " or ".join(f"/{_shown(p)}/" for p in self.patterns)
        return f"every {self.label} ({len(values)}) matches {shown}"


@dataclass(frozen=True, slots=True)
class Rule:
    """A rule ready to run: conditions (all must hold) and the outcomes it asks for."""

    name: str
    source: str
    description: str
    conditions: tuple[Condition, ...]
    priority: Priority | None = None
    ticket: bool | None = None
    notify_desk: bool | None = None
    notify_company: bool | None = None
    suppress: str | None = None
    mark_device_verified: bool | None = None
    correlate: Correlate | None = None
    correlate_window_minutes: int | None = None
    escalate: str | None = None
    isolate: Isolate | None = None
    classification: str | None = None
    determination: str | None = None
    stop: bool = False
    # What the rule looks at, as written, for `checks` (e.g. a suppression on free text).
    condition_keys: frozenset[str] = frozenset()
    severities: frozenset[str] | None = None

    def matches(self, folded: FoldedFacts) -> bool:
        """Whether every condition holds (checked cheapest first)."""
        for condition in self.conditions:
            if not condition.holds(folded):
                return False
        return True


def _folded(values: list[str]) -> frozenset[str]:
    return frozenset(v.strip().casefold() for v in values)


def _needles(values: list[str]) -> tuple[str, ...]:
    return tuple(v.casefold() for v in values)


def _compiled(values: list[str]) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(v, re.IGNORECASE) for v in values)


def _networks(values: list[str]) -> tuple[tuple[int, int, int, str], ...]:
    networks = []
    for value in values:
        network = ipaddress.ip_network(value)  # validated by the schema
        mask = int(network.netmask)
        networks.append((network.version, mask, int(network.network_address), value))
    return tuple(networks)


def compile_rule(spec: RuleSpec, source: str) -> Rule:
    """Turn a validated rule into one that evaluates fast; `source` is `file:line`."""
    conditions: list[Condition] = []
    if spec.business_hours is not None:
        conditions.append(BusinessHours(spec.business_hours))
    for key, attr in (
        ("severity", "severity"),
        ("status", "status"),
        ("category", "category"),
        ("detection_source", "detection_source"),
        ("service_source", "service_source"),
        ("company", "company_key"),
        ("tenant", "tenant_id"),
    ):
        values = getattr(spec, key)
        if values is not None:
            conditions.append(OneOf(key, attr, _folded(values)))
    if spec.device_tag is not None:
        conditions.append(AnyOf("device tag", "device_tags", _folded(spec.device_tag), _folded_one))
    if spec.file_hash is not None:
        conditions.append(AnyOf("file hash", "file_hashes", _folded(spec.file_hash), _folded_one))
    if spec.user is not None:
        conditions.append(AnyOf("user", "users", _folded(spec.user), user_forms))
    if spec.ip is not None:
        conditions.append(InNetworks(_networks(spec.ip)))
    if spec.url is not None:
        conditions.append(AnyContains("url", "URL", "urls", _needles(spec.url)))
    if spec.command_line is not None:
        needles = _needles(spec.command_line)
        conditions.append(AnyContains("command_line", "command line", "command_lines", needles))
    if spec.user_regex is not None:
        conditions.append(AnyMatches("user_regex", "user", "raw_users", _compiled(spec.user_regex)))
    if spec.url_regex is not None:
        conditions.append(
            AnyMatches("url_regex", "URL", "raw_urls", _compiled(spec.url_regex), cost=6)
        )
    if spec.command_line_regex is not None:
        patterns = _compiled(spec.command_line_regex)
        conditions.append(
            AnyMatches("command_line_regex", "command line", "raw_command_lines", patterns, cost=6)
        )
    if spec.every_file_hash is not None:
        hashes = _folded(spec.every_file_hash)
        conditions.append(EveryOf("file hash", "file_hashes", hashes))
    if spec.every_command_line_regex is not None:
        patterns = _compiled(spec.every_command_line_regex)
        conditions.append(
            EveryMatches("every_command_line_regex", "command line", "raw_command_lines", patterns)
        )
    if spec.mitre is not None:
        conditions.append(Mitre(frozenset(spec.mitre)))
    if spec.title is not None:
        conditions.append(TitleContains(tuple(v.casefold() for v in spec.title)))
    if spec.title_regex is not None:
        conditions.append(TitleMatches(_compiled(spec.title_regex)))
    if spec.device_name_regex is not None:
        conditions.append(DeviceMatches(_compiled(spec.device_name_regex)))
    conditions.sort(key=lambda c: c.cost)
    return Rule(
        name=spec.name,
        source=source,
        description=spec.description,
        conditions=tuple(conditions),
        priority=spec.priority,
        ticket=spec.ticket,
        notify_desk=spec.notify_desk,
        notify_company=spec.notify_company,
        suppress=spec.suppress,
        mark_device_verified=spec.mark_device_verified,
        correlate=spec.correlate,
        correlate_window_minutes=spec.correlate_window_minutes,
        escalate=spec.escalate,
        isolate=spec.isolate,
        classification=spec.classification,
        determination=spec.determination,
        stop=spec.stop,
        condition_keys=frozenset(k for k in CONDITION_KEYS if getattr(spec, k) is not None),
        severities=None if spec.severity is None else frozenset(spec.severity),
    )
