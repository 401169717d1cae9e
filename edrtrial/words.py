"""What the service says to a person, in English, keeping its pattern and values so that the
console can say it again in the reader's language.

A refusal (`ActionRefused`, `TicketError`, `JourneyError`, ...) is written once, where the rule
is, and read in two places: the terminal prints it as it is, in English; the console shows it
in Japanese by default. `Words` is that sentence: a `str` (the English, so every caller that
prints, logs or compares it is unchanged) that also remembers the pattern it was made from and
the values put into it. The console looks the pattern up in its catalogs (the extraction finds
it by this class's name) and fills in the same values.

Only the pattern is translated, never a value: a device's or a company's name, a ticket's
number and an EDR's reason are shown as they came. A value that is itself `Words` is
translated too, so a sentence can be built from smaller ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class Words(str):
    """`Words("%(device)s is already isolated", device=name)`: the English sentence, with its
    pattern (`%(name)s` placeholders, as the console's catalogs write them) and values."""

    pattern: str
    values: Mapping[str, Any]

    def __new__(cls, pattern: str, /, **values: Any) -> Words:
        made = super().__new__(cls, pattern % values if values else pattern)
        made.pattern = pattern
        made.values = values
        return made

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled (an exception sent across a process) it stays Words, not its English only.
        return (_remake, (self.pattern, dict(self.values)))


def _remake(pattern: str, values: dict[str, Any]) -> Words:
    return Words(pattern, **values)


def said(message: object) -> object:
    """What a service's error or message said: the `Words` it was made with when it was one
    sentence of them, else the message itself (an error's `str`)."""
    if isinstance(message, BaseException):
        if len(message.args) == 1 and isinstance(message.args[0], Words):
            return message.args[0]
        return str(message)
    return message
