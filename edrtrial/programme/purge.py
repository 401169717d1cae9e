"""The purge of a company's details after retention: what stays is figures, never names.

`retention_days` after a company was offboarded (or refused, found not eligible, or
withdrew before its trial), its details go. First its months are summed up under a random
anonymous code (`CompanyAggregate`: detections by category and severity, incidents, the
minutes to acknowledge and resolve them, devices onboarded and active, the decision, the
pre-diagnosis answers), for the cohort's results report; then the detailed rows are deleted
or emptied: alerts and incidents (payloads, evidence), quarantined payloads, device names
and payloads, tickets' titles, notes and summaries, mails' bodies, subjects and recipients,
the company's name, contacts, representative, address and 法人番号, the applications' raw
input, call notes and digests, the words of its eligibility and pre-diagnosis reasons (their
codes stay), the tenant's id; and where another company's record names it
(the place it freed), that mention. The audit log stays (ids, actions, who and when),
its free text emptied: only short, known fields that name nothing are kept.

The company keeps its row (its journey ends `purged`) under its anonymous code, as does
its tenant, so every id the audit log names still resolves, to nothing personal.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import String, Text, cast, delete, or_, select, update
from sqlalchemy.orm import Session

from edrtrial.config import ProgrammeConfig
from edrtrial.models import (
    Alert,
    Application,
    AuditEvent,
    Company,
    CompanyAggregate,
    DeskAlarm,
    Device,
    Incident,
    JobRun,
    OutboxMessage,
    PollCursor,
    PreDiagnosis,
    QuarantinedRecord,
    ReportArchive,
    ResponseAction,
    Tenant,
    Ticket,
    TicketNote,
)
from edrtrial.programme.companies import tenant_of_company
from edrtrial.programme.journey import advance
from edrtrial.programme.trials import trial_of_company
from edrtrial.reports.vocabulary import is_detection_test
from edrtrial.states import JourneyState as J
from edrtrial.timeutil import to_jst

#: Journey states whose details are purged once they are `retention_days` old.
PURGEABLE = (J.OFFBOARDED, J.REFUSED, J.NOT_ELIGIBLE, J.WITHDRAWN)

#: Audit detail keys that hold only states, dates, counts and codes: kept after a purge.
_KEPT_DETAIL = frozenset(
    {
        "from",
        "to",
        "when",
        "state",
        "status",
        "was",
        "priority",
        "level",
        "decision",
        "journey",
        "starts_on",
        "ends_on",
        "step",
        "kind",
        "outcome",
        "result",
        "count",
        "reminder",
    }
)


def anon_code(session: Session) -> str:
    """A fresh anonymous code no company holds (random: it reveals no order or name)."""
    while True:
        code = f"A-{secrets.token_hex(4).upper()}"
        taken = session.scalar(select(Company.id).where(Company.anon_code == code))
        if taken is None:
            return code


def _month(value: datetime | date) -> date:
    day = to_jst(value).date() if isinstance(value, datetime) else value
    return day.replace(day=1)


def _minutes(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds() / 60, 1)


@dataclass(slots=True)
class _Month:
    detections: dict[str, dict[str, int]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(int))
    )
    incidents: int = 0
    ack: list[float] = field(default_factory=list)
    resolve: list[float] = field(default_factory=list)


def _months_between(first: date, last: date) -> list[date]:
    months, current = [], first.replace(day=1)
    while current <= last:
        months.append(current)
        current = date(current.year + current.month // 12, current.month % 12 + 1, 1)
    return months


def _industry_row(programme: ProgrammeConfig, industry: str) -> str:
    for row in programme.eligibility.industries:
        if industry in row.names:
            return row.key
    return ""


def _pre_diagnosis(row: PreDiagnosis | None) -> dict[str, Any]:
    if row is None:
        return {}
    return {
        "free_hub_ports": row.free_hub_ports,
        "existing_utm": row.existing_utm,
        "existing_edr": row.existing_edr,
        "existing_antivirus": bool(row.existing_antivirus.strip()),
        "edr_users": row.edr_users,
        "utm_devices": row.utm_devices,
        "security_policy": row.security_policy,
        "outcome": row.outcome,
    }


def aggregates(
    session: Session, programme: ProgrammeConfig, company: Company, code: str
) -> list[CompanyAggregate]:
    """The company's monthly figures under `code`: one row per month of its trial (and any
    other month with a detection or a ticket), nothing that names it."""
    tenant = tenant_of_company(session, company.id)
    trial = trial_of_company(session, company.id)
    months: dict[date, _Month] = defaultdict(_Month)
    if trial is not None:
        for month in _months_between(trial.starts_on, trial.ends_on):
            months[month] = _Month()
    devices: list[Device] = []
    if tenant is not None:
        for alert in session.scalars(select(Alert).where(Alert.tenant_id == tenant.id)):
            if is_detection_test(alert):
                continue  # the installation test is no detection: the results count attacks
            at = alert.created_at or alert.ingested_at
            by = months[_month(at)].detections[alert.category or "other"]
            by[(alert.severity or "unknown").lower()] += 1
        for ticket in session.scalars(select(Ticket).where(Ticket.tenant_id == tenant.id)):
            of_month = months[_month(ticket.created_at)]
            of_month.incidents += 1
            if (ack := _minutes(ticket.created_at, ticket.acknowledged_at)) is not None:
                of_month.ack.append(ack)
            if (done := _minutes(ticket.created_at, ticket.resolved_at)) is not None:
                of_month.resolve.append(done)
        devices = list(session.scalars(select(Device).where(Device.tenant_id == tenant.id)))
    pre = _pre_diagnosis(
        session.scalar(select(PreDiagnosis).where(PreDiagnosis.company_id == company.id))
    )
    rows = []
    for month, figures in sorted(months.items()):
        rows.append(
            CompanyAggregate(
                anon_code=code,
                cohort_id=company.cohort_id,
                month=month,
                industry_row=_industry_row(programme, company.industry),
                detections={c: dict(s) for c, s in figures.detections.items()},
                incidents=figures.incidents,
                ack_minutes=sorted(figures.ack),
                resolve_minutes=sorted(figures.resolve),
                devices_onboarded=sum(
                    1 for d in devices if d.first_seen and _month(d.first_seen) <= month
                ),
                devices_active=sum(
                    1
                    for d in devices
                    if d.first_seen
                    and _month(d.first_seen) <= month
                    and d.last_seen
                    and _month(d.last_seen) >= month
                ),
                decision=trial.decision if trial is not None else company.state,
                pre_diagnosis=pre,
            )
        )
    return rows


#: A value kept in a purged audit detail: a state, a decision or a kind (lower-case words),
#: or a date and time; anything else (a tenant id, a domain, a number, a sentence) goes.
_PLAIN_TEXT = re.compile(r"[a-z][a-z_ -]{0,31}|\d{4}-\d{2}-\d{2}([T ][0-9:.+-]{5,32}Z?)?")


def _plain(value: Any) -> bool:
    """Whether a detail's value is a number, a state-like word or a date, or made of them."""
    if value is None or isinstance(value, bool | int | float):
        return True
    if isinstance(value, str):
        return _PLAIN_TEXT.fullmatch(value) is not None
    if isinstance(value, list):
        return all(_plain(item) for item in value)
    if isinstance(value, dict):
        return all(_plain(k) and _plain(v) for k, v in value.items())
    return False


