"""The words of a first poll's two summaries: one mail to the company, one notice to the desk.

A company that joins mid-trial brings weeks of alerts at once. Instead of a notice per
ticket, the company reads one calm mail (its language, the programme's wording): how many
detections were checked, which tickets it should know of (open P1s first, a bounded list)
and what it should do; the desk reads one notice beside the tickets: counts by priority,
every ticket opened (a bounded list, most urgent first) and the alerts kept as history.
`desk.first_poll` decides when they are sent and reads the facts from the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from edrtrial.config import DeskConfig
from edrtrial.coverage import Clock, Coverage
from edrtrial.models import Alert, Company, Ticket, Trial
from edrtrial.notify.notices import CLOCK_JA, trial_ja
from edrtrial.reports.contacts import DeskContacts, desk_contacts
from edrtrial.reports.render import SUBJECT_PREFIX, SUBJECT_PREFIX_EN, RenderedMail, render
from edrtrial.reports.vocabulary import (
    SEVERITY_EN,
    SEVERITY_JA,
    SEVERITY_ORDER,
    ja_date,
    jst_minute,
    plain_title,
    severity_key,
    ticket_state_en,
    ticket_state_ja,
)
from edrtrial.states import Priority, TicketState
from edrtrial.tenancy import check_company, same_tenant
from edrtrial.timeutil import jst_date

MAX_COMPANY_TICKETS = 10  # a contact reads the first screen; the rest is a count
MAX_DESK_TICKETS = 30  # the queue holds them all: `edrtrial tickets --company KEY`


@dataclass(frozen=True, slots=True)
class BacklogTicket:
    """A ticket the first poll opened, with its alerts (oldest first) and its isolations."""

    ticket: Ticket
    alerts: tuple[Alert, ...]
    isolations: tuple[str, ...] = ()  # "pc-004（proposed）": the desk sees what awaits it
    clock: Clock = Clock.BUSINESS  # what its acknowledgement deadline counts
    proposed: int = 0  # of its isolations, how many await an operator's approval


@dataclass(frozen=True, slots=True)
class Backlog:
    """What a tenant's first poll brought, as the store holds it once the poll completed."""

    alerts: int  # everything read since the trial start
    history: int  # already resolved in the EDR: kept for the reports, no ticket
    suppressed: int  # tests and the like: no ticket by the playbook's choice
    tickets: tuple[BacklogTicket, ...]
    for_company: frozenset[int]  # the tickets the playbook would have told the company of
    trial: Trial | None
    since: datetime | None  # where the first poll started reading
    coverage: Coverage  # the trial's stage now, and so the desk the company is promised


def most_urgent_first(backlog: Backlog) -> list[BacklogTicket]:
    """Open tickets before handled ones, then P1 before P2…, then the oldest first."""

    def key(entry: BacklogTicket) -> tuple[bool, int, datetime | None, int]:
        ticket = entry.ticket
        opened = entry.alerts[0].created_at if entry.alerts else None
        return (
            not TicketState(ticket.state).open,
            _rank(ticket.priority),
            opened or ticket.created_at,
            ticket.id,
        )

    return sorted(backlog.tickets, key=key)


def _rank(priority: str) -> int:
    try:
        return Priority(priority).rank
    except ValueError:
        return len(Priority) + 1


def _worst(alerts: Sequence[Alert]) -> str:
    keys = [severity_key(a.severity) for a in alerts] or ["informational"]
    return min(keys, key=SEVERITY_ORDER.index)


def _devices(alerts: Sequence[Alert], language: str) -> str:
    names = list(dict.fromkeys(n for a in alerts for n in a.device_names or [] if n))
    if names:
        return ("、" if language == "ja" else ", ").join(names)
    return "（端末名なし）" if language == "ja" else "(no device named)"


def _checked(company: Company, backlog: Backlog) -> None:
    """Refuse a ticket or alert of another tenant before a word is written."""
    for entry in backlog.tickets:
        check_company(company, entry.ticket)
        same_tenant(entry.ticket, entry.alerts)


@dataclass(frozen=True, slots=True)
class _CompanyItem:
    ticket_id: int
    state: str
    at: str
    device: str
    what: str
    severity: str


@dataclass(frozen=True, slots=True)
class _CompanySummary:
    company_name: str
    contact_name: str
    since: str
    alerts: int
    open_tickets: int
    urgent: int
    history: int
    others: int
    items: tuple[_CompanyItem, ...]
    more: int
    desk: DeskContacts


def _since(backlog: Backlog, language: str) -> str:
    """The day the first poll read from: the trial's start (else the first poll's bound)."""
    start: date | None = backlog.trial.starts_on if backlog.trial is not None else None
    if start is None and backlog.since is not None:
        start = jst_date(backlog.since)
    if start is None:
        return ""
    return ja_date(start) if language == "ja" else start.strftime("%d %B %Y")


