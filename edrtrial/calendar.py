"""The support desk's business calendar in Asia/Tokyo."""

from __future__ import annotations

from datetime import date, datetime, time

import jpholiday

from edrtrial.timeutil import to_jst

OPENS, CLOSES = time(9, 0), time(17, 0)


def is_year_end_closure(day: date) -> bool:
    """29 December to 3 January, when Japanese offices customarily close."""
    return (day.month == 12 and day.day >= 29) or (day.month == 1 and day.day <= 3)


def is_business_day(day: date) -> bool:
    """A weekday that is neither a public holiday nor in the year-end closure."""
    return day.weekday() < 5 and not jpholiday.is_holiday(day) and not is_year_end_closure(day)


def is_business_hours(at: datetime) -> bool:
    """Whether the support desk (weekdays 9:00–17:00 JST) is open at this instant."""
    local = to_jst(at)
    return is_business_day(local.date()) and OPENS <= local.time() < CLOSES
