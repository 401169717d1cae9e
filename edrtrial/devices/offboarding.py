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
from edrtrial.db import claim, transaction
from edrtrial.devices.actions import follow_actions, settle
from edrtrial.errors import ConnectorError
from edrtrial.models import Company, Device, ResponseAction, Tenant, Trial

log = logging.getLogger(__name__)

INTERRUPTED = (
    "being sent to the EDR; if this stays, the send was interrupted: check the device in the "
    "Defender portal before planning it again"
)
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


def _check_tenant(tenant: Tenant, connector: Connector) -> None:
    if connector.tenant_id != tenant.external_id:
        raise ConnectorError(
            f"refusing to offboard: the connector talks to tenant {connector.tenant_id}, "
            f"the tasks belong to tenant {tenant.external_id}"
        )


def _claim_task(
    sessions: sessionmaker[Session], task_id: int, connector: Connector, actor: str, at: datetime
) -> tuple[str, str] | None:
    """Take a planned task for sending (audited), or settle it as manual work; None if taken."""
    with transaction(sessions) as session:
        task = session.get_one(ResponseAction, task_id)
        device = session.get_one(Device, task.device_id)
        target = f"device:{device.source_id}"
        if not connector.can_offboard(device.os_platform):
            detail = MANUAL_UNINSTALL.format(
                platform=device.os_platform or "these", name=device.name
            )
            _take(session, task, "manual", actor, at, target, detail=detail)
            return None
        if not _take(session, task, "sending", actor, at, target, detail=INTERRUPTED):
            return None  # another operator took it
        return device.source_id, device.name


def _take(
    session: Session,
    task: ResponseAction,
    status: str,
    actor: str,
    at: datetime,
    target: str,
    detail: str,
) -> bool:
    """Move a planned task to `status` and audit it, unless another process got there first."""
    if not claim(
        session,
        ResponseAction,
        task.id,
        "status",
        "planned",
        status=status,
        detail=detail,
        requested_by=actor,
        updated_at=at,
    ):
        return False
    audit.record(
        session,
        at=at,
        actor=actor,
        action=f"offboarding.{status}",
        tenant_id=task.tenant_id,
        target=target,
    )
    return True


def execute_offboarding(
    sessions: sessionmaker[Session],
    tenant_id: int,
    connector: Connector,
    actor: str,
    now: Callable[[], datetime],
) -> list[int]:
    """Send each planned task of one tenant once; returns the ids of the tasks it settled.

    A task is claimed (and audited) in its own commit before the EDR is called, so a second
    operator or a crash can never send it again; a send interrupted by a crash stays
    `sending`, with a note to check the portal, instead of being retried blindly.
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
                    ResponseAction.status == "planned",
                )
                .order_by(ResponseAction.id)
            )
        )
    settled = []
    for task_id in planned:
        claimed = _claim_task(sessions, task_id, connector, actor, now())
        if claimed is None:
            settled.append(task_id)
            continue
        source_id, name = claimed
        comment = f"edrtrial: trial ended, offboarding {name} ({actor})"
        try:
            result = connector.start_action(source_id, ActionKind.OFFBOARD, comment)
        except ConnectorError as err:
            settle(
                sessions,
                task_id,
                at=now(),
                actor=actor,
                audit_action="offboarding.failed",
                target=f"device:{source_id}",
                audit_detail={"error": str(err)},
                status="planned",
                detail=f"send refused, can be retried: {err}",
            )
            log.warning("offboarding %s failed: %s", name, err)
            continue
        settle(
            sessions,
            task_id,
            at=now(),
            actor=actor,
            audit_action="offboarding.sent",
            target=f"device:{source_id}",
            audit_detail={"machine_action": result.source_action_id},
            status=result.status.value,
            source_action_id=result.source_action_id,
            detail=f"machine action {result.source_action_id}",
        )
        settled.append(task_id)
    return settled


def refresh_offboarding(
    sessions: sessionmaker[Session], tenant_id: int, connector: Connector, now: datetime
) -> int:
    """Follow sent offboarding actions to their terminal status; returns how many changed."""
    with sessions() as session:
        _check_tenant(session.get_one(Tenant, tenant_id), connector)

    def finished(session: Session, task: ResponseAction) -> None:
        audit.record(
            session,
            at=now,
            actor="edr",
            action=f"offboarding.{task.status}",
            tenant_id=tenant_id,
            target=f"machine-action:{task.source_action_id}",
        )

    kinds = (ActionKind.OFFBOARD.value,)
    return follow_actions(sessions, tenant_id, connector, kinds, now, finished)[0]