def _scrubbed(detail: dict[str, Any], secrets_: Iterable[str]) -> dict[str, Any]:
    """An audit detail with its free text gone: known short fields holding plain values
    (states, dates, counts), none of which names the company."""
    words = [s.casefold() for s in secrets_ if s and len(s) >= 3]
    kept = {}
    for key, value in detail.items():
        if key not in _KEPT_DETAIL or not _plain(value):
            continue
        text = json.dumps(value, ensure_ascii=False).casefold()
        if any(word in text for word in words):
            continue
        kept[key] = value
    return kept | {"purged": True}


def _names(session: Session, company: Company, tenant: Tenant | None) -> list[str]:
    """Every string that names the company, its people, its tenant or its devices."""
    names = [
        company.key,
        company.name,
        company.contact_name,
        company.contact_email,
        company.representative,
        company.address,
        company.contact_phone,
        company.corporate_number or "",
    ]
    if tenant is not None:
        names.append(tenant.external_id)
        names += session.scalars(select(Device.name).where(Device.tenant_id == tenant.id))
    return [n for n in names if n]


def _scrub_tenant(session: Session, tenant: Tenant, code: str) -> None:
    tid = tenant.id
    ticket_ids = select(Ticket.id).where(Ticket.tenant_id == tid)
    session.execute(delete(TicketNote).where(TicketNote.ticket_id.in_(ticket_ids)))
    session.execute(delete(Alert).where(Alert.tenant_id == tid))
    session.execute(delete(Incident).where(Incident.tenant_id == tid))
    session.execute(delete(QuarantinedRecord).where(QuarantinedRecord.tenant_id == tid))
    session.execute(delete(PollCursor).where(PollCursor.tenant_id == tid))
    session.execute(delete(DeskAlarm).where(DeskAlarm.tenant_id == tid))
    # A ticket's grouping key may carry its first alert's title (no category, no technique).
    session.execute(
        update(Ticket)
        .where(Ticket.tenant_id == tid)
        .values(
            title="",
            summary={},
            correlation_key="purged:" + cast(Ticket.id, String),
            correlation_base="",
        )
    )
    session.execute(update(Device).where(Device.tenant_id == tid).values(name="", raw={}, tags=[]))
    session.execute(
        update(ResponseAction).where(ResponseAction.tenant_id == tid).values(reason="", detail="")
    )
    tenant.external_id = f"purged-{code.lower()}"
    tenant.connection = {}
    tenant.state_reason = ""


