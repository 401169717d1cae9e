"""Jobs: plain functions the scheduler runs and `edrtrial run-job` runs by hand.

Per tenant, polling follows the coordinator contract (`ingest/health.py`): a transient
failure is logged once when the tenant goes down and once when it comes back; an
authentication failure parks the tenant with the operator's to-do until its credentials
are fixed.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from edrtrial.connectors.base import ActionKind, Connector
from edrtrial.db import store_unavailable, transaction
from edrtrial.desk import escalation
from edrtrial.desk.first_poll import finish_first_poll
from edrtrial.desk.triage import TriageResult, triage_pending
from edrtrial.devices import actions, offboarding, writeback
from edrtrial.devices.states import FOLLOWED, RECONCILED
from edrtrial.errors import AuthError, ConfigError, ConnectorError, UnexpectedTenantError
from edrtrial.ingest import health, polling
from edrtrial.logsetup import tenant_context
from edrtrial.models import Alert, Company, ResponseAction, Tenant
from edrtrial.notify import outbox
from edrtrial.notify.archive import archive_dir_of
from edrtrial.notify.mail import transport_from_config
from edrtrial.notify.report_mail import queue_detection_report
from edrtrial.notify.seat_mail import queue_seat_report, seat_week
from edrtrial.notify.webhooks import webhook_transport_from_config
from edrtrial.programme import trials
from edrtrial.service import alarms
from edrtrial.service import trial_lifecycle as lifecycle_job
from edrtrial.service.runtime import Runtime, TenantRef
from edrtrial.states import ActionState, JourneyState, TenantState, WriteBackState
from edrtrial.timeutil import JST, jst_date

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PollOutcome:
    """One tenant's poll: what came in, what triage did, or why it failed."""

    company_key: str
    new_alerts: int = 0
    updated_alerts: int = 0
    triage: TriageResult = TriageResult()
    error: str = ""
    quarantined: int = 0


TRIAGE_BATCH = 500


def _park(rt: Runtime, tenant: TenantRef, reason: str) -> None:
    """Park the tenant, and drop its connector so fixed credentials are read afresh."""
    rt.forget_connector(tenant.id)
    health.park(rt.sessions, tenant.id, reason, rt.clock())


def _first_poll_since(rt: Runtime, tenant: TenantRef) -> datetime | None:
    with rt.sessions() as session:
        return trials.first_poll_since(session, tenant.id)


def _on_first_poll(rt: Runtime, tenant: TenantRef) -> bool:
    with rt.sessions() as session:
        return health.on_first_poll(session, tenant.id)


def _waiting(rt: Runtime, tenant: TenantRef) -> str:
    if tenant.state == TenantState.PARKED:
        return "parked"
    if tenant.not_before is not None and tenant.not_before > rt.clock():
        return f"waiting until {tenant.not_before.astimezone(JST):%H:%M:%S} JST"
    return ""


UNEXPECTED_REASON_MAX = 300
"""How much of an unexpected error's first line the tenant's reason keeps."""


def _unexpected(rt: Runtime, tenant: TenantRef, work: str, err: Exception) -> str:
    """Fail the tenant for an error nobody foresaw: one line in the log, the traceback at
    debug, and the tenant retried like after any failure (its breaker opens if it lasts)."""
    first = (str(err).strip().splitlines() or [""])[0][:UNEXPECTED_REASON_MAX]
    failure = UnexpectedTenantError(f"{work} failed unexpectedly: {type(err).__name__}: {first}")
    log.warning("%s of %s: %s", work, tenant.company_key, failure)
    log.debug("%s of %s failed", work, tenant.company_key, exc_info=err)
    try:
        poll_seconds = rt.config.settings.schedules.poll_seconds
        return health.failed(rt.sessions, tenant.id, failure, rt.clock(), poll_seconds)
    except Exception:  # the store itself is down: the next run records it
        log.debug("%s of %s: the failure could not be recorded", work, tenant.company_key)
        return str(failure)


