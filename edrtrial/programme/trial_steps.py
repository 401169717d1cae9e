"""A company's trial in the store: its start, the secretariat's decision, an extension.

The trial runs `trial_months` months (the cohort's, else its course's) from a recorded
start: it ends the day before the same date that many months later, a date the month lacks
taken as the month's last day (started 2026-11-30 for 3 months: ends 2027-02-27, the day
before 2027-02-28). The decision is the company's answer to the reminders, recorded by the
secretariat; what follows from it at the end is the daily job's (`service/trial_lifecycle`).

Nothing here undoes an uninstall: a decision that would keep the EDR on devices it was
already sent away from is refused, naming those devices, rather than recorded as if it
could still hold.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from edrtrial import audit
from edrtrial.config import ProgrammeConfig
from edrtrial.connectors.base import ActionKind
from edrtrial.errors import JourneyError
from edrtrial.models import Cohort, Company, Device, ResponseAction, Tenant, Trial
from edrtrial.programme.companies import tenant_of_company
from edrtrial.programme.journey import advance
from edrtrial.programme.trials import trial_of_company
from edrtrial.states import ActionState
from edrtrial.states import JourneyState as J
from edrtrial.words import Words

DECISIONS = ("continue", "offboard", "extend")

#: Offboarding tasks in these states never reached the EDR: the decision may still change.
_NOT_SENT = (ActionState.PLANNED, ActionState.CANCELLED)


def add_months(day: date, months: int) -> date:
    """The same day `months` months later; a day the month lacks becomes its last day."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def trial_end(starts_on: date, months: int) -> date:
    """The last day of a trial of `months` months starting on `starts_on`."""
    return add_months(starts_on, months) - timedelta(days=1)


def trial_months(programme: ProgrammeConfig, company: Company, cohort: Cohort | None) -> int:
    """How long the company's trial lasts: its cohort's months, else its course's."""
    if cohort is not None and cohort.trial_months:
        return cohort.trial_months
    course = programme.courses.get(company.course)
    if course is None:
        known = ", ".join(sorted(programme.courses))
        raise JourneyError(
            Words(
                "company %(key)r is on course %(course)r, which the config's "
                "[programme.courses] does not define (courses: %(known)s)",
                key=company.key,
                course=company.course,
                known=known,
            )
        )
    return course.trial_months


def start_trial(
    session: Session,
    programme: ProgrammeConfig,
    company: Company,
    starts_on: date,
    *,
    actor: str,
    at: datetime,
) -> Trial:
    """Start the company's trial on `starts_on` (journey `start`, audited with its dates)."""
    cohort = session.get(Cohort, company.cohort_id) if company.cohort_id else None
    months = trial_months(programme, company, cohort)
    ends_on = trial_end(starts_on, months)
    trial = trial_of_company(session, company.id)
    if trial is None:
        trial = Trial(company_id=company.id, starts_on=starts_on, ends_on=ends_on)
        session.add(trial)
    trial.starts_on, trial.ends_on, trial.decision = starts_on, ends_on, "undecided"
    advance(
        session,
        company,
        "start",
        actor=actor,
        at=at,
        why=f"trial {starts_on.isoformat()} to {ends_on.isoformat()} ({months} months)",
        detail={"starts_on": starts_on.isoformat(), "ends_on": ends_on.isoformat()},
    )
    session.flush()
    return trial


