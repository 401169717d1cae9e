"""Time in one place: everything stored is UTC-aware, everything shown is Asia/Tokyo."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

JST = ZoneInfo("Asia/Tokyo")


def utcnow() -> datetime:
    """The current time, UTC-aware."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Make a datetime UTC-aware; a naive value is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def parse_iso(value: str) -> datetime:
    """Parse an ISO-8601 timestamp as the Microsoft APIs send it (7 fractional digits, Z)."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # Python accepts at most 6 fractional digits; Microsoft sends up to 7.
    if "." in text:
        head, _, rest = text.partition(".")
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        text = f"{head}.{digits[:6].ljust(6, '0')}{rest}"
    return as_utc(datetime.fromisoformat(text))


def format_iso(value: datetime) -> str:
    """Format a timestamp the way OData filters expect it (UTC, Z suffix)."""
    return as_utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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
