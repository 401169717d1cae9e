"""The desk's verdicts back into the EDR: each alert's classification, sent once.

Alerts are marked `write_back = "pending"` when the desk resolves their ticket (or when a
playbook classifies a suppressed alert, like the onboarding test). Only tenants whose
connection has the write-back switch on are written to; for the others the mark becomes
"off". A refusal is "failed", with the EDR's reason in `write_back_error`. A verdict the EDR
accepted is "done" even when the comment sent after it is not: the alert is resolved in the
customer's Defender, so the audit says so (with the comment's error beside it), and neither
is sent again.

The outcome is settled only on the alert as it was when the verdict was read: still
"pending", with the same verdict. A send takes seconds, and meanwhile the poll may re-triage
the alert (Defender turned the "test" into credential theft) and withdraw the verdict. The
EDR has it all the same, so such an alert becomes "overtaken", a fact in the store that
survives a crash: triage's next pass (it owns tickets and the desk's notices, which this
layer cannot reach) puts a "reopen it in Defender" note on its ticket and tells the desk.
A verdict the desk gave meanwhile is left pending, to be sent in its turn.

Each write, and each refusal, is audited with what was written to which alert of which
tenant and on whose behalf: the operator who resolved the ticket, or the playbook rule that
suppressed the alert. A verdict in the customer's own Defender is a change the company
sees; it must be traceable to a person or a rule.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from edrtrial import audit
from edrtrial.connectors.base import AlertUpdate, Capability, Connector
from edrtrial.db import transaction
from edrtrial.errors import CommentNotAdded, ConnectorError, TransientError
from edrtrial.models import Alert, AuditEvent, Tenant, Ticket
from edrtrial.states import WriteBackState
from edrtrial.timeutil import utcnow

log = logging.getLogger(__name__)
BATCH = 100


@dataclass(frozen=True, slots=True)
class WriteBackResult:
    """What one pass wrote."""

    written: int = 0
    failed: int = 0
    skipped: int = 0  # write-back is off for this tenant
    deferred: int = 0  # throttled or unreachable: tried again next time


def _update_for(alert: Alert, ticket: Ticket | None) -> AlertUpdate:
    comment = (
        f"edrtrial: resolved by the support desk (ticket #{ticket.id})"
        if ticket is not None
        else f"edrtrial: {alert.suppressed_reason or 'classified'} by playbook"
    )
    return AlertUpdate(
        status="resolved",
        classification=alert.classification or None,
        determination=alert.determination or None,
        comment=comment,
    )


@dataclass(frozen=True, slots=True)
class _Write:
    """One verdict to send, and what its audit record says besides the outcome."""

    alert_id: int
    source_id: str
    update: AlertUpdate
    actor: str
    detail: dict[str, Any]
    on_behalf_of: str = ""  # whom the resolving operator acted for (`ticket --by`)
    verdict: tuple[str, str] = ("", "")  # the alert's classification and determination, as read


def _earlier(session: Session, action: str, target: str) -> AuditEvent | None:
    """The latest audit event of this kind on this target (who resolved, which rule)."""
    return session.scalar(
        select(AuditEvent)
        .where(AuditEvent.action == action, AuditEvent.target == target)
        .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
        .limit(1)
    )


def _write_for(session: Session, alert: Alert, ticket: Ticket | None, tenant: str) -> _Write:
    update = _update_for(alert, ticket)
    detail: dict[str, Any] = {
        "source_id": alert.source_id,
        "edr_tenant": tenant,
        "status": update.status,
        "classification": update.classification,
        "determination": update.determination,
        "comment": update.comment,
    }
    behalf = ""
    if ticket is not None:
        resolved = _earlier(session, "ticket.resolved", f"ticket:{ticket.id}")
        actor = resolved.actor if resolved is not None else "desk"
        behalf = resolved.on_behalf_of if resolved is not None else ""
        detail["ticket"] = ticket.id
    else:
        suppressed = _earlier(session, "alert.suppressed", f"alert:{alert.id}")
        actor = "playbook"
        detail["suppressed"] = alert.suppressed_reason
        detail["rule"] = suppressed.detail.get("rule") if suppressed is not None else None
    verdict = (alert.classification, alert.determination)
    return _Write(alert.id, alert.source_id, update, actor, detail, behalf, verdict)


def _move(session: Session, write: _Write, current: str, target: str, error: str = "") -> bool:
    """Set the alert's write-back state if it still holds `current`; False if it changed.

    A conditional UPDATE, as the state machines write: of the write-back and a re-triage
    racing for the same alert, the one that comes second sees the other's state. Leaving
    "pending" also needs the verdict read before the send, so an operator's newer verdict
    is never marked as sent.
    """
    guard = [Alert.id == write.alert_id, Alert.write_back == current]
    if current == WriteBackState.PENDING:
        classification, determination = write.verdict
        guard += [Alert.classification == classification, Alert.determination == determination]
    result = session.execute(
        update(Alert)
        .where(*guard)
        .values(write_back=target, write_back_error=error)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


def _settle(
    sessions: sessionmaker[Session],
    tenant_id: int,
    write: _Write,
    error: str | None,
    comment_error: str | None = None,
) -> None:
    """Record the outcome on the alert and in the audit log, in one transaction.

    `error` is a refused verdict; `comment_error` is a comment that failed after the
    verdict was accepted, which leaves the verdict written.
    """
    detail = write.detail if error is None else write.detail | {"error": error}
    if comment_error is not None:
        detail = detail | {"comment_error": comment_error}
    with transaction(sessions) as session:
        if error is None:
            settled = _move(session, write, WriteBackState.PENDING, WriteBackState.DONE)
        else:
            settled = _move(session, write, WriteBackState.PENDING, WriteBackState.FAILED, error)
        if not settled:
            # Re-triage withdrew the verdict while it was on its way ("" now), or the desk
            # gave another one: what the EDR now holds is in the audit, the alert's state
            # stays the newer one, except that an accepted verdict nobody stands by any more
            # is "overtaken", for the desk to hear.
            overtaken = error is None and _move(
                session, write, WriteBackState.NONE, WriteBackState.OVERTAKEN
            )
            now = session.scalar(select(Alert.write_back).where(Alert.id == write.alert_id))
            detail = detail | {"withdrawn_meanwhile": True, "write_back_now": now or ""}
            if overtaken:
                log.warning(
                    "write-back of %s accepted after re-triage withdrew it: the desk is told",
                    write.source_id,
                )
        audit.record(
            session,
            at=utcnow(),
            actor=write.actor,
            action="alert.written_back" if error is None else "alert.write_back_failed",
            tenant_id=tenant_id,
            target=f"alert:{write.alert_id}",
            detail=detail,
            on_behalf_of=write.on_behalf_of,
        )


def write_back_pending(
    sessions: sessionmaker[Session], tenant_id: int, connector: Connector
) -> WriteBackResult:
    """Send the tenant's pending verdicts; a transient failure leaves the rest for next time."""
    with transaction(sessions) as session:
        pending = list(
            session.execute(
                select(Alert, Ticket)
                .outerjoin(Ticket, Alert.ticket_id == Ticket.id)
                .where(Alert.tenant_id == tenant_id, Alert.write_back == WriteBackState.PENDING)
                .order_by(Alert.id)
                .limit(BATCH)
            )
        )
        if not pending:
            return WriteBackResult()
        if Capability.WRITE_BACK not in connector.capabilities:
            for alert, _ in pending:
                alert.write_back = WriteBackState.OFF
            return WriteBackResult(skipped=len(pending))
        tenant = session.get_one(Tenant, tenant_id).external_id
        work = [_write_for(session, a, t, tenant) for a, t in pending]
    written = failed = 0
    for index, write in enumerate(work):
        error: str | None = None
        comment_error: str | None = None
        try:
            connector.update_alert(write.source_id, write.update)
        except CommentNotAdded as err:
            log.warning("write-back without its comment (%s): %s", write.source_id, err)
            comment_error = str(err)[:500]
            written += 1
        except TransientError as err:
            log.warning("write-back deferred (%s): %s", write.source_id, err)
            return WriteBackResult(written, failed, deferred=len(work) - index)
        except ConnectorError as err:
            error = str(err)[:500]
            failed += 1
        else:
            written += 1
        _settle(sessions, tenant_id, write, error, comment_error)
    return WriteBackResult(written, failed)
