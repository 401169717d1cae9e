"""A tenant's first poll: its backlog becomes history or tickets, and is announced once.

A company that joins mid-trial brings everything since its trial start: weeks of alerts,
many of them long resolved in Defender. Until its first complete poll (ingest and triage
of all it brought) has committed (`ingest.health.on_first_poll`), triage keeps what
Defender already resolved as history (counted in the reports; no ticket, no notice, no
isolation, nothing written back) and triages the rest as usual, deadlines and isolation
included, but tells nobody ticket by ticket. Each triage batch records in the audit log,
in its own commit, which of its tickets the company would have been told of.

When the poll completes, `finish_first_poll` marks the tenant done and, in that same commit, queues
one summary mail to the company and one notice to the desk, built from the store and those
records: a crash between batches loses nothing from them, a crash before the end keeps the
tenant on its first poll, and their dedupe keys make a repeat send nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from edrtrial import audit
from edrtrial.config import ChannelConfig
from edrtrial.connectors.base import ActionKind
from edrtrial.coverage import coverage_at
from edrtrial.desk import sla
from edrtrial.desk.policy import DeskPolicy
from edrtrial.ingest.health import complete_first_poll
from edrtrial.models import Alert, AuditEvent, Company, Device, ResponseAction, Tenant, Ticket
from edrtrial.notify.first_poll import (
    Backlog,
    BacklogTicket,
    company_first_poll_summary,
    desk_first_poll_notice,
)
from edrtrial.notify.recipients import mail_company, send_to_channel
from edrtrial.programme import trials
from edrtrial.states import ActionState, TicketState

BATCH_ACTION = "first_poll.triaged"


def resolved_in_edr(alert: Alert) -> bool:
    """Whether the EDR already shows the alert resolved (an analyst or the EDR closed it)."""
    return (alert.status or "").casefold() == "resolved"


def record_batch(
    session: Session,
    tenant_id: int,
    now: datetime,
    *,
    alerts: int,
    history: int,
    suppressed: int,
    for_company: Iterable[int],
) -> None:
    """Note what one first-poll triage batch did, in its commit, for the summaries to read."""
    audit.record(
        session,
        at=now,
        actor="playbook",
        action=BATCH_ACTION,
        tenant_id=tenant_id,
        target=f"tenant:{tenant_id}",
        detail={
            "alerts": alerts,
            "history": history,
            "suppressed": suppressed,
            "company_tickets": sorted(set(for_company)),
        },
    )


def _backlog(session: Session, tenant_id: int, policy: DeskPolicy, now: datetime) -> Backlog | None:
    """The first poll's facts from the store; None when it brought nothing."""
    batches = list(
        session.scalars(
            select(AuditEvent).where(
                AuditEvent.tenant_id == tenant_id, AuditEvent.action == BATCH_ACTION
            )
        )
    )
    if not batches:
        return None
    tickets = list(
        session.scalars(select(Ticket).where(Ticket.tenant_id == tenant_id).order_by(Ticket.id))
    )
    alerts: dict[int, list[Alert]] = {t.id: [] for t in tickets}
    for alert in session.scalars(
        select(Alert)
        .where(Alert.tenant_id == tenant_id, Alert.ticket_id.is_not(None))
        .order_by(Alert.created_at, Alert.id)
    ):
        if alert.ticket_id in alerts:
            alerts[alert.ticket_id].append(alert)
    trial = trials.trial_of_tenant(session, tenant_id)
    isolations = _isolations(session, tenant_id)
    read = session.scalar(select(func.count(Alert.id)).where(Alert.tenant_id == tenant_id))
    history, suppressed = _settled(session, tenant_id)
    coverage = coverage_at(trial, now)
    return Backlog(
        alerts=read or 0,
        history=history,
        suppressed=suppressed,
        tickets=tuple(
            BacklogTicket(
                t,
                tuple(alerts.get(t.id, ())),
                tuple(shown for shown, _ in isolations.get(t.id, ())),
                sla.clock_for(t.priority, coverage.in_trial, policy.sla),
                sum(1 for _, status in isolations.get(t.id, ()) if status == ActionState.PROPOSED),
            )
            for t in tickets
        ),
        for_company=frozenset(int(i) for b in batches for i in b.detail.get("company_tickets", [])),
        trial=trial,
        since=trials.first_poll_since(session, tenant_id),
        coverage=coverage,
    )


