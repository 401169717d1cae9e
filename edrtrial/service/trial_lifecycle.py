"""The daily trial-lifecycle job: from the last weeks of a trial to the purge of its data.

In the order a company meets them, each pass:

1. takes a trial that ends within the first reminder's days from in_trial to ending;
2. asks an undecided company, at T-14 and T-7 (`programme.reminder_days`), whether it
   continues with the vendor directly: the latest reminder due, once (a job that missed
   days sends the T-7 mail at T-3, never a stale T-14);
3. after the trial's last day (Tokyo), takes a company that decided to continue to
   continuing (never offboarded) and every other to offboarding;
4. plans one offboarding task per device of each company offboarding (its trial ended, or it
   withdrew) and sends them through the safe send path, which reads the decision again at
   the moment of sending; tells the company what happens and from when;
5. once every device is verified as no longer running the EDR (or the company had none),
   takes it to offboarded, tells it (with the steps to remove the programme's app from its
   tenant) and drops the tenant's credentials;
6. purges the details of companies whose retention ended (`programme/purge.py`).

Every effect is keyed (a journey step from the state read, a mail's dedupe key, a task per
device, a claim before a send), so a second pass on the same day, or one after a restart,
repeats nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from edrtrial import audit
from edrtrial.connectors.base import ActionKind
from edrtrial.db import transaction
from edrtrial.devices import offboarding, uninstalled
from edrtrial.errors import AuthError, ConfigError, ConnectorError, JourneyError
from edrtrial.ingest import health
from edrtrial.logsetup import tenant_context
from edrtrial.models import Company, Device, OutboxMessage, ResponseAction, Tenant, Trial
from edrtrial.notify import trial_mail
from edrtrial.programme.companies import company_by_key as stored_company
from edrtrial.programme.companies import tenant_of_company
from edrtrial.programme.journey import advance
from edrtrial.programme.purge import due_for_purge, purge_company
from edrtrial.programme.trial_steps import Decided, record_decision
from edrtrial.programme.trials import trial_of_company
from edrtrial.service.runtime import Runtime
from edrtrial.states import ActionState, TenantState
from edrtrial.states import JourneyState as J
from edrtrial.timeutil import jst_date, jst_day_bounds
from edrtrial.words import Words, said

log = logging.getLogger(__name__)
ACTOR = "trial-lifecycle"
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class LifecycleOutcome:
    """What one pass did; `problems` names each company whose step must wait, and why."""

    planned: int = 0  # offboarding tasks planned
    ending: int = 0  # trials now within the reminders' window
    reminders: int = 0  # reminder mails queued
    continuing: int = 0
    offboarding: int = 0  # companies whose offboarding began (journey or notice)
    sent: int = 0  # offboarding tasks sent, or handed over as manual work
    offboarded: int = 0
    purged: int = 0
    problems: tuple[str, ...] = field(default=())


def _window(rt: Runtime) -> int:
    return max(rt.config.settings.programme.reminder_days, default=0)


def _each(rt: Runtime, states: tuple[J, ...]) -> list[int]:
    with rt.sessions() as session:
        return list(
            session.scalars(
                select(Company.id)
                .where(Company.state.in_([s.value for s in states]))
                .order_by(Company.key)
            )
        )


def _step(rt: Runtime, company_id: int, work: Callable[[Session, Company], T]) -> T | None:
    """Run one company's step in its own transaction; a step another writer took meanwhile
    (the journey moved) is left to it."""
    try:
        with transaction(rt.sessions) as session:
            return work(session, session.get_one(Company, company_id))
    except JourneyError as err:
        log.info("trial lifecycle: %s", err)
        return None


def _trial(session: Session, company: Company) -> Trial | None:
    return trial_of_company(session, company.id)


def _tenant(session: Session, company: Company) -> Tenant | None:
    return tenant_of_company(session, company.id)


def _near_end(rt: Runtime, today: date, now: datetime) -> int:
    def work(session: Session, company: Company) -> bool:
        trial = _trial(session, company)
        if trial is None or (trial.ends_on - today).days > _window(rt):
            return False
        days = (trial.ends_on - today).days
        advance(session, company, "near_end", actor=ACTOR, at=now, why=f"{days} days left")
        return True

    return sum(bool(_step(rt, c, work)) for c in _each(rt, (J.IN_TRIAL,)))


def due_reminder(reminder_days: list[int], ends_on: date, today: date) -> int | None:
    """The latest reminder due on `today` (days before the end), or None before the first
    and after the end: only that one is sent, so a missed T-14 is never sent at T-3."""
    left = (ends_on - today).days
    due = [days for days in reminder_days if days >= left]
    return min(due) if due and left >= 0 else None


def _reminders(rt: Runtime, today: date, now: datetime) -> int:
    programme, desk = rt.config.settings.programme, rt.config.settings.desk

    def work(session: Session, company: Company) -> bool:
        trial, tenant = _trial(session, company), _tenant(session, company)
        if trial is None or tenant is None or trial.decision != "undecided":
            return False  # a company that answered is not asked again
        days = due_reminder(programme.reminder_days, trial.ends_on, today)
        if days is None:
            return False
        key = trial_mail.reminder_key(company, trial.ends_on, days)
        facts = trial_mail.letter(
            company,
            trial,
            offboard_from=trial.ends_on + timedelta(days=1),
            today=today,
            at=now,
            programme=programme,
            desk=desk,
        )
        before = _queued(session, key)
        mail = trial_mail.reminder_mail(company, facts, days)
        queued = trial_mail.queue(
            session, company, tenant.id, mail, dedupe_key=key, kind=trial_mail.REMINDER_KIND
        )
        if queued is None or before:
            return False
        audit.record(
            session,
            at=now,
            actor=ACTOR,
            action="trial.reminded",
            tenant_id=tenant.id,
            target=f"company:{company.key}",
            detail={"reminder": days, "ends_on": trial.ends_on.isoformat()},
        )
        return True

    return sum(bool(_step(rt, c, work)) for c in _each(rt, (J.IN_TRIAL, J.ENDING)))


def _queued(session: Session, key: str) -> bool:
    found = session.scalar(select(OutboxMessage.id).where(OutboxMessage.dedupe_key == key))
    return found is not None


def _end(rt: Runtime, today: date, now: datetime) -> tuple[int, int]:
    def work(session: Session, company: Company) -> J | None:
        trial = _trial(session, company)
        if trial is None or trial.ends_on >= today:
            return None
        ended = f"trial ended {trial.ends_on.isoformat()}, decision: {trial.decision}"
        step = "continue" if trial.decision == "continue" else "offboard"
        return advance(session, company, step, actor=ACTOR, at=now, why=ended)

    moved = [_step(rt, c, work) for c in _each(rt, (J.IN_TRIAL, J.ENDING))]
    return moved.count(J.CONTINUING), moved.count(J.OFFBOARDING)


def _offboard_from(company: Company, trial: Trial | None, today: date) -> date:
    """The first day the company's devices are uninstalled: after its trial, or at once."""
    if offboarding.withdrew(company) and company.withdrawn_at is not None:
        return jst_date(company.withdrawn_at)
    return trial.ends_on + timedelta(days=1) if trial is not None else today


