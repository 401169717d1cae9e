"""Acknowledgement deadlines: the incident desk's 24/7 clock against business hours.

2026-11-27 is a Friday and 2026-11-29 a Sunday; 2026-11-23 (Mon) is a public holiday.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from edrtrial.config import CalendarConfig, SlaConfig
from edrtrial.desk.calendar import DEFAULT, BusinessCalendar
from edrtrial.desk.sla import Clock, acknowledge_by, clock_for, describe_deadline, next_deadline
from edrtrial.timeutil import JST, to_jst

SLA = SlaConfig()  # P1 30, P2 120, P3 480, P4 2400; P1/P2 around the clock in a trial


def jst(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    """A wall-clock time in Tokyo."""
    return datetime(y, mo, d, h, mi, s, tzinfo=JST)


@pytest.mark.parametrize(
    ("priority", "in_trial", "sla", "clock"),
    [
        pytest.param("P1", True, SLA, Clock.INCIDENT_DESK, id="P1-in-trial"),
        pytest.param("P2", True, SLA, Clock.INCIDENT_DESK, id="P2-in-trial"),
        pytest.param("P3", True, SLA, Clock.BUSINESS, id="P3-in-trial"),
        pytest.param("P4", True, SLA, Clock.BUSINESS, id="P4-in-trial"),
        pytest.param("P1", False, SLA, Clock.BUSINESS, id="P1-after-trial"),
        pytest.param("P2", False, SLA, Clock.BUSINESS, id="P2-after-trial"),
        pytest.param(
            "P1", True, SlaConfig(around_the_clock=[]), Clock.BUSINESS, id="no-incident-desk"
        ),
        pytest.param(
            "P3", True, SlaConfig(around_the_clock=["P3"]), Clock.INCIDENT_DESK, id="P3-24-7"
        ),
    ],
)
def test_clock_for(priority: str, in_trial: bool, sla: SlaConfig, clock: Clock) -> None:
    assert clock_for(priority, in_trial, sla) is clock


def test_clock_values_are_the_documented_strings() -> None:
    assert Clock("incident-desk") is Clock.INCIDENT_DESK
    assert Clock("business") is Clock.BUSINESS
    assert f"{Clock.INCIDENT_DESK}" == "incident-desk"  # a str, ready to store or show


def test_unknown_priority_is_refused() -> None:
    with pytest.raises(ValueError, match="P5"):
        clock_for("P5", True, SLA)
    with pytest.raises(ValueError, match="P5"):
        acknowledge_by("P5", jst(2026, 11, 24, 10), in_trial=True, sla=SLA, calendar=DEFAULT)


@pytest.mark.parametrize(
    ("priority", "opened_at", "in_trial", "due"),
    [
        pytest.param(
            "P1", jst(2026, 11, 29, 3, 0), True, jst(2026, 11, 29, 3, 30), id="P1-trial-sun-3am"
        ),
        pytest.param(
            "P1", jst(2026, 11, 29, 3, 0), False, jst(2026, 11, 30, 9, 30), id="P1-after-sun-3am"
        ),
        pytest.param(
            "P2", jst(2026, 11, 21, 23, 0), True, jst(2026, 11, 22, 1, 0), id="P2-trial-sat-night"
        ),
        pytest.param(
            "P2", jst(2026, 11, 24, 15, 0), False, jst(2026, 11, 24, 17, 0), id="P2-due-at-closing"
        ),
        pytest.param(
            "P3", jst(2026, 11, 27, 16, 50), True, jst(2026, 11, 30, 16, 50), id="P3-fri-16:50"
        ),
        pytest.param(
            "P3",
            jst(2026, 11, 20, 16, 50),
            True,
            jst(2026, 11, 24, 16, 50),
            id="P3-fri-16:50-before-holiday-monday",
        ),
        pytest.param(
            "P3", jst(2026, 12, 28, 10, 0), True, jst(2027, 1, 4, 10, 0), id="P3-over-year-end"
        ),
        pytest.param(
            "P4", jst(2026, 4, 30, 9, 0), True, jst(2026, 5, 11, 17, 0), id="P4-golden-week"
        ),
    ],
)
def test_acknowledge_by(priority: str, opened_at: datetime, in_trial: bool, due: datetime) -> None:
    deadline = acknowledge_by(priority, opened_at, in_trial=in_trial, sla=SLA, calendar=DEFAULT)
    assert to_jst(deadline) == due
    assert deadline.tzinfo is UTC


def test_acknowledge_by_uses_the_configured_minutes_and_calendar() -> None:
    sla = SlaConfig(acknowledge_minutes={"P1": 15, "P2": 60, "P3": 240, "P4": 960})
    no_closure = BusinessCalendar.from_config(CalendarConfig(year_end_closure=[]))
    opened = jst(2026, 12, 28, 16, 0)
    assert acknowledge_by("P1", opened, in_trial=True, sla=sla, calendar=no_closure) == jst(
        2026, 12, 28, 16, 15
    )
    assert acknowledge_by("P3", opened, in_trial=True, sla=sla, calendar=no_closure) == jst(
        2026, 12, 29, 12, 0
    )
    assert acknowledge_by("P3", opened, in_trial=True, sla=sla, calendar=DEFAULT) == jst(
        2027, 1, 4, 12, 0
    )


def test_acknowledge_by_accepts_utc_instants() -> None:
    opened = datetime(2026, 11, 27, 7, 50, tzinfo=UTC)  # Friday 16:50 in Tokyo
    due = acknowledge_by("P3", opened, in_trial=False, sla=SLA, calendar=DEFAULT)
    assert due == datetime(2026, 11, 30, 7, 50, tzinfo=UTC)


@pytest.mark.parametrize(
    ("priority", "previous", "in_trial", "due"),
    [
        pytest.param(
            "P1", jst(2026, 11, 29, 3, 30), True, jst(2026, 11, 29, 4, 0), id="P1-trial-again"
        ),
        pytest.param(
            "P3", jst(2026, 11, 30, 16, 50), True, jst(2026, 12, 1, 16, 50), id="P3-next-day"
        ),
        pytest.param(
            "P2",
            jst(2026, 11, 24, 17, 0),
            False,
            jst(2026, 11, 25, 11, 0),
            id="P2-missed-at-closing-counts-from-next-morning",
        ),
        pytest.param(
            "P1",
            jst(2026, 11, 29, 3, 30),
            False,
            jst(2026, 11, 30, 9, 30),
            id="P1-trial-ended-falls-back-to-business",
        ),
    ],
)
def test_next_deadline(priority: str, previous: datetime, in_trial: bool, due: datetime) -> None:
    deadline = next_deadline(previous, priority, in_trial=in_trial, sla=SLA, calendar=DEFAULT)
    assert deadline == due
    assert deadline.tzinfo is UTC


@pytest.mark.parametrize(
    ("deadline", "now", "text"),
    [
        pytest.param(
            jst(2026, 11, 24, 10, 30),
            jst(2026, 11, 24, 9, 10),
            "due 11/24 10:30 JST (in 1 h 20 min)",
            id="in-hours-and-minutes",
        ),
        pytest.param(
            jst(2026, 11, 24, 10, 30),
            jst(2026, 11, 24, 10, 0),
            "due 11/24 10:30 JST (in 30 min)",
            id="in-minutes",
        ),
        pytest.param(
            jst(2026, 11, 24, 10, 30),
            jst(2026, 11, 24, 8, 30),
            "due 11/24 10:30 JST (in 2 h)",
            id="in-whole-hours",
        ),
        pytest.param(
            jst(2026, 11, 30, 16, 50),
            jst(2026, 11, 27, 16, 50),
            "due 11/30 16:50 JST (in 3 d)",
            id="in-days",
        ),
        pytest.param(
            jst(2026, 11, 24, 10, 30),
            jst(2026, 11, 24, 10, 28, 50),
            "due 11/24 10:30 JST (in 1 min)",
            id="rounds-down",
        ),
        pytest.param(
            jst(2026, 11, 24, 10, 30),
            jst(2026, 11, 24, 10, 29, 30),
            "due 11/24 10:30 JST (in under 1 min)",
            id="under-a-minute",
        ),
        pytest.param(
            jst(2027, 1, 4, 10, 0),
            jst(2026, 12, 28, 16, 0),
            "due 2027/01/04 10:00 JST (in 6 d 18 h)",
            id="next-year-shows-year",
        ),
        pytest.param(
            datetime(2026, 11, 24, 1, 30, tzinfo=UTC),
            datetime(2026, 11, 24, 0, 10, tzinfo=UTC),
            "due 11/24 10:30 JST (in 1 h 20 min)",
            id="utc-shown-in-tokyo",
        ),
        pytest.param(
            jst(2026, 11, 24, 10, 30),
            jst(2026, 11, 24, 11, 5),
            "overdue by 35 min",
            id="overdue-minutes",
        ),
        pytest.param(
            jst(2026, 11, 24, 10, 30),
            jst(2026, 11, 24, 12, 35),
            "overdue by 2 h 5 min",
            id="overdue-hours",
        ),
        pytest.param(
            jst(2026, 11, 24, 10, 30),
            jst(2026, 11, 24, 10, 30),
            "overdue by under 1 min",
            id="at-the-deadline",
        ),
    ],
)
def test_describe_deadline(deadline: datetime, now: datetime, text: str) -> None:
    assert describe_deadline(deadline, now) == text
