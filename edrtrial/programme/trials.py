"""A company's trial period: how it stands at a moment, and when its first poll starts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from edrtrial.coverage import Coverage, coverage_at
from edrtrial.models import Tenant, Trial
from edrtrial.timeutil import jst_day_bounds


def trial_of_tenant(session: Session, tenant_id: int) -> Trial | None:
    """The trial of the tenant's company, if it has one."""
    return session.scalar(
        select(Trial)
        .join(Tenant, Tenant.company_id == Trial.company_id)
        .where(Tenant.id == tenant_id)
    )


def trial_of_company(session: Session, company_id: int) -> Trial | None:
    """The company's trial, if it has one."""
    return session.scalar(select(Trial).where(Trial.company_id == company_id))


def coverage_of_tenant(session: Session, tenant_id: int, at: datetime) -> Coverage:
    """The tenant's company's trial stage at `at`, and the desk it is promised then."""
    return coverage_at(trial_of_tenant(session, tenant_id), at)


def in_trial(session: Session, tenant_id: int, at: datetime) -> bool:
    """Whether the tenant's company is inside its trial (the 24/7 incident desk covers it)."""
    return coverage_of_tenant(session, tenant_id, at).in_trial


def first_poll_since(session: Session, tenant_id: int) -> datetime | None:
    """A tenant's first poll starts at its trial start (JST), not at the dawn of its history."""
    trial = trial_of_tenant(session, tenant_id)
    return None if trial is None else jst_day_bounds(trial.starts_on, trial.starts_on)[0]
