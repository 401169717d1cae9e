"""The support desk's intake: which ticket an alert joins, and who is told about it.

Correlation follows the playbook's decision: one ticket per Defender incident, otherwise
per device and MITRE technique within a window, or a ticket of its own. A group whose
ticket was resolved recently is reopened by a new alert; a closed (or long resolved) group
starts a new ticket whose key carries `#2`, `#3`…
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from edrtrial import audit
from edrtrial.config import ChannelConfig, DeskConfig, SlaConfig
from edrtrial.desk import sla
from edrtrial.desk.calendar import DEFAULT as DEFAULT_CALENDAR
from edrtrial.desk.calendar import BusinessCalendar
from edrtrial.models import Alert, Company, Incident, OutboxMessage, Tenant, Ticket, Trial
from edrtrial.notify import outbox
from edrtrial.notify.notices import (
    RenderedMail,
    company_alert_notice,
    desk_ticket_notice,
    desk_ticket_update_notice,
)
from edrtrial.timeutil import jst_date

PRIORITY_RANK = {"P1": 1, "P2": 2, "P3": 3, "P4": 4}
OPEN_STATES = ("new", "acknowledged", "in_progress")
ALL_STATES = (*OPEN_STATES, "resolved", "closed")


@dataclass(frozen=True, slots=True)
class DeskPolicy:
    """The desk's rules from the config: channels, deadlines and the business calendar."""

    desk: DeskConfig
    sla: SlaConfig = field(default_factory=SlaConfig)
    calendar: BusinessCalendar = DEFAULT_CALENDAR

    @property
    def channels(self) -> list[ChannelConfig]:
        """Channels in escalation order."""
        return self.desk.escalation_channels()

    def channel(self, name: str) -> ChannelConfig:
        """The named channel, or the first one when the name is unknown or empty."""
        channels = self.channels
        return next((c for c in channels if c.name == name), channels[0])

    def next_channel(self, name: str) -> ChannelConfig | None:
        """The channel after `name` in escalation order; None at the end of the list."""
        channels = self.channels
        names = [c.name for c in channels]
        index = names.index(name) if name in names else 0
        return channels[index + 1] if index + 1 < len(channels) else None

    def acknowledge_by(self, priority: str, opened_at: datetime, in_trial: bool) -> datetime:
        """The acknowledgement deadline of a ticket opened (or reopened) at `opened_at`."""
        return sla.acknowledge_by(
            priority, opened_at, in_trial=in_trial, sla=self.sla, calendar=self.calendar
        )


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


