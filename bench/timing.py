"""Cheap measurements around edrtrial's own code: time inside connector calls, memory peaks."""

from __future__ import annotations

import resource
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from types import ModuleType
from typing import Any, ParamSpec, TypeVar

from edrtrial.connectors.base import Connector
from edrtrial.service.runtime import Runtime, TenantRef

P = ParamSpec("P")
R = TypeVar("R")


class Stopwatch:
    """Seconds per label, summed over every thread (tenants are polled in parallel)."""

    def __init__(self) -> None:
        self._totals: defaultdict[str, float] = defaultdict(float)
        self._lock = threading.Lock()

    def add(self, label: str, seconds: float) -> None:
        """Add `seconds` to `label`."""
        with self._lock:
            self._totals[label] += seconds

    def total(self, label: str) -> float:
        """Seconds summed under `label`."""
        with self._lock:
            return self._totals.get(label, 0.0)

    def clear(self) -> None:
        """Start again from zero."""
        with self._lock:
            self._totals.clear()

    def timed(self, label: str, func: Callable[P, R]) -> Callable[P, R]:
        """`func`, adding its run time to `label`."""

        @wraps(func)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            started = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                self.add(label, time.perf_counter() - started)

        return run


class TimedConnector:
    """A connector whose fetch calls (HTTP, JSON, mapping to records) are timed as "fetch:…"."""

    def __init__(self, inner: Connector, stopwatch: Stopwatch) -> None:
        self._inner = inner
        self._stopwatch = stopwatch
        self.fetch_incidents = stopwatch.timed("fetch:incidents", inner.fetch_incidents)
        self.fetch_devices = stopwatch.timed("fetch:devices", inner.fetch_devices)

    def fetch_alerts(self, since: Any) -> Iterator[Any]:
        """The inner pages; only the time spent getting each page counts."""
        pages = iter(self._inner.fetch_alerts(since))
        while True:
            started = time.perf_counter()
            try:
                page = next(pages)
            except StopIteration:
                return
            finally:
                self._stopwatch.add("fetch:alerts", time.perf_counter() - started)
            yield page

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class TimedRuntime(Runtime):
    """The service's runtime, handing out timed connectors (the token cache stays shared)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stopwatch = Stopwatch()

    def connector(self, tenant: TenantRef) -> Connector:
        """The tenant's cached connector, wrapped."""
        inner = super().connector(tenant)
        return TimedConnector(inner, self.stopwatch)  # type: ignore[return-value]


@contextmanager
def timing(module: ModuleType, name: str, stopwatch: Stopwatch, label: str) -> Iterator[bool]:
    """Time calls of `module.name` while inside; yields False if the module has no such name."""
    original = getattr(module, name, None)
    if not callable(original):
        yield False
        return
    setattr(module, name, stopwatch.timed(label, original))
    try:
        yield True
    finally:
        setattr(module, name, original)


_STATUS = Path("/proc/self/status")


def _status_mb(field: str) -> float | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def rss_mb() -> float:
    """The process's resident memory now, in MB."""
    return _status_mb("VmRSS") or 0.0


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (Linux), so the next peak belongs to what follows."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_mb() -> float:
    """Peak resident memory since the last reset (else since the start), in MB."""
    peak = _status_mb("VmHWM")
    if peak is not None:
        return peak
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
