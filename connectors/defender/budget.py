"""Client-side call budgets, so that Microsoft rarely has to answer a tenant with 429.

Microsoft throttles per application and tenant: Graph counts all /security calls together
(150 a minute), MDE counts each API separately (100 a minute and 1,500 an hour). One budget
object lives in each connector instance, and there is one instance per tenant.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from edrtrial.timeutil import utcnow

MINUTE = 60.0
HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class Clock:
    """Time as the client sees it; tests pass a fake one that never really sleeps."""

    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    now: Callable[[], datetime] = utcnow  # for Retry-After given as an HTTP date
    jitter: Callable[[], float] = random.random  # in [0, 1), spreads retries apart


@dataclass(frozen=True, slots=True)
class Window:
    """At most `calls` calls in any `seconds` long stretch."""

    calls: int
    seconds: float


@dataclass(slots=True)
class _Log:
    times: deque[float] = field(default_factory=deque)
    held_until: float = 0.0


class CallBudget:
    """Sliding-window logs, one per API key, all under the same windows; thread-safe."""

    def __init__(self, windows: Sequence[Window], clock: Clock) -> None:
        self._windows = tuple(windows)
        self._longest = max(window.seconds for window in self._windows)
        self._clock = clock
        self._logs: dict[str, _Log] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Spend one call of `key` and return 0, or return the seconds until one is free."""
        with self._lock:
            now = self._clock.monotonic()
            log = self._logs.setdefault(key, _Log())
            while log.times and log.times[0] <= now - self._longest:
                log.times.popleft()
            wait = log.held_until - now
            for window in self._windows:
                if len(log.times) >= window.calls:
                    # The call that has to leave the window before one more fits in it.
                    leaving = log.times[len(log.times) - window.calls]
                    wait = max(wait, leaving + window.seconds - now)
            if wait > 0:
                return wait
            log.times.append(now)
            return 0.0

    def hold(self, key: str, seconds: float) -> None:
        """Lend no call of `key` for `seconds` (Microsoft said 429 with that Retry-After)."""
        with self._lock:
            log = self._logs.setdefault(key, _Log())
            log.held_until = max(log.held_until, self._clock.monotonic() + seconds)
