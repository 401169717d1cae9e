"""The desk's verdicts back into the EDR: each alert's classification, sent once.

Alerts are marked `write_back = "pending"` when the desk resolves their ticket (or when a
playbook classifies a suppressed alert, like the onboarding test). Only tenants whose
connection has the write-back switch on are written to; for the others the mark becomes
"off". A refusal is "failed", with the EDR's reason in `write_back_error`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from edrtrial.connectors.base import AlertUpdate, Capability, Connector
from edrtrial.db import transaction
from edrtrial.errors import ConnectorError, TransientError
from edrtrial.models import Alert, Ticket
from edrtrial.states import WriteBackState

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
        work = [(a.id, a.source_id, _update_for(a, t)) for a, t in pending]
    written = failed = 0
    for index, (alert_id, source_id, update) in enumerate(work):
        try:
            connector.update_alert(source_id, update)
        except TransientError as err:
            log.warning("write-back deferred (%s): %s", source_id, err)
            return WriteBackResult(written, failed, deferred=len(work) - index)
        except ConnectorError as err:
            outcome, error = WriteBackState.FAILED, str(err)[:500]
            failed += 1
        else:
            outcome, error = WriteBackState.DONE, ""
            written += 1
        with transaction(sessions) as session:
            alert = session.get_one(Alert, alert_id)
            alert.write_back, alert.write_back_error = outcome, error
    return WriteBackResult(written, failed)