def poll_one(rt: Runtime, tenant: TenantRef) -> PollOutcome:
    """Ingest and triage one tenant; its failures become its state, never another's problem.

    An unexpected error (a value the store refuses, a bug) fails this tenant only: the
    other tenants of the same poll are polled all the same.
    """
    with tenant_context(tenant.external_id), rt.tenant_lock(tenant.id):
        try:
            return _poll_one(rt, tenant)
        except Exception as err:
            if store_unavailable(err):
                raise  # not this tenant's failure: the store's, which the scheduler waits out
            return PollOutcome(tenant.company_key, error=_unexpected(rt, tenant, "poll", err))


def _poll_one(rt: Runtime, tenant: TenantRef) -> PollOutcome:
    if waiting := _waiting(rt, tenant):
        return PollOutcome(tenant.company_key, error=waiting)
    # Read before the ingest: a poll that starts as the first stays the first to its end.
    first = _on_first_poll(rt, tenant)
    try:
        result = polling.ingest_tenant(
            rt.sessions,
            tenant.id,
            rt.connector(tenant),
            initial_since=_first_poll_since(rt, tenant),
            now=rt.clock(),
        )
    except AuthError as err:
        reason = f"{err} {err.operator_action}".strip()
        _park(rt, tenant, reason)
        return PollOutcome(tenant.company_key, error=reason)
    except ConfigError as err:  # e.g. the secret's file or variable is missing
        _park(rt, tenant, str(err))
        return PollOutcome(tenant.company_key, error=str(err))
    except ConnectorError as err:
        poll_seconds = rt.config.settings.schedules.poll_seconds
        reason = health.failed(rt.sessions, tenant.id, err, rt.clock(), poll_seconds)
        return PollOutcome(tenant.company_key, error=reason)
    triaged = _triage_all(rt, tenant, first_poll=first)
    if first:  # everything it brought is in and triaged: announce the backlog, once
        with transaction(rt.sessions) as session:
            told = finish_first_poll(session, tenant.id, rt.policy, rt.clock())
        triaged = dataclasses.replace(triaged, notices_queued=triaged.notices_queued + told)
    health.succeeded(rt.sessions, tenant.id, rt.clock())
    return PollOutcome(
        tenant.company_key,
        result.alerts.inserted,
        result.alerts.updated,
        triaged,
        quarantined=result.quarantined,
    )


def _triage_all(rt: Runtime, tenant: TenantRef, *, first_poll: bool = False) -> TriageResult:
    """Triage everything pending, a batch per transaction (a backlog is cleared in one poll)."""
    total = TriageResult()
    while True:
        with transaction(rt.sessions) as session:
            batch = triage_pending(
                session,
                tenant.id,
                tenant.company_key,
                rt.playbook,
                rt.policy,
                rt.clock(),
                limit=TRIAGE_BATCH,
                first_poll=first_poll,
            )
        total = TriageResult(
            *(
                a + b
                for a, b in zip(dataclasses.astuple(total), dataclasses.astuple(batch), strict=True)
            )
        )
        if batch.triaged < TRIAGE_BATCH:
            return total


def _each_tenant(rt: Runtime, work: Callable[[TenantRef], T], company_key: str | None) -> list[T]:
    """Run `work` for each tenant, a bounded number at once, so one slow tenant delays none."""
    tenants = rt.tenants(company_key)
    workers = min(rt.config.settings.schedules.parallel_tenants, len(tenants))
    if workers <= 1:
        return [work(t) for t in tenants]
    with ThreadPoolExecutor(workers, thread_name_prefix="tenant") as pool:
        return list(pool.map(work, tenants))


def poll(rt: Runtime, company_key: str | None = None) -> list[PollOutcome]:
    """Poll every tenant (or one company's) once; parked or waiting tenants are reported."""
    rt.refresh_playbooks()
    return _each_tenant(rt, lambda tenant: poll_one(rt, tenant), company_key)


