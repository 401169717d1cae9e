"""Triage: newly stored alerts run through the playbook, and its decisions reach the desk.

Each batch is one transaction: an alert is marked triaged in the same commit as the ticket
and notices it caused, so a crash re-triages the batch instead of losing or doubling work.

An alert the EDR changes is triaged again. When one that a playbook had suppressed (the
detection test, say) is no longer suppressed, what the suppression set is undone with it:
the verdict still waiting to be written back, and the device's "tested" mark when this alert
set it (taken over by the device's next genuine test, if it had one), so Defender is never
told a real attack was a security test. If the verdict already reached Defender, the alert's
ticket carries a note and the desk a notice to reopen it there; the alert gets a ticket for
that even when its new decision opens none (at least P3), because Defender shows it resolved
while it no longer is a test, and a 24/7 desk hears of such things through its queue. A
verdict that reached Defender while it was being withdrawn ("overtaken", as the write-back
records it) is reported the same way on the next pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from edrtrial import audit
from edrtrial.connectors.base import ActionKind
from edrtrial.desk.announce import queue_notices, queue_update
from edrtrial.desk.calendar import DEFAULT as DEFAULT_CALENDAR
from edrtrial.desk.calendar import BusinessCalendar
from edrtrial.desk.first_poll import record_batch, resolved_in_edr
from edrtrial.desk.intake import TicketBook
from edrtrial.desk.policy import DeskPolicy
from edrtrial.desk.states import worse
from edrtrial.devices import actions
from edrtrial.errors import ActionRefused
from edrtrial.ingest import records
from edrtrial.models import Alert, AuditEvent, Company, Device, Tenant, Ticket, TicketNote
from edrtrial.playbooks.engine import AlertFacts, Decision, Playbook
from edrtrial.playbooks.explain import verdict
from edrtrial.states import WriteBackState
from edrtrial.timeutil import as_utc

# The least a ticket opened only to say that Defender holds a withdrawn test verdict gets:
# the queue's priority, above the report-only P4 where the desk would never see it.
REOPEN_FLOOR = "P3"


@dataclass(frozen=True, slots=True)
class TriageResult:
    """What one triage pass did."""

    triaged: int = 0
    tickets_opened: int = 0
    suppressed: int = 0
    devices_verified: int = 0
    notices_queued: int = 0
    history: int = 0  # a first poll's alerts the EDR had already resolved: no ticket


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


@dataclass(frozen=True, slots=True)
class _Lifted:
    """A suppression a re-triage undid, whose verdict had already reached the EDR."""

    alert: Alert
    rule: str
    verdict: str  # as Defender spells it, e.g. informationalExpectedActivity / securityTesting


def _suppressing_rule(session: Session, alert: Alert) -> str:
    """The rule that last suppressed this alert, as its audit event names it."""
    event = session.scalar(
        select(AuditEvent)
        .where(AuditEvent.action == "alert.suppressed", AuditEvent.target == f"alert:{alert.id}")
        .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
        .limit(1)
    )
    rule = event.detail.get("rule") if event is not None else None
    return str(rule) if rule else "unknown"


def _tested_by(session: Session, alert: Alert) -> list[Device]:
    """The alert's devices whose detection-test mark this alert set (its own timestamp)."""
    if not alert.device_source_ids:
        return []
    stamp = as_utc(alert.created_at or alert.ingested_at)
    devices = session.scalars(
        select(Device).where(
            Device.tenant_id == alert.tenant_id,
            Device.source_id.in_(sorted(set(alert.device_source_ids))),
            Device.detection_test_at.is_not(None),
        )
    )
    return [d for d in devices if d.detection_test_at and as_utc(d.detection_test_at) == stamp]


def _marks_devices(session: Session, alert: Alert) -> bool:
    """Whether the rule that last suppressed this alert marked its devices as tested."""
    event = session.scalar(
        select(AuditEvent)
        .where(AuditEvent.action == "alert.suppressed", AuditEvent.target == f"alert:{alert.id}")
        .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
        .limit(1)
    )
    return bool(event is not None and event.detail.get("devices_verified"))


def _retest(session: Session, lifted: Alert, device: Device) -> None:
    """Mark the device from its earliest other test still suppressed, if it has one.

    A second genuine test of the device did not overwrite the mark (it was already set), so
    lifting the first would otherwise forget that the device proved it reports.
    """
    others = session.scalars(
        select(Alert)
        .where(
            Alert.tenant_id == lifted.tenant_id,
            Alert.id != lifted.id,
            Alert.suppressed_reason.is_not(None),
        )
        .order_by(Alert.created_at, Alert.id)
    )
    for other in others:
        if (
            other.suppressed_reason
            and device.source_id in other.device_source_ids
            and _marks_devices(session, other)
        ):
            device.detection_test_at = other.created_at or other.ingested_at
            return