def _codes(reasons: list[dict[str, str]]) -> list[dict[str, str]]:
    """Reasons by their codes only: their words may quote the application (its capital,
    its staff, its EDR product)."""
    return [{"code": r["code"]} for r in reasons if "code" in r]


def _scrub_company(session: Session, company: Company, code: str) -> None:
    for application in session.scalars(
        select(Application).where(Application.company_id == company.id)
    ):
        application.eligibility_reasons = _codes(application.eligibility_reasons)
    for diagnosis in session.scalars(
        select(PreDiagnosis).where(PreDiagnosis.company_id == company.id)
    ):
        diagnosis.reasons = _codes(diagnosis.reasons)
    session.execute(
        update(Application)
        .where(Application.company_id == company.id)
        .values(
            raw={},
            call_notes="",
            source="",
            existing_edr_name="",
            # A digest of the application's values: with the old export, it would say whose
            # row this was.
            fingerprint="purged:" + cast(Application.id, String),
        )
    )
    session.execute(
        update(PreDiagnosis)
        .where(PreDiagnosis.company_id == company.id)
        .values(network_notes="", notes="", existing_edr_name="", existing_antivirus="")
    )
    company.key = code.lower()
    company.name = code
    company.contact_name = company.contact_email = company.contact_phone = ""
    company.representative = company.address = company.identity_key = ""
    company.corporate_number = None
    company.capital_yen = company.employees = None
    company.state_reason = ""


def _scrub_mail_and_audit(
    session: Session, company: Company, tenant: Tenant | None, names: list[str], code: str
) -> None:
    mine = [OutboxMessage.recipient == company.contact_email] if company.contact_email else []
    mine.append(OutboxMessage.dedupe_key.contains(f":{company.key}:", autoescape=True))
    mine.append(OutboxMessage.dedupe_key.endswith(f":{company.key}", autoescape=True))
    if tenant is not None:
        mine.append(OutboxMessage.tenant_id == tenant.id)
    for message in session.scalars(select(OutboxMessage).where(or_(*mine))):
        message.dedupe_key = f"purged:{message.id}"
        message.subject = message.body_text = message.recipient = message.last_error = ""
        message.body_html = None
    targets = [AuditEvent.target == f"company:{company.key}"]
    if tenant is not None:
        targets += [
            AuditEvent.tenant_id == tenant.id,
            AuditEvent.target == f"tenant:{tenant.external_id}",
        ]
    renamed = {f"company:{company.key}": f"company:{code.lower()}"}
    if tenant is not None:
        renamed[f"tenant:{tenant.external_id}"] = f"tenant:purged-{code.lower()}"
    for event in session.scalars(select(AuditEvent).where(or_(*targets))):
        event.detail = _scrubbed(event.detail or {}, names)
        event.target = renamed.get(event.target, event.target)
    session.execute(delete(JobRun).where(JobRun.company_key == company.key))


