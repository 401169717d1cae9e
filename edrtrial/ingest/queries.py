"""What others read of the ingested records: a tenant's alerts in a period, its devices."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from edrtrial.models import Alert, Device
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
