"""Playbooks: operator-edited TOML rules that decide each alert's priority and follow-up."""

from edrtrial.playbooks.engine import (
    AlertFacts,
    Decision,
    Playbook,
    default_playbook_paths,
    load_playbooks,
)
from edrtrial.playbooks.live import LivePlaybooks
from edrtrial.playbooks.schema import Priority

__all__ = [
    "AlertFacts",
    "Decision",
    "LivePlaybooks",
    "Playbook",
    "Priority",
    "default_playbook_paths",
    "load_playbooks",
]
