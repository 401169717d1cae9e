"""The confirmation call is due within 3 business days of the application (お申込みから3営業
日以内), counted on the desk's calendar: weekends, Japanese holidays and the year-end closure
do not count; the day is Tokyo's, whatever the hour the application came."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import select

from edrtrial.config import CalendarConfig
from edrtrial.db import transaction
from edrtrial.models import Application
from edrtrial.programme.admission import call_due_on
from edrtrial.service import admission
from edrtrial.timeutil import JST

from admission_rows import add_cohort, add_eligible, settings

DUE_ON = admission.due_on(settings())


def call_due(received_at: datetime, due_on=DUE_ON) -> date:
    """The call's day of an application received then, whose day intake did not record."""
    return call_due_on(Application(received_at=received_at, call_due_on=None), due_on)


def jst(*args: int) -> datetime:
    return datetime(*args, tzinfo=JST).astimezone(UTC)


@pytest.mark.parametrize(
    ("received", "due"),
    [
        # Monday: Tuesday, Wednesday, Thursday.
        (jst(2026, 11, 16, 10, 0), date(2026, 11, 19)),
        # Friday: the weekend does not count.
        (jst(2026, 11, 13, 16, 59), date(2026, 11, 18)),
        # Saturday, and Sunday night (the form is open all week): from Monday.
        (jst(2026, 11, 14, 12, 0), date(2026, 11, 18)),
        (jst(2026, 11, 15, 23, 59), date(2026, 11, 18)),
        # Friday 20 November: Monday 23 is 勤労感謝の日, a holiday.
        (jst(2026, 11, 20, 10, 0), date(2026, 11, 26)),
        # Monday 2 November: Tuesday 3 is 文化の日.
        (jst(2026, 11, 2, 9, 0), date(2026, 11, 6)),
        # Friday 25 December: Monday 28, then the closure until 3 January, then 4 and 5.
        (jst(2026, 12, 25, 15, 0), date(2027, 1, 5)),
    ],
)
def test_the_call_is_due_three_business_days_after_the_application(received, due):
    assert call_due(received) == due


def test_the_day_is_tokyo_s_not_utc_s():
    # Sunday 20:00 UTC is Monday 05:00 in Tokyo: Monday is the day it came.
    assert call_due(datetime(2026, 11, 15, 20, 0, tzinfo=UTC)) == date(2026, 11, 19)


def test_extra_closed_days_and_the_configured_count_are_honoured():
    closed = settings(call_business_days=5).model_copy(
        update={"calendar": CalendarConfig(closed_days=[date(2026, 11, 17)])}
    )
    # Five days from Monday 16: 18 to 20, 24 and 25 (17 closed, 23 a holiday).
    assert call_due(jst(2026, 11, 16, 10, 0), admission.due_on(closed)) == date(2026, 11, 25)


def test_a_day_intake_recorded_stands():
    recorded = Application(received_at=jst(2026, 11, 16, 10), call_due_on=date(2026, 11, 30))
    assert call_due_on(recorded, DUE_ON) == date(2026, 11, 30)


def test_the_call_records_the_deadline_when_intake_did_not(sessions):
    add_cohort(sessions)
    with transaction(sessions) as session:
        add_eligible(session, "alpha", jst(2026, 11, 20, 10, 0))
    with transaction(sessions) as session:
        admission.call(session, settings(), "alpha", actor="cli:sato", at=jst(2026, 11, 27, 9))
    with sessions() as session:
        application = session.scalar(select(Application))
        assert application is not None and application.call_due_on == date(2026, 11, 26)
        assert application.call_by == "sato" and application.call_done_at == jst(2026, 11, 27, 9)
