"""Per-tenant call budgets with sliding windows, as Graph and MDE throttle an app per tenant.

Graph counts every /security call of a tenant together (150 per minute). MDE budgets each
API separately ("100 calls per minute and 1,500 per hour", on every API page), so the
key is the API: list machines, isolate, offboard, and so on. Refused calls do not count.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Budgets:
    """Calls allowed per sliding window; None means unlimited."""

    graph_per_minute: int | None = 150
    mde_per_minute: int | None = 100
    mde_per_hour: int | None = 1500


class RateLimiter:
    """Sliding-window counters per (tenant, API). Not thread-safe: the world's lock guards it."""

    def __init__(self, budgets: Budgets | None = None) -> None:
        self.budgets = budgets or Budgets()
        self._calls: dict[str, dict[str, deque[datetime]]] = {}

    def _windows(self, api: str) -> list[tuple[int, timedelta]]:
        budgets = self.budgets
        if api == "graph":
            limits = [(budgets.graph_per_minute, MINUTE)]
        else:
            limits = [(budgets.mde_per_minute, MINUTE), (budgets.mde_per_hour, HOUR)]
        return [(limit, window) for limit, window in limits if limit is not None]

    def charge(self, tenant_id: str, api: str, now: datetime) -> int | None:
        """Count a call to `api` ("graph" or "mde:<name>"); if over budget, the Retry-After."""
        calls = self._calls.setdefault(tenant_id, {}).setdefault(api, deque())
        windows = self._windows(api)
        while calls and calls[0] <= now - HOUR:
            calls.popleft()
        wait = 0.0
        for limit, window in windows:
            recent = [t for t in calls if t > now - window]
            if len(recent) >= limit:
                # The call that must leave the window before one more fits.
                oldest = recent[len(recent) - limit]
                wait = max(wait, (oldest + window - now).total_seconds())
        if wait > 0:
            return max(1, math.ceil(wait))
        calls.append(now)
        return None

    def usage(self, tenant_id: str, now: datetime) -> dict[str, int]:
        """Calls in the last minute per API of one tenant, for the control summary."""
        return {
            api: sum(1 for t in calls if t > now - MINUTE)
            for api, calls in self._calls.get(tenant_id, {}).items()
        }
