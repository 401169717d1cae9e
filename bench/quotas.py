"""Microsoft's per-tenant quotas, lifted for a throughput run (both sides of the wire).

The sandbox enforces Graph's 150 calls a minute per tenant, and the Defender client keeps
its own budget under the same quota. A first poll of a 1,000-alert backlog needs far more
calls than that (one per incident), so with the quotas on it stops part-way and the figure
would measure the quota, not edrtrial. `--throttle` keeps them on.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from edrtrial.connectors.defender import client

_PLENTY = 10**9


@contextmanager
def lifted_client_budgets() -> Iterator[bool]:
    """While inside, new Defender clients get budgets no poll can spend; False if not found."""
    original = getattr(client, "CallBudget", None)
    window = getattr(client, "Window", None)
    if original is None or window is None:
        yield False
        return

    def plenty(windows: Sequence[Any], clock: Any) -> Any:
        return original([window(_PLENTY, w.seconds) for w in windows], clock)

    setattr(client, "CallBudget", plenty)  # noqa: B010 (a name the module does not export)
    try:
        yield True
    finally:
        setattr(client, "CallBudget", original)  # noqa: B010
