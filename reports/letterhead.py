"""The programme's letterhead, the head of every printed report (`report_layout.html.j2`)."""

from __future__ import annotations

from dataclasses import dataclass

from edrtrial.config import ProgrammeConfig


@dataclass(frozen=True, slots=True)
class Letterhead:
    """Who speaks in a printed report: the programme, its secretariat, how to reach it.

    Configurable (`[programme]` name, secretariat, secretariat_contact), because the
    programme is run by a contracted secretariat that changes between editions.
    """

    programme: str
    secretariat: str
    contact_lines: tuple[str, ...]


def letterhead(programme: ProgrammeConfig) -> Letterhead:
    """The letterhead from the programme's settings; the contact may span lines."""
    lines = tuple(line.strip() for line in programme.secretariat_contact.splitlines())
    return Letterhead(programme.name, programme.secretariat, tuple(line for line in lines if line))