def _scrub_reports(session: Session, company: Company, tenant: Tenant | None) -> None:
    """The company's archived reports: the files are deleted (and their folder, named by the
    company's key, once empty) and the records kept naming nothing: the kind, the period,
    the language, the sequence and when stay for the programme's counts.

    The files go before the transaction commits: a purge that then fails leaves records
    whose file is gone, which a re-send refuses naming the file, and the next purge empties.
    """
    mine = [ReportArchive.company_id == company.id]
    if tenant is not None:
        mine.append(ReportArchive.tenant_id == tenant.id)
    folders: set[Path] = set()
    for record in session.scalars(select(ReportArchive).where(or_(*mine))):
        if record.path:
            path = Path(record.path)
            path.unlink(missing_ok=True)
            folders.add(path.parent)
        record.dedupe_key = f"purged:{record.id}"
        record.path = record.filename = record.subject = record.sha256 = ""
        record.recipients = []
    for folder in folders:
        with contextlib.suppress(OSError):  # not empty (another's files), or already gone
            folder.rmdir()


_PURGED_NAME = "a purged company"


def _unnamed(value: Any, key: re.Pattern[str]) -> Any:
    """`value` with every mention of the company's key replaced, strings in lists and dicts
    included."""
    if isinstance(value, str):
        return key.sub(_PURGED_NAME, value)
    if isinstance(value, list):
        return [_unnamed(item, key) for item in value]
    if isinstance(value, dict):
        return {k: _unnamed(v, key) for k, v in value.items()}
    return value


def _scrub_mentions(session: Session, company: Company) -> None:
    """Other companies' records that name this one by its key (the place it freed, taken
    by the next on the waiting list) stop naming it."""
    key = re.compile(rf"(?<![\w-]){re.escape(company.key)}(?![\w-])", re.IGNORECASE)
    others = select(Company).where(
        Company.id != company.id, Company.state_reason.contains(company.key, autoescape=True)
    )
    for other in session.scalars(others):
        other.state_reason = key.sub(_PURGED_NAME, other.state_reason)
    events = select(AuditEvent).where(
        cast(AuditEvent.detail, Text).contains(company.key, autoescape=True)
    )
    for event in session.scalars(events):
        if key.search(json.dumps(event.detail, ensure_ascii=False)):
            event.detail = _unnamed(event.detail, key)


@dataclass(frozen=True, slots=True)
class Purged:
    """What a purge kept: the anonymous code and how many monthly rows carry it."""

    anon_code: str
    months: int


def purge_company(
    session: Session, programme: ProgrammeConfig, company: Company, *, actor: str, at: datetime
) -> Purged:
    """Sum up the company's months under an anonymous code, then purge its details (journey
    `purge`, audited under the code only). The caller owns the transaction: either all of it
    happens or none."""
    code = company.anon_code or anon_code(session)
    tenant = tenant_of_company(session, company.id)
    rows = aggregates(session, programme, company, code)
    names = _names(session, company, tenant)
    session.add_all(rows)
    _scrub_mentions(session, company)
    _scrub_reports(session, company, tenant)
    _scrub_mail_and_audit(session, company, tenant, names, code)
    if tenant is not None:
        _scrub_tenant(session, tenant, code)
    _scrub_company(session, company, code)
    company.anon_code, company.purged_at = code, at
    session.flush()
    advance(
        session,
        company,
        "purge",
        actor=actor,
        at=at,
        why=f"retention of {programme.retention_days} days ended",
        detail={"count": len(rows)},
    )
    return Purged(code, len(rows))


def due_for_purge(session: Session, before: datetime) -> list[Company]:
    """Companies whose purgeable state began before `before` (their retention ended)."""
    return list(
        session.scalars(
            select(Company)
            .where(
                Company.state.in_([s.value for s in PURGEABLE]),
                Company.state_since.is_not(None),
                Company.state_since < before,
            )
            .order_by(Company.id)
        )
    )
