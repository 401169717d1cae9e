"""A job's result in words: what `edrtrial run-job` prints and what `edrtrial status` keeps.

The jobs return their own results (tenant outcomes, delivery counts, a number); these turn
each into the sentence an operator reads, never a Python repr, in one place for the CLI,
the job record and the console.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from edrtrial.notify.outbox import DeliveryStats
from edrtrial.service.jobs import DeskOutcome, PollOutcome
from edrtrial.service.trial_lifecycle import LifecycleOutcome


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
                (sum(o.triage.history for o in outcomes), "kept as history"),
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
        [(stats.retried, "retrying"), (stats.failed, "given up"), (stats.postponed, "postponed")]
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
            (outcome.alarms, "service alarms told"),
        ]
    )
    return ", ".join(done) or "nothing to do"


_COUNTS = {
    "inventory": ("device seen", "devices seen"),
    "weekly-reports": ("report queued", "reports queued"),
    "seat-report": (
        "seat report queued",
        "seat reports queued (the last whole week's went before)",
    ),
    "monthly-reports": ("report queued", "reports queued"),
}


def lifecycle_summary(outcome: LifecycleOutcome) -> str:
    """Tasks planned first (always said), then each other step taken, then what waits."""
    done = _nonzero(
        [
            (outcome.ending, "trials ending"),
            (outcome.reminders, "reminders queued"),
            (outcome.continuing, "continuing"),
            (outcome.offboarding, "told of their offboarding"),
            (outcome.sent, "offboarding tasks sent"),
            (outcome.offboarded, "offboarded"),
            (outcome.purged, "purged"),
        ]
    )
    planned = _count(outcome.planned, "offboarding task planned", "offboarding tasks planned")
    return "; ".join([", ".join([planned, *done]), *outcome.problems])


def _generic(result: object) -> str:
    """A result no sentence is written for yet: its fields by name, still no repr."""
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        fields = dataclasses.asdict(result)
        return ", ".join(f"{name.replace('_', ' ')} {value}" for name, value in fields.items())
    if result is None:
        return "done"
    return str(result)


def describe(job: str, result: object) -> str:
    """What the job `job` did, in words (without its name)."""
    if isinstance(result, list) and all(isinstance(o, PollOutcome) for o in result):
        return poll_summary(result)
    if isinstance(result, DeliveryStats):
        return outbox_summary(result)
    if isinstance(result, DeskOutcome):
        return desk_summary(result)
    if isinstance(result, LifecycleOutcome):
        return lifecycle_summary(result)
    if isinstance(result, int) and job in _COUNTS:
        return _count(result, *_COUNTS[job])
    return _generic(result)
