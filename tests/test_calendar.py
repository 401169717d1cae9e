"""The support desk's business calendar: open days, open hours and counting open time.

Dates are fixed in 2026/2027. Reference points: 2026-11-23 (Mon) is 勤労感謝の日,
2026-05-06 (Wed) and 2027-03-22 (Mon) are substitute holidays (振替休日), and 2026's
Silver Week runs from Sat 19 to Wed 23 September.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import jpholiday
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edrtrial.config import CalendarConfig
from edrtrial.desk import calendar
from edrtrial.desk.calendar import DEFAULT, BusinessCalendar
from edrtrial.timeutil import JST, to_jst


def jst(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    """A wall-clock time in Tokyo."""
    return datetime(y, mo, d, h, mi, s, tzinfo=JST)


def cal(**overrides: object) -> BusinessCalendar:
    return BusinessCalendar.from_config(CalendarConfig.model_validate(overrides))


SILVER_WEEK_2026 = pytest.mark.skipif(
    not jpholiday.is_holiday(date(2026, 9, 22)),
    reason="this jpholiday does not know 2026's 国民の休日 (22 September)",
)


# Building the calendar.


def test_default_is_the_default_config() -> None:
    assert BusinessCalendar.from_config(CalendarConfig()) == DEFAULT == BusinessCalendar()
    assert DEFAULT.opens == time(9, 0) and DEFAULT.closes == time(17, 0)
    assert DEFAULT.year_end_closure == ((12, 29), (1, 3))


def test_from_config_reads_every_field() -> None:
    built = cal(
        opens="08:30",
        closes="17:45",
        year_end_closure=["12-26", "01-05"],
        closed_days=["2026-11-24"],
    )
    assert built == BusinessCalendar(
        opens=time(8, 30),
        closes=time(17, 45),
        year_end_closure=((12, 26), (1, 5)),
        closed_days=frozenset({date(2026, 11, 24)}),
    )
    assert cal(year_end_closure=[]).year_end_closure is None


def test_opening_after_closing_is_refused() -> None:
    with pytest.raises(ValueError, match="opens"):
        BusinessCalendar(opens=time(17, 0), closes=time(9, 0))


# Business days.


@pytest.mark.parametrize(
    ("day", "open_"),
    [
        pytest.param(date(2026, 11, 20), True, id="friday"),
        pytest.param(date(2026, 11, 21), False, id="saturday"),
        pytest.param(date(2026, 11, 22), False, id="sunday"),
        pytest.param(date(2026, 11, 23), False, id="labour-thanksgiving-day-monday"),
        pytest.param(date(2026, 11, 24), True, id="tuesday-after-holiday"),
        pytest.param(date(2026, 5, 4), False, id="golden-week-midori-no-hi"),
        pytest.param(date(2026, 5, 6), False, id="substitute-holiday-2026-05-06"),
        pytest.param(date(2026, 5, 7), True, id="thursday-after-golden-week"),
        pytest.param(date(2027, 3, 22), False, id="substitute-holiday-2027-03-22"),
        pytest.param(date(2026, 9, 21), False, id="silver-week-keiro-no-hi"),
        pytest.param(
            date(2026, 9, 22), False, id="silver-week-kokumin-no-kyujitsu", marks=SILVER_WEEK_2026
        ),
        pytest.param(date(2026, 9, 23), False, id="silver-week-shubun-no-hi"),
        pytest.param(date(2026, 9, 24), True, id="thursday-after-silver-week"),
        pytest.param(date(2026, 12, 28), True, id="year-end-12-28-open"),
        pytest.param(date(2026, 12, 29), False, id="year-end-12-29-closed"),
        pytest.param(date(2026, 12, 31), False, id="year-end-12-31-closed"),
        pytest.param(date(2027, 1, 1), False, id="new-year-01-01-closed"),
        pytest.param(date(2027, 1, 3), False, id="new-year-01-03-closed"),
        pytest.param(date(2027, 1, 4), True, id="new-year-01-04-monday-open"),
        pytest.param(date(2027, 1, 5), True, id="new-year-01-05-tuesday-open"),
        pytest.param(date(2026, 1, 2), False, id="new-year-2026-01-02-friday-closed"),
    ],
)
def test_is_business_day(day: date, open_: bool) -> None:
    assert DEFAULT.is_business_day(day) is open_
    assert calendar.is_business_day(day) is open_  # the module-level wrapper agrees


@pytest.mark.parametrize(
    ("day", "closure"),
    [
        pytest.param(date(2026, 12, 28), False, id="12-28"),
        pytest.param(date(2026, 12, 29), True, id="12-29"),
        pytest.param(date(2027, 1, 3), True, id="01-03"),
        pytest.param(date(2027, 1, 4), False, id="01-04"),
        pytest.param(date(2026, 6, 15), False, id="mid-year"),
    ],
)
def test_is_year_end_closure(day: date, closure: bool) -> None:
    assert DEFAULT.is_year_end_closure(day) is closure
    assert calendar.is_year_end_closure(day) is closure


@pytest.mark.parametrize(
    ("config", "day", "open_"),
    [
        pytest.param({"year_end_closure": []}, date(2026, 12, 29), True, id="no-closure-12-29"),
        pytest.param({"year_end_closure": []}, date(2026, 12, 31), True, id="no-closure-12-31"),
        pytest.param(
            {"year_end_closure": []}, date(2027, 1, 1), False, id="no-closure-new-year-holiday"
        ),
        pytest.param(
            {"year_end_closure": ["12-26", "01-05"]}, date(2026, 12, 28), False, id="long-12-28"
        ),
        pytest.param(
            {"year_end_closure": ["12-26", "01-05"]}, date(2027, 1, 5), False, id="long-01-05"
        ),
        pytest.param(
            {"year_end_closure": ["12-26", "01-05"]}, date(2027, 1, 6), True, id="long-01-06"
        ),
        pytest.param(
            {"year_end_closure": ["08-13", "08-14"]}, date(2026, 8, 13), False, id="obon-08-13"
        ),
        pytest.param(
            {"year_end_closure": ["08-13", "08-14"]}, date(2026, 8, 12), True, id="obon-08-12"
        ),
        pytest.param(
            {"year_end_closure": ["08-13", "08-14"]}, date(2026, 12, 29), True, id="obon-only"
        ),
        pytest.param({"closed_days": ["2026-11-24"]}, date(2026, 11, 24), False, id="closed-day"),
        pytest.param(
            {"closed_days": ["2026-11-24"]}, date(2026, 11, 25), True, id="day-after-closed-day"
        ),
    ],
)
def test_is_business_day_configured(config: dict[str, object], day: date, open_: bool) -> None:
    assert cal(**config).is_business_day(day) is open_


# Business hours.


@pytest.mark.parametrize(
    ("at", "open_"),
    [
        pytest.param(jst(2026, 11, 24, 8, 59, 59), False, id="08:59:59-closed"),
        pytest.param(jst(2026, 11, 24, 9, 0), True, id="09:00-open"),
        pytest.param(jst(2026, 11, 24, 12, 0), True, id="noon-open"),
        pytest.param(jst(2026, 11, 24, 16, 59, 59), True, id="16:59:59-open"),
        pytest.param(jst(2026, 11, 24, 17, 0), False, id="17:00-closed"),
        pytest.param(jst(2026, 11, 24, 23, 0), False, id="night-closed"),
        pytest.param(datetime(2026, 11, 24, 0, 0, tzinfo=UTC), True, id="utc-00:00-is-09:00-jst"),
        pytest.param(
            datetime(2026, 11, 24, 7, 59, 59, tzinfo=UTC), True, id="utc-07:59:59-is-16:59:59"
        ),
        pytest.param(datetime(2026, 11, 24, 8, 0, tzinfo=UTC), False, id="utc-08:00-is-17:00"),
        pytest.param(datetime(2026, 11, 24, 1, 0), True, id="naive-is-utc"),
        pytest.param(jst(2026, 11, 21, 10, 0), False, id="saturday-morning"),
        pytest.param(jst(2026, 11, 23, 10, 0), False, id="holiday-morning"),
        pytest.param(jst(2026, 12, 29, 10, 0), False, id="year-end-morning"),
    ],
)
def test_is_business_hours(at: datetime, open_: bool) -> None:
    assert DEFAULT.is_business_hours(at) is open_
    assert calendar.is_business_hours(at) is open_


@pytest.mark.parametrize(
    ("at", "open_"),
    [
        pytest.param(jst(2026, 11, 24, 8, 29), False, id="08:29-closed"),
        pytest.param(jst(2026, 11, 24, 8, 30), True, id="08:30-open"),
        pytest.param(jst(2026, 11, 24, 17, 15), True, id="17:15-open"),
        pytest.param(jst(2026, 11, 24, 17, 30), False, id="17:30-closed"),
    ],
)
def test_is_business_hours_configured(at: datetime, open_: bool) -> None:
    assert cal(opens="08:30", closes="17:30").is_business_hours(at) is open_


# Next opening.


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        pytest.param(jst(2026, 11, 24, 7, 0), jst(2026, 11, 24, 9, 0), id="before-opening"),
        pytest.param(jst(2026, 11, 24, 10, 15), jst(2026, 11, 24, 10, 15), id="already-open"),
        pytest.param(jst(2026, 11, 24, 17, 0), jst(2026, 11, 25, 9, 0), id="at-closing"),
        pytest.param(jst(2026, 11, 20, 17, 0), jst(2026, 11, 24, 9, 0), id="weekend-and-holiday"),
        pytest.param(jst(2026, 9, 18, 18, 0), jst(2026, 9, 24, 9, 0), id="silver-week"),
        pytest.param(jst(2026, 12, 28, 17, 0), jst(2027, 1, 4, 9, 0), id="year-end"),
    ],
)
def test_next_opening(at: datetime, expected: datetime) -> None:
    opening = DEFAULT.next_opening(at)
    assert opening == expected
    assert opening.tzinfo is UTC


def test_a_calendar_without_business_days_says_so() -> None:
    always_closed = cal(year_end_closure=["01-02", "01-01"])  # wraps round the whole year
    with pytest.raises(ValueError, match="no business day"):
        always_closed.next_opening(jst(2026, 11, 24, 10, 0))


# Adding business minutes.


@pytest.mark.parametrize(
    ("start", "minutes", "expected"),
    [
        pytest.param(jst(2026, 11, 24, 10, 0), 60, jst(2026, 11, 24, 11, 0), id="within-a-day"),
        pytest.param(jst(2026, 11, 24, 7, 0), 30, jst(2026, 11, 24, 9, 30), id="before-opening"),
        pytest.param(jst(2026, 11, 24, 16, 0), 60, jst(2026, 11, 24, 17, 0), id="exactly-closing"),
        pytest.param(jst(2026, 11, 24, 9, 0), 480, jst(2026, 11, 24, 17, 0), id="whole-day"),
        pytest.param(jst(2026, 11, 24, 9, 0), 481, jst(2026, 11, 25, 9, 1), id="day-and-a-minute"),
        pytest.param(jst(2026, 11, 24, 16, 30), 60, jst(2026, 11, 25, 9, 30), id="over-a-night"),
        pytest.param(jst(2026, 11, 24, 20, 0), 60, jst(2026, 11, 25, 10, 0), id="from-evening"),
        pytest.param(jst(2026, 11, 27, 16, 30), 60, jst(2026, 11, 30, 9, 30), id="over-weekend"),
        pytest.param(jst(2026, 11, 29, 3, 0), 30, jst(2026, 11, 30, 9, 30), id="from-sunday"),
        pytest.param(
            jst(2026, 11, 20, 16, 30), 60, jst(2026, 11, 24, 9, 30), id="weekend-and-holiday"
        ),
        pytest.param(
            jst(2026, 11, 20, 16, 50), 480, jst(2026, 11, 24, 16, 50), id="friday-16:50-480"
        ),
        pytest.param(jst(2026, 9, 18, 16, 0), 120, jst(2026, 9, 24, 10, 0), id="silver-week"),
        pytest.param(jst(2026, 12, 28, 16, 0), 120, jst(2027, 1, 4, 10, 0), id="year-end"),
        pytest.param(jst(2026, 4, 30, 9, 0), 2400, jst(2026, 5, 11, 17, 0), id="golden-week-2400"),
        pytest.param(jst(2026, 11, 24, 16, 59, 30), 1, jst(2026, 11, 25, 9, 0, 30), id="seconds"),
        pytest.param(jst(2026, 11, 21, 10, 0), 0, jst(2026, 11, 21, 10, 0), id="zero-stays-put"),
    ],
)
def test_add_business_minutes(start: datetime, minutes: int, expected: datetime) -> None:
    due = DEFAULT.add_business_minutes(start, minutes)
    assert to_jst(due) == expected
    assert due.tzinfo is UTC


@pytest.mark.parametrize(
    ("config", "start", "minutes", "expected"),
    [
        pytest.param(
            {"year_end_closure": []},
            jst(2026, 12, 28, 16, 0),
            120,
            jst(2026, 12, 29, 10, 0),
            id="no-closure",
        ),
        pytest.param(
            {"closed_days": ["2026-11-25"]},
            jst(2026, 11, 24, 16, 30),
            60,
            jst(2026, 11, 26, 9, 30),
            id="closed-day",
        ),
        pytest.param(
            {"opens": "08:30", "closes": "17:30"},
            jst(2026, 11, 24, 17, 0),
            60,
            jst(2026, 11, 25, 9, 0),
            id="other-hours",
        ),
    ],
)
def test_add_business_minutes_configured(
    config: dict[str, object], start: datetime, minutes: int, expected: datetime
) -> None:
    assert cal(**config).add_business_minutes(start, minutes) == expected


def test_add_business_minutes_refuses_negative() -> None:
    with pytest.raises(ValueError, match="negative"):
        DEFAULT.add_business_minutes(jst(2026, 11, 24, 10, 0), -1)


def test_add_business_minutes_steps_day_by_day(monkeypatch: pytest.MonkeyPatch) -> None:
    """Golden Week with 2400 minutes: a handful of day look-ups, not one per minute."""
    lookups: list[date] = []
    real = jpholiday.is_holiday

    def counting(day: date) -> bool:
        lookups.append(day)
        return bool(real(day))

    monkeypatch.setattr(jpholiday, "is_holiday", counting)
    assert DEFAULT.add_business_minutes(jst(2026, 4, 30, 9, 0), 2400) == jst(2026, 5, 11, 17, 0)
    assert len(lookups) < 30


# Counting business minutes.


@pytest.mark.parametrize(
    ("start", "end", "minutes"),
    [
        pytest.param(jst(2026, 11, 24, 10, 0), jst(2026, 11, 24, 11, 0), 60, id="within-a-day"),
        pytest.param(jst(2026, 11, 24, 10, 0), jst(2026, 11, 24, 10, 0), 0, id="same-instant"),
        pytest.param(jst(2026, 11, 24, 16, 30), jst(2026, 11, 25, 9, 30), 60, id="over-a-night"),
        pytest.param(jst(2026, 11, 20, 16, 30), jst(2026, 11, 24, 9, 30), 60, id="long-weekend"),
        pytest.param(jst(2026, 11, 21, 0, 0), jst(2026, 11, 23, 23, 0), 0, id="all-closed"),
        pytest.param(jst(2026, 12, 28, 16, 0), jst(2027, 1, 4, 10, 0), 120, id="year-end"),
        pytest.param(jst(2026, 11, 24, 16, 59, 30), jst(2026, 11, 24, 18, 0), 0.5, id="seconds"),
        pytest.param(jst(2026, 11, 24, 11, 0), jst(2026, 11, 24, 10, 0), -60, id="backwards"),
        pytest.param(
            datetime(2026, 11, 24, 0, 0, tzinfo=UTC), jst(2026, 11, 24, 17, 0), 480, id="utc"
        ),
    ],
)
def test_business_minutes_between(start: datetime, end: datetime, minutes: float) -> None:
    assert DEFAULT.business_minutes_between(start, end) == minutes


CALENDARS = st.sampled_from(
    [
        DEFAULT,
        cal(year_end_closure=[]),
        cal(opens="08:30", closes="17:45", closed_days=["2026-11-24", "2027-02-12"]),
    ]
)
INSTANTS = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)


@settings(max_examples=300, deadline=None)
@given(business=CALENDARS, start=INSTANTS, minutes=st.integers(min_value=0, max_value=5000))
def test_between_inverts_add(business: BusinessCalendar, start: datetime, minutes: int) -> None:
    due = business.add_business_minutes(start, minutes)
    assert business.business_minutes_between(start, due) == minutes
    if minutes:
        # A deadline falls in open time or exactly at closing, never at night.
        local = to_jst(due)
        assert business.is_business_hours(due) or (
            business.is_business_day(local.date()) and local.time() == business.closes
        )


@settings(max_examples=200, deadline=None)
@given(business=CALENDARS, at=INSTANTS)
def test_next_opening_is_open_and_not_earlier(business: BusinessCalendar, at: datetime) -> None:
    opening = business.next_opening(at)
    assert opening >= at
    assert business.is_business_hours(opening)
    assert business.business_minutes_between(at, opening) == 0