def inventory_one(rt: Runtime, tenant: TenantRef) -> int:
    """Sync one tenant's devices and follow its sent offboarding actions; returns devices seen.

    An unexpected error fails this tenant only, as in `poll_one`.
    """
    with tenant_context(tenant.external_id), rt.tenant_lock(tenant.id):
        if _waiting(rt, tenant):
            return 0
        try:
            connector = rt.connector(tenant)
            counts = polling.sync_inventory(rt.sessions, tenant.id, connector, rt.clock())
            offboarding.refresh_offboarding(rt.sessions, tenant.id, connector, rt.clock())
        except (AuthError, ConfigError) as err:
            _park(rt, tenant, f"{err} {getattr(err, 'operator_action', '')}".strip())
            return 0
        except ConnectorError as err:
            log.warning("inventory of %s deferred: %s", tenant.company_key, err)
            return 0
        except Exception as err:
            if store_unavailable(err):
                raise  # not this tenant's failure: the store's, which the scheduler waits out
            _unexpected(rt, tenant, "inventory", err)
            return 0
        return counts.inserted + counts.updated


def inventory(rt: Runtime, company_key: str | None = None) -> int:
    """Sync every tenant's device inventory; returns devices seen."""
    return sum(_each_tenant(rt, lambda tenant: inventory_one(rt, tenant), company_key))


@dataclass(frozen=True, slots=True)
class DeskOutcome:
    """One pass of the desk's own work."""

    escalated: int = 0
    closed: int = 0
    actions_sent: int = 0
    actions_finished: int = 0
    written_back: int = 0
    alarms: int = 0  # the desk told of the service's own problems, or their recovery


_ALL_KINDS = (*actions.DEVICE_KINDS, ActionKind.OFFBOARD.value)
_OFFBOARDED = (*FOLLOWED, ActionState.SUCCEEDED, ActionState.STILL_REPORTING)


def _offboarding_work(rt: Runtime, tenant: TenantRef) -> tuple[bool, bool]:
    """Whether the tenant has sends to reconcile, and offboarding tasks to follow or verify."""
    with rt.sessions() as session:
        unanswered = session.scalar(
            select(ResponseAction.id)
            .where(
                ResponseAction.tenant_id == tenant.id,
                ResponseAction.kind.in_(_ALL_KINDS),
                ResponseAction.status.in_(RECONCILED),
            )
            .limit(1)
        )
        offboarded = session.scalar(
            select(ResponseAction.id)
            .where(
                ResponseAction.tenant_id == tenant.id,
                ResponseAction.kind == ActionKind.OFFBOARD.value,
                ResponseAction.status.in_(_OFFBOARDED),
            )
            .limit(1)
        )
    return unanswered is not None, offboarded is not None


def _desk_devices(rt: Runtime, tenant: TenantRef, connector: Connector) -> None:
    """Reconcile sends without an answer (or left `sending` by a crash); follow and verify
    offboarding (not only the inventory job: its end must not wait for it)."""
    desk = rt.config.settings.desk
    window = timedelta(minutes=desk.reconcile_minutes)
    actions.reconcile(rt.sessions, tenant.id, connector, rt.clock, window, desk=desk)
    offboarding.reconcile_offboarding(rt.sessions, tenant.id, connector, rt.clock, window)
    offboarding.refresh_offboarding(rt.sessions, tenant.id, connector, rt.clock())
    flag_after = timedelta(days=desk.offboarding_flag_days)
    offboarding.verify_offboarding(rt.sessions, tenant.id, rt.clock(), flag_after)


