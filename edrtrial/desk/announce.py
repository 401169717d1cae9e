"""Who hears about a ticket: the desk's channel and the company contact, each once.

Dedupe keys make every notice exist once however often triage or the desk job runs; the
desk hears again when a ticket's priority rises, the company once per ticket. What a
notice promises or reports is taken as it stands when the notice is written (`now`): the
company's trial, and so the desk it is promised, and the ticket's clock and actions.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from edrtrial.desk import sla
from edrtrial.desk.policy import DeskPolicy
from edrtrial.desk.queries import company_of, ticket_alerts
from edrtrial.devices.actions import actions_of
from edrtrial.models import OutboxMessage, Ticket
from edrtrial.notify.notices import (
    DeskFacts,
    company_alert_notice,
    desk_ticket_notice,
    desk_ticket_update_notice,
)
from edrtrial.notify.recipients import mail_company, send_to_channel
from edrtrial.programme.trials import coverage_of_tenant


def _queued(session: Session, key: str) -> bool:
    return (
        session.scalar(select(OutboxMessage.id).where(OutboxMessage.dedupe_key == key)) is not None
    )


def desk_facts(session: Session, ticket: Ticket, policy: DeskPolicy, now: datetime) -> DeskFacts:
    """The ticket's clock, its company's trial and its device actions, as they stand at `now`."""
    coverage = coverage_of_tenant(session, ticket.tenant_id, now)
    clock = sla.clock_for(ticket.priority, coverage.in_trial, policy.sla)
    return DeskFacts(coverage, clock, tuple(actions_of(session, ticket)))


def queue_notices(
    session: Session,
    ticket: Ticket,
    policy: DeskPolicy,
    *,
    to_desk: bool,
    to_company: bool,
    now: datetime,
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
    facts = desk_facts(session, ticket, policy, now)
    if to_desk:
        mail = desk_ticket_notice(company, ticket, alerts, facts)
        send_to_channel(
            session,
            policy.channel(ticket.channel),
            tenant.id,
            mail,
            dedupe_key=desk_key,
            kind="desk-notice",
        )
    if to_company:
        mail = company_alert_notice(company, ticket, alerts, policy.desk, facts.coverage)
        mail_company(
            session, company, tenant.id, mail, dedupe_key=company_key, kind="company-notice"
        )
    return int(to_desk) + int(to_company)


def queue_update(
    session: Session,
    ticket: Ticket,
    policy: DeskPolicy,
    *,
    event: str,
    detail: str,
    key: str,
    now: datetime,
) -> None:
    """Tell the ticket's desk channel about an event (reopened, isolation failed…), once."""
    if _queued(session, key):
        return
    _, company = company_of(session, ticket)
    facts = desk_facts(session, ticket, policy, now)
    mail = desk_ticket_update_notice(company, ticket, event, detail, facts)
    send_to_channel(
        session,
        policy.channel(ticket.channel),
        ticket.tenant_id,
        mail,
        dedupe_key=key,
        kind="desk-update",
    )
