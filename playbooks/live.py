"""Playbooks that follow their files while the service runs, keeping the last good rules.

An operator edits a playbook on a running service. A mistake in the edit must not stop
triage nor fall back to nothing: the rules that were loaded last stay in force, the error
is logged with its file and line, and the next good save is picked up.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from edrtrial import logsetup
from edrtrial.errors import PlaybookError
from edrtrial.playbooks.checks import warnings
from edrtrial.playbooks.engine import Playbook, load_playbooks

__all__ = ["LivePlaybooks", "channel_check"]

log = logging.getLogger(__name__)

Stamp = tuple[tuple[int, int, int] | None, ...]
"""Per file (inode, mtime in ns, size), or None while the file is missing."""


class LivePlaybooks:
    """The current playbook of a list of files, reloaded by `refresh()` when they change.

    Thread-safe: jobs running in the scheduler's threads may read `current` while another
    thread refreshes; a reload swaps in a whole new Playbook, never a half-built one.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        check: Callable[[Playbook], None] | None = None,
    ) -> None:
        """Load the files now; a PlaybookError here means the service must not start.

        `check` runs on every load and may raise PlaybookError to refuse a playbook that
        loads but does not fit the service (e.g. it escalates to a channel not configured).
        """
        self._paths = tuple(Path(p) for p in paths)
        self._check = check
        self._lock = threading.Lock()
        self._seen = _stamp(self._paths)
        self._current = self._load()
        self._error: str | None = None

    @property
    def paths(self) -> tuple[Path, ...]:
        """The playbook files, in evaluation order."""
        return self._paths

    @property
    def current(self) -> Playbook:
        """The playbook in force: the last one that loaded and passed the check."""
        return self._current

    @property
    def error(self) -> str | None:
        """Why the files as they are now were refused, or None when `current` matches them."""
        return self._error

    def refresh(self) -> str | None:
        """Reload if a file changed, appeared or disappeared; the error if that reload failed.

        Returns None when nothing changed or the reload succeeded. On failure the previous
        playbook stays current and the same files are not tried again until they change.
        """
        with self._lock:
            stamp = _stamp(self._paths)
            if stamp == self._seen:
                return None
            self._seen = stamp  # taken before reading: a save during the load is seen next time
            try:
                playbook = self._load()
            except PlaybookError as err:
                self._error = str(err)
                log.error(
                    "playbook reload refused, the previous %d rules stay in force:",
                    len(self._current.rules),
                    extra=logsetup.details(err.lines or (self._error,)),
                )
                return self._error
            self._current = playbook
            self._error = None
            log.info(
                "playbooks reloaded: %d rules from %s",
                len(playbook.rules),
                ", ".join(str(p) for p in self._paths),
            )
            return None

    def _load(self) -> Playbook:
        playbook = load_playbooks(self._paths)
        if self._check is not None:
            self._check(playbook)
        for warning in warnings(playbook):
            log.warning("playbook %s", warning)
        return playbook


def _stamp(paths: Sequence[Path]) -> Stamp:
    stamps: list[tuple[int, int, int] | None] = []
    for path in paths:
        try:
            info = os.stat(path)
        except OSError:
            stamps.append(None)
        else:
            stamps.append((info.st_ino, info.st_mtime_ns, info.st_size))
    return tuple(stamps)


def channel_check(known: Iterable[str]) -> Callable[[Playbook], None]:
    """A `check` that refuses rules escalating to a channel the config does not have."""
    names = frozenset(known)

    def check(playbook: Playbook) -> None:
        unknown = [
            f"{rule.source}: rule {rule.name!r}: escalate: no desk channel {rule.escalate!r} "
            f"in the config (it has: {', '.join(sorted(names)) or 'none'})"
            for rule in playbook.rules
            if rule.escalate is not None and rule.escalate not in names
        ]
        if unknown:
            raise PlaybookError.listing(unknown)

    return check
