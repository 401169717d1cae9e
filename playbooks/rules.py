"""Compiled rules: conditions prepared once at load so evaluating an alert is cheap."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from edrtrial.playbooks.facts import AlertFacts, FoldedFacts
from edrtrial.playbooks.schema import Priority, RuleSpec


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
        """Why it held for this alert, in words, for `explain()`."""
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
    stop: bool = False

    def matches(self, folded: FoldedFacts) -> bool:
        """Whether every condition holds (checked cheapest first)."""
        for condition in self.conditions:
            if not condition.holds(folded):
                return False
        return True


def _folded(values: list[str]) -> frozenset[str]:
    return frozenset(v.strip().casefold() for v in values)


def _compiled(values: list[str]) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(v, re.IGNORECASE) for v in values)


def compile_rule(spec: RuleSpec, source: str) -> Rule:
    """Turn a validated rule into one that evaluates fast; `source` is `file:line`."""
    conditions: list[Condition] = []
    if spec.business_hours is not None:
        conditions.append(BusinessHours(spec.business_hours))
    for key, attr in (
        ("severity", "severity"), ("status", "status"), ("category", "category"),
        ("detection_source", "detection_source"), ("service_source", "service_source"),
        ("company", "company_key"),
    ):
        values = getattr(spec, key)
        if values is not None:
            conditions.append(OneOf(key, attr, _folded(values)))
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
        stop=spec.stop,
    )
