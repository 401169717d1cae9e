"""What `run-job NAME` prints: one readable line per job, never a Python repr.

The jobs return their own results (a list of tenant outcomes, delivery counts, a number);
this module turns each into the sentence an operator reads, e.g. "poll: 3 tenants, 12 new
alerts, 2 tickets opened; sakura-seisakusho: parked".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from edrtrial.notify.outbox import DeliveryStats
from edrtrial.service.jobs import DeskOutcome, PollOutcome


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def _nonzero(parts: Sequence[tuple[int, str]]) -> list[str]:
    return [f"{n} {label}" for n, label in parts if n]


def poll_summary(outcomes: Sequence[PollOutcome]) -> str:
    """The poll's totals across tenants, then each tenant that failed or waits, and why."""
    totals = [
        _count(len(outcomes), "tenant"),
        _count(sum(o.new_alerts for o in outcomes), "new alert"),
        _count(sum(o.triage.tickets_opened for o in outcomes), "ticket") + " opened",
        *_nonzero(
            [
                (sum(o.updated_alerts for o in outcomes), "alerts updated"),
                (sum(o.triage.suppressed for o in outcomes), "suppressed"),
                (sum(o.triage.notices_queued for o in outcomes), "notices queued"),
                (sum(o.quarantined for o in outcomes), "quarantined"),
            ]
        ),
    ]
    problems = [f"{o.company_key}: {o.error}" for o in outcomes if o.error]
    return "; ".join([", ".join(totals), *problems])


def outbox_summary(stats: DeliveryStats) -> str:
    """Sent, and what is left: retrying, given up, postponed (its server was down)."""
    rest = _nonzero(
        [(stats.retried, "retrying"), (stats.failed, "failed"), (stats.postponed, "postponed")]
    )
    return ", ".join([f"{stats.sent} sent", *rest])


def desk_summary(outcome: DeskOutcome) -> str:
    """What the desk's pass did, or that it had nothing to do."""
    done = _nonzero(
        [
            (outcome.escalated, "escalated"),
            (outcome.closed, "closed"),
            (outcome.actions_sent, "device actions sent"),
            (outcome.actions_finished, "device actions finished"),
            (outcome.written_back, "verdicts written back"),
        ]
    )
    return ", ".join(done) or "nothing to do"


_COUNTS = {
    "inventory": ("device seen", "devices seen"),
    "weekly-reports": ("report queued", "reports queued"),
    "trial-lifecycle": ("offboarding task planned", "offboarding tasks planned"),
}


def _generic(result: object) -> str:
    """A result no sentence is written for yet: its fields by name, still no repr."""
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        fields = dataclasses.asdict(result)
        return ", ".join(f"{name.replace('_', ' ')} {value}" for name, value in fields.items())
    if result is None:
        return "done"
    return str(result)


def job_summary(name: str, result: object) -> str:
    """`name: what it did`, in words."""
    if isinstance(result, list) and all(isinstance(o, PollOutcome) for o in result):
        text = poll_summary(result)
    elif isinstance(result, DeliveryStats):
        text = outbox_summary(result)
    elif isinstance(result, DeskOutcome):
        text = desk_summary(result)
    elif isinstance(result, int) and name in _COUNTS:
        text = _count(result, *_COUNTS[name])
    else:
        text = _generic(result)
    return f"{name}: {text}"
