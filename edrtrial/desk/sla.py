"""Acknowledgement deadlines for desk tickets.

While a company is in its trial, the programme promises a 24/7 incident desk for the most
urgent tickets, so their allowance runs on the wall clock. Everything else (and every
ticket once the trial is over) waits for the support desk, so its allowance counts only
business hours: a P3 raised on Friday at 16:50 with 480 minutes gets 10 minutes on
Friday and is due on Monday at 16:50 (later if Monday is a holiday).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from edrtrial.config import SlaConfig
from edrtrial.coverage import Clock
from edrtrial.desk.calendar import BusinessCalendar
from edrtrial.timeutil import as_utc, to_jst


def _allowance(priority: str, sla: SlaConfig) -> int:
    minutes: dict[str, int] = {key: value for key, value in sla.acknowledge_minutes.items()}
    if priority not in minutes:
        known = ", ".join(sorted(minutes))
        raise ValueError(f"unknown priority {priority!r} (expected one of {known})")
    return minutes[priority]


def clock_for(priority: str, in_trial: bool, sla: SlaConfig) -> Clock:
    """The 24/7 clock only for `around_the_clock` priorities of a company in its trial.

    The incident desk is staffed for trial companies only; after the trial the same P1
    waits for business hours like any other ticket.
    """
    _allowance(priority, sla)
    if in_trial and priority in sla.around_the_clock:
        return Clock.INCIDENT_DESK
    return Clock.BUSINESS


def _deadline_from(
    start: datetime,
    priority: str,
    *,
    in_trial: bool,
    sla: SlaConfig,
    calendar: BusinessCalendar,
) -> datetime:
    minutes = _allowance(priority, sla)
    if clock_for(priority, in_trial, sla) is Clock.INCIDENT_DESK:
        return as_utc(start) + timedelta(minutes=minutes)
    return calendar.add_business_minutes(start, minutes)


def acknowledge_by(
    priority: str,
    opened_at: datetime,
    *,
    in_trial: bool,
    sla: SlaConfig,
    calendar: BusinessCalendar,
) -> datetime:
    """When a ticket opened at `opened_at` must be acknowledged (UTC-aware).

    A P1 in a trial raised at 3:00 on a Sunday is due at 3:30, because the incident desk
    is awake; after the trial it is due 30 minutes after the support desk opens.
    """
    return _deadline_from(opened_at, priority, in_trial=in_trial, sla=sla, calendar=calendar)


def next_deadline(
    previous_deadline: datetime,
    priority: str,
    *,
    in_trial: bool,
    sla: SlaConfig,
    calendar: BusinessCalendar,
) -> datetime:
    """The deadline after a missed one: the same allowance again from the missed deadline.

    Counting from the missed deadline (not from when the desk noticed) keeps escalation
    steps evenly spaced even if the checking job runs late. `in_trial` is the company's
    state now, so a ticket that outlives the trial falls back to business hours.
    """
    return _deadline_from(
        previous_deadline, priority, in_trial=in_trial, sla=sla, calendar=calendar
    )


def _duration(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 1:
        return "under 1 min"
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    parts = [
        f"{days} d" if days else "",
        f"{hours} h" if hours else "",
        f"{mins} min" if mins else "",
    ]
    return " ".join(part for part in parts if part)


def short_deadline(deadline: datetime, now: datetime) -> tuple[str, bool]:
    """A deadline in a list's cell, and whether it is overdue: "12:30 +1:05" (today, in
    Tokyo, with the time left), "12:30 -0:15" (today, overdue by that long), "11/26 09:30"
    (another day; "!11/24 09:30" when it has passed; the year too in another year). Short
    enough that a list never cuts it; the time left rounds down, like `describe_deadline`'s."""
    left = as_utc(deadline) - as_utc(now)
    overdue = left <= timedelta(0)
    local, today = to_jst(deadline), to_jst(now)
    if local.date() == today.date():
        minutes = int(abs(left).total_seconds() // 60)
        sign = "-" if overdue else "+"
        return f"{local:%H:%M} {sign}{minutes // 60}:{minutes % 60:02d}", overdue
    shown = "%m/%d %H:%M" if local.year == today.year else "%Y/%m/%d %H:%M"
    return f"{'!' if overdue else ''}{local.strftime(shown)}", overdue


def describe_deadline(deadline: datetime, now: datetime) -> str:
    """A deadline as an operator reads it: "due 11/24 10:30 JST (in 1 h 20 min)".

    The time is shown in Tokyo, where the desk works; the year only when it differs from
    now's, so a deadline past the year end is not misread. Durations are wall-clock time
    rounded down to the minute, so "in 5 min" never promises more time than there is.
    A deadline that has arrived is overdue: "overdue by 35 min".
    """
    left = as_utc(deadline) - as_utc(now)
    if left <= timedelta(0):
        return f"overdue by {_duration(-left)}"
    local = to_jst(deadline)
    shown = "%m/%d %H:%M" if local.year == to_jst(now).year else "%Y/%m/%d %H:%M"
    return f"due {local.strftime(shown)} JST (in {_duration(left)})"
