"""What others read of the ingested records: alerts, devices, and what was quarantined."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, selectinload

from edrtrial.ingest import records
from edrtrial.models import Alert, Company, Device, QuarantinedRecord, Tenant
from edrtrial.timeutil import jst_day_bounds


def period_alerts(session: Session, tenant_id: int, start: date, end: date) -> list[Alert]:
    """The tenant's alerts created within the Tokyo days start..end, oldest first.

    Each comes with its ticket loaded, so a report can say what the desk did about it.
    """
    lower, upper = jst_day_bounds(start, end)
    query = (
        select(Alert)
        .where(Alert.tenant_id == tenant_id, Alert.created_at >= lower, Alert.created_at < upper)
        .options(selectinload(Alert.ticket))
        .order_by(Alert.created_at, Alert.id)
    )
    return list(session.scalars(query))


def tenant_devices(session: Session, tenant_id: int) -> list[Device]:
    """Every device the tenant's EDR inventory has reported, by name."""
    return list(
        session.scalars(select(Device).where(Device.tenant_id == tenant_id).order_by(Device.name))
    )


def alerts_by_reference(
    session: Session, reference: str, company_key: str | None = None
) -> list[Alert]:
    """Stored alerts whose source id (or, for digits, numeric id) is the reference, by id."""
    match = Alert.source_id == reference
    if reference.isdigit():
        match = or_(Alert.id == int(reference), match)
    query = select(Alert).join(Tenant, Alert.tenant_id == Tenant.id)
    query = query.join(Company, Tenant.company_id == Company.id).where(match)
    if company_key:
        query = query.where(Company.key == company_key)
    return list(session.scalars(query.order_by(Alert.id)))


def newest_alerts(session: Session, company_key: str, limit: int) -> list[Alert]:
    """The company's most recent stored alerts, newest first (undated ones last)."""
    query = (
        select(Alert)
        .join(Tenant, Alert.tenant_id == Tenant.id)
        .join(Company, Tenant.company_id == Company.id)
        .where(Company.key == company_key)
        .order_by(Alert.created_at.desc().nulls_last(), Alert.id.desc())
    )
    return list(session.scalars(query.limit(limit)))


def quarantined_records(
    session: Session, company_key: str | None = None
) -> list[tuple[QuarantinedRecord, str]]:
    """Records set aside as unreadable, each with its company's key, last seen first."""
    query = (
        select(QuarantinedRecord, Company.key)
        .join(Tenant, QuarantinedRecord.tenant_id == Tenant.id)
        .join(Company, Tenant.company_id == Company.id)
        .order_by(QuarantinedRecord.last_seen.desc())
    )
    if company_key:
        query = query.where(Company.key == company_key)
    return [(record, key) for record, key in session.execute(query)]


def inventory_read_at(session: Session, tenant_id: int) -> datetime | None:
    """When the tenant's device inventory was last read (None: never)."""
    stamp = records.get_cursor(session, tenant_id, records.INVENTORY_STREAM)
    return None if stamp is None else stamp.datetime
