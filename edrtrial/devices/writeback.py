"""The desk's verdicts back into the EDR: each alert's classification, sent once.

Alerts are marked `write_back = "pending"` when the desk resolves their ticket (or when a
playbook classifies a suppressed alert, like the onboarding test). Only tenants whose
connection has the write-back switch on are written to; for the others the mark becomes
"off". A refusal is "failed", with the EDR's reason in `write_back_error`. A verdict the EDR
accepted is "done" even when the comment sent after it is not: the alert is resolved in the
customer's Defender, so the audit says so (with the comment's error beside it), and neither
is sent again.

Each write, and each refusal, is audited with what was written to which alert of which
tenant and on whose behalf: the operator who resolved the ticket, or the playbook rule that
suppressed the alert. A verdict in the customer's own Defender is a change the company
sees; it must be traceable to a person or a rule.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
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
    return _Write(alert.id, alert.source_id, update, actor, detail, behalf)


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
        alert = session.get_one(Alert, write.alert_id)
        if error is None:
            alert.write_back, alert.write_back_error = WriteBackState.DONE, ""
        else:
            alert.write_back, alert.write_back_error = WriteBackState.FAILED, error
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
