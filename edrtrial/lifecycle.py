"""End of trial: every device of a company that does not continue gets an offboarding task.

Tasks are keyed by device, so re-running the daily job never plans or sends one twice. A
task is sent to the EDR only by an explicit operator command, and only from `planned`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from edrtrial import audit
from edrtrial.connectors.base import ActionKind, Connector
from edrtrial.db import transaction
from edrtrial.errors import ConnectorError
from edrtrial.models import Company, Device, ResponseAction, Tenant, Trial

log = logging.getLogger(__name__)

MANUAL_UNINSTALL = (
    "The EDR cannot uninstall itself remotely from {platform} devices: run the offboarding "
    "script from the Defender portal (Settings > Endpoints > Offboarding) on {name}."
)


def offboard_key(tenant_id: int, device_source_id: str) -> str:
    """The one task a device can ever have for offboarding."""
    return f"offboard:{tenant_id}:{device_source_id}"


def ended_without_continuation(
    session: Session, today: date
) -> list[tuple[Company, Tenant, Trial]]:
    """Companies whose trial ended before `today` (JST) and who did not decide to continue."""
    rows = session.execute(
        select(Company, Tenant, Trial)
        .join(Tenant, Tenant.company_id == Company.id)
        .join(Trial, Trial.company_id == Company.id)
        .where(Trial.ends_on < today, Trial.decision != "continue")
        .order_by(Company.key)
    )
    return [(c, t, tr) for c, t, tr in rows]


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
            key = offboard_key(tenant.id, device.source_id)
            if session.scalar(select(ResponseAction.id).where(ResponseAction.dedupe_key == key)):
                continue
            task = ResponseAction(
                dedupe_key=key,
                tenant_id=tenant.id,
                device_id=device.id,
                kind=ActionKind.OFFBOARD.value,
                status="planned",
                requested_by="trial-lifecycle",
                reason=f"trial ended {trial.ends_on.isoformat()}, decision: {trial.decision}",
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


def execute_offboarding(
    sessions: sessionmaker[Session],
    tenant_id: int,
    connector: Connector,
    actor: str,
    now: Callable[[], datetime],
) -> list[ResponseAction]:
    """Send each planned task of one tenant once; unsupported platforms become manual work."""
    with transaction(sessions) as session:
        tenant = session.get_one(Tenant, tenant_id)
        planned = [
            t.id
            for t in session.scalars(
                select(ResponseAction).where(
                    ResponseAction.tenant_id == tenant.id,
                    ResponseAction.kind == ActionKind.OFFBOARD.value,
                    ResponseAction.status == "planned",
                )
            )
        ]
    done = []
    for task_id in planned:
        with transaction(sessions) as session:
            # Claim the task before calling out: a crash after the call cannot resend it,
            # and the connector reuses an offboard already pending on that device.
            task = session.get_one(ResponseAction, task_id, with_for_update=True)
            if task.status != "planned":
                continue
            device = session.get_one(Device, task.device_id)
            if device.tenant_id != tenant_id:
                raise ConnectorError(f"task {task.id} belongs to another tenant; refusing")
            if not connector.can_offboard(device.os_platform):
                task.status = "manual"
                task.detail = MANUAL_UNINSTALL.format(
                    platform=device.os_platform or "these", name=device.name
                )
                audit.record(
                    session,
                    at=now(),
                    actor=actor,
                    action="offboarding.manual",
                    tenant_id=tenant_id,
                    target=f"device:{device.source_id}",
                )
                done.append(task)
                continue
            task.status = "sending"
            task.requested_by = actor
            source_id, name = device.source_id, device.name
        try:
            result = connector.start_action(
                source_id,
                ActionKind.OFFBOARD,
                f"edrtrial: trial ended, offboarding {name} ({actor})",
            )
        except ConnectorError as err:
            with transaction(sessions) as session:
                task = session.get_one(ResponseAction, task_id)
                task.status, task.detail = "planned", f"send failed, will retry: {err}"
            log.warning("tenant %s: offboarding %s failed: %s", tenant_id, name, err)
            continue
        with transaction(sessions) as session:
            task = session.get_one(ResponseAction, task_id)
            task.status = result.status.value
            task.source_action_id = result.source_action_id
            task.detail = f"machine action {result.source_action_id}"
            audit.record(
                session,
                at=now(),
                actor=actor,
                action="offboarding.sent",
                tenant_id=tenant_id,
                target=f"device:{source_id}",
                detail={"machine_action": result.source_action_id},
            )
            done.append(task)
    return done


def refresh_offboarding(
    sessions: sessionmaker[Session], tenant_id: int, connector: Connector
) -> int:
    """Follow sent offboarding actions to their terminal status; returns how many changed."""
    with transaction(sessions) as session:
        pending = [
            (t.id, t.source_action_id)
            for t in session.scalars(
                select(ResponseAction).where(
                    ResponseAction.tenant_id == tenant_id,
                    ResponseAction.kind == ActionKind.OFFBOARD.value,
                    ResponseAction.status.in_(("pending", "inprogress")),
                    ResponseAction.source_action_id.is_not(None),
                )
            )
        ]
    changed = 0
    for task_id, action_id in pending:
        assert action_id is not None
        result = connector.action_status(action_id)
        with transaction(sessions) as session:
            task = session.get_one(ResponseAction, task_id)
            if task.status != result.status.value:
                task.status = result.status.value
                changed += 1
    return changed
