"""Seat counts for the secretariat: planned, onboarded, active, against the cap."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from edrtrial.models import Company, Device, Tenant, Trial

ACTIVE_WINDOW = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class SeatRow:
    """One company's seats and trial dates."""

    company_key: str
    company_name: str
    planned: int
    onboarded: int
    active_7d: int
    verified: int
    cap: int
    trial_start: date | None
    trial_end: date | None
    decision: str

    @property
    def over_cap(self) -> bool:
        """More devices onboarded than the programme allows."""
        return self.onboarded > self.cap


def seat_counts(session: Session, now: datetime) -> list[SeatRow]:
    """Per company: planned seats, onboarded devices, devices seen in the last 7 days, cap."""
    onboarded = func.count(Device.id).filter(func.lower(Device.onboarding_status) == "onboarded")
    active = func.count(Device.id).filter(Device.last_seen >= now - ACTIVE_WINDOW)
    verified = func.count(Device.id).filter(Device.detection_test_at.is_not(None))
    counts = {
        tenant_id: (o, a, v)
        for tenant_id, o, a, v in session.execute(
            select(Device.tenant_id, onboarded, active, verified)
            .where(Device.in_inventory.is_(True))
            .group_by(Device.tenant_id)
        )
    }
    rows = []
    query = (
        select(Company, Tenant.id, Trial)
        .outerjoin(Tenant, Tenant.company_id == Company.id)
        .outerjoin(Trial, Trial.company_id == Company.id)
        .order_by(Company.key)
    )
    for company, tenant_id, trial in session.execute(query):
        o, a, v = counts.get(tenant_id, (0, 0, 0)) if tenant_id else (0, 0, 0)
        rows.append(
            SeatRow(
                company.key,
                company.name,
                company.planned_seats,
                o,
                a,
                v,
                company.seat_cap,
                trial.starts_on if trial else None,
                trial.ends_on if trial else None,
                trial.decision if trial else "",
            )
        )
    return rows