def _count(session: Session, tenant_id: int, *statuses: ActionState) -> int:
    rows = session.scalars(
        select(ResponseAction.id).where(
            ResponseAction.tenant_id == tenant_id,
            ResponseAction.kind == ActionKind.OFFBOARD.value,
            ResponseAction.status.in_(statuses),
        )
    )
    return len(list(rows))


def _tell_offboarding(rt: Runtime, today: date, now: datetime) -> int:
    programme, desk = rt.config.settings.programme, rt.config.settings.desk

    def work(session: Session, company: Company) -> bool:
        trial, tenant = _trial(session, company), _tenant(session, company)
        if tenant is None or tenant.credentials_dropped_at is not None:
            return False
        if offboarding.not_due(trial, today, company) is not None:
            return False  # e.g. a continue written meanwhile: nothing will be uninstalled
        start = _offboard_from(company, trial, today)
        key = trial_mail.offboarding_key(company, start)
        if _queued(session, key):
            return False
        devices = session.scalars(
            select(Device.id).where(Device.tenant_id == tenant.id, Device.in_inventory.is_(True))
        )
        facts = trial_mail.letter(
            company,
            trial,
            offboard_from=start,
            today=today,
            at=now,
            programme=programme,
            desk=desk,
            devices=len(list(devices)),
            manual=_count(session, tenant.id, ActionState.MANUAL),
        )
        mail = trial_mail.offboarding_mail(company, facts, offboarding.withdrew(company))
        kind = trial_mail.OFFBOARDING_KIND
        queued = trial_mail.queue(session, company, tenant.id, mail, dedupe_key=key, kind=kind)
        return queued is not None

    return sum(bool(_step(rt, c, work)) for c in _each(rt, (J.OFFBOARDING,)))


