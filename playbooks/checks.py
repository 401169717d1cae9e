"""Rules that load but are unsafe: what `playbooks check` warns about, never refuses.

An alert's title, description and category are words anyone can provoke (a file named
`eicar-invoice.exe` is enough to put "eicar" in a title), and the names in its evidence
(users, URLs, IPs, command lines, device names) are whatever the attacker's files and
processes make them. A rule that suppresses on such text alone, or that keeps such an alert
from becoming a ticket, lets an attacker make a serious alert disappear: no ticket, no
notice, and for a suppression, resolved in the customer's Defender.

Company, tenant and device tag are not a defence: they only narrow whose alerts a rule
sees, and an attacker aiming at one company meets them by definition. What an attacker
cannot write is evidence pinned exactly: every file the alert names among listed hashes
(`every_file_hash`: the any-form `file_hash` holds for EICAR's hash beside a trojan's), or
a command line matched whole by a regex anchored at both ends that spells it out. A run of
a broad class (`.*`, `\\S+`, `\\w+`, `[^"]*`) inside the anchors is a hole the attacker
writes their own command into, so `^.*eicar.*$` pins nothing.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edrtrial.playbooks.engine import Defaults, Playbook
from edrtrial.playbooks.rules import AnyMatches, EveryMatches, EveryOf, Rule

__all__ = [
    "PlaybookWarning",
    "anchored",
    "pinned",
    "free_text_suppressions",
    "free_text_removals",
    "warnings",
]

# The stdlib's own regex parser (`sre_parse` before 3.11, deprecated since), so "anchored"
# is decided on the regex as Python reads it, not on its spelling.
_sre: Any = importlib.import_module("re._parser")

# Severities a rule may quiet on text alone: Defender's own judgement that the alert is
# minor, which no file or process name changes.
MINOR = frozenset({"low", "informational"})
_PIN = (
    "pin it to evidence an attacker cannot write (every_file_hash, or a command_line_regex "
    "/ every_command_line_regex anchored with ^ and $ and spelling the command out, with no "
    "run of a broad class such as .*, \\S+, \\w+ or [^x]*; file_hash also holds beside "
    "another file, and company, tenant and device_tag only narrow whose alerts it sees), or "
    'add severity = ["low", "informational"]'
)
# Classes that match nearly any character a command line holds: a run of one lets the
# attacker write what they like there. `\d` and `\s` are narrow (digits, blanks).
_BROAD_CATEGORIES = frozenset(
    {_sre.CATEGORY_NOT_SPACE, _sre.CATEGORY_WORD, _sre.CATEGORY_NOT_WORD, _sre.CATEGORY_NOT_DIGIT}
)
_ALPHABET = 25  # a range this wide (a-z, A-Z, !-~) spells no name
_REPEATS = frozenset(
    {_sre.MAX_REPEAT, _sre.MIN_REPEAT, getattr(_sre, "POSSESSIVE_REPEAT", _sre.MAX_REPEAT)}
)


@dataclass(frozen=True, slots=True)
class PlaybookWarning:
    """One rule that loads but should be changed, and why."""

    rule: str
    source: str  # file:line
    message: str

    def __str__(self) -> str:
        return f"{self.source}: rule {self.rule!r}: {self.message}"


def anchored(pattern: re.Pattern[str]) -> bool:
    """Whether the regex can only match a whole text: `^`…`$` (or `\\A`…`\\Z`) around every
    top-level alternative; under MULTILINE only `\\A`…`\\Z` count, `^` and `$` meet lines."""
    try:
        parsed = _sre.parse(pattern.pattern, pattern.flags)
    except re.error:
        return False
    items, multiline = list(parsed), bool(parsed.state.flags & re.MULTILINE)
    return _edge(items, multiline, first=True) and _edge(items, multiline, first=False)


def pinned(pattern: re.Pattern[str]) -> bool:
    """Whether the regex matches only command lines it spells out: anchored at both ends,
    with no run (a repeat of more than one) of a broad class anywhere inside."""
    if not anchored(pattern):
        return False
    parsed = _sre.parse(pattern.pattern, pattern.flags)
    return not _open_run(list(parsed))


def _children(op: Any, av: Any) -> list[list[tuple[Any, Any]]]:
    """The sub-sequences of one parsed element (a group's body, a branch's alternatives…)."""
    if op in _REPEATS:
        return [list(av[2])]
    if op is _sre.SUBPATTERN:
        return [list(av[3])]
    if op is _sre.BRANCH:
        return [list(branch) for branch in av[1]]
    if op in (_sre.ASSERT, _sre.ASSERT_NOT):
        return [list(av[1])]
    if op is getattr(_sre, "ATOMIC_GROUP", None):
        return [list(av)]
    if op is _sre.GROUPREF_EXISTS:
        return [list(part) for part in av[1:] if part is not None]
    return []


def _open_run(items: Sequence[tuple[Any, Any]]) -> bool:
    """Whether some repeat of more than one may take a broad class, at any depth."""
    for op, av in items:
        if op in _REPEATS and av[1] > 1 and _broad(list(av[2])):
            return True
        if any(_open_run(child) for child in _children(op, av)):
            return True
    return False


def _broad(items: Sequence[tuple[Any, Any]]) -> bool:
    """Whether the sequence may match a broad class of characters somewhere."""
    for op, av in items:
        if op in (_sre.ANY, _sre.NOT_LITERAL):
            return True
        if op is _sre.IN and any(_broad_member(member) for member in av):
            return True
        if any(_broad(child) for child in _children(op, av)):
            return True
    return False


def _broad_member(member: tuple[Any, Any]) -> bool:
    op, av = member
    if op is _sre.NEGATE:
        return True
    if op is _sre.CATEGORY:
        return av in _BROAD_CATEGORIES
    return bool(op is _sre.RANGE and av[1] - av[0] >= _ALPHABET)


def _edge(items: Sequence[tuple[Any, Any]], multiline: bool, *, first: bool) -> bool:
    """Whether the sequence's first (or last) element pins it to the text's start (end).

    Alternatives sharing a prefix come back factored out (`^a$|^b$` is `^` then a branch),
    so a branch or a group at the edge is looked into: each of its alternatives must be
    pinned.
    """
    if not items:
        return False
    op, av = items[0] if first else items[-1]
    if op is _sre.AT:
        if first:
            return bool(
                av is _sre.AT_BEGINNING_STRING or (av is _sre.AT_BEGINNING and not multiline)
            )
        return bool(av is _sre.AT_END_STRING or (av is _sre.AT_END and not multiline))
    if op is _sre.BRANCH:
        return all(_edge(list(branch), multiline, first=first) for branch in av[1])
    if op is _sre.SUBPATTERN:  # a group, maybe with inline flags: (?m:…)
        return _edge(list(av[3]), multiline or bool(av[1] & re.MULTILINE), first=first)
    return False


def evidence_anchored(rule: Rule) -> bool:
    """Whether the rule holds only for alerts whose every file is a listed hash, or that
    name a command line spelled out whole by its regex (see `pinned`)."""
    for condition in rule.conditions:
        if isinstance(condition, EveryOf) and condition.attr == "file_hashes":
            return True
        if isinstance(condition, EveryMatches | AnyMatches) and condition.attr == (
            "raw_command_lines"
        ):
            if all(pinned(p) for p in condition.patterns):
                return True
    return False


def _on_free_text(rule: Rule) -> bool:
    """Free text alone decides it, and Defender's minor severities do not bound it."""
    minor = rule.severities is not None and rule.severities <= MINOR
    return not minor and not evidence_anchored(rule)


