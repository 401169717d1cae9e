"""A cohort as the secretariat's dashboard shows it: which cohorts a person sees, and how
the tenants of a cohort's companies are polled.

The seats (`seats.py`) and the trial calendar (`trial_calendar.py`) are read through the
same `Scope` and cut to one cohort by the caller; this adds what neither says: the polling
health of each tenant, so a failing or parked tenant is seen where its cohort is followed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from edrtrial.access.scope import Scope
from edrtrial.connectors.base import ActionKind
from edrtrial.models import Cohort, Company, Device, ResponseAction, Tenant, Ticket
from edrtrial.states import JourneyState, TenantState


def visible_cohorts(session: Session, scope: Scope) -> Sequence[Cohort]:
    """The cohorts `scope` sees, by key."""
    query = select(Cohort).order_by(Cohort.key)
    if scope.cohort_ids is not None:
        query = query.where(Cohort.id.in_(sorted(scope.cohort_ids)))
    return session.scalars(query).all()


def visible_cohort(session: Session, scope: Scope, key: str) -> Cohort | None:
    """The cohort `key` if `scope` sees it, else None (to the caller: it does not exist)."""
    cohort = session.scalar(select(Cohort).where(Cohort.key == key.strip().lower()))
    if cohort is None or (scope.cohort_ids is not None and cohort.id not in scope.cohort_ids):
        return None
    return cohort


@dataclass(frozen=True, slots=True)
class TenantHealth:
    """How one company's tenant is polled."""

    company_key: str
    company_name: str
    journey: JourneyState
    external_id: str
    state: TenantState
    reason: str
    since: datetime | None
    last_poll_at: datetime | None
    last_success_at: datetime | None
    failures: int

    @property
    def troubled(self) -> bool:
        """Failing (backing off) or parked (an operator's turn)."""
        return self.state != TenantState.ACTIVE


def tenant_health(session: Session, cohort: Cohort) -> list[TenantHealth]:
    """Every tenant of the cohort's companies, the troubled first, then by company key."""
    rows = session.execute(
        select(Tenant, Company)
        .join(Company, Company.id == Tenant.company_id)
        .where(Company.cohort_id == cohort.id, Company.state != JourneyState.PURGED.value)
        .order_by(Company.key)
    )
    found = [
        TenantHealth(
            company.key,
            company.name,
            JourneyState(company.state),
            tenant.external_id,
            TenantState(tenant.state),
            tenant.state_reason,
            tenant.state_since or tenant.last_poll_at,
            tenant.last_poll_at,
            tenant.last_success_at,
            tenant.failures,
        )
        for tenant, company in rows
    ]
    return sorted(found, key=lambda t: (not t.troubled, t.company_key))


@dataclass(frozen=True, slots=True)
class DeviceLine:
    """One device of the company's tenant, with its offboarding task if it has one."""

    name: str
    os: str
    onboarding: str
    last_seen: datetime | None
    tested_at: datetime | None
    offboarding: str  # the task's state ("" for none)
    offboarding_at: datetime | None


def company_devices(session: Session, tenant_id: int) -> list[DeviceLine]:
    """The devices in the tenant's inventory, by name, each with its latest offboarding."""
    tasks: dict[int, ResponseAction] = {}
    for task in session.scalars(
        select(ResponseAction)
        .where(
            ResponseAction.tenant_id == tenant_id,
            ResponseAction.kind == ActionKind.OFFBOARD.value,
        )
        .order_by(ResponseAction.id)
    ):
        tasks[task.device_id] = task
    devices = session.scalars(
        select(Device)
        .where(Device.tenant_id == tenant_id, Device.in_inventory.is_(True))
        .order_by(Device.name, Device.id)
    )
    lines = []
    for device in devices:
        latest = tasks.get(device.id)
        lines.append(
            DeviceLine(
                device.name,
                f"{device.os_platform} {device.os_version}".strip(),
                device.onboarding_status,
                device.last_seen,
                device.detection_test_at,
                latest.status if latest is not None else "",
                latest.updated_at if latest is not None else None,
            )
        )
    return lines


@dataclass(frozen=True, slots=True)
class TicketLine:
    """One desk ticket of the company."""

    id: int
    title: str
    priority: str
    state: str
    created_at: datetime


def company_tickets(session: Session, tenant_id: int) -> list[TicketLine]:
    """The tenant's desk tickets, the newest first."""
    return [
        TicketLine(t.id, t.title, t.priority, t.state, t.created_at)
        for t in session.scalars(
            select(Ticket).where(Ticket.tenant_id == tenant_id).order_by(Ticket.id.desc())
        )
    ]