def _lift_suppression(
    session: Session, alert: Alert, decision: Decision, now: datetime
) -> _Lifted | None:
    """Undo what a suppression set on an alert a re-triage no longer suppresses; audited.

    The verdict was the playbook's (a suppressed alert has no ticket, so no operator gave
    one): it is cleared, and a write-back not yet sent is called off. One already sent is
    returned, for the ticket and the desk to hear that Defender must be corrected by hand.
    """
    rule = _suppressing_rule(session, alert)
    seen = alert.write_back
    written = seen == WriteBackState.DONE
    if not written and not _withdraw(session, alert):
        written = alert.write_back == WriteBackState.DONE  # sent while this pass ran
    shown = (
        verdict(alert.classification, alert.determination or None) if alert.classification else ""
    )
    detail: dict[str, object] = {
        "rule": rule,
        "reason": alert.suppressed_reason,
        "now_matched": list(decision.matched),
        "severity": alert.severity,
        "source_id": alert.source_id,
        "classification": alert.classification,
        "determination": alert.determination,
        "write_back": str(WriteBackState.DONE) if written else seen,
    }
    alert.classification = alert.determination = ""
    untested = _tested_by(session, alert)
    for device in untested:
        device.detection_test_at = None
        _retest(session, alert, device)
    detail["devices_no_longer_tested"] = [
        d.name or d.source_id for d in untested if d.detection_test_at is None
    ]
    detail["devices_tested_by_another_alert"] = [
        d.name or d.source_id for d in untested if d.detection_test_at is not None
    ]
    audit.record(
        session,
        at=now,
        actor="playbook",
        action="alert.suppression_lifted",
        tenant_id=alert.tenant_id,
        target=f"alert:{alert.id}",
        detail=detail,
    )
    return _Lifted(alert, rule, shown) if written else None


def _withdraw(session: Session, alert: Alert) -> bool:
    """Call off the verdict's write-back, unless the write-back settled it meanwhile.

    A conditional update from the state this pass read: the desk job may be sending the
    verdict right now, and its "done" must not be overwritten (Defender would keep the test
    verdict and nobody would hear). False, with the alert's state read afresh, if it moved.
    """
    moved = session.execute(
        update(Alert)
        .where(Alert.id == alert.id, Alert.write_back == alert.write_back)
        .values(write_back=WriteBackState.NONE, write_back_error="")
        .execution_options(synchronize_session=False)
    )
    session.expire(alert, ["write_back", "write_back_error"])
    return bool(getattr(moved, "rowcount", 0) == 1)


def _overtaken(session: Session, alert: Alert) -> _Lifted | None:
    """The verdict the EDR accepted after a re-triage withdrew it, now to be reported.

    Taken from "overtaken" to "done" by a conditional update, so two passes never report it
    twice; what was sent, and by which rule, is in the write-back's audit record.
    """
    moved = session.execute(
        update(Alert)
        .where(Alert.id == alert.id, Alert.write_back == WriteBackState.OVERTAKEN)
        .values(write_back=WriteBackState.DONE)
        .execution_options(synchronize_session=False)
    )
    session.expire(alert, ["write_back"])
    if getattr(moved, "rowcount", 0) != 1:
        return None
    event = session.scalar(
        select(AuditEvent)
        .where(AuditEvent.action == "alert.written_back", AuditEvent.target == f"alert:{alert.id}")
        .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
        .limit(1)
    )
    sent = event.detail if event is not None else {}
    classification = str(sent.get("classification") or "")
    shown = verdict(classification, sent.get("determination") or None) if classification else ""
    rule = str(sent.get("rule") or "") or _suppressing_rule(session, alert)
    return _Lifted(alert, rule, shown)


def _reopen_in_edr(
    session: Session, ticket: Ticket, lifted: _Lifted, policy: DeskPolicy, now: datetime
) -> None:
    """The ticket's note and the desk's notice that Defender still holds the test verdict."""
    alert = lifted.alert
    session.add(
        TicketNote(
            ticket_id=ticket.id,
            at=now,
            author="playbook",
            text=(
                f"Alert {alert.source_id} was resolved in Defender as a test "
                f"({lifted.verdict}) by rule {lifted.rule!r}; Defender has since changed it "
                "and it is no longer a test: reopen it there."
            ),
        )
    )
    queue_update(
        session,
        ticket,
        policy,
        event="resolved_as_test",
        detail=(
            f"アラート {alert.source_id} は、ルール '{lifted.rule}' によりテスト"
            f"（{lifted.verdict}）として Defender で解決済みです。その後 Defender で更新され、"
            "テストではなくなりました。Defender でこのアラートを再オープンしてください。"
        ),
        key=f"notice:desk:ticket:{ticket.id}:resolved-as-test:alert:{alert.id}",
        now=now,
    )


@dataclass(slots=True)
class _Pending:
    """What a batch asks of one ticket once all its alerts are placed."""

    ticket: Ticket
    to_desk: bool = False
    to_company: bool = False
    isolate: str | None = None
    devices: dict[str, str] | None = None  # source id -> name, of alerts asking to isolate
    lifted: list[_Lifted] | None = None  # its alerts Defender still holds as a test