def free_text_suppressions(playbook: Playbook) -> list[PlaybookWarning]:
    """Rules that suppress medium or high alerts on nothing an attacker cannot write."""
    return [
        PlaybookWarning(rule.name, rule.source, _why(rule, "suppresses"))
        for rule in playbook.rules
        if rule.suppress is not None and _on_free_text(rule)
    ]


def free_text_removals(playbook: Playbook) -> list[PlaybookWarning]:
    """Rules that, without suppressing, keep medium or high alerts from becoming tickets.

    As the engine decides: the first matching rule that sets `ticket` wins, and with `stop`
    what the rule leaves unset comes from the defaults. An alert without a ticket reaches
    the desk in no queue and no notice (notices belong to tickets), only in the report.
    """
    found = []
    for rule in playbook.rules:
        if rule.suppress is None and _on_free_text(rule) and _no_ticket(rule, playbook.defaults):
            found.append(PlaybookWarning(rule.name, rule.source, _why(rule, "takes")))
    return found


def _no_ticket(rule: Rule, defaults: Defaults) -> bool:
    if rule.ticket is not None:
        return not rule.ticket
    return rule.stop and not defaults.ticket


def warnings(playbook: Playbook) -> list[PlaybookWarning]:
    """Everything `playbooks check` warns about in a loaded playbook, in rule order."""
    order = {rule.name: index for index, rule in enumerate(playbook.rules)}
    found = free_text_suppressions(playbook) + free_text_removals(playbook)
    return sorted(found, key=lambda w: order[w.rule])


def _why(rule: Rule, does: str) -> str:
    severities = sorted((rule.severities or frozenset()) - MINOR) or ["medium", "high"]
    looks_at = sorted(rule.condition_keys - {"severity"})
    basis = f"on {', '.join(looks_at)} alone" if looks_at else "on no condition at all"
    which = " and ".join(severities)
    what = (
        f"suppresses {which} alerts {basis}"
        if does == "suppresses"
        else f"takes {which} alerts off the desk (no ticket, so no notice) {basis}"
    )
    return f"{what}; {_PIN}"