def in_trial(session: Session, tenant_id: int, at: datetime) -> bool:
    """Whether the tenant's company is inside its trial (the 24/7 incident desk covers it)."""
    trial = session.scalar(
        select(Trial)
        .join(Tenant, Tenant.company_id == Trial.company_id)
        .where(Tenant.id == tenant_id)
    )
    if trial is None:
        return False
    today: date = jst_date(at)
    return trial.starts_on <= today <= trial.ends_on


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
        if ticket.state in OPEN_STATES:
            return "attach"
        recent = timedelta(days=self.policy.desk.reopen_days)
        if (
            ticket.state == "resolved"
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
            self._reopen(ticket, priority)
            result = Attached(ticket, reopened=True)
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
        ticket = Ticket(
            tenant_id=self.tenant_id,
            correlation_key=key if number == 1 else f"{key}#{number}",
            correlation_base=key,
            title=title,
            priority=priority,
            state="new",
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

    def _reopen(self, ticket: Ticket, priority: str) -> None:
        ticket.state = "new"
        ticket.reopened += 1
        ticket.acknowledged_at = ticket.resolved_at = None
        ticket.escalation_level = 0
        if PRIORITY_RANK[priority] < PRIORITY_RANK[ticket.priority]:
            ticket.priority = priority
        ticket.ack_due_at = self.policy.acknowledge_by(ticket.priority, self.now, self.in_trial)
        ticket.updated_at = self.now
        if ticket not in self.reopened:
            self.reopened.append(ticket)

    def _raise(self, ticket: Ticket, priority: str) -> None:
        if PRIORITY_RANK[priority] < PRIORITY_RANK[ticket.priority]:
            ticket.priority = priority
            ticket.updated_at = self.now
            if ticket.state == "new":  # a worse alert shortens the deadline, never lengthens it
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
            )
        self.opened.clear()
        self.reopened.clear()


def _queued(session: Session, key: str) -> bool:
    return (
        session.scalar(select(OutboxMessage.id).where(OutboxMessage.dedupe_key == key)) is not None
    )


def ticket_alerts(session: Session, ticket: Ticket) -> list[Alert]:
    """The ticket's alerts, oldest first."""
    return list(
        session.scalars(
            select(Alert).where(Alert.ticket_id == ticket.id).order_by(Alert.created_at, Alert.id)
        )
    )


def company_of(session: Session, ticket: Ticket) -> tuple[Tenant, Company]:
    """The ticket's tenant and company."""
    tenant = session.get_one(Tenant, ticket.tenant_id)
    return tenant, session.get_one(Company, tenant.company_id)


def send_to_channel(
    session: Session,
    channel: ChannelConfig,
    *,
    dedupe_key: str,
    kind: str,
    subject: str,
    text: str,
    html: str | None,
    tenant_id: int,
) -> None:
    """Queue a desk message on one channel: a mail to its address, or a post to its hook."""
    outbox.enqueue(
        session,
        dedupe_key=dedupe_key,
        kind=kind,
        channel="mail" if channel.kind == "mail" else channel.kind,
        recipient=str(channel.to) if channel.kind == "mail" else channel.name,
        subject=subject,
        body_text=text,
        body_html=html,
        tenant_id=tenant_id,
    )


def mail_company(
    session: Session,
    company: Company,
    tenant_id: int,
    mail: RenderedMail,
    *,
    dedupe_key: str,
    kind: str,
) -> None:
    """Queue a mail to the company contact (once per dedupe key)."""
    outbox.enqueue(
        session,
        dedupe_key=dedupe_key,
        kind=kind,
        recipient=company.contact_email,
        subject=mail.subject,
        body_text=mail.text,
        body_html=mail.html,
        tenant_id=tenant_id,
    )


def queue_notices(
    session: Session, ticket: Ticket, policy: DeskPolicy, *, to_desk: bool, to_company: bool
) -> int:
    """Queue the desk's and the company's notices for a ticket, never twice; returns how many."""
    # The desk hears again when a ticket's priority rises; the company hears once per ticket.
    desk_key = f"notice:desk:ticket:{ticket.id}:{ticket.priority}"
    company_key = f"notice:company:ticket:{ticket.id}"
    to_desk = to_desk and not _queued(session, desk_key)
    to_company = to_company and not _queued(session, company_key)
    if not (to_desk or to_company):
        return 0
    tenant, company = company_of(session, ticket)
    alerts = ticket_alerts(session, ticket)
    if to_desk:
        mail = desk_ticket_notice(company, ticket, alerts)
        send_to_channel(
            session,
            policy.channel(ticket.channel),
            dedupe_key=desk_key,
            kind="desk-notice",
            subject=mail.subject,
            text=mail.text,
            html=mail.html,
            tenant_id=tenant.id,
        )
    if to_company:
        mail = company_alert_notice(company, ticket, alerts, policy.desk)
        mail_company(
            session, company, tenant.id, mail, dedupe_key=company_key, kind="company-notice"
        )
    return int(to_desk) + int(to_company)


def queue_update(
    session: Session, ticket: Ticket, policy: DeskPolicy, *, event: str, detail: str, key: str
) -> None:
    """Tell the ticket's desk channel about an event (reopened, isolation failed…), once."""
    if _queued(session, key):
        return
    _, company = company_of(session, ticket)
    mail = desk_ticket_update_notice(company, ticket, event, detail)
    send_to_channel(
        session,
        policy.channel(ticket.channel),
        dedupe_key=key,
        kind="desk-update",
        subject=mail.subject,
        text=mail.text,
        html=mail.html,
        tenant_id=ticket.tenant_id,
    )


@dataclass(frozen=True, slots=True)
class QueueRow:
    """A ticket as the operators' queue shows it."""

    ticket: Ticket
    company_key: str
    company_name: str
    alert_count: int
    devices: tuple[str, ...]


def ticket_queue(
    session: Session, *, company_key: str | None = None, states: Sequence[str] = OPEN_STATES
) -> list[QueueRow]:
    """One queue across all tenants: highest priority first, then oldest first."""
    query = (
        select(Ticket, Company.key, Company.name)
        .join(Tenant, Ticket.tenant_id == Tenant.id)
        .join(Company, Tenant.company_id == Company.id)
        .where(Ticket.state.in_(list(states)))
        .order_by(Ticket.priority, Ticket.created_at, Ticket.id)
    )
    if company_key:
        query = query.where(Company.key == company_key)
    found = session.execute(query).all()
    ids = [ticket.id for ticket, _, _ in found]
    counts: dict[int, int] = {}
    devices: dict[int, set[str]] = {}
    if ids:
        counted = session.execute(
            select(Alert.ticket_id, func.count())
            .where(Alert.ticket_id.in_(ids))
            .group_by(Alert.ticket_id)
        )
        counts = {ticket_id: int(n) for ticket_id, n in counted if ticket_id is not None}
        for ticket_id, names in session.execute(
            select(Alert.ticket_id, Alert.device_names).where(Alert.ticket_id.in_(ids))
        ):
            if ticket_id is not None:
                devices.setdefault(ticket_id, set()).update(n for n in names or [] if n)
    return [
        QueueRow(
            ticket, key, name, counts.get(ticket.id, 0), tuple(sorted(devices.get(ticket.id, ())))
        )
        for ticket, key, name in found
    ]
