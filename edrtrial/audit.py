"""The audit log: who did what, when, to which tenant; one function writes it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from edrtrial.models import AuditEvent


def record(
    session: Session,
    *,
    at: datetime,
    actor: str,
    action: str,
    tenant_id: int | None,
    target: str = "",
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    """Add an audit event to the caller's transaction (it commits with the change it records)."""
    event = AuditEvent(
        at=at, actor=actor, action=action, tenant_id=tenant_id, target=target, detail=detail or {}
    )
    session.add(event)
    return event
