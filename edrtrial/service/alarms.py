"""Telling the desk when the service needs a person, once, and once when it no longer does.

A tenant parked (a bad secret, a withdrawn consent) or failing longer than
`desk.tenant_alert_minutes`, a job failing `desk.job_alert_failures` times in a row or
that long, a scheduled job that has stopped running (`service/overdue.py`), and a company in
its trial whose onboarded devices pass its planned seats or its course's cap are each told
on the desk's first escalation channel; its recovery is told the same way. What was
told is a `DeskAlarm` row written in the transaction that queues the notice, so neither
the next run nor a restart tells it again. The rules are those of `edrtrial status`
(`service/status.py`): the desk and the command never disagree; the seats' rule is
`programme/seats.py`'s (`past_seats`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from edrtrial import audit
from edrtrial.config import DeskConfig, Settings
from edrtrial.models import Company, DeskAlarm, Tenant
from edrtrial.notify.notices import ServiceAlarm, desk_service_alarm
from edrtrial.notify.recipients import send_to_channel
from edrtrial.programme.companies import tenant_of
from edrtrial.programme.seats import past_seats, seat_counts
from edrtrial.service import status
from edrtrial.states import JourneyState, TenantState
from edrtrial.timeutil import as_utc

log = logging.getLogger(__name__)

ACTOR = "desk"


@dataclass(frozen=True, slots=True)
class _Problem:
    subject: str
    tenant_id: int | None
    alarm: ServiceAlarm


def _tenant_problems(
    session: Session, configured: frozenset[str], limits: status.Thresholds, now: datetime
) -> list[_Problem]:
    found = []
    for t in status.read_troubled_tenants(session, configured):
        if not status.tenant_needs_person(t, limits, now):
            continue
        alarm = ServiceAlarm(
            problem=t.state,
            since=t.since or now,
            reason=t.reason,
            company_key=t.company_key,
            company_name=t.company_name,
            external_id=t.external_id,
            failures=t.failures,
        )
        found.append(_Problem(f"tenant:{t.tenant_id}", t.tenant_id, alarm))
    return found


def _job_problems(
    session: Session, settings: Settings, limits: status.Thresholds, now: datetime
) -> list[_Problem]:
    found = []
    jobs = status.read_jobs(session, status.configured_keys(session))
    for job in jobs:
        if not status.job_needs_person(job, limits, now):
            continue
        tenant = tenant_of(session, job.company_key) if job.company_key else None
        alarm = ServiceAlarm(
            problem="job",
            since=job.failing_since or job.last_failure_at or now,
            reason=job.last_failure_error,
            job=job.name,
            failures=job.failures,
        )
        found.append(_Problem(f"job:{job.name}", tenant.id if tenant else None, alarm))
    lease = status.read_lease(session, now)
    for late in status.read_overdue(session, settings, lease, jobs, now):
        tenant = tenant_of(session, late.company_key) if late.company_key else None
        alarm = ServiceAlarm(
            problem="overdue", since=late.quiet_since, reason=late.reason(now), job=late.name
        )
        found.append(_Problem(f"job:{late.name}", tenant.id if tenant else None, alarm))
    return found


#: Companies whose devices count against their seats: those in their trial.
_SEATED = (JourneyState.IN_TRIAL.value, JourneyState.ENDING.value)


def _seat_problems(session: Session, settings: Settings, now: datetime) -> list[_Problem]:
    """Companies in their trial with more devices onboarded than planned, or than the cap
    (the company's, or its course's if lower): the secretariat must talk to the company."""
    counts = {row.company_key: row for row in seat_counts(session, now)}
    found = []
    query = (
        select(Company, Tenant)
        .join(Tenant, Tenant.company_id == Company.id)
        .where(Company.state.in_(_SEATED))
        .order_by(Company.key)
    )
    for company, tenant in session.execute(query):
        row = counts.get(company.key)
        if row is None:
            continue
        course = settings.programme.courses.get(company.course)
        reason = past_seats(
            row,
            course.seat_cap if course else None,
            course.seat_unit if course else "seats",
        )
        if not reason:
            continue
        alarm = ServiceAlarm(
            problem="seats",
            since=now,
            reason=reason,
            company_key=company.key,
            company_name=company.name,
            external_id=tenant.external_id,
        )
        found.append(_Problem(f"seats:{company.key}", tenant.id, alarm))
    return found


def _recovered(session: Session, row: DeskAlarm, now: datetime) -> ServiceAlarm:
    """The told problem as recovered, its subject named again (it is gone from the status)."""
    alarm = ServiceAlarm(problem=row.problem, since=row.since, reason=row.reason, recovered_at=now)
    if row.subject.startswith("job:"):
        return replace(alarm, job=row.subject.removeprefix("job:"))
    tenant = session.get(Tenant, row.tenant_id) if row.tenant_id is not None else None
    if tenant is None:
        return alarm
    company = session.get_one(Company, tenant.company_id)
    return replace(
        alarm, company_key=company.key, company_name=company.name, external_id=tenant.external_id
    )


def _key(row: DeskAlarm, what: str) -> str:
    # The moment it was told names the episode: a later one of the same problem is new.
    return f"notice:desk:alarm:{row.subject}:{what}:{int(row.told_at.timestamp())}"


def _tell(
    session: Session, desk: DeskConfig, row: DeskAlarm, alarm: ServiceAlarm, what: str
) -> None:
    channel = desk.escalation_channels()[0]
    send_to_channel(
        session,
        channel,
        row.tenant_id,
        desk_service_alarm(alarm),
        dedupe_key=_key(row, what),
        kind="desk-alarm",
    )
    audit.record(
        session,
        at=alarm.recovered_at or row.told_at,
        actor=ACTOR,
        action="alarm.cleared" if alarm.recovered_at else "alarm.raised",
        tenant_id=row.tenant_id,
        target=row.subject,
        detail={"problem": alarm.problem, "reason": alarm.reason, "channel": channel.name},
    )


def _told(session: Session) -> dict[str, DeskAlarm]:
    """What the desk has been told and not yet told of the recovery, by subject."""
    return {row.subject: row for row in session.scalars(select(DeskAlarm))}


def _forget(session: Session, row: DeskAlarm) -> bool:
    """Drop the told problem, unless another desk pass dropped it first (then False)."""
    gone = session.execute(
        delete(DeskAlarm)
        .where(DeskAlarm.subject == row.subject, DeskAlarm.told_at == row.told_at)
        .execution_options(synchronize_session=False)
    )
    session.expunge(row)
    return bool(getattr(gone, "rowcount", 0) == 1)


def _same(row: DeskAlarm, problem: _Problem) -> bool:
    """Whether the problem is the one told: the same kind and, for a parked tenant, parked
    at the same moment (resumed and parked again, perhaps for another reason, it is new)."""
    if row.problem != problem.alarm.problem:
        return False
    return row.problem != TenantState.PARKED or as_utc(row.since) == as_utc(problem.alarm.since)


def tell_desk(session: Session, settings: Settings, now: datetime) -> int:
    """Tell the desk of each new problem and each recovery since the last check; how many."""
    desk = settings.desk
    limits = status.Thresholds.of(desk)
    configured = status.configured_keys(session)
    problems = {
        p.subject: p
        for p in (
            *_tenant_problems(session, configured, limits, now),
            *_job_problems(session, settings, limits, now),
            *_seat_problems(session, settings, now),
        )
    }
    told = _told(session)
    sent = 0
    for subject, row in told.items():
        if subject in problems and _same(row, problems[subject]):
            continue
        if not _forget(session, row):
            continue  # another desk pass, at the same moment, has told what it became
        if subject in problems:
            continue  # its new problem (failing, now parked; parked anew) is told below
        _tell(session, desk, row, _recovered(session, row, now), "recovered")
        log.info("the desk is told that %s recovered", subject)
        sent += 1
    session.flush()
    for subject, problem in problems.items():
        if subject in told and _same(told[subject], problem):
            continue
        row = DeskAlarm(
            subject=subject,
            problem=problem.alarm.problem,
            tenant_id=problem.tenant_id,
            since=problem.alarm.since,
            told_at=now,
            reason=problem.alarm.reason,
        )
        session.add(row)
        _tell(session, desk, row, problem.alarm, problem.alarm.problem)
        log.warning("the desk is told that %s needs a person", subject)
        sent += 1
    return sent
