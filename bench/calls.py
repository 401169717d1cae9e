"""API calls per tenant, from the sandbox's request counts, against the idle-cycle target."""

from __future__ import annotations

from dataclasses import dataclass

from sandbox_process import Counts

IDLE_TARGET = {"graph": 1, "mde": 1, "login": 0}
"""An idle cycle (poll + inventory, nothing new) needs one alerts list and one machines list;
cached tokens mean no sign-in traffic."""


@dataclass(frozen=True, slots=True)
class CallRow:
    """One API (or endpoint) across tenants."""

    name: str
    average: float
    maximum: int
    target: int | None  # None: no target of its own (an endpoint inside a family)

    @property
    def over(self) -> bool:
        """Above target for at least one tenant."""
        return self.target is not None and self.maximum > self.target


def _family(endpoint: str) -> str:
    return endpoint.partition(":")[0]


def rows(counts: Counts) -> list[CallRow]:
    """Per family (graph, mde, login) with its target, then per endpoint; every tenant counts."""
    tenants = list(counts.values()) or [{}]
    families: list[dict[str, int]] = []
    for per_api in tenants:
        totals = dict.fromkeys(IDLE_TARGET, 0)
        for endpoint, n in per_api.items():
            totals[_family(endpoint)] = totals.get(_family(endpoint), 0) + n
        families.append(totals)
    result = []
    for family in sorted({f for t in families for f in t}, key=_order):
        values = [t.get(family, 0) for t in families]
        result.append(
            CallRow(family, sum(values) / len(values), max(values), IDLE_TARGET.get(family, 0))
        )
        endpoints = sorted({e for t in tenants for e in t if _family(e) == family})
        for endpoint in endpoints:
            values = [t.get(endpoint, 0) for t in tenants]
            result.append(CallRow(f"  {endpoint}", sum(values) / len(values), max(values), None))
    return result


def _order(family: str) -> tuple[int, str]:
    known = list(IDLE_TARGET)
    return (known.index(family) if family in known else len(known), family)


def average(counts: Counts, endpoint: str) -> float:
    """Mean requests per tenant to one endpoint (or family, without a colon)."""
    if not counts:
        return 0.0
    total = 0
    for per_api in counts.values():
        total += sum(n for e, n in per_api.items() if e == endpoint or _family(e) == endpoint)
    return total / len(counts)