def _opened_at(entry: BacklogTicket) -> str:
    first = entry.alerts[0].created_at if entry.alerts else None
    return jst_minute(first or entry.ticket.created_at)


def company_first_poll_summary(
    company: Company, backlog: Backlog, desk: DeskConfig
) -> RenderedMail | None:
    """The company's one mail about its backlog, or None when nothing in it is theirs to hear."""
    _checked(company, backlog)
    language = "en" if company.language == "en" else "ja"
    told = [e for e in most_urgent_first(backlog) if e.ticket.id in backlog.for_company]
    if not told:
        return None
    labels = SEVERITY_EN if language == "en" else SEVERITY_JA
    state = ticket_state_en if language == "en" else ticket_state_ja
    items = tuple(
        _CompanyItem(
            ticket_id=e.ticket.id,
            state=state(e.ticket.state),
            at=_opened_at(e),
            device=_devices(e.alerts, language),
            what=plain_title(e.alerts[0], language) if e.alerts else "",
            severity=labels[_worst(e.alerts)],
        )
        for e in told[:MAX_COMPANY_TICKETS]
    )
    open_tickets = [e for e in backlog.tickets if TicketState(e.ticket.state).open]
    on_tickets = sum(len(e.alerts) for e in backlog.tickets)
    summary = _CompanySummary(
        company_name=company.name,
        contact_name=company.contact_name,
        since=_since(backlog, language),
        alerts=backlog.alerts,
        open_tickets=len(open_tickets),
        urgent=sum(1 for e in open_tickets if e.ticket.priority == Priority.P1),
        history=backlog.history,
        others=max(backlog.alerts - backlog.history - on_tickets, 0),
        items=items,
        more=max(len(told) - MAX_COMPANY_TICKETS, 0),
        desk=desk_contacts(desk, backlog.coverage, language),
    )
    if language == "en":
        subject = (
            f"{SUBJECT_PREFIX_EN} Detections since your trial started "
            f"({len(told)} case{'s' if len(told) != 1 else ''} to know about)"
        )
    else:
        subject = (
            f"{SUBJECT_PREFIX}体験開始以降の検知のまとめ（ご確認いただきたい案件 {len(told)}件）"
        )
    return RenderedMail(subject, render(f"first_poll_summary.{language}.txt.j2", n=summary))


def desk_first_poll_notice(company: Company, backlog: Backlog) -> RenderedMail:
    """The desk's one notice about a tenant's first poll, beside the tickets it opened."""
    _checked(company, backlog)
    ordered = most_urgent_first(backlog)
    counts = {p.value: 0 for p in Priority}
    for entry in backlog.tickets:
        counts[entry.ticket.priority] = counts.get(entry.ticket.priority, 0) + 1
    context = {
        "company_name": company.name,
        "company_key": company.key,
        "contact": f"{company.contact_name} <{company.contact_email}>".strip(),
        "language": company.language,
        "trial": trial_ja(backlog.coverage),
        "since": jst_minute(backlog.since) if backlog.since else "",
        "alerts": backlog.alerts,
        "history": backlog.history,
        "suppressed": backlog.suppressed,
        "ticket_count": len(backlog.tickets),
        "by_priority": list(counts.items()),
        "company_told": bool(backlog.for_company),
        "tickets": [_desk_item(e) for e in ordered[:MAX_DESK_TICKETS]],
        "more": max(len(ordered) - MAX_DESK_TICKETS, 0),
    }
    top = f"[{ordered[0].ticket.priority}] " if ordered else ""
    subject = (
        f"{top}初回取り込み {company.name}：チケット{len(backlog.tickets)}件"
        f"（P1 {counts['P1']}件）・履歴{backlog.history}件"
    )
    return RenderedMail(subject, render("desk_first_poll_notice.txt.j2", t=context))


def _desk_item(entry: BacklogTicket) -> dict[str, object]:
    ticket = entry.ticket
    return {
        "id": ticket.id,
        "priority": ticket.priority,
        "state": ticket.state,
        "title": " ".join(ticket.title.split()),
        "created_at": jst_minute(ticket.created_at),
        "ack_due_at": jst_minute(ticket.ack_due_at) if ticket.ack_due_at else "",
        "clock": CLOCK_JA[entry.clock],
        "alerts": len(entry.alerts),
        "severity": SEVERITY_JA[_worst(entry.alerts)],
        "devices": _devices(entry.alerts, "ja"),
        "isolations": "、".join(entry.isolations),
        "proposed": entry.proposed,
    }
