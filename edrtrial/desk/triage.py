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

from edrtrial import audit
from edrtrial.connectors.base import ActionKind
from edrtrial.desk.announce import queue_notices
from edrtrial.desk.calendar import DEFAULT as DEFAULT_CALENDAR
from edrtrial.desk.calendar import BusinessCalendar
from edrtrial.desk.intake import TicketBook
from edrtrial.desk.policy import DeskPolicy
from edrtrial.devices import actions
from edrtrial.errors import ActionRefused
from edrtrial.ingest import records
from edrtrial.models import Alert, Company, Device, Tenant, Ticket
from edrtrial.playbooks.engine import AlertFacts, Decision, Playbook
from edrtrial.states import WriteBackState


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
    calendar: BusinessCalendar = DEFAULT_CALENDAR,
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
        command_lines=tuple(evidence.get("command_lines", ())),
        tenant_id=tenant_id,
        company_key=company_key,
        business_hours=calendar.is_business_hours(alert.created_at or alert.ingested_at),
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


def stored_facts(
    session: Session, alert: Alert, calendar: BusinessCalendar = DEFAULT_CALENDAR
) -> AlertFacts:
    """The facts of one stored alert exactly as triage builds them (for `playbooks test`)."""
    tenant = session.get_one(Tenant, alert.tenant_id)
    company = session.get_one(Company, tenant.company_id)
    tags = device_tags(session, alert.tenant_id, alert.device_source_ids)
    return facts_of(
        alert,
        company.key,
        tenant_id=tenant.external_id,
        device_tags=_tags_of(alert, tags),
        calendar=calendar,
    )


def _tags_of(alert: Alert, tags: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(t for sid in alert.device_source_ids for t in tags.get(sid, ())))


def _verify_devices(session: Session, alert: Alert) -> int:
    verified = 0
    for source_id, name in zip(alert.device_source_ids, alert.device_names, strict=False):
        device = records.device_for_evidence(session, alert.tenant_id, source_id, name)
        if device.detection_test_at is None:
            device.detection_test_at = alert.created_at or alert.ingested_at
            verified += 1
    return verified


def _audit_suppression(session: Session, alert: Alert, decision: Decision, now: datetime) -> None:
    """A suppressed alert reaches nobody, so the audit log is where the desk can see it."""
    audit.record(
        session,
        at=now,
        actor="playbook",
        action="alert.suppressed",
        tenant_id=alert.tenant_id,
        target=f"alert:{alert.id}",
        detail={
            "rule": decision.suppressed_by,
            "reason": decision.suppressed_reason,
            "title": alert.title,
            "severity": alert.severity,
            "source_id": alert.source_id,
            "classification": alert.classification,
            "determination": alert.determination,
            "devices_verified": list(alert.device_names) if decision.mark_device_verified else [],
        },
    )


@dataclass(slots=True)
class _Pending:
    """What a batch asks of one ticket once all its alerts are placed."""

    ticket: Ticket
    to_desk: bool = False
    to_company: bool = False
    isolate: str | None = None
    devices: dict[str, str] | None = None  # source id -> name, of alerts asking to isolate


def _apply(
    session: Session,
    book: TicketBook,
    alert: Alert,
    decision: Decision,
    now: datetime,
    pending: dict[str, _Pending],
) -> tuple[int, int, int]:
    alert.priority = decision.priority
    alert.matched_rules = list(decision.matched)
    alert.suppressed_reason = decision.suppressed_reason
    alert.triaged_at = now
    if decision.classification and not alert.classification:
        alert.classification = decision.classification
        alert.determination = decision.determination or ""
        if decision.suppressed_reason:  # e.g. the detection test: closed in the EDR as well
            alert.write_back = alert.write_back or WriteBackState.PENDING
    verified = _verify_devices(session, alert) if decision.mark_device_verified else 0
    if decision.suppressed_reason:
        _audit_suppression(session, alert, decision, now)
    if decision.suppressed_reason or not decision.ticket:
        return 0, 1 if decision.suppressed_reason else 0, verified
    placed = book.place(
        alert,
        decision.priority,
        correlate=decision.correlate,
        window_minutes=decision.correlate_window_minutes,
        channel=decision.escalate or "",
    )
    ticket = placed.ticket
    entry = pending.setdefault(ticket.correlation_key, _Pending(ticket))
    entry.to_desk = entry.to_desk or decision.notify_desk or placed.reopened
    entry.to_company = entry.to_company or decision.notify_company
    if decision.isolate:
        entry.isolate = "request" if "request" in (entry.isolate, decision.isolate) else "propose"
        entry.devices = entry.devices or {}
        for source_id, name in zip(alert.device_source_ids, alert.device_names, strict=False):
            entry.devices.setdefault(source_id, name)
    return (1 if placed.created else 0), 0, verified


def _isolation(session: Session, entry: _Pending, auto_isolation: bool, now: datetime) -> None:
    """Carry out a playbook's isolation ask: planned where the company agreed, else proposed."""
    ticket = entry.ticket
    for source_id, name in (entry.devices or {}).items():
        device = records.device_for_evidence(session, ticket.tenant_id, source_id, name)
        if entry.isolate == "request" and auto_isolation:
            try:
                actions.plan(
                    session,
                    device,
                    ActionKind.ISOLATE,
                    actor="playbook",
                    at=now,
                    ticket=ticket,
                    reason="automatic isolation agreed by the company",
                )
            except ActionRefused:
                continue  # already isolated or under way: nothing more to ask
        else:
            reason = (
                "the playbook asks to isolate; the company has not agreed to automatic "
                "isolation, so an operator decides"
                if entry.isolate == "request"
                else "the playbook proposes isolating this device"
            )
            actions.propose(session, device, ticket, at=now, reason=reason)


def triage_pending(
    session: Session,
    tenant_id: int,
    company_key: str,
    playbook: Playbook,
    policy: DeskPolicy,
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
    if not alerts:
        return TriageResult()
    tenant = session.get_one(Tenant, tenant_id)
    company = session.get_one(Company, tenant.company_id)
    tags = device_tags(session, tenant_id, [s for a in alerts for s in a.device_source_ids])
    opened = suppressed = verified = 0
    pending: dict[str, _Pending] = {}
    book = TicketBook(session, tenant_id, alerts, policy, now)
    with session.no_autoflush:  # one flush per batch, not one per query
        for alert in alerts:
            facts = facts_of(
                alert,
                company_key,
                tenant_id=tenant.external_id,
                device_tags=_tags_of(alert, tags),
                calendar=policy.calendar,
            )
            o, s, v = _apply(session, book, alert, playbook.evaluate(facts), now, pending)
            opened, suppressed, verified = opened + o, suppressed + s, verified + v
    book.close()
    queued = 0
    for entry in pending.values():
        if entry.isolate:
            _isolation(session, entry, company.auto_isolation, now)
        queued += queue_notices(
            session, entry.ticket, policy, to_desk=entry.to_desk, to_company=entry.to_company
        )
    session.flush()
    return TriageResult(len(alerts), opened, suppressed, verified, queued)
