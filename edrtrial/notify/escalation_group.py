"""The words of a grouped escalation: one notice for many tickets that missed their deadline.

A company that joins mid-trial can bring dozens of P1 tickets at once, and nobody
acknowledges them all in thirty minutes. Each ticket still escalates on its own (level,
channel, next deadline, audit record: `desk.escalation`), but the next channel reads one
notice for the company instead of one per ticket: who, which level, how many of each
priority, the deadlines missed and the next one, the tickets most urgent first (a bounded
list, short enough for a Teams card or a phone) and what to run. `desk.escalation` decides
when tickets are grouped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from edrtrial.errors import TenantMismatchError
from edrtrial.models import Alert, Company, Ticket
from edrtrial.notify.notices import CLOCK_JA, DeskFacts, ticket_facts, trial_ja
from edrtrial.reports.render import RenderedMail, render
from edrtrial.reports.vocabulary import jst_minute
from edrtrial.states import Priority
from edrtrial.tenancy import check_company, same_tenant
from edrtrial.untrusted import one_line

MAX_GROUP_TICKETS = 30  # the queue holds them all: `edrtrial tickets --company KEY --state new`
MAX_GROUP_TITLE = 60  # characters of a title on its ticket's line: 30 lines fit a Teams card
MAX_GROUP_DEVICES = 3  # device names on a ticket's line; the ticket shows them all


@dataclass(frozen=True, slots=True)
class EscalatedTicket:
    """A ticket already escalated by this desk pass, with what the desk reads beside it.

    `ticket.ack_due_at` is already its next deadline (none after the last level);
    `missed` is the deadline it missed.
    """

    ticket: Ticket
    missed: datetime
    alerts: tuple[Alert, ...]
    facts: DeskFacts


def _rank(priority: str) -> int:
    try:
        return Priority(priority).rank
    except ValueError:
        return len(Priority) + 1


def most_urgent_first(entries: Sequence[EscalatedTicket]) -> list[EscalatedTicket]:
    """P1 before P2…, then the deadline missed first, then the oldest ticket."""
    return sorted(entries, key=lambda e: (_rank(e.ticket.priority), e.missed, e.ticket.id))


def _short(text: str, limit: int) -> str:
    flat = one_line(" ".join(text.split()))
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _devices(alerts: Sequence[Alert]) -> str:
    names = list(dict.fromkeys(n for a in alerts for n in a.device_names or [] if n))
    if not names:
        return "なし"
    shown = "、".join(_short(n, 40) for n in names[:MAX_GROUP_DEVICES])
    return shown + (
        f" ほか{len(names) - MAX_GROUP_DEVICES}台" if len(names) > MAX_GROUP_DEVICES else ""
    )


def _item(entry: EscalatedTicket) -> dict[str, Any]:
    ticket = entry.ticket
    same_tenant(ticket, entry.alerts)
    facts = ticket_facts(ticket, entry.facts)  # checks each action is the ticket's own
    return {
        "id": ticket.id,
        "priority": ticket.priority,
        "state": ticket.state,
        "title": _short(ticket.title, MAX_GROUP_TITLE),
        "missed": jst_minute(entry.missed),
        "next": jst_minute(ticket.ack_due_at) if ticket.ack_due_at else "",
        "devices": _devices(entry.alerts),
        "actions": facts["actions"],
        "proposed": sum(1 for a in facts["actions"] if a["proposed"]),
    }


def desk_escalation_group_notice(
    company: Company, entries: Sequence[EscalatedTicket], level: int, channel_name: str
) -> RenderedMail:
    """The next channel's one alarm for many unacknowledged tickets of one company."""
    if level < 1:
        raise ValueError(f"escalation level must be 1 or more, not {level}")
    if not entries:
        raise ValueError(f"a grouped escalation of {company.key} needs tickets")
    tenants = sorted({e.ticket.tenant_id for e in entries})
    if len(tenants) > 1:  # one company's notice: whatever else is loaded, never two tenants
        raise TenantMismatchError(
            f"a grouped escalation of {company.key} mixes tenants {', '.join(map(str, tenants))}"
        )
    for entry in entries:
        check_company(company, entry.ticket)
    ordered = most_urgent_first(entries)
    items = [_item(e) for e in ordered]  # every one checked, the first ones listed
    counts = Counter(e.ticket.priority for e in entries)
    by_priority = sorted(counts.items(), key=lambda pc: _rank(pc[0]))
    missed = sorted(e.missed for e in entries)
    upcoming = sorted(e.ticket.ack_due_at for e in entries if e.ticket.ack_due_at is not None)
    context = {
        "company_name": company.name,
        "company_key": company.key,
        "contact": f"{company.contact_name} <{company.contact_email}>".strip(),
        "level": level,
        "channel_name": channel_name,
        "count": len(entries),
        "by_priority": by_priority,
        "missed_first": jst_minute(missed[0]),
        "missed_last": jst_minute(missed[-1]),
        "next_first": jst_minute(upcoming[0]) if upcoming else "",
        "clocks": "／".join(dict.fromkeys(CLOCK_JA[e.facts.clock] for e in ordered)),
        "trial": trial_ja(ordered[0].facts.coverage),
        "tickets": items[:MAX_GROUP_TICKETS],
        "more": max(len(items) - MAX_GROUP_TICKETS, 0),
        "proposed": sum(1 for item in items if item["proposed"]),
    }
    top = ordered[0].ticket.priority
    first = by_priority[0]
    subject = (
        f"[{top}] 未確認・エスカレーション レベル{level} {company.name}："
        f"チケット{len(entries)}件（{first[0]} {first[1]}件）"
    )
    return RenderedMail(subject, render("desk_escalation_group_notice.txt.j2", t=context))
