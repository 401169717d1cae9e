"""The support desk's business calendar in Asia/Tokyo.

The desk is open on weekdays between two times of day, except on Japanese public holidays
(from jpholiday), during the year-end closure and on extra closed days. Deadlines counted
on this calendar skip closed time, so an allowance means the same amount of staffed time
whenever a ticket arrives. Tokyo has no daylight saving time, so local arithmetic is safe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

import jpholiday

from edrtrial.config import CalendarConfig
from edrtrial.timeutil import JST, to_jst

OPENS, CLOSES = time(9, 0), time(17, 0)

# A calendar whose closures cover every day would otherwise search forever.
_MAX_SEARCH_DAYS = 3 * 366

MonthDay = tuple[int, int]


def _hhmm(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def _mmdd(value: str) -> MonthDay:
    month, day = value.split("-")
    return int(month), int(day)


@dataclass(frozen=True)
class BusinessCalendar:
    """When the support desk is staffed; every datetime in or out is an instant (UTC-aware).

    Naive inputs are taken to be UTC, as everywhere in `edrtrial.timeutil`.
    """

    opens: time = OPENS
    closes: time = CLOSES
    # Inclusive (month, day) range; it wraps across the new year when the start is later.
    year_end_closure: tuple[MonthDay, MonthDay] | None = ((12, 29), (1, 3))
    closed_days: frozenset[date] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if self.opens >= self.closes:
            raise ValueError(f"the desk opens at {self.opens} but closes at {self.closes}")

    @classmethod
    def from_config(cls, config: CalendarConfig) -> BusinessCalendar:
        """The calendar the `[calendar]` section of the configuration describes."""
        closure = config.year_end_closure
        return cls(
            opens=_hhmm(config.opens),
            closes=_hhmm(config.closes),
            year_end_closure=(_mmdd(closure[0]), _mmdd(closure[1])) if closure else None,
            closed_days=frozenset(config.closed_days),
        )

    # Days and instants.

    def is_year_end_closure(self, day: date) -> bool:
        """Whether the day falls in the closure (e.g. 29 December to 3 January)."""
        if self.year_end_closure is None:
            return False
        first, last = self.year_end_closure
        today = (day.month, day.day)
        if first <= last:
            return first <= today <= last
        return today >= first or today <= last  # spans the new year

    def is_business_day(self, day: date) -> bool:
        """A weekday that is not a public holiday (振替休日 included), closure or closed day."""
        return (
            day.weekday() < 5
            and day not in self.closed_days
            and not self.is_year_end_closure(day)
            and not jpholiday.is_holiday(day)
        )

    def is_business_hours(self, at: datetime) -> bool:
        """Whether the desk is open at this instant: opening time counts, closing time not."""
        local = to_jst(at)
        return self.is_business_day(local.date()) and self.opens <= local.time() < self.closes

    def next_opening(self, at: datetime) -> datetime:
        """The first instant at or after `at` when the desk is open (`at` itself if open)."""
        local = to_jst(at)
        if self.is_business_day(local.date()):
            if local.time() < self.opens:
                return self._at(local.date(), self.opens)
            if local.time() < self.closes:
                return local.astimezone(UTC)
        return self._at(self._business_day_after(local.date()), self.opens)

    # Counting open time.

    def add_business_minutes(self, start: datetime, minutes: int) -> datetime:
        """The instant `minutes` of open time after `start`.

        Counting starts at the next opening, so time outside business hours is free: a
        ticket raised on Friday at 16:50 with 480 minutes has 10 on Friday and is due on
        the next business day at 16:50. A deadline that uses up a day exactly is that day's
        closing time, not the next morning: the desk still had the whole allowance.
        Zero minutes is `start` itself, open or not. Steps a day at a time, so long
        allowances over holidays cost a few iterations.
        """
        if minutes < 0:
            raise ValueError(f"cannot add a negative number of business minutes ({minutes})")
        remaining = timedelta(minutes=minutes)
        if not remaining:
            return to_jst(start).astimezone(UTC)
        cursor = to_jst(self.next_opening(start))
        while True:
            closing = datetime.combine(cursor.date(), self.closes, tzinfo=JST)
            available = closing - cursor
            if remaining <= available:
                return (cursor + remaining).astimezone(UTC)
            remaining -= available
            cursor = datetime.combine(
                self._business_day_after(cursor.date()), self.opens, tzinfo=JST
            )

    def business_minutes_between(self, start: datetime, end: datetime) -> float:
        """Open minutes from `start` to `end` (negative when `end` comes first).

        The inverse of `add_business_minutes`: between(s, add(s, m)) == m.
        """
        if end < start:
            return -self.business_minutes_between(end, start)
        first, last = to_jst(start), to_jst(end)
        total = timedelta()
        day = first.date()
        while day <= last.date():
            if self.is_business_day(day):
                lower = max(first, datetime.combine(day, self.opens, tzinfo=JST))
                upper = min(last, datetime.combine(day, self.closes, tzinfo=JST))
                if upper > lower:
                    total += upper - lower
            day += timedelta(days=1)
        return total / timedelta(minutes=1)

    def business_days_after(self, day: date, count: int) -> date:
        """The `count`-th business day after `day` (a day that is not one counts from the
        next): a call due "within 3 business days" of a Friday application is due on
        Wednesday, or later when a holiday or the closure falls between."""
        for _ in range(count):
            day = self._business_day_after(day)
        return day

    # Helpers.

    def _at(self, day: date, moment: time) -> datetime:
        return datetime.combine(day, moment, tzinfo=JST).astimezone(UTC)

    def _business_day_after(self, day: date) -> date:
        """The first business day strictly after `day`."""
        for offset in range(1, _MAX_SEARCH_DAYS + 1):
            candidate = day + timedelta(days=offset)
            if self.is_business_day(candidate):
                return candidate
        raise ValueError(
            f"the calendar has no business day in the {_MAX_SEARCH_DAYS} days after {day}"
        )


DEFAULT = BusinessCalendar.from_config(CalendarConfig())


def is_year_end_closure(day: date) -> bool:
    """29 December to 3 January, when Japanese offices customarily close."""
    return DEFAULT.is_year_end_closure(day)


def is_business_day(day: date) -> bool:
    """A weekday that is neither a public holiday nor in the year-end closure."""
    return DEFAULT.is_business_day(day)


def is_business_hours(at: datetime) -> bool:
    """Whether the support desk (weekdays 9:00–17:00 JST) is open at this instant."""
    return DEFAULT.is_business_hours(at)
