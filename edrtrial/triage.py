"""Triage: newly stored alerts run through the playbook, and its decisions reach the desk.

Each batch is one transaction: an alert is marked triaged in the same commit as the ticket
and notices it caused, so a crash re-triages the batch instead of losing or doubling work.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from edrtrial import desk, store
from edrtrial.calendar import is_business_hours
from edrtrial.config import DeskConfig
from edrtrial.models import Alert, Company, Device, Tenant, Ticket
from edrtrial.playbooks.engine import AlertFacts, Decision, Playbook


@dataclass(frozen=True, slots=True)
class TriageResult:
    """What one triage pass did."""

    triaged: int = 0
    tickets_opened: int = 0
    suppressed: int = 0
    devices_verified: int = 0
    notices_queued: int = 0


def facts_of(
    alert: Alert,
    company_key: str,
    *,
    tenant_id: str = "",
    device_tags: tuple[str, ...] = (),
) -> AlertFacts:
    """What the playbook may look at for a stored alert."""
    evidence = alert.evidence or {}
    return AlertFacts(
        severity=alert.severity,
        status=alert.status,
        category=alert.category,
        title=alert.title,
        detection_source=alert.detection_source,
        service_source=alert.service_source,
        mitre_techniques=tuple(alert.mitre_techniques),
        device_names=tuple(alert.device_names),
        device_tags=device_tags,
        users=tuple(evidence.get("users", ())),
        file_hashes=tuple(evidence.get("file_hashes", ())),
        ips=tuple(evidence.get("ips", ())),
        urls=tuple(evidence.get("urls", ())),
        tenant_id=tenant_id,
        company_key=company_key,
        business_hours=is_business_hours(alert.created_at or alert.ingested_at),
        incident_id=alert.incident_source_id,
    )


def device_tags(
    session: Session, tenant_id: int, source_ids: Sequence[str]
) -> dict[str, tuple[str, ...]]:
    """The inventory's tags of these devices, by device source id (one query per batch)."""
    if not source_ids:
        return {}
    rows = session.execute(
        select(Device.source_id, Device.tags).where(
            Device.tenant_id == tenant_id, Device.source_id.in_(sorted(set(source_ids)))
        )
    )
    return {source_id: tuple(tags or ()) for source_id, tags in rows}


def stored_facts(session: Session, alert: Alert) -> AlertFacts:
    """The facts of one stored alert exactly as triage builds them (for `playbooks test`)."""
    tenant = session.get_one(Tenant, alert.tenant_id)
    company = session.get_one(Company, tenant.company_id)
    tags = device_tags(session, alert.tenant_id, alert.device_source_ids)
    return facts_of(
        alert,
        company.key,
        tenant_id=tenant.external_id,
        device_tags=_tags_of(alert, tags),
    )


def _tags_of(alert: Alert, tags: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(t for sid in alert.device_source_ids for t in tags.get(sid, ())))


def _verify_devices(session: Session, alert: Alert) -> int:
    verified = 0
    for source_id, name in zip(alert.device_source_ids, alert.device_names, strict=False):
        device = store.device_for_evidence(session, alert.tenant_id, source_id, name)
        if device.detection_test_at is None:
            device.detection_test_at = alert.created_at or alert.ingested_at
            verified += 1
    return verified


def _apply(
    session: Session,
    book: desk.TicketBook,
    alert: Alert,
    decision: Decision,
    now: datetime,
    notify: dict[str, tuple[Ticket, bool, bool]],
) -> tuple[int, int, int]:
    alert.priority = decision.priority
    alert.matched_rules = list(decision.matched)
    alert.suppressed_reason = decision.suppressed_reason
    alert.triaged_at = now
    verified = _verify_devices(session, alert) if decision.mark_device_verified else 0
    if decision.suppressed_reason or not decision.ticket:
        return 0, 1 if decision.suppressed_reason else 0, verified
    ticket, created = book.open_or_attach(alert, decision.priority, now)
    _, to_desk, to_company = notify.get(ticket.correlation_key, (ticket, False, False))
    notify[ticket.correlation_key] = (
        ticket,
        to_desk or decision.notify_desk,
        to_company or decision.notify_company,
    )
    return (1 if created else 0), 0, verified


def triage_pending(
    session: Session,
    tenant_id: int,
    company_key: str,
    playbook: Playbook,
    desk_config: DeskConfig,
    now: datetime,
    limit: int = 500,
) -> TriageResult:
    """Triage up to `limit` untriaged alerts of one tenant, oldest first; does not commit."""
    alerts = list(
        session.scalars(
            select(Alert)
            .where(Alert.tenant_id == tenant_id, Alert.triaged_at.is_(None))
            .order_by(Alert.created_at, Alert.id)
            .limit(limit)
        )
    )
    opened = suppressed = verified = 0
    notify: dict[str, tuple[Ticket, bool, bool]] = {}
    book = desk.TicketBook(session, tenant_id, alerts)
    with session.no_autoflush:  # one flush per batch, not one per query
        for alert in alerts:
            decision = playbook.evaluate(facts_of(alert, company_key))
            o, s, v = _apply(session, book, alert, decision, now, notify)
            opened, suppressed, verified = opened + o, suppressed + s, verified + v
    book.close(now)
    queued = 0
    for ticket, to_desk, to_company in notify.values():
        queued += desk.queue_notices(
            session, ticket, desk_config, to_desk=to_desk, to_company=to_company
        )
    session.flush()
    return TriageResult(len(alerts), opened, suppressed, verified, queued)