def _send(rt: Runtime) -> tuple[int, list[str]]:
    """Send each offboarding company's planned tasks (each re-checked at send time)."""
    sent, problems = 0, []
    window = timedelta(minutes=rt.config.settings.desk.reconcile_minutes)
    with rt.sessions() as session:
        keys = session.scalars(
            select(Company.key)
            .join(Tenant, Tenant.company_id == Company.id)
            .join(ResponseAction, ResponseAction.tenant_id == Tenant.id)
            .where(
                Company.state == J.OFFBOARDING,
                ResponseAction.kind == ActionKind.OFFBOARD.value,
                ResponseAction.status == ActionState.PLANNED,
            )
            .distinct()
            .order_by(Company.key)
        ).all()
    for key in keys:
        for tenant in rt.tenants(key):
            with tenant_context(tenant.external_id), rt.tenant_lock(tenant.id):
                if tenant.state == TenantState.PARKED:
                    problems.append(f"{key}: offboarding waits, its tenant is parked")
                    continue
                try:
                    done = offboarding.send_offboarding(
                        rt.sessions, tenant.id, rt.connector(tenant), ACTOR, rt.clock, window
                    )
                except (AuthError, ConfigError) as err:
                    reason = f"{err} {getattr(err, 'operator_action', '')}".strip()
                    rt.forget_connector(tenant.id)
                    health.park(rt.sessions, tenant.id, reason, rt.clock())
                    problems.append(f"{key}: {reason}")
                    continue
                except ConnectorError as err:
                    problems.append(f"{key}: offboarding not sent yet: {err}")
                    continue
                sent += sum(1 for s in done if s.settled)
    return sent, problems


def _offboarded(rt: Runtime, today: date, now: datetime) -> int:
    programme, desk = rt.config.settings.programme, rt.config.settings.desk
    dropped: list[int] = []

    def work(session: Session, company: Company) -> bool:
        tenant = _tenant(session, company)
        since = company.state_since or now
        devices = 0
        if tenant is not None and tenant.credentials_dropped_at is None:
            progress = uninstalled.offboarding_done(session, tenant.id, since)
            if not progress.done:
                return False
            devices = progress.devices
        advance(session, company, "offboarded", actor=ACTOR, at=now, why=f"{devices} device(s)")
        if tenant is None:
            return True
        facts = trial_mail.letter(
            company,
            _trial(session, company),
            offboard_from=today,
            today=today,
            at=now,
            programme=programme,
            desk=desk,
            devices=devices,
        )
        mail = trial_mail.offboarded_mail(company, facts)
        key, kind = trial_mail.offboarded_key(company), trial_mail.OFFBOARDED_KIND
        trial_mail.queue(session, company, tenant.id, mail, dedupe_key=key, kind=kind)
        drop_credentials(session, tenant, now)
        dropped.append(tenant.id)
        return True

    count = sum(bool(_step(rt, c, work)) for c in _each(rt, (J.OFFBOARDING,)))
    for tenant_id in dropped:
        rt.forget_connector(tenant_id)
    return count


def drop_credentials(session: Session, tenant: Tenant, now: datetime) -> None:
    """Forget how to reach the tenant (audited): nothing may reach it after its offboarding."""
    if tenant.credentials_dropped_at is not None:
        return
    had = sorted(tenant.connection or {})
    tenant.connection = {}
    tenant.credentials_dropped_at = now
    audit.record(
        session,
        at=now,
        actor=ACTOR,
        action="tenant.credentials_dropped",
        tenant_id=tenant.id,
        target=f"tenant:{tenant.external_id}",
        detail={"kind": "own connection" if had else "programme app"},
    )


