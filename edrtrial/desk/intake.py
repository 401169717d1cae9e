"""The support desk's intake: which ticket an alert joins.

Correlation follows the playbook's decision: one ticket per Defender incident, otherwise
per device and MITRE technique within a window, or a ticket of its own. A group whose
ticket was resolved recently is reopened by a new alert; a closed (or long resolved) group
starts a new ticket whose key carries `#2`, `#3`…
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from edrtrial import audit
from edrtrial.desk.announce import queue_update
from edrtrial.desk.policy import DeskPolicy
from edrtrial.desk.states import OPEN_TICKET_STATES, TicketState, move, new_ticket, worse
from edrtrial.errors import TicketError
from edrtrial.models import Alert, Incident, Ticket
from edrtrial.programme.trials import in_trial


def base_key(alert: Alert, correlate: str) -> str:
    """What groups this alert with others, per the playbook's `correlate` decision."""
    if correlate == "alert":
        return f"alert:{alert.source_id}"
    if correlate == "incident" and alert.incident_source_id:
        return f"incident:{alert.incident_source_id}"
    device = alert.device_source_ids[0] if alert.device_source_ids else "-"
    techniques = sorted(t.strip().upper() for t in alert.mitre_techniques or [] if t.strip())
    what = techniques[0] if techniques else (alert.category or alert.title)[:60]
    return f"device:{device}:{what}"


@dataclass(slots=True)
class Attached:
    """Where triage put one alert."""

    ticket: Ticket
    created: bool = False
    reopened: bool = False


