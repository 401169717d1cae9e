"""Time in one place: everything stored is UTC-aware, everything shown is Asia/Tokyo."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Self
from zoneinfo import ZoneInfo

JST = ZoneInfo("Asia/Tokyo")
TICKS_PER_SECOND = 10_000_000
"""Microsoft's resolution: one tick is 100 ns, seven fractional digits."""
_TICKS_PER_MICROSECOND = 10
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FRACTION = re.compile(r"[.,](\d+)")


@dataclass(frozen=True, order=True, slots=True)
class Stamp:
    """An instant at Microsoft's 100-ns resolution, ordered by time.

    Python's datetime stops at microseconds, so two updates 100 ns apart are equal as
    datetimes: every "is this newer?" decision and every cursor uses a Stamp instead.
    Digits past the seventh (an EDR sending nanoseconds) are cut, never rounded up, so a
    stamp is never later than the instant it was read from.
    """

    ticks: int
    """100-ns intervals since 1970-01-01T00:00:00Z."""

    @classmethod
    def from_iso(cls, value: str) -> Self:
        """Parse ISO-8601 with 0 to 7 (or more) fractional digits and `Z`, an offset or none
        (taken as UTC).

        ValueError for text that is not a timestamp, and for one whose UTC instant falls
        outside years 1 to 9999 (.NET's "no date" with an offset, `0001-01-01T00:00:00+09:00`),
        so a mapper sets that one record aside instead of failing the whole page.
        """
        text = value.strip()
        fraction = _FRACTION.search(text)
        digits = ""
        if fraction is not None:
            digits = fraction.group(1)
            text = text[: fraction.start()] + text[fraction.end() :]
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        parsed = datetime.fromisoformat(text)
        try:
            whole = as_utc(parsed)
        except OverflowError as err:
            raise ValueError(f"{value.strip()!r} is out of range in UTC") from err
        return cls(_whole_seconds(whole) * TICKS_PER_SECOND + int(digits[:7].ljust(7, "0")))

    @classmethod
    def of(cls, value: datetime) -> Self:
        """The stamp of a datetime (exact: microseconds are whole ticks)."""
        aware = as_utc(value)
        return cls(
            _whole_seconds(aware) * TICKS_PER_SECOND + aware.microsecond * _TICKS_PER_MICROSECOND
        )

    @property
    def datetime(self) -> datetime:
        """The instant as a UTC datetime, for display and date arithmetic (cut to µs)."""
        seconds, ticks = divmod(self.ticks, TICKS_PER_SECOND)
        return _EPOCH + timedelta(seconds=seconds, microseconds=ticks // _TICKS_PER_MICROSECOND)

    def iso(self) -> str:
        """Microsoft's form: UTC, seven fractional digits, `Z` (what OData filters take)."""
        ticks = self.ticks % TICKS_PER_SECOND
        moment = self.datetime  # the year is padded by hand: strftime leaves 0001 as "1"
        return f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}.{ticks:07d}Z"

    def __str__(self) -> str:
        return self.iso()

    def __add__(self, other: timedelta) -> Self:
        return type(self)(self.ticks + _ticks(other))

    def __sub__(self, other: timedelta) -> Self:
        return type(self)(self.ticks - _ticks(other))


def _whole_seconds(value: datetime) -> int:
    delta = value - _EPOCH
    return delta.days * 86_400 + delta.seconds


def _ticks(value: timedelta) -> int:
    return (
        value.days * 86_400 + value.seconds
    ) * TICKS_PER_SECOND + value.microseconds * _TICKS_PER_MICROSECOND


def utcnow() -> datetime:
    """The current time, UTC-aware."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Make a datetime UTC-aware; a naive value is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def parse_iso(value: str) -> datetime:
    """Parse an ISO-8601 timestamp as a datetime, cut to microseconds: for display and dates;
    decide "newer" on `Stamp.from_iso`, which keeps Microsoft's seventh digit."""
    return Stamp.from_iso(value).datetime


def format_iso(value: datetime) -> str:
    """Format a timestamp the way Microsoft writes it and OData filters take it (UTC, seven
    fractional digits, Z)."""
    return Stamp.of(value).iso()


def to_jst(value: datetime) -> datetime:
    """The same instant in Asia/Tokyo, for display."""
    return as_utc(value).astimezone(JST)


def jst_date(value: datetime) -> date:
    """The calendar date in Tokyo of an instant."""
    return to_jst(value).date()


def jst_day_bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """UTC bounds of the Tokyo days start..end inclusive."""
    lower = datetime.combine(start, time.min, tzinfo=JST)
    upper = datetime.combine(end + timedelta(days=1), time.min, tzinfo=JST)
    return lower.astimezone(UTC), upper.astimezone(UTC)
