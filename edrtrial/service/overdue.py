"""Which scheduled jobs have stopped running: the service alive (its heartbeat fresh) but a
job hung or no longer scheduled, which neither a failure count nor the lease shows.

Each job the scheduler runs (`service/scheduler.py`, built from the config's schedules) is
expected to have run, successfully or not, within a few of its intervals; a daily or weekly
job at its last time, give or take a grace. A job is only overdue while a scheduler holds
the store and has been up longer than that, so a fresh start is never overdue. A parked or
waiting tenant's poll still runs (it returns at once and is recorded), so it is not overdue.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from edrtrial.config import ReportsConfig, SchedulesConfig
from edrtrial.timeutil import JST, as_utc
from edrtrial.words import Words

RUNS_MISSED = 5
"""An interval job is overdue once this many of its runs are missed…"""
AT_LEAST = timedelta(minutes=10)
"""…and never sooner than this: a slow run (a first poll's backlog, a slow mail relay)
delays the next one, which is not a stopped job."""
CRON_GRACE = timedelta(hours=1)
"""A daily or weekly job has this long after its time to have run (and been recorded)."""
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class Expected:
    """A job the scheduler runs: on an interval (`every`), or at a time (`at`, as the
    config writes it: "06:00" daily, "mon 09:00" weekly)."""

    job: str
    company_key: str
    every: timedelta | None = None
    at: str = ""

    @property
    def schedule(self) -> str:
        """How often it runs, for people: "every 60 s", "daily at 06:00 JST"."""
        if self.every is not None:
            return f"every {span(self.every)}"
        day, _, clock = self.at.partition(" ")
        if day.isdigit():
            return f"monthly, day {day} at {clock} JST"
        if " " in self.at:
            return f"weekly, {self.at} JST"
        return f"daily at {self.at} JST"


@dataclass(frozen=True, slots=True)
class OverdueJob:
    """A scheduled job that has not run when it should have: since when it is quiet."""

    job: str
    company_key: str
    schedule: str
    last_run_at: datetime | None
    quiet_since: datetime

    @property
    def name(self) -> str:
        """The job as the scheduler names it: `outbox`, `poll:sakura-seisakusho`."""
        return f"{self.job}:{self.company_key}" if self.company_key else self.job

    def reason(self, now: datetime) -> str:
        """One line: "poll of sakura-seisakusho has not run for 6 h (every 60 s)"."""
        what = (
            Words("%(job)s of %(company)s", job=self.job, company=self.company_key)
            if self.company_key
            else self.job
        )
        quiet = span(now - self.quiet_since)
        if self.last_run_at is None:
            return Words(
                "%(what)s has not run since the scheduler started %(quiet)s ago (%(schedule)s)",
                what=what,
                quiet=quiet,
                schedule=self.schedule,
            )
        return Words(
            "%(what)s has not run for %(quiet)s (%(schedule)s)",
            what=what,
            quiet=quiet,
            schedule=self.schedule,
        )


def expected(
    schedules: SchedulesConfig, company_keys: list[str], reports: ReportsConfig | None = None
) -> tuple[Expected, ...]:
    """The jobs `build_scheduler` schedules for these companies (the heartbeat aside: the
    lease is its record); a report job switched off in `reports` is not expected."""
    reports = reports or ReportsConfig()
    found = [
        Expected("outbox", "", every=timedelta(seconds=schedules.outbox_seconds)),
        Expected("desk", "", every=timedelta(seconds=schedules.desk_seconds)),
        Expected("trial-lifecycle", "", at=schedules.trial_lifecycle),
    ]
    if reports.weekly:
        found.append(Expected("weekly-reports", "", at=schedules.weekly_report))
    if reports.monthly:
        found.append(Expected("monthly-reports", "", at=schedules.monthly_report))
    if reports.seat_mail:
        found.append(Expected("seat-report", "", at=schedules.seat_report))
    for key in sorted(company_keys):
        found.append(
            Expected("inventory", key, every=timedelta(minutes=schedules.inventory_minutes))
        )
        found.append(Expected("poll", key, every=timedelta(seconds=schedules.poll_seconds)))
    return tuple(found)


def last_time(at: str, now: datetime) -> datetime:
    """The latest moment at or before `now` that a job set "HH:MM", "mon HH:MM" or "1 HH:MM"
    (day of the month) in JST was due."""
    day, _, clock = at.rpartition(" ")
    hour, minute = (int(part) for part in clock.split(":"))
    local = as_utc(now).astimezone(JST)
    due = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if day.isdigit():  # days 1-28 only: every month has them
        due = due.replace(day=int(day))
        if due > local:
            before = due.replace(day=1) - timedelta(days=1)
            due = due.replace(year=before.year, month=before.month)
    elif day:
        due -= timedelta(days=(local.weekday() - _DAYS.index(day)) % 7)
        if due > local:
            due -= timedelta(days=7)
    elif due > local:
        due -= timedelta(days=1)
    return due


def check(
    job: Expected, last_run_at: datetime | None, scheduler_since: datetime, now: datetime
) -> OverdueJob | None:
    """The job as overdue, or None while it runs as scheduled (or the scheduler is too
    recent to tell)."""
    since = as_utc(scheduler_since)
    last = as_utc(last_run_at) if last_run_at is not None else None
    quiet_since = max(last, since) if last is not None else since
    if job.every is not None:
        if as_utc(now) - quiet_since < max(job.every * RUNS_MISSED, AT_LEAST):
            return None
    else:
        due = last_time(job.at, as_utc(now) - CRON_GRACE)
        if due <= since or (last is not None and last >= due):
            return None
    return OverdueJob(job.job, job.company_key, job.schedule, last, quiet_since)


def span(length: timedelta) -> str:
    """A length of time, roughly, in its largest unit: "60 s", "12 min", "6 h", "3 d"."""
    seconds = int(length.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 2 * 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"