class TicketBook:
    """One triage batch's view of the desk: its tickets and incident titles, loaded once.

    Triage asks for a ticket per alert; answering from a few queries per batch (instead of
    several statements and flushes per alert) keeps a backlog's first poll fast.
    """

    def __init__(
        self,
        session: Session,
        tenant_id: int,
        alerts: Sequence[Alert],
        policy: DeskPolicy,
        now: datetime,
    ) -> None:
        self.session = session
        self.tenant_id = tenant_id
        self.policy = policy
        self.now = now
        self.in_trial = in_trial(session, tenant_id, now)
        bases = sorted(
            {base_key(a, mode) for a in alerts for mode in ("incident", "device-technique")}
        )
        self.latest: dict[str, Ticket] = {}
        self.counts: dict[str, int] = {}
        if bases:
            for ticket in session.scalars(
                select(Ticket)
                .where(Ticket.tenant_id == tenant_id, Ticket.correlation_base.in_(bases))
                .order_by(Ticket.id)
            ):
                self.latest[ticket.correlation_base] = ticket
                self.counts[ticket.correlation_base] = (
                    self.counts.get(ticket.correlation_base, 0) + 1
                )
        incident_ids = sorted({a.incident_source_id for a in alerts if a.incident_source_id})
        self.titles: dict[tuple[str, str], str] = (
            {
                (source, source_id): title
                for source, source_id, title in session.execute(
                    select(Incident.source, Incident.source_id, Incident.title).where(
                        Incident.tenant_id == tenant_id, Incident.source_id.in_(incident_ids)
                    )
                )
                if title
            }
            if incident_ids
            else {}
        )
        self.opened: list[tuple[Ticket, str]] = []
        self.reopened: list[Ticket] = []

    def _joinable(self, ticket: Ticket, key: str, at: datetime, window: timedelta) -> str:
        """ "attach", "reopen" or "new": what a new alert of this group does to its ticket."""
        if key.startswith("device:") and ticket.last_alert_at is not None:
            if at - ticket.last_alert_at > window:
                return "new"
        if ticket.state in OPEN_TICKET_STATES:
            return "attach"
        recent = timedelta(days=self.policy.desk.reopen_days)
        if (
            ticket.state == TicketState.RESOLVED
            and ticket.resolved_at
            and self.now - ticket.resolved_at <= recent
        ):
            return "reopen"
        return "new"

    def place(
        self,
        alert: Alert,
        priority: str,
        *,
        correlate: str = "incident",
        window_minutes: int = 60,
        channel: str = "",
    ) -> Attached:
        """Attach the alert to its group's ticket, reopening or opening one as needed."""
        at = alert.created_at or alert.ingested_at or self.now
        if alert.ticket_id is not None or alert.ticket is not None:
            # Re-triage of an alert already on a ticket: it stays there, and may raise it.
            held = alert.ticket or self.session.get_one(Ticket, alert.ticket_id)
            self._raise(held, priority)
            return Attached(held)
        key = base_key(alert, correlate)
        ticket = self.latest.get(key)
        verdict = (
            "new"
            if ticket is None
            else self._joinable(ticket, key, at, timedelta(minutes=window_minutes))
        )
        result: Attached
        if ticket is None or verdict == "new":
            ticket = self._open(alert, key, priority, at, channel)
            result = Attached(ticket, created=True)
        elif verdict == "reopen":
            if self._reopen(ticket, priority):
                result = Attached(ticket, reopened=True)
            elif ticket.state in OPEN_TICKET_STATES:  # an operator took it back meanwhile
                self._raise(ticket, priority)
                result = Attached(ticket)
            else:  # closed meanwhile: the group starts a new ticket
                ticket = self._open(alert, key, priority, at, channel)
                result = Attached(ticket, created=True)
        else:
            self._raise(ticket, priority)
            result = Attached(ticket)
        if ticket.last_alert_at is None or at > ticket.last_alert_at:
            ticket.last_alert_at = at
        alert.ticket = ticket
        return result

    def _open(self, alert: Alert, key: str, priority: str, at: datetime, channel: str) -> Ticket:
        number = self.counts.get(key, 0) + 1
        title = self.titles.get((alert.source, alert.incident_source_id or ""), alert.title)
        ticket = new_ticket(
            tenant_id=self.tenant_id,
            correlation_key=key if number == 1 else f"{key}#{number}",
            correlation_base=key,
            title=title,
            priority=priority,
            created_at=self.now,
            updated_at=self.now,
            last_alert_at=at,
            channel=self.policy.channel(channel).name,
            escalation_level=0,
            ack_due_at=self.policy.acknowledge_by(priority, self.now, self.in_trial),
        )
        self.session.add(ticket)
        self.latest[key] = ticket
        self.counts[key] = number
        self.opened.append((ticket, priority))
        return ticket

    def _reopen(self, ticket: Ticket, priority: str) -> bool:
        """Reopen a resolved ticket for a new alert; False if someone changed it meanwhile."""
        raised = priority if worse(priority, ticket.priority) else ticket.priority
        try:
            move(
                self.session,
                ticket,
                "auto-reopen",
                self.now,
                reopened=ticket.reopened + 1,
                acknowledged_at=None,
                resolved_at=None,
                escalation_level=0,
                priority=raised,
                ack_due_at=self.policy.acknowledge_by(raised, self.now, self.in_trial),
            )
        except TicketError:
            return False
        if ticket not in self.reopened:
            self.reopened.append(ticket)
        return True

    def _raise(self, ticket: Ticket, priority: str) -> None:
        if worse(priority, ticket.priority):
            ticket.priority = priority
            ticket.updated_at = self.now
            if (
                ticket.state == TicketState.NEW
            ):  # a worse alert shortens the deadline, never lengthens it
                due = self.policy.acknowledge_by(priority, ticket.created_at, self.in_trial)
                if ticket.ack_due_at is None or due < ticket.ack_due_at:
                    ticket.ack_due_at = due

    def close(self) -> None:
        """Flush once for the batch, then audit what it opened and reopened (ids now exist)."""
        self.session.flush()
        for ticket, priority in self.opened:
            audit.record(
                self.session,
                at=self.now,
                actor="playbook",
                action="ticket.opened",
                tenant_id=self.tenant_id,
                target=f"ticket:{ticket.id}",
                detail={
                    "priority": priority,
                    "correlation": ticket.correlation_key,
                    "channel": ticket.channel,
                },
            )
        for ticket in self.reopened:
            audit.record(
                self.session,
                at=self.now,
                actor="playbook",
                action="ticket.reopened",
                tenant_id=self.tenant_id,
                target=f"ticket:{ticket.id}",
                detail={"times": ticket.reopened, "reason": "a new alert joined"},
            )
            queue_update(
                self.session,
                ticket,
                self.policy,
                event="reopened",
                detail="解決済みのチケットに新しいアラートが加わったため、再オープンしました。",
                key=f"notice:desk:ticket:{ticket.id}:reopened:{ticket.reopened}",
                now=self.now,
            )
        self.opened.clear()
        self.reopened.clear()
