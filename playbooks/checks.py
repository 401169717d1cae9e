"""Rules that load but are unsafe: what `playbooks check` warns about, never refuses.

An alert's title, description and category are words anyone can provoke (a file named
`eicar-invoice.exe` is enough to put "eicar" in a title), and the names in its evidence
(users, URLs, IPs, command lines, device names) are whatever the attacker's files and
processes make them. A rule that suppresses on such text alone lets an attacker make a
serious alert disappear: no ticket, no notice, resolved in the customer's Defender.
"""

from __future__ import annotations

from dataclasses import dataclass

from edrtrial.playbooks.engine import Playbook
from edrtrial.playbooks.rules import Rule

__all__ = ["PlaybookWarning", "free_text_suppressions", "warnings"]

# Conditions an alert's author cannot choose: they pin a rule to a known file or to one
# company's own devices.
ANCHORS = frozenset({"file_hash", "company", "tenant", "device_tag"})
# Severities a suppression may cover on text alone: Defender's own judgement that the alert
# is minor, which no file or process name changes.
MINOR = frozenset({"low", "informational"})


@dataclass(frozen=True, slots=True)
class PlaybookWarning:
    """One rule that loads but should be changed, and why."""

    rule: str
    source: str  # file:line
    message: str

    def __str__(self) -> str:
        return f"{self.source}: rule {self.rule!r}: {self.message}"


def free_text_suppressions(playbook: Playbook) -> list[PlaybookWarning]:
    """Rules that suppress medium or high alerts on nothing an attacker cannot write."""
    found = []
    for rule in playbook.rules:
        if rule.suppress is None or not ANCHORS.isdisjoint(rule.condition_keys):
            continue
        if rule.severities is not None and rule.severities <= MINOR:
            continue
        found.append(PlaybookWarning(rule.name, rule.source, _why(rule)))
    return found


def warnings(playbook: Playbook) -> list[PlaybookWarning]:
    """Everything `playbooks check` warns about in a loaded playbook."""
    return free_text_suppressions(playbook)


def _why(rule: Rule) -> str:
    severities = sorted((rule.severities or frozenset()) - MINOR) or ["medium", "high"]
    looks_at = sorted(rule.condition_keys - {"severity"})
    basis = f"on {', '.join(looks_at)} alone" if looks_at else "on no condition at all"
    return (
        f"suppresses {' and '.join(severities)} alerts {basis}; pin it to a file_hash, "
        f'company, tenant or device_tag, or add severity = ["low", "informational"]'
    )