def _settled(session: Session, tenant_id: int) -> tuple[int, int]:
    """(kept as history, suppressed) among the tenant's alerts, as the store holds them now.

    Counted from the alerts, not added up from the batches: an alert triaged twice (amended
    by Defender before a crashed first poll was resumed) counts once, and one Defender
    reopened meanwhile is no longer history.
    """
    resolved = func.lower(func.coalesce(Alert.status, "")) == "resolved"
    untold = (
        Alert.tenant_id == tenant_id,
        Alert.ticket_id.is_(None),
        Alert.triaged_at.is_not(None),
    )
    history = session.scalar(select(func.count(Alert.id)).where(*untold, resolved))
    suppressed = session.scalar(
        select(func.count(Alert.id)).where(
            *untold, ~resolved, func.coalesce(Alert.suppressed_reason, "") != ""
        )
    )
    return history or 0, suppressed or 0


def _isolations(session: Session, tenant_id: int) -> dict[int, list[tuple[str, str]]]:
    """Each ticket's isolations (proposed by the playbook, or planned where agreed): as the
    desk reads them, and their state."""
    found: dict[int, list[tuple[str, str]]] = {}
    rows = session.execute(
        select(ResponseAction.ticket_id, ResponseAction.status, Device.name, Device.source_id)
        .join(Device, ResponseAction.device_id == Device.id)
        .where(
            ResponseAction.tenant_id == tenant_id,
            ResponseAction.kind == ActionKind.ISOLATE.value,
            ResponseAction.ticket_id.is_not(None),
            ResponseAction.status != ActionState.SUPERSEDED,
        )
        .order_by(ResponseAction.id)
    )
    for ticket_id, status, name, source_id in rows:
        if ticket_id is not None:  # the query's filter: for the type checker
            found.setdefault(ticket_id, []).append((f"{name or source_id}（{status}）", status))
    return found


def finish_first_poll(session: Session, tenant_id: int, policy: DeskPolicy, now: datetime) -> int:
    """Mark the tenant's first poll complete and announce its backlog once; returns the
    notices queued. Does not commit: the caller's commit makes both happen, or neither."""
    if not complete_first_poll(session, tenant_id, now):
        return 0  # a repeat: the first run announced it
    backlog = _backlog(session, tenant_id, policy, now)
    if backlog is None:
        return 0
    tenant = session.get_one(Tenant, tenant_id)
    company = session.get_one(Company, tenant.company_id)
    notice = desk_first_poll_notice(company, backlog)
    first = policy.channel("")
    channels = _channels(policy, backlog)
    for channel in channels:
        send_to_channel(
            session,
            channel,
            tenant_id,
            notice,
            dedupe_key=f"notice:desk:first-poll:tenant:{tenant_id}"
            + ("" if channel.name == first.name else f":channel:{channel.name}"),
            kind="desk-first-poll",
        )
    mail = company_first_poll_summary(company, backlog, policy.desk)
    if mail is None:
        return len(channels)
    mail_company(
        session,
        company,
        tenant_id,
        mail,
        dedupe_key=f"notice:company:first-poll:tenant:{tenant_id}",
        kind="company-first-poll",
    )
    return len(channels) + 1


def _channels(policy: DeskPolicy, backlog: Backlog) -> list[ChannelConfig]:
    """The desk's first channel, and each channel a playbook named for an open ticket of the
    backlog (a P1 sent to the duty pager): told the summary as a ticket's notice would be."""
    found = {policy.channel("").name: policy.channel("")}
    for entry in backlog.tickets:
        if entry.ticket.channel and TicketState(entry.ticket.state).open:
            channel = policy.channel(entry.ticket.channel)
            found.setdefault(channel.name, channel)
    return list(found.values())
