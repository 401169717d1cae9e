"""`edrtrial playbooks`: check playbook files and see what they decide, without acting."""

from __future__ import annotations

import click


@click.group()
def playbooks() -> None:
    """Playbook files: check them, and test them on alerts without acting."""