def _apply(
    session: Session,
    book: TicketBook,
    alert: Alert,
    decision: Decision,
    now: datetime,
    pending: dict[str, _Pending],
) -> tuple[int, int, int]:
    lifted: _Lifted | None = None
    if alert.write_back == WriteBackState.OVERTAKEN:
        lifted = _overtaken(session, alert)
        if decision.suppressed_reason:  # suppressed again: Defender's verdict holds once more
            lifted = None
    elif alert.suppressed_reason and not decision.suppressed_reason:
        lifted = _lift_suppression(session, alert, decision, now)
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
    if decision.suppressed_reason or not (decision.ticket or lifted):
        return 0, 1 if decision.suppressed_reason else 0, verified
    priority: str = decision.priority
    if lifted is not None and not worse(priority, REOPEN_FLOOR):
        priority = REOPEN_FLOOR
    placed = book.place(
        alert,
        priority,
        correlate=decision.correlate,
        window_minutes=decision.correlate_window_minutes,
        channel=decision.escalate or "",
    )
    ticket = placed.ticket
    entry = pending.setdefault(ticket.correlation_key, _Pending(ticket))
    entry.to_desk = entry.to_desk or decision.notify_desk or placed.reopened
    entry.to_company = entry.to_company or decision.notify_company
    if lifted is not None:
        entry.lifted = [*(entry.lifted or []), lifted]
    if decision.isolate:
        entry.isolate = "request" if "request" in (entry.isolate, decision.isolate) else "propose"
        entry.devices = entry.devices or {}
        for source_id, name in zip(alert.device_source_ids, alert.device_names, strict=False):
            entry.devices.setdefault(source_id, name)
    return (1 if placed.created else 0), 0, verified


def _store_as_history(
    session: Session, alert: Alert, decision: Decision, now: datetime
) -> tuple[int, int]:
    """Keep a first poll's alert the EDR already resolved as history; (suppressed, verified).

    What the playbook says of it stays for the reports (its priority and rules, a test's
    suppression and verified device), but it opens no ticket, tells no one, isolates
    nothing, and its verdict is not written back: Defender's analyst already settled it.
    """
    alert.priority = decision.priority
    alert.matched_rules = list(decision.matched)
    alert.suppressed_reason = decision.suppressed_reason
    alert.triaged_at = now
    verified = _verify_devices(session, alert) if decision.mark_device_verified else 0
    if decision.suppressed_reason:
        _audit_suppression(session, alert, decision, now)
    return (1 if decision.suppressed_reason else 0), verified


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
    *,
    first_poll: bool = False,
) -> TriageResult:
    """Triage up to `limit` untriaged alerts of one tenant, oldest first; does not commit.

    On the tenant's `first_poll` its backlog is triaged (`desk/first_poll.py`): what the EDR
    already resolved is kept as history, and no ticket's notices are queued, the batch
    noting instead which tickets the company would have heard of, for the one summary.
    """
    alerts = list(
        session.scalars(
            select(Alert)
            .where(
                Alert.tenant_id == tenant_id,
                or_(Alert.triaged_at.is_(None), Alert.write_back == WriteBackState.OVERTAKEN),
            )
            .order_by(Alert.created_at, Alert.id)
            .limit(limit)
        )
    )
    if not alerts:
        return TriageResult()
    tenant = session.get_one(Tenant, tenant_id)
    company = session.get_one(Company, tenant.company_id)
    tags = device_tags(session, tenant_id, [s for a in alerts for s in a.device_source_ids])
    opened = suppressed = verified = history = settled_tests = 0
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
            decision = playbook.evaluate(facts)
            if first_poll and resolved_in_edr(alert):
                s, v = _store_as_history(session, alert, decision, now)
                history, settled_tests = history + 1, settled_tests + s
            else:
                o, s, v = _apply(session, book, alert, decision, now, pending)
                opened += o
            suppressed, verified = suppressed + s, verified + v
    book.close()
    queued = 0
    for entry in pending.values():
        if entry.isolate:
            _isolation(session, entry, company.auto_isolation, now)
        if not first_poll:
            queued += queue_notices(
                session,
                entry.ticket,
                policy,
                to_desk=entry.to_desk,
                to_company=entry.to_company,
                now=now,
            )
        for lifted in entry.lifted or []:
            _reopen_in_edr(session, entry.ticket, lifted, policy, now)
    session.flush()
    if first_poll:
        record_batch(
            session,
            tenant_id,
            now,
            alerts=len(alerts),
            history=history,
            suppressed=suppressed - settled_tests,  # history counts those apart
            for_company=[e.ticket.id for e in pending.values() if e.to_company],
        )
    return TriageResult(len(alerts), opened, suppressed, verified, queued, history)
