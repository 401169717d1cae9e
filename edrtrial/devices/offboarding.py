"""End of trial: every device of a company that does not continue gets an offboarding task.

Tasks are keyed by device, so re-running the daily job never plans or sends one twice. A
task is sent to the EDR only from `planned` (the table: `devices/states.py`; the send:
`devices/send.py`, with this module's `ROUTE`): by the daily trial-lifecycle job on the day
after the trial's end (the date the company was told), or by an operator's `offboarding
--execute` (a task the EDR refused, or one sent by hand). A company that withdrew once its
tenant was connected is offboarded the same way, from its withdrawal on.

A task is planned from the decision of its day, but uninstalling the EDR from a company
that meanwhile decided to continue (or whose trial was extended) would undo the programme's
very goal. So the decision and the trial end are read again at the moment of sending
(`ROUTE.check_send`), and a change of either cancels the company's planned tasks at once
(`cancel_moot_offboarding`, run after each config sync and by the daily job). A cancelled
task frees its device: if the company later leaves after all, a new task is planned.

A send without an answer is reconciled like an isolation, never put back to `planned`
blindly. The desk job follows sent tasks, and checks that an offboarded device really went
quiet: the EDR's "Succeeded" only means the sensor was told to stop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session, sessionmaker

from edrtrial import audit
from edrtrial.connectors.base import ActionKind, Connector
from edrtrial.db import transaction
from edrtrial.devices.send import (
    RECONCILE_WINDOW,
    RECONCILER,
    Outcome,
    Route,
    follow_actions,
    marker,
    reconcile_pending,
    send_action,
)
from edrtrial.devices.states import OFFBOARDING
from edrtrial.errors import ConnectorError
from edrtrial.ingest.queries import inventory_read_at
from edrtrial.models import Company, Device, ResponseAction, Tenant, Trial
from edrtrial.programme.trial_steps import locked_trial
from edrtrial.programme.trials import trial_of_tenant
from edrtrial.states import ActionState, JourneyState
from edrtrial.timeutil import jst_date

INTERRUPTED = (
    "being sent to the EDR; if this stays, the send was interrupted: check the device in the "
    "Defender portal before planning it again"
)
MANUAL_UNINSTALL = (
    "The EDR cannot uninstall itself remotely from {platform} devices: run the offboarding "
    "script from the Defender portal (Settings > Endpoints > Offboarding) on {name}."
)


def offboard_key(tenant_id: int, device_source_id: str, number: int = 1) -> str:
    """The one live task a device can have for offboarding (the n-th after cancellations)."""
    key = f"offboard:{tenant_id}:{device_source_id}"
    return key if number == 1 else f"{key}:{number}"


def withdrew(company: Company | None) -> bool:
    """The company withdrew once its tenant was connected: its devices leave at once."""
    return (
        company is not None
        and company.withdrawn_at is not None
        and company.state == JourneyState.OFFBOARDING
    )


def not_due(trial: Trial | None, today: date, company: Company | None = None) -> str | None:
    """Why the company's devices must not be offboarded on `today` (JST); None: they must.

    The same test as planning (`ended_without_continuation`), read from the trial (and the
    company's journey) as they are now. A company that continues is never offboarded, even
    one that withdrew; one that withdrew is offboarded before its trial's end.
    """
    if trial is not None and trial.decision == "continue":
        return f"the company decided to continue (trial end {trial.ends_on.isoformat()})"
    if company is not None and company.state == JourneyState.CONTINUING:
        return "the company continues with the vendor"
    if withdrew(company):
        return None
    if trial is None:
        return "the company has no trial"
    if trial.ends_on >= today:
        return f"the trial runs until {trial.ends_on.isoformat()}"
    return None


def ended_without_continuation(
    session: Session, today: date
) -> list[tuple[Company, Tenant, Trial | None]]:
    """Companies whose trial ended before `today` (JST) and who did not decide to continue,
    and those offboarding because they withdrew (with or without a trial)."""
    rows = session.execute(
        select(Company, Tenant, Trial)
        .join(Tenant, Tenant.company_id == Company.id)
        .outerjoin(Trial, Trial.company_id == Company.id)
        .where(
            or_(
                and_(Trial.ends_on < today, Trial.decision != "continue"),
                and_(
                    Company.withdrawn_at.is_not(None),
                    Company.state == JourneyState.OFFBOARDING,
                    or_(Trial.id.is_(None), Trial.decision != "continue"),
                ),
            ),
            Company.state.not_in((JourneyState.CONTINUING, JourneyState.PURGED)),
            Tenant.credentials_dropped_at.is_(None),
        )
        .order_by(Company.key)
    )
    return [(c, t, tr) for c, t, tr in rows]


def _plan_reason(company: Company, trial: Trial | None) -> str:
    if withdrew(company) and company.withdrawn_at is not None:
        return f"the company withdrew on {jst_date(company.withdrawn_at).isoformat()}"
    assert trial is not None  # planned by its trial's end
    return f"trial ended {trial.ends_on.isoformat()}, decision: {trial.decision}"


def plan_offboarding(session: Session, today: date, now: datetime) -> list[ResponseAction]:
    """Create the missing offboarding tasks; returns only the tasks created by this call."""
    created = []
    for company, tenant, trial in ended_without_continuation(session, today):
        devices = session.scalars(
            select(Device)
            .where(Device.tenant_id == tenant.id, Device.in_inventory.is_(True))
            .order_by(Device.name)
        )
        for device in devices:
            tasks = list(
                session.scalars(
                    select(ResponseAction.status).where(
                        ResponseAction.device_id == device.id,
                        ResponseAction.kind == ActionKind.OFFBOARD.value,
                    )
                )
            )
            if any(status != ActionState.CANCELLED for status in tasks):
                continue
            task = ResponseAction(
                dedupe_key=offboard_key(tenant.id, device.source_id, len(tasks) + 1),
                tenant_id=tenant.id,
                device_id=device.id,
                kind=ActionKind.OFFBOARD.value,
                status=ActionState.PLANNED,
                requested_by="trial-lifecycle",
                reason=_plan_reason(company, trial),
                created_at=now,
                updated_at=now,
            )
            session.add(task)
            session.flush()
            audit.record(
                session,
                at=now,
                actor="trial-lifecycle",
                action="offboarding.planned",
                tenant_id=tenant.id,
                target=f"device:{device.source_id}",
                detail={"company": company.key, "device": device.name},
            )
            created.append(task)
    session.flush()
    return created


def cancel_moot_offboarding(
    session: Session, at: datetime, *, actor: str = "trial-lifecycle", source: str = ""
) -> list[ResponseAction]:
    """Cancel every planned task whose company continues or whose trial runs on (audited).

    For whatever changed a decision or a trial (`trial decide`, the config sync, the daily
    job); `source` names where the change came from (the config file). Returns the
    cancelled tasks.
    """
    today = jst_date(at)
    cancelled = []
    rows = session.execute(
        select(ResponseAction, Device, Company, Trial)
        .join(Device, ResponseAction.device_id == Device.id)
        .join(Tenant, ResponseAction.tenant_id == Tenant.id)
        .join(Company, Tenant.company_id == Company.id)
        .outerjoin(Trial, Trial.company_id == Company.id)
        .where(
            ResponseAction.kind == ActionKind.OFFBOARD.value,
            ResponseAction.status == ActionState.PLANNED,
        )
        .order_by(ResponseAction.id)
    ).all()
    for task, device, company, trial in rows:
        why = not_due(trial, today, company)
        if why is None or not OFFBOARDING.move(session, task, "cancel", detail=why, updated_at=at):
            continue
        detail = {"company": company.key, "device": device.name, "reason": why}
        audit.record(
            session,
            at=at,
            actor=actor,
            action="offboarding.cancelled",
            tenant_id=task.tenant_id,
            target=f"device:{device.source_id}",
            detail=detail | ({"source": source} if source else {}),
        )
        cancelled.append(task)
    return cancelled


@dataclass(frozen=True, slots=True)
class OffboardingPlan:
    """What an operator confirms before a company's planned tasks are sent."""

    company_name: str
    decision: str
    trial_end: date | None
    devices: int
    not_due: str | None
    """Why nothing may be sent (the company continues, its trial runs on); None: it may."""

    def question(self, tenant: str) -> str:
        """The confirmation: the company, its decision, its trial end, how many devices."""
        end = self.trial_end.isoformat() if self.trial_end else "none"
        return (
            f"Uninstall the EDR from {self.devices} device(s) of {self.company_name} "
            f"(decision: {self.decision}, trial ended {end}, tenant {tenant})?"
        )


def offboarding_plan(session: Session, tenant_id: int, now: datetime) -> OffboardingPlan:
    """The tenant's company, trial and planned tasks as they are now."""
    company = session.get_one(Company, session.get_one(Tenant, tenant_id).company_id)
    trial = trial_of_tenant(session, tenant_id)
    planned = session.scalars(
        select(ResponseAction.id).where(
            ResponseAction.tenant_id == tenant_id,
            ResponseAction.kind == ActionKind.OFFBOARD.value,
            ResponseAction.status == ActionState.PLANNED,
        )
    ).all()
    return OffboardingPlan(
        company.name,
        trial.decision if trial else "none",
        trial.ends_on if trial else None,
        len(planned),
        not_due(trial, jst_date(now), company),
    )


@dataclass(frozen=True, slots=True)
class OffboardingRow:
    """One task as the secretariat's progress list shows it."""

    company_key: str
    device_name: str
    os_platform: str
    status: str
    detail: str
    updated_at: datetime


def offboarding_progress(session: Session, company_key: str | None = None) -> list[OffboardingRow]:
    """Every offboarding task with its company and device."""
    query = (
        select(ResponseAction, Device, Company.key)
        .join(Device, ResponseAction.device_id == Device.id)
        .join(Tenant, ResponseAction.tenant_id == Tenant.id)
        .join(Company, Tenant.company_id == Company.id)
        .where(ResponseAction.kind == ActionKind.OFFBOARD.value)
        .order_by(Company.key, Device.name)
    )
    if company_key:
        query = query.where(Company.key == company_key)
    return [
        OffboardingRow(
            key,
            device.name,
            device.os_platform,
            task.status,
            task.detail or task.reason,
            task.updated_at,
        )
        for task, device, key in session.execute(query)
    ]


def _check_tenant(tenant: Tenant, connector: Connector) -> None:
    if connector.tenant_id != tenant.external_id:
        raise ConnectorError(
            f"refusing to offboard: the connector talks to tenant {connector.tenant_id}, "
            f"the tasks belong to tenant {tenant.external_id}"
        )


def _target(task: ResponseAction, device: Device) -> str:
    return f"device:{device.source_id}"


def _comment(task: ResponseAction, device: Device, actor: str) -> str:
    return f"edrtrial: trial ended, offboarding {device.name} ({actor}, {marker(task)})"


def _check_send(session: Session, task: ResponseAction, device: Device, at: datetime) -> str | None:
    """Offboard only if the company still does not continue and its trial is still over
    (or it withdrew), read under the trial's lock."""
    company = session.get_one(Company, session.get_one(Tenant, task.tenant_id).company_id)
    return not_due(locked_trial(session, company.id), jst_date(at), company)


def _manual(connector: Connector, device: Device) -> str | None:
    """The operator's instructions where the EDR cannot uninstall itself remotely."""
    if connector.can_offboard(device.os_platform):
        return None
    return MANUAL_UNINSTALL.format(platform=device.os_platform or "these", name=device.name)


ROUTE = Route(
    machine=OFFBOARDING,
    target=_target,
    check_tenant=_check_tenant,
    comment=_comment,
    interrupted=INTERRUPTED,
    refused="send refused, can be retried: {error}",
    lost="no answer to the send, and no Offboard action appeared at the EDR within the window; "
    "it can be sent again",
    noun="offboarding",
    manual=_manual,
    sender_requests=True,
    check_send=_check_send,
)


@dataclass(frozen=True, slots=True)
class OffboardingSend:
    """What sending one device's task did, as the operator who ran it is told."""

    task_id: int
    device: str
    outcome: Outcome
    detail: str
    """Why it became manual work (with what to run), why it was refused, or the EDR's word."""

    @property
    def settled(self) -> bool:
        """Sent, or handed over as manual work."""
        return self.outcome in (Outcome.SENT, Outcome.MANUAL)


def send_offboarding(
    sessions: sessionmaker[Session],
    tenant_id: int,
    connector: Connector,
    actor: str,
    now: Callable[[], datetime],
    window: timedelta = RECONCILE_WINDOW,
) -> list[OffboardingSend]:
    """Send each planned task of one tenant once; per device, what became of it.

    A task the EDR refused goes back to `planned` (with the reason), one sent without an
    answer waits `unconfirmed` until its Offboard action is found (or the window ends); one
    the check at send time cancelled (the company continues, its trial runs on) and one
    another operator took meanwhile are reported as such.
    """
    with transaction(sessions) as session:
        tenant = session.get_one(Tenant, tenant_id)
        _check_tenant(tenant, connector)
        planned = list(
            session.scalars(
                select(ResponseAction.id)
                .where(
                    ResponseAction.tenant_id == tenant.id,
                    ResponseAction.kind == ActionKind.OFFBOARD.value,
                    ResponseAction.status == ActionState.PLANNED,
                )
                .order_by(ResponseAction.id)
            )
        )
    done = []
    for task_id in planned:
        outcome = send_action(sessions, ROUTE, task_id, connector, actor, now, window, finished)
        with sessions() as session:
            task = session.get_one(ResponseAction, task_id)
            device = session.get_one(Device, task.device_id)
            name = device.name or device.source_id
            done.append(OffboardingSend(task_id, name, outcome, task.detail or task.reason))
    return done


def execute_offboarding(
    sessions: sessionmaker[Session],
    tenant_id: int,
    connector: Connector,
    actor: str,
    now: Callable[[], datetime],
    window: timedelta = RECONCILE_WINDOW,
) -> list[int]:
    """Send each planned task of one tenant once; returns the ids of the tasks it settled
    (sent, or handed over as manual work): `send_offboarding` says what became of each."""
    sent = send_offboarding(sessions, tenant_id, connector, actor, now, window)
    return [s.task_id for s in sent if s.settled]


def finished(session: Session, task: ResponseAction) -> None:
    """Audit the EDR's final word on an offboarding (followed, answered or reconciled)."""
    audit.record(
        session,
        at=task.finished_at or task.updated_at,
        actor="edr",
        action=f"offboarding.{task.status}",
        tenant_id=task.tenant_id,
        target=f"machine-action:{task.source_action_id}",
    )


def refresh_offboarding(
    sessions: sessionmaker[Session], tenant_id: int, connector: Connector, now: datetime
) -> int:
    """Follow sent offboarding actions to their terminal status; returns how many changed."""
    with sessions() as session:
        _check_tenant(session.get_one(Tenant, tenant_id), connector)
    kinds = (ActionKind.OFFBOARD.value,)
    return follow_actions(sessions, OFFBOARDING, tenant_id, connector, kinds, now, finished)[0]


def reconcile_offboarding(
    sessions: sessionmaker[Session],
    tenant_id: int,
    connector: Connector,
    now: Callable[[], datetime],
    window: timedelta = RECONCILE_WINDOW,
) -> dict[int, Outcome]:
    """Settle the tenant's tasks sent without an answer, or left `sending` by a crash."""
    with sessions() as session:
        _check_tenant(session.get_one(Tenant, tenant_id), connector)
    kinds = (ActionKind.OFFBOARD.value,)
    return reconcile_pending(sessions, ROUTE, tenant_id, connector, kinds, now, window, finished)


QUIET_AFTER = timedelta(days=1)
"""A device sends a full report about once a day (MDE's lastSeen): one whose last report is
no newer than the offboarding's success a day later has stopped reporting."""


def _quiet(device: Device, finished: datetime, now: datetime, read_at: datetime | None) -> bool:
    """The device stopped reporting after the offboarding succeeded, as an inventory read
    after the success shows: an older one (the device was off for a week, came back, took
    the Offboard) says nothing about whether the sensor really left."""
    if read_at is None or read_at <= finished or read_at > now:
        return False  # never read since, or read on a clock that ran ahead: unknown
    if not device.in_inventory or device.health_status.lower() == "inactive":
        return True
    seen = device.last_seen
    return seen is not None and seen <= finished and now >= finished + QUIET_AFTER


def verify_offboarding(
    sessions: sessionmaker[Session], tenant_id: int, now: datetime, flag_after: timedelta
) -> tuple[list[int], list[int]]:
    """Verify succeeded tasks whose device went quiet; flag, once, those still reporting.

    Returns the ids verified and flagged. Both are audited; a flagged task shows the reason
    in the secretariat's progress list and is verified later if the device does go quiet.
    """
    with sessions() as session:
        pending = [
            (task.id, task.status, task.finished_at or task.updated_at)
            for task in session.scalars(
                select(ResponseAction).where(
                    ResponseAction.tenant_id == tenant_id,
                    ResponseAction.kind == ActionKind.OFFBOARD.value,
                    ResponseAction.status.in_((ActionState.SUCCEEDED, ActionState.STILL_REPORTING)),
                )
            )
        ]
    verified: list[int] = []
    flagged: list[int] = []
    for task_id, seen, finished in pending:
        with transaction(sessions) as session:
            task = session.get_one(ResponseAction, task_id)
            device = session.get_one(Device, task.device_id)
            last_seen = device.last_seen.isoformat() if device.last_seen else None
            detail = {"device": device.name, "last_seen": last_seen}
            if _quiet(device, finished, now, inventory_read_at(session, tenant_id)):
                step, what, note = "verify", "verified", "the device stopped reporting"
            elif seen == ActionState.SUCCEEDED and now >= finished + flag_after:
                days = flag_after.days
                step, what = "flag", "still_reporting"
                note = (
                    f"still reporting {days} days after the EDR offboarded it (last seen "
                    f"{last_seen or 'unknown'}): check {device.name} and run the offboarding "
                    "script if the sensor is still on"
                )
            else:
                continue
            if not OFFBOARDING.move_id(session, task_id, seen, step, detail=note, updated_at=now):
                continue  # another desk job took this step first
            audit.record(
                session,
                at=now,
                actor=RECONCILER,
                action=f"offboarding.{what}",
                tenant_id=tenant_id,
                target=f"device:{device.source_id}",
                detail=detail,
            )
            (verified if step == "verify" else flagged).append(task_id)
    return verified, flagged
