"""Which desk covers a company at a moment: the one place that decides what it is promised.

The programme staffs the incident desk 24 hours, holidays included, for companies inside
their trial only; before its trial starts and once it has ended a company has the support
desk in its business hours. The SLA clock of every ticket (`desk.sla`), every mail and
report a company reads, and the desk's notices all read it here, so no company is promised
a desk its tickets do not get. It sits with the platform because every layer needs it,
reports included, and it needs nothing but a trial's dates and an instant.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from edrtrial.models import Trial
from edrtrial.timeutil import jst_date


class Clock(StrEnum):
    """Which desk, and so which clock: what a company is promised, what its tickets run on."""

    INCIDENT_DESK = "incident-desk"  # 24/7, wall-clock minutes
    BUSINESS = "business"  # the support desk's business hours only


class TrialStage(StrEnum):
    """Where a company stands in its trial on a given (Tokyo) day."""

    NONE = "none"  # no trial recorded
    BEFORE = "before"
    RUNNING = "running"
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class Coverage:
    """A company's trial as it stands on `today` (Tokyo), and the desk that covers it then."""

    stage: TrialStage
    today: date
    starts_on: date | None = None
    ends_on: date | None = None
    decision: str = ""  # undecided | continue | offboard ("" without a trial)

    @property
    def in_trial(self) -> bool:
        """Inside the trial, its first and last days included."""
        return self.stage is TrialStage.RUNNING

    @property
    def ended(self) -> bool:
        """The trial's last day has passed: the programme no longer isolates devices."""
        return self.stage is TrialStage.ENDED

    @property
    def days_left(self) -> int:
        """Days after today until the trial's last day (0 on the last day; 0 outside it)."""
        if self.ends_on is None or not self.in_trial:
            return 0
        return (self.ends_on - self.today).days

    @property
    def promise(self) -> Clock:
        """The desk the company may count on now: around the clock only inside its trial."""
        return Clock.INCIDENT_DESK if self.in_trial else Clock.BUSINESS


def coverage_at(trial: Trial | None, at: datetime) -> Coverage:
    """The company's trial stage and promise at the instant `at` (its Tokyo day counts)."""
    today = jst_date(at)
    if trial is None:
        return Coverage(TrialStage.NONE, today)
    if today < trial.starts_on:
        stage = TrialStage.BEFORE
    elif today <= trial.ends_on:
        stage = TrialStage.RUNNING
    else:
        stage = TrialStage.ENDED
    return Coverage(stage, today, trial.starts_on, trial.ends_on, trial.decision or "undecided")