def _purge(rt: Runtime, today: date, now: datetime) -> int:
    """Purge companies whose retention ended: `retention_days` whole Tokyo days after the
    day they were offboarded (refused, not eligible, withdrawn), whatever the job's hour."""
    programme = rt.config.settings.programme
    last_day = today - timedelta(days=programme.retention_days)
    with rt.sessions() as session:
        cutoff = jst_day_bounds(last_day, last_day)[1]
        due = [c.id for c in due_for_purge(session, cutoff)]

    def work(session: Session, company: Company) -> bool:
        purge_company(session, programme, company, actor=ACTOR, at=now)
        return True

    return sum(bool(_step(rt, c, work)) for c in due)


def run(rt: Runtime, today: date | None = None, *, send: bool = True) -> LifecycleOutcome:
    """One pass of the trial lifecycle on `today` (Tokyo; default: the runtime's clock).

    With `send` off (`offboarding --plan`) the planned tasks wait for an operator's
    `offboarding --execute`; everything else happens as in the daily job.
    """
    now = rt.clock()
    today = today or jst_date(now)
    ending = _near_end(rt, today, now)
    reminders = _reminders(rt, today, now)
    continuing, leaving = _end(rt, today, now)
    with transaction(rt.sessions) as session:
        offboarding.cancel_moot_offboarding(session, now)
        planned = len(offboarding.plan_offboarding(session, today, now))
    sent, problems = _send(rt) if send else (0, [])
    told = _tell_offboarding(rt, today, now)
    offboarded = _offboarded(rt, today, now)
    purged = _purge(rt, today, now)
    outcome = LifecycleOutcome(
        planned,
        ending,
        reminders,
        continuing,
        max(leaving, told),
        sent,
        offboarded,
        purged,
        tuple(problems),
    )
    if outcome != LifecycleOutcome():
        log.info("trial lifecycle: %s", outcome)
    return outcome


def decide(
    rt: Runtime,
    company_key: str,
    decision: str,
    *,
    actor: str,
    until: date | None = None,
    reason: str = "",
) -> tuple[Decided, int]:
    """Record the company's decision and, in the same commit, cancel planned offboarding
    that no longer fits (`continue`, `extend`); the decision and how many were cancelled."""
    now = rt.clock()
    with transaction(rt.sessions) as session:
        company = company_by_key(session, company_key)
        decided = record_decision(
            session,
            company,
            decision,
            today=jst_date(now),
            reminder_window=_window(rt),
            actor=actor,
            at=now,
            until=until,
            reason=reason,
        )
        cancelled = offboarding.cancel_moot_offboarding(session, now, actor=actor)
    return decided, len(cancelled)


def company_by_key(session: Session, key: str) -> Company:
    """The stored company `key` names, or an error naming the key."""
    found = stored_company(session, key.strip().lower())
    if found is None:
        raise JourneyError(
            Words("no company %(key)r in the store (see `edrtrial applications list`)", key=key)
        )
    return found


def uninstalled_by_hand(rt: Runtime, key: str, device: str, *, actor: str, note: str) -> str:
    """Record that a person uninstalled the EDR from one of the company's devices by hand
    (the offboarding script, for a device the EDR cannot uninstall remotely or one still
    reporting), audited as them; returns the device's name. `trial uninstalled` and the
    console's company page both take this step."""
    with transaction(rt.sessions) as session:
        found = company_by_key(session, key)
        tenant = tenant_of_company(session, found.id)
        if tenant is None:
            raise JourneyError(
                Words("%(company)s has no tenant: it has no device to uninstall", company=found.key)
            )
        try:
            task = uninstalled.confirm_uninstalled(
                session, tenant.id, device, actor=actor, at=rt.clock(), note=note
            )
        except LookupError as err:
            raise JourneyError(
                Words("%(company)s: %(why)s", company=found.key, why=said(err))
            ) from err
        done = session.get_one(Device, task.device_id)
        return done.name or done.source_id
