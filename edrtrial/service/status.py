"""The service's health in one read: is a scheduler running, do its jobs succeed, which
tenants are failing or parked, what waits in the outbox, which device actions and
offboarding tasks are under way, and what of it needs a person.

`edrtrial status` renders it (its exit status says whether someone must act, for
monitoring) and the desk's alarms (`service/alarms.py`) are decided by the same rules, so
what the desk is told and what the command shows never disagree.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from edrtrial.access.scope import Scope
from edrtrial.config import DeskConfig, Settings
from edrtrial.connectors.base import ActionKind
from edrtrial.devices.actions import DEVICE_KINDS
from edrtrial.devices.states import FOLLOWED, RECONCILED
from edrtrial.models import Company, Device, JobRun, OutboxMessage, ResponseAction, ServiceLock
from edrtrial.models import Tenant as TenantRow
from edrtrial.programme.companies import worked_on
from edrtrial.service import overdue
from edrtrial.service.overdue import OverdueJob
from edrtrial.states import ActionState, OutboxState, TenantState
from edrtrial.timeutil import as_utc, to_jst
from edrtrial.words import Words

SCHEDULER_LOCK = "scheduler"
LEASE_STALE = timedelta(seconds=90)
"""A heartbeat older than this means no scheduler runs (it renews every 20 s)."""
FAILED_OUTBOX_WINDOW = timedelta(days=7)
"""Messages given up this recently are shown and need a person; older ones were seen."""
IN_FLIGHT_OFFBOARDING = (
    ActionState.PLANNED,
    *RECONCILED,
    *FOLLOWED,
    ActionState.MANUAL,
    ActionState.SUCCEEDED,
    ActionState.STILL_REPORTING,
)
"""An offboarding task not yet over: to send, sent, handed to a person, or to verify."""


@dataclass(frozen=True, slots=True)
class Thresholds:
    """When a problem needs a person (from the desk's config)."""

    tenant_failing: timedelta
    job_failures: int
    outbox_waiting: timedelta
    unanswered: timedelta

    @classmethod
    def of(cls, desk: DeskConfig) -> Thresholds:
        """The thresholds a desk config sets."""
        return cls(
            tenant_failing=timedelta(minutes=desk.tenant_alert_minutes),
            job_failures=desk.job_alert_failures,
            outbox_waiting=timedelta(minutes=desk.outbox_alert_minutes),
            unanswered=timedelta(minutes=desk.reconcile_minutes),
        )


@dataclass(frozen=True, slots=True)
class Lease:
    """The scheduler as its row and its lock say.

    `held`: whether a live process holds the store's lock (`ownership.is_held`), None when
    that cannot be asked; the row's heartbeat alone would call a service killed a minute
    ago running, and one waiting out a locked store dead. `beating`: its heartbeat is
    recent. `alive` trusts the lock when it can be asked, else the heartbeat.
    """

    holder: str
    since: datetime
    heartbeat_at: datetime
    beating: bool
    held: bool | None = None

    @property
    def alive(self) -> bool:
        return self.beating if self.held is None else self.held


@dataclass(frozen=True, slots=True)
class JobStatus:
    """A job's last success and last failure; `company_key` is "" for a job of every tenant."""

    job: str
    company_key: str
    last_success_at: datetime | None
    last_success_seconds: float | None
    last_success_summary: str
    last_failure_at: datetime | None
    last_failure_error: str
    failures: int
    failing_since: datetime | None

    @property
    def name(self) -> str:
        """The job as the scheduler names it: `outbox`, `poll:sakura-seisakusho`."""
        return f"{self.job}:{self.company_key}" if self.company_key else self.job


@dataclass(frozen=True, slots=True)
class TenantTrouble:
    """A tenant that is failing or parked, with its reason and since when."""

    tenant_id: int
    company_key: str
    company_name: str
    external_id: str
    state: str
    reason: str
    since: datetime | None
    failures: int


@dataclass(frozen=True, slots=True)
class Backlog:
    """The outbox: what waits (and its oldest), and what was given up recently."""

    pending: int
    oldest_at: datetime | None
    oldest_channel: str
    oldest_kind: str
    failed: int
    failed_last_at: datetime | None


@dataclass(frozen=True, slots=True)
class ActionUnderWay:
    """An isolation or release not finished: to send, sent without answer, or followed."""

    company_key: str
    device: str
    kind: str
    status: str
    requested_by: str
    since: datetime


@dataclass(frozen=True, slots=True)
class OffboardingInFlight:
    """A company's offboarding tasks in one state: how many, and the oldest's last change."""

    company_key: str
    status: str
    count: int
    oldest: datetime


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    """Everything `edrtrial status` shows; `problems` lists what needs a person."""

    at: datetime
    lease: Lease | None
    jobs: tuple[JobStatus, ...]
    tenants: tuple[TenantTrouble, ...]
    outbox: Backlog
    actions: tuple[ActionUnderWay, ...]
    offboarding: tuple[OffboardingInFlight, ...]
    problems: tuple[str, ...]
    overdue: tuple[OverdueJob, ...] = ()

    @property
    def needs_person(self) -> bool:
        """Whether someone must act (`edrtrial status` then exits 1)."""
        return bool(self.problems)

    def as_json(self) -> dict[str, Any]:
        """The same facts with stable keys and ISO 8601 times (UTC), for monitoring."""
        data: dict[str, Any] = _iso(asdict(self))
        data["scheduler_running"] = self.lease is not None and self.lease.alive
        if self.lease is not None:
            data["lease"]["alive"] = self.lease.alive
        data["needs_person"] = self.needs_person
        for job, shown in zip(self.jobs, data["jobs"], strict=True):
            shown["name"] = job.name
        for late, shown in zip(self.overdue, data["overdue"], strict=True):
            shown["name"] = late.name
            shown["reason"] = late.reason(self.at)
        return data


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return as_utc(value).isoformat()
    if isinstance(value, dict):
        return {k: _iso(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_iso(v) for v in value]
    return value


def jst(value: datetime) -> str:
    """A time as the status and the desk's notices show it."""
    return f"{to_jst(value):%Y-%m-%d %H:%M} JST"


def tenant_needs_person(tenant: TenantTrouble, limits: Thresholds, now: datetime) -> bool:
    """Parked, or failing longer than the threshold (a short failure is retried alone)."""
    if tenant.state == TenantState.PARKED:
        return True
    return tenant.since is not None and now - tenant.since >= limits.tenant_failing


def job_needs_person(job: JobStatus, limits: Thresholds, now: datetime) -> bool:
    """Failed this many times in a row, or failing longer than the threshold."""
    if job.failures >= limits.job_failures:
        return True
    since = job.failing_since
    return job.failures > 0 and since is not None and now - since >= limits.tenant_failing


def read_lease(session: Session, now: datetime, held: bool | None = None) -> Lease | None:
    """The scheduler's row, if any process ever wrote it and did not take it back, with
    `held` (the lock asked by the caller) beside its heartbeat."""
    row = session.get(ServiceLock, SCHEDULER_LOCK)
    if row is None:
        return None
    beating = now - row.heartbeat_at < LEASE_STALE
    return Lease(row.holder, row.acquired_at, row.heartbeat_at, beating, held)


def configured_keys(session: Session) -> frozenset[str]:
    """The companies the service works on: a record of any other is history, not a problem."""
    return worked_on(session)


def read_jobs(session: Session, configured: frozenset[str]) -> tuple[JobStatus, ...]:
    """Every recorded job of the configured companies, whole-store jobs first, then per
    company.

    A job run by hand for every company (`run-job poll`, `poll` without `--company`) is
    recorded under no company, apart from the scheduler's runs per company: its failure is
    over once the same job has succeeded since for any company, so one failed hand run
    does not keep the status and the desk's alarm up until someone runs it by hand again.
    """
    rows = [
        r
        for r in session.scalars(select(JobRun).order_by(JobRun.company_key, JobRun.job))
        if not r.company_key or r.company_key in configured
    ]
    latest: dict[str, datetime] = {}
    for r in rows:
        if r.company_key and r.last_success_at is not None:
            done = as_utc(r.last_success_at)
            latest[r.job] = max(latest.get(r.job, done), done)
    found = []
    for r in rows:
        failures, failing_since = r.failures, r.failing_since
        later = latest.get(r.job)
        if (
            not r.company_key
            and failures
            and later is not None
            and r.last_failure_at is not None
            and later > as_utc(r.last_failure_at)
        ):
            failures, failing_since = 0, None
        found.append(
            JobStatus(
                r.job,
                r.company_key,
                r.last_success_at,
                r.last_success_seconds,
                r.last_success_summary,
                r.last_failure_at,
                r.last_failure_error,
                failures,
                failing_since,
            )
        )
    return tuple(found)


def read_overdue(
    session: Session,
    settings: Settings,
    lease: Lease | None,
    jobs: tuple[JobStatus, ...],
    now: datetime,
) -> tuple[OverdueJob, ...]:
    """The scheduled jobs that have stopped running (`service/overdue.py`), told only while
    a scheduler holds the store (else "no scheduler running" says it all)."""
    if lease is None or not lease.alive:
        return ()
    tenants = session.scalars(
        select(Company.key)
        .join(TenantRow, TenantRow.company_id == Company.id)
        .where(Company.key.in_(configured_keys(session)))
    ).all()
    last_run = {
        (j.job, j.company_key): max(
            (as_utc(t) for t in (j.last_success_at, j.last_failure_at) if t is not None),
            default=None,
        )
        for j in jobs
    }
    found = (
        overdue.check(job, last_run.get((job.job, job.company_key)), lease.since, now)
        for job in overdue.expected(settings.schedules, list(tenants), settings.reports)
    )
    return tuple(late for late in found if late is not None)


def read_troubled_tenants(
    session: Session, configured: frozenset[str]
) -> tuple[TenantTrouble, ...]:
    """Tenants of the configured companies failing or parked; a state older than its
    recorded start counts from the last poll."""
    rows = session.execute(
        select(TenantRow, Company.key, Company.name)
        .join(Company, Company.id == TenantRow.company_id)
        .where(
            TenantRow.state.in_((TenantState.FAILING, TenantState.PARKED)),
            Company.key.in_(configured),
        )
        .order_by(Company.key)
    ).all()
    return tuple(
        TenantTrouble(
            t.id,
            key,
            name,
            t.external_id,
            t.state,
            t.state_reason,
            t.state_since or t.last_poll_at,
            t.failures,
        )
        for t, key, name in rows
    )


def read_backlog(session: Session, now: datetime) -> Backlog:
    """What waits in the outbox, and what it gave up lately."""
    pending = session.scalar(
        select(func.count())
        .select_from(OutboxMessage)
        .where(OutboxMessage.status == OutboxState.PENDING)
    )
    oldest = session.execute(
        select(OutboxMessage.created_at, OutboxMessage.channel, OutboxMessage.kind)
        .where(OutboxMessage.status == OutboxState.PENDING)
        .order_by(OutboxMessage.created_at, OutboxMessage.id)
        .limit(1)
    ).first()
    # A given-up message keeps the time of its last retry's plan: the nearest to its end.
    failed, failed_last = session.execute(
        select(func.count(), func.max(OutboxMessage.next_attempt_at)).where(
            OutboxMessage.status == OutboxState.FAILED,
            OutboxMessage.next_attempt_at >= now - FAILED_OUTBOX_WINDOW,
        )
    ).one()
    return Backlog(
        pending=pending or 0,
        oldest_at=oldest.created_at if oldest else None,
        oldest_channel=oldest.channel if oldest else "",
        oldest_kind=oldest.kind if oldest else "",
        failed=failed or 0,
        failed_last_at=as_utc(failed_last) if isinstance(failed_last, datetime) else None,
    )


def read_actions(session: Session) -> tuple[ActionUnderWay, ...]:
    """Isolations and releases planned, being sent, unconfirmed or followed at the EDR."""
    rows = session.execute(
        select(ResponseAction, Device.name, Company.key)
        .join(Device, Device.id == ResponseAction.device_id)
        .join(TenantRow, TenantRow.id == ResponseAction.tenant_id)
        .join(Company, Company.id == TenantRow.company_id)
        .where(
            ResponseAction.kind.in_(DEVICE_KINDS),
            ResponseAction.status.in_((ActionState.PLANNED, *RECONCILED, *FOLLOWED)),
        )
        .order_by(ResponseAction.created_at, ResponseAction.id)
    ).all()
    return tuple(
        ActionUnderWay(
            key,
            name or a.device.source_id,
            a.kind,
            a.status,
            a.requested_by,
            a.sent_at or a.created_at,
        )
        for a, name, key in rows
    )


def read_offboarding(session: Session) -> tuple[OffboardingInFlight, ...]:
    """Offboarding tasks not yet over, counted per company and state."""
    rows = session.execute(
        select(
            Company.key, ResponseAction.status, func.count(), func.min(ResponseAction.updated_at)
        )
        .join(TenantRow, TenantRow.id == ResponseAction.tenant_id)
        .join(Company, Company.id == TenantRow.company_id)
        .where(
            ResponseAction.kind == ActionKind.OFFBOARD.value,
            ResponseAction.status.in_(IN_FLIGHT_OFFBOARDING),
        )
        .group_by(Company.key, ResponseAction.status)
        .order_by(Company.key, ResponseAction.status)
    ).all()
    return tuple(OffboardingInFlight(key, status, n, as_utc(at)) for key, status, n, at in rows)


def _since(at: datetime | None) -> str:
    """ " since 2026-12-01 09:00 JST" for a problem line, or nothing."""
    return Words(" since %(when)s", when=jst(at)) if at else ""


def _problems(
    lease: Lease | None,
    jobs: tuple[JobStatus, ...],
    tenants: tuple[TenantTrouble, ...],
    outbox: Backlog,
    actions: tuple[ActionUnderWay, ...],
    late: tuple[OverdueJob, ...],
    limits: Thresholds,
    now: datetime,
) -> tuple[str, ...]:
    found: list[str] = []
    if lease is None:
        found.append(Words("no scheduler running: start `edrtrial serve`"))
    elif lease.alive and not lease.beating:
        found.append(
            Words(
                "the scheduler (%(holder)s) holds the store but has not beaten since "
                "%(when)s: the store may be locked or the service stuck; see its log (a "
                "restart is refused while it runs)",
                holder=lease.holder,
                when=jst(lease.heartbeat_at),
            )
        )
    elif not lease.alive:
        found.append(
            Words(
                "no scheduler running: the last one (%(holder)s) last beat %(when)s; start "
                "`edrtrial serve`",
                holder=lease.holder,
                when=jst(lease.heartbeat_at),
            )
        )
    for job in jobs:
        if job_needs_person(job, limits, now):
            found.append(
                Words(
                    "job %(job)s failed %(failures)s time(s) in a row%(since)s: %(error)s",
                    job=job.name,
                    failures=job.failures,
                    since=_since(job.failing_since),
                    error=job.last_failure_error,
                )
            )
    found.extend(job.reason(now) for job in late)
    for t in tenants:
        if tenant_needs_person(t, limits, now):
            found.append(
                Words(
                    "tenant of %(company)s %(state)s%(since)s: %(reason)s",
                    company=t.company_key,
                    state=t.state,
                    since=_since(t.since),
                    reason=t.reason,
                )
            )
    if outbox.oldest_at is not None and now - outbox.oldest_at >= limits.outbox_waiting:
        found.append(
            Words(
                "outbox: the oldest message (%(kind)s, %(channel)s) has waited since %(when)s",
                kind=outbox.oldest_kind,
                channel=outbox.oldest_channel,
                when=jst(outbox.oldest_at),
            )
        )
    if outbox.failed:
        found.append(
            Words(
                "outbox: %(failed)s message(s) given up in the last %(days)s days (see the "
                "service log)",
                failed=outbox.failed,
                days=FAILED_OUTBOX_WINDOW.days,
            )
        )
    for a in actions:
        # Within the window the desk job reconciles it by itself; after it, a person looks.
        if a.status in RECONCILED and now - a.since >= limits.unanswered:
            found.append(
                Words(
                    "%(kind)s of %(device)s (%(company)s) sent %(when)s, %(status)s: not "
                    "confirmed by the EDR; see `edrtrial action list`",
                    kind=a.kind,
                    device=a.device,
                    company=a.company_key,
                    when=jst(a.since),
                    status=a.status,
                )
            )
    return tuple(found)


def read_status(
    session: Session, settings: Settings, now: datetime, *, held: bool | None = None
) -> ServiceStatus:
    """The service's status as the store holds it at `now`, for the configured companies;
    `held` is whether a live service holds the store's lock (None: unknown)."""
    limits = Thresholds.of(settings.desk)
    lease = read_lease(session, now, held)
    jobs = read_jobs(session, configured_keys(session))
    late = read_overdue(session, settings, lease, jobs, now)
    tenants = read_troubled_tenants(session, configured_keys(session))
    outbox = read_backlog(session, now)
    actions = read_actions(session)
    problems = _problems(lease, jobs, tenants, outbox, actions, late, limits, now)
    return ServiceStatus(
        now, lease, jobs, tenants, outbox, actions, read_offboarding(session), problems, late
    )


def as_seen_by(
    session: Session, status: ServiceStatus, scope: Scope, settings: Settings
) -> ServiceStatus:
    """The status as a person limited to some cohorts may see it: only their companies'
    jobs, tenants, device actions and offboarding, and the problems those raise; not the
    outbox, which holds every company's mail. Everyone else sees it whole."""
    if scope.everything:
        return status
    keys = frozenset(session.scalars(select(Company.key).where(scope.companies())))
    # A job of every tenant is shown (it runs for them too), but not its words: its summary
    # and its error may name any company ("report of x cannot be written").
    jobs = tuple(
        j if j.company_key else replace(j, last_success_summary="", last_failure_error="")
        for j in status.jobs
        if not j.company_key or j.company_key in keys
    )
    late = tuple(j for j in status.overdue if not j.company_key or j.company_key in keys)
    tenants = tuple(t for t in status.tenants if t.company_key in keys)
    actions = tuple(a for a in status.actions if a.company_key in keys)
    offboarding = tuple(o for o in status.offboarding if o.company_key in keys)
    outbox = Backlog(0, None, "", "", 0, None)
    problems = _problems(
        status.lease, jobs, tenants, outbox, actions, late, Thresholds.of(settings.desk), status.at
    )
    return ServiceStatus(
        status.at, status.lease, jobs, tenants, outbox, actions, offboarding, problems, late
    )
