"""The admission steps as the CLI (and later the console) takes them: the programme's step,
then the mails it owes the companies, in the caller's transaction.

The programme decides who moved where (`programme.admission`); this is where the company, and
every company that took a place it freed, is told (`notify.journey_mail`), so the mail is
queued with the step or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from edrtrial.config import Settings
from edrtrial.desk.calendar import BusinessCalendar
from edrtrial.models import Company
from edrtrial.notify.journey_mail import tell
from edrtrial.programme import admission, cohorts
from edrtrial.programme.admission import Diagnosis, Outcome
from edrtrial.programme.applicants import DueOn
from edrtrial.programme.companies import company_named


def calendar_of(settings: Settings) -> BusinessCalendar:
    """The desk's business calendar, on which the call's deadline is counted."""
    return BusinessCalendar.from_config(settings.calendar)


def due_on(settings: Settings) -> DueOn:
    """The call's due day for an application received on a day (JST): the configured number
    of business days of the desk's calendar after it."""
    calendar, days = calendar_of(settings), settings.programme.call_business_days
    return lambda received_on: calendar.business_days_after(received_on, days)


def call(
    session: Session,
    settings: Settings,
    key: str,
    *,
    actor: str,
    at: datetime,
    notes: str = "",
    cohort: str | None = None,
) -> Outcome:
    """Record the confirmation call (the place held, or the waiting list and its mail)."""
    company = company_named(session, key)
    outcome = admission.record_call(
        session,
        settings.programme,
        company,
        due_on(settings),
        actor=actor,
        at=at,
        notes=notes,
        cohort_key=cohort,
    )
    _tell(session, settings, outcome)
    return outcome


def prediagnose(
    session: Session,
    settings: Settings,
    key: str,
    diagnosis: Diagnosis,
    *,
    actor: str,
    at: datetime,
) -> Outcome:
    """Record the pre-diagnosis; the company is told it is admitted or refused."""
    company = company_named(session, key)
    outcome = admission.record_prediagnosis(
        session, settings.programme, company, diagnosis, actor=actor, at=at
    )
    _tell(session, settings, outcome)
    return outcome


def refuse(
    session: Session, settings: Settings, key: str, reason: str, *, actor: str, at: datetime
) -> Outcome:
    """Refuse the company, tell it why, and give its place to the next one waiting."""
    company = company_named(session, key)
    outcome = admission.refuse(session, company, reason, actor=actor, at=at)
    _tell(session, settings, outcome)
    return outcome


def withdraw(
    session: Session, settings: Settings, key: str, reason: str, *, actor: str, at: datetime
) -> Outcome:
    """Record the company's withdrawal; its place goes to the next one waiting."""
    company = company_named(session, key)
    outcome = admission.withdraw(session, company, reason, actor=actor, at=at)
    _tell(session, settings, outcome)
    return outcome


def change_cohort(
    session: Session,
    settings: Settings,
    key: str,
    *,
    actor: str,
    at: datetime,
    capacity: int | None = None,
    closed: bool | None = None,
) -> list[cohorts.Moved]:
    """Change a cohort; each company a larger capacity lets in from its waiting list is told."""
    _, moved = cohorts.change(session, key, actor=actor, at=at, capacity=capacity, closed=closed)
    _tell_moved(session, settings, moved)
    return moved


def _tell(session: Session, settings: Settings, outcome: Outcome) -> None:
    """Queue the mail the step owes the company, and each company that moved up."""
    programme, desk = settings.programme, settings.desk
    if outcome.event is not None:
        company = session.get_one(Company, outcome.company_id)
        tell(
            session,
            company,
            outcome.event,
            programme,
            desk,
            position=outcome.position,
            reasons=outcome.reasons,
        )
    _tell_moved(session, settings, outcome.moved)


def _tell_moved(session: Session, settings: Settings, moved: Sequence[cohorts.Moved]) -> None:
    """Tell each company that took a freed place: moved up, or admitted if pre-diagnosed."""
    for one in moved:
        company = session.get_one(Company, one.company_id)
        tell(session, company, one.event, settings.programme, settings.desk)