def _desk_tenant(rt: Runtime, tenant: TenantRef) -> tuple[int, int, int]:
    """Send a tenant's planned isolations, follow those under way, write verdicts back."""
    with tenant_context(tenant.external_id), rt.tenant_lock(tenant.id):
        if tenant.state == TenantState.PARKED:
            return 0, 0, 0
        unanswered, offboarded = _offboarding_work(rt, tenant)
        with rt.sessions() as session:
            planned = session.execute(
                select(ResponseAction.id, ResponseAction.requested_by).where(
                    ResponseAction.tenant_id == tenant.id,
                    ResponseAction.kind.in_(actions.DEVICE_KINDS),
                    ResponseAction.status == ActionState.PLANNED,
                )
            ).all()
            under_way = session.scalar(
                select(ResponseAction.id)
                .where(
                    ResponseAction.tenant_id == tenant.id,
                    ResponseAction.kind.in_(actions.DEVICE_KINDS),
                    ResponseAction.status.in_(FOLLOWED),
                )
                .limit(1)
            )
            writes = session.scalar(
                select(Alert.id)
                .where(Alert.tenant_id == tenant.id, Alert.write_back == WriteBackState.PENDING)
                .limit(1)
            )
        if not (planned or under_way or writes or unanswered or offboarded):
            return 0, 0, 0  # no API call for a tenant with nothing to do
        try:
            connector = rt.connector(tenant)
            if unanswered or offboarded:
                _desk_devices(rt, tenant, connector)
            desk = rt.config.settings.desk
            window = timedelta(minutes=desk.reconcile_minutes)
            sent = 0  # the check at send time may cancel a planned one instead
            for action_id, requested_by in planned:
                # The playbook's own requests go in its name; an operator's isolation left
                # planned (their command died before sending) is sent by the desk service,
                # the audit naming whom it was requested by.
                sender = "playbook" if requested_by == "playbook" else "desk"
                action = actions.send(
                    rt.sessions, action_id, connector, sender, rt.clock, window, desk=desk
                )
                sent += action.status != ActionState.CANCELLED
            finished = actions.follow(rt.sessions, tenant.id, connector, desk, rt.clock())
            written = writeback.write_back_pending(rt.sessions, tenant.id, connector)
        except (AuthError, ConfigError) as err:
            _park(rt, tenant, f"{err} {getattr(err, 'operator_action', '')}".strip())
            return 0, 0, 0
        except ConnectorError as err:
            log.warning("desk work for %s deferred: %s", tenant.company_key, err)
            return 0, 0, 0
        return sent, len(finished), written.written


def desk(rt: Runtime) -> DeskOutcome:
    """The desk's clockwork: tell the desk of the service's own problems (`alarms`), escalate
    missed deadlines, close quiet tickets, act on devices."""
    try:
        with transaction(rt.sessions) as session:
            told = alarms.tell_desk(session, rt.config.settings, rt.clock())
    except (IntegrityError, StaleDataError):
        # Another desk pass (one run by hand) told the same at the same moment, and the desk
        # is told once: this pass goes on to the escalations it is there for.
        log.info("the desk's alarms were told by another desk pass meanwhile")
        told = 0
    with transaction(rt.sessions) as session:
        escalated = escalation.escalate_overdue(session, rt.policy, rt.clock())
        closed = escalation.close_quiet(session, rt.policy, rt.clock())
    per_tenant = _each_tenant(rt, lambda tenant: _desk_tenant(rt, tenant), None)
    sent = sum(p[0] for p in per_tenant)
    finished = sum(p[1] for p in per_tenant)
    written = sum(p[2] for p in per_tenant)
    return DeskOutcome(len(escalated), len(closed), sent, finished, written, told)


def deliver_outbox(rt: Runtime) -> outbox.DeliveryStats:
    """Send what is due: mail, and messages to the desk's Teams and webhook channels."""
    mail = rt.config.settings.mail
    with webhook_transport_from_config(rt.config) as channels:
        return outbox.deliver_due(
            rt.sessions,
            transport_from_config(rt.config),
            sender=str(mail.from_address),
            sender_name=mail.from_name,
            max_attempts=mail.max_attempts,
            now=rt.clock(),
            channels=channels,
        )


def report_period(today: date) -> tuple[date, date]:
    """The weekly report's period: the last whole week, Monday to Sunday (JST), before `today`.

    A calendar week, as the seat report's, not the seven days before the run: a run by hand
    on Wednesday after Monday's (or one made up after an outage) finds Monday's reports sent,
    instead of mailing every company a second report of Wednesday to Tuesday.
    """
    return seat_week(today)


def last_month(today: date) -> tuple[date, date]:
    """The calendar month (JST) before the one `today` is in (the monthly report's period)."""
    end = today.replace(day=1) - timedelta(days=1)
    return end.replace(day=1), end


def weekly_reports(rt: Runtime, today: date | None = None) -> int:
    """Queue each trial company's detection report for last week (once per company and week),
    its PDF attached; nothing while `reports.weekly` is off."""
    if not rt.config.settings.reports.weekly:
        log.info("weekly reports are switched off (reports.weekly)")
        return 0
    today = today or jst_date(rt.clock())
    return _company_reports(rt, "weekly", *report_period(today))