def locked_trial(session: Session, company_id: int) -> Trial | None:
    """The company's trial as last committed, its row locked until the transaction ends: a
    decision being recorded and an offboarding send being claimed (`devices/offboarding.py`)
    wait for each other, so neither acts on what the other is changing."""
    return session.scalar(
        select(Trial)
        .where(Trial.company_id == company_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def sent_offboarding(session: Session, company: Company) -> list[tuple[str, str]]:
    """Each device the company's offboarding already went to the EDR for: (name, status)."""
    rows = session.execute(
        select(Device.name, Device.source_id, ResponseAction.status)
        .join(ResponseAction, ResponseAction.device_id == Device.id)
        .join(Tenant, ResponseAction.tenant_id == Tenant.id)
        .where(
            Tenant.company_id == company.id,
            ResponseAction.kind == ActionKind.OFFBOARD.value,
            ResponseAction.status.not_in(_NOT_SENT),
        )
        .order_by(Device.name)
    )
    return [(name or source_id, status) for name, source_id, status in rows]


@dataclass(frozen=True, slots=True)
class Decided:
    """What recording a decision changed, as the secretariat is told."""

    decision: str
    ends_on: date
    previous: str
    journey: J


def _refuse_after_send(company: Company, decision: str, sent: list[tuple[str, str]]) -> None:
    if not sent or decision == "offboard":
        return
    devices = ", ".join(f"{name} ({status})" for name, status in sent)
    raise JourneyError(
        Words(
            "%(name)s (%(key)s): its offboarding was already sent to the EDR for "
            "%(count)s device(s): %(devices)s; the EDR is being or was uninstalled from them, so "
            "%(decision)r cannot be recorded. To keep the EDR, the company reinstalls it under "
            "its own contract with the vendor.",
            name=company.name,
            key=company.key,
            count=len(sent),
            devices=devices,
            decision=decision,
        )
    )


def _check_extension(trial: Trial, until: date | None, today: date) -> date:
    if until is None:
        raise JourneyError(Words("extend needs --until DATE, the trial's new last day"))
    if until <= today:
        raise JourneyError(
            Words(
                "--until %(until)s is not in the future (today is %(today)s in Tokyo); a trial "
                "is never extended into the past",
                until=until.isoformat(),
                today=today.isoformat(),
            )
        )
    if until <= trial.ends_on:
        raise JourneyError(
            Words(
                "--until %(until)s does not extend the trial: it already runs until %(ends)s",
                until=until.isoformat(),
                ends=trial.ends_on.isoformat(),
            )
        )
    return until


_DECIDABLE = (J.IN_TRIAL, J.ENDING, J.CONTINUING, J.OFFBOARDING)


def record_decision(
    session: Session,
    company: Company,
    decision: str,
    *,
    today: date,
    reminder_window: int,
    actor: str,
    at: datetime,
    until: date | None = None,
    reason: str = "",
) -> Decided:
    """Record the company's answer (audited: who, when, from, to, why).

    `continue` and `offboard` are kept on the trial; after its end they also take the
    journey there at once (`continue` from offboarding while nothing was sent yet, `offboard`
    from continuing). `extend` moves the trial's end to `until` (after today and after the
    current end), leaves the decision undecided and takes the journey back to in_trial (or
    ending when the new end is within `reminder_window` days). Raises JourneyError, naming
    what stands in the way: a state that has no trial to decide, a withdrawn company's
    extension, an offboarding already sent.
    """
    if decision not in DECISIONS:
        raise JourneyError(
            Words(
                "decision must be one of %(decisions)s, not %(decision)r",
                decisions=", ".join(DECISIONS),
                decision=decision,
            )
        )
    trial = locked_trial(session, company.id)  # before reading what was sent
    state = J(company.state)
    if trial is None or state not in _DECIDABLE:
        raise JourneyError(
            Words(
                "%(name)s (%(key)s) is %(state)s (%(state_ja)s): there is no trial to decide; "
                "a decision is recorded from the trial's start until its offboarding",
                name=company.name,
                key=company.key,
                state=state.value,
                state_ja=state.ja,
            )
        )
    _refuse_after_send(company, decision, sent_offboarding(session, company))
    previous, old_end = trial.decision, trial.ends_on
    if decision == "extend":
        if company.withdrawn_at is not None:
            raise JourneyError(
                Words(
                    "%(name)s (%(key)s) withdrew on %(withdrawn)s; its trial cannot be extended",
                    name=company.name,
                    key=company.key,
                    withdrawn=company.withdrawn_at.strftime("%Y-%m-%d"),
                )
            )
        trial.ends_on = _check_extension(trial, until, today)
        trial.decision = "undecided"
    else:
        trial.decision = decision
    trial.decided_at, trial.decided_by = at, actor
    detail = {
        "decision": decision,
        "from": previous,
        "to": trial.decision,
        "ends_on": [old_end.isoformat(), trial.ends_on.isoformat()],
        "reason": reason,
    }
    journey = _follow_decision(session, company, trial, today, reminder_window, actor, at, reason)
    audit.record(
        session,
        at=at,
        actor=actor,
        action="trial.decided",
        tenant_id=tenant.id if (tenant := tenant_of_company(session, company.id)) else None,
        target=f"company:{company.key}",
        detail=detail | {"journey": journey.value},
    )
    session.flush()
    return Decided(trial.decision, trial.ends_on, previous, journey)


def _follow_decision(
    session: Session,
    company: Company,
    trial: Trial,
    today: date,
    window: int,
    actor: str,
    at: datetime,
    reason: str,
) -> J:
    """The journey step a decision takes at once (none while the trial runs)."""
    state = J(company.state)
    why = reason or f"decision: {trial.decision}"
    if trial.decision == "continue" and state is J.OFFBOARDING:
        return advance(session, company, "continue", actor=actor, at=at, why=why)
    if trial.decision == "offboard" and state is J.CONTINUING:
        return advance(session, company, "offboard", actor=actor, at=at, why=why)
    if trial.decision != "undecided":
        return state
    # An extension: back in the trial, and ending again if its new end is near.
    ending = (trial.ends_on - today).days <= window
    if ending and state is J.ENDING:
        return state  # its new end is near too: it stays ending
    if state in (J.ENDING, J.CONTINUING, J.OFFBOARDING):
        state = advance(session, company, "extend", actor=actor, at=at, why=why)
    if ending and state is J.IN_TRIAL:
        state = advance(session, company, "near_end", actor=actor, at=at, why=why)
    return state