def monthly_reports(rt: Runtime, today: date | None = None) -> int:
    """Queue each company's detection report for last month (JST calendar month) whose trial
    overlapped it, once per company and month, its PDF attached; nothing while
    `reports.monthly` is off."""
    if not rt.config.settings.reports.monthly:
        log.info("monthly reports are switched off (reports.monthly)")
        return 0
    today = today or jst_date(rt.clock())
    return _company_reports(rt, "monthly", *last_month(today))


def _company_reports(rt: Runtime, kind: str, start: date, end: date) -> int:
    """Queue the `kind` report of the period for each company whose trial overlaps it;
    returns how many were queued now (a report already sent is not counted again).

    A company offboarded since is included: its credentials are dropped and it is no longer
    polled, but its detections are still kept (until the purge), and the month its trial
    ended in is the one it would otherwise never hear about.

    A parked tenant's report is withheld with an error line: an empty report would tell
    the company nothing happened, and the desk must act first.
    """
    queued = 0
    archive_dir = archive_dir_of(rt.config)
    for tenant_id, company_key, parked in _reported_tenants(rt):
        if parked:
            log.error("%s report for %s withheld: its tenant is parked", kind, company_key)
            continue
        with transaction(rt.sessions) as session:
            trial = trials.trial_of_tenant(session, tenant_id)
            if trial is None or trial.starts_on > end or trial.ends_on < start:
                continue
            company_id = session.get_one(Tenant, tenant_id).company_id
            done = queue_detection_report(
                session,
                company_id,
                start,
                end,
                now=rt.clock(),
                settings=rt.config.settings,
                archive_dir=archive_dir,
                kind=kind,
                actor=f"{kind}-reports",
            )
            queued += done.new
    return queued


def _reported_tenants(rt: Runtime) -> list[tuple[int, str, bool]]:
    """(tenant id, company key, parked) of the tenants the service polls and of the
    companies offboarded since, by company key."""
    polled = {t.id: (t.id, t.company_key, t.state == TenantState.PARKED) for t in rt.tenants()}
    with rt.sessions() as session:
        left = session.execute(
            select(Tenant.id, Company.key)
            .join(Company, Company.id == Tenant.company_id)
            .where(Company.state == JourneyState.OFFBOARDED.value)
        ).all()
    gone = [(tenant_id, key, False) for tenant_id, key in left if tenant_id not in polled]
    return sorted([*polled.values(), *gone], key=lambda row: row[1])


def seat_report(rt: Runtime, today: date | None = None) -> int:
    """Queue the secretariat's seat report for last week, Monday to Sunday (the CSV
    attached), once per week; returns 1 when it was queued now, 0 when that week's went
    already; nothing while `reports.seat_mail` is off (run by hand too, as the company
    reports' jobs: a switch that only stopped the schedule would still mail on a manual run)."""
    if not rt.config.settings.reports.seat_mail:
        log.info("the seat report is switched off (reports.seat_mail)")
        return 0
    today = today or jst_date(rt.clock())
    archive_dir = rt.config.resolve(rt.config.settings.reports.archive_dir)
    with transaction(rt.sessions) as session:
        queued = queue_seat_report(
            session, archive_dir, seat_week(today), now=rt.clock(), settings=rt.config.settings
        )
    return int(queued.new)


def trial_lifecycle(
    rt: Runtime, today: date | None = None, *, send: bool = True
) -> lifecycle_job.LifecycleOutcome:
    """The daily pass over every company's trial: reminders, the end, offboarding (sent on the
    day after the end, re-checked at send time), offboarded, the purge after retention
    (`service/trial_lifecycle.py`). With `send` off, planned tasks wait for an operator."""
    return lifecycle_job.run(rt, today, send=send)


TENANT_JOBS: dict[str, Callable[[Runtime, str], object]] = {"poll": poll, "inventory": inventory}

JOBS: dict[str, Callable[[Runtime], object]] = {
    "poll": poll,
    "inventory": inventory,
    "outbox": deliver_outbox,
    "desk": desk,
    "weekly-reports": weekly_reports,
    "monthly-reports": monthly_reports,
    "trial-lifecycle": trial_lifecycle,
    "seat-report": seat_report,
}
