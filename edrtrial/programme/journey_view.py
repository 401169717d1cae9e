"""Where each company stands and what is due next: the rows of `applications list`, the
cohorts' places, and one company's whole journey for `company show`.

Queries and judgements only (what is overdue, what comes next and by when); the CLI renders.
`today` is the Tokyo date the caller reads from its clock, so nothing here reads the time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from edrtrial.access.scope import EVERYTHING, Scope
from edrtrial.config import ProgrammeConfig
from edrtrial.models import Application, AuditEvent, Cohort, Company, PreDiagnosis, Tenant, Trial
from edrtrial.programme import cohorts
from edrtrial.programme.admission import CURRENT_FIRST, call_due_on, current_application
from edrtrial.programme.applicants import DueOn
from edrtrial.programme.consent import ISSUED as CONSENT_URL_ISSUED
from edrtrial.states import JourneyState as J
from edrtrial.timeutil import jst_date


@dataclass(frozen=True, slots=True)
class ApplicationRow:
    """One company of `applications list`."""

    key: str
    name: str
    state: J
    received_at: datetime | None
    call_due_on: date | None
    overdue: bool
    cohort: str
    place: str  # "held", "waiting 2", "" (none)
    reasons: tuple[str, ...]
    explained: tuple[tuple[str, str], ...] = ()
    """The same reasons in words, (Japanese, English), for a page rather than a terminal."""


def is_overdue(
    company: Company, application: Application | None, due: date | None, today: date
) -> bool:
    """Whether the confirmation call is late: the company still waits for it past its day
    (eligible, or left for a review that must come first)."""
    return (
        company.state in (J.ELIGIBLE, J.NEEDS_REVIEW)
        and application is not None
        and application.call_done_at is None
        and due is not None
        and due < today
    )


def _due(application: Application | None, due_on: DueOn) -> date | None:
    return None if application is None else call_due_on(application, due_on)


def _place(company: Company, positions: dict[int, int]) -> str:
    if company.id in positions:
        return f"waiting {positions[company.id]}"
    if company.place_since is not None and company.state in cohorts.HOLDING:
        return "held"
    return ""


def _reasons(
    company: Company, application: Application | None, diagnosis: PreDiagnosis | None
) -> tuple[str, ...]:
    """Why it stands where it does, short: the codes of the rules that did not pass it (an
    eligible one's reasons only say it passed) and of the pre-diagnosis that refused it, or
    the secretariat's own words for a refusal or withdrawal."""
    found: list[str] = []
    if application is not None and application.eligibility != "eligible":
        found += [r.get("code", "") for r in application.eligibility_reasons]
    if diagnosis is not None:
        found += [r.get("code", "") for r in diagnosis.reasons]
    if company.state in (J.REFUSED, J.WITHDRAWN) and company.state_reason and not found:
        found.append(company.state_reason)
    return tuple(r for r in found if r)


def _explained(
    company: Company, application: Application | None, diagnosis: PreDiagnosis | None
) -> tuple[tuple[str, str], ...]:
    """`_reasons` in words: each rule's or the pre-diagnosis's (Japanese, English), or the
    secretariat's own words for a refusal or withdrawal."""
    found: list[dict[str, Any]] = []
    if application is not None and application.eligibility != "eligible":
        found += application.eligibility_reasons
    if diagnosis is not None:
        found += diagnosis.reasons
    pairs = [
        (str(r.get("ja") or r.get("en") or ""), str(r.get("en") or r.get("ja") or ""))
        for r in found
    ]
    if company.state in (J.REFUSED, J.WITHDRAWN) and company.state_reason and not pairs:
        pairs.append((company.state_reason, company.state_reason))
    return tuple(p for p in pairs if p[0])


def _waiting_positions(session: Session) -> dict[int, int]:
    """Each waiting company's place on its cohort's list (1 = next), in one query."""
    positions: dict[int, int] = {}
    counts: dict[int | None, int] = {}
    waiting = session.execute(
        select(Company.id, Company.cohort_id)
        .where(Company.state == J.WAITING_LIST)
        .order_by(Company.cohort_id, Company.queued_at, Company.id)
    )
    for company_id, cohort_id in waiting:
        counts[cohort_id] = counts.get(cohort_id, 0) + 1
        positions[company_id] = counts[cohort_id]
    return positions


def _current_applications(session: Session) -> dict[int, Application]:
    """Each company's current application (`admission.current_application`), in one query."""
    found: dict[int, Application] = {}
    ordered = select(Application).order_by(Application.company_id, *CURRENT_FIRST)
    for application in session.scalars(ordered):
        found.setdefault(application.company_id, application)
    return found


def application_rows(
    session: Session,
    due_on: DueOn,
    today: date,
    *,
    states: Sequence[str] = (),
    cohort: Cohort | None = None,
    overdue_only: bool = False,
    scope: Scope = EVERYTHING,
) -> list[ApplicationRow]:
    """The companies in the store with their application, oldest application first; only
    those `scope` sees (a console person limited to cohorts sees no applicant).

    A few queries whatever the number of companies: a cohort lists a hundred of them."""
    query = select(Company).options(selectinload(Company.cohort)).where(scope.companies())
    if states:
        query = query.where(Company.state.in_(states))
    if cohort is not None:
        query = query.where(Company.cohort_id == cohort.id)
    applications = _current_applications(session)
    positions = _waiting_positions(session)
    diagnoses = {d.company_id: d for d in session.scalars(select(PreDiagnosis))}
    rows: list[ApplicationRow] = []
    for company in session.scalars(query.order_by(Company.id)):
        application = applications.get(company.id)
        due = _due(application, due_on)
        overdue = is_overdue(company, application, due, today)
        if overdue_only and not overdue:
            continue
        rows.append(
            ApplicationRow(
                key=company.key,
                name=company.name,
                state=J(company.state),
                received_at=application.received_at if application else None,
                call_due_on=due,
                overdue=overdue,
                cohort=company.cohort.key if company.cohort is not None else "",
                place=_place(company, positions),
                reasons=_reasons(company, application, diagnoses.get(company.id)),
                explained=_explained(company, application, diagnoses.get(company.id)),
            )
        )
    rows.sort(key=lambda r: (r.received_at is None, r.received_at or datetime.min, r.key))
    return rows


@dataclass(frozen=True, slots=True)
class Due:
    """Something due next for the company: what, by when (if dated), and the command."""

    what: str
    on: date | None = None
    command: str = ""
    late: bool = False


@dataclass(frozen=True, slots=True)
class HistoryLine:
    """One audited step of the company's journey (or another action on the company)."""

    at: datetime
    actor: str
    on_behalf_of: str
    action: str
    moved: str  # "eligible → call_confirmed", or ""
    why: str
    moved_from: str = ""  # the states of `moved`, for a reader that words them its own way
    moved_to: str = ""


@dataclass(frozen=True, slots=True)
class CompanyView:
    """One company's whole journey, as `company show` prints it."""

    company: Company
    state: J
    applications: tuple[Application, ...]  # the current first, then the others (repeats)
    application: Application | None
    call_due_on: date | None
    call_overdue: bool
    diagnosis: PreDiagnosis | None
    cohort: Cohort | None
    places: cohorts.Places | None
    position: int | None
    tenant: Tenant | None
    trial: Trial | None
    due: tuple[Due, ...]
    history: tuple[HistoryLine, ...]


def company_view(
    session: Session, programme: ProgrammeConfig, company: Company, due_on: DueOn, today: date
) -> CompanyView:
    """Everything about the company's journey, and what is due next."""
    application = current_application(session, company.id)
    others = session.scalars(
        select(Application)
        .where(Application.company_id == company.id)
        .order_by(Application.received_at)
    ).all()
    diagnosis = session.scalar(select(PreDiagnosis).where(PreDiagnosis.company_id == company.id))
    tenant = session.scalar(select(Tenant).where(Tenant.company_id == company.id))
    trial = session.scalar(select(Trial).where(Trial.company_id == company.id))
    cohort = company.cohort
    due = _due(application, due_on)
    view = CompanyView(
        company=company,
        state=J(company.state),
        applications=tuple(
            ([application] if application else []) + [a for a in others if a is not application]
        ),
        application=application,
        call_due_on=due,
        call_overdue=is_overdue(company, application, due, today),
        diagnosis=diagnosis,
        cohort=cohort,
        places=cohorts.places(session, cohort) if cohort is not None else None,
        position=cohorts.waiting_position(session, company),
        tenant=tenant,
        trial=trial,
        due=(),
        history=tuple(history(session, company)),
    )
    return replace(view, due=tuple(due_next(view, programme, today)))


def history(session: Session, company: Company) -> list[HistoryLine]:
    """The audit log's events on the company, oldest first."""
    events = session.scalars(
        select(AuditEvent)
        .where(AuditEvent.target == f"company:{company.key}")
        .order_by(AuditEvent.at, AuditEvent.id)
    )
    lines = []
    for event in events:
        detail: dict[str, Any] = event.detail or {}
        moved = f"{detail['from']} → {detail['to']}" if "from" in detail and "to" in detail else ""
        lines.append(
            HistoryLine(
                at=event.at,
                actor=event.actor,
                on_behalf_of=event.on_behalf_of,
                action=event.action,
                moved=moved,
                why=str(detail.get("why", "")),
                moved_from=str(detail["from"]) if moved else "",
                moved_to=str(detail["to"]) if moved else "",
            )
        )
    return lines


def due_next(view: CompanyView, programme: ProgrammeConfig, today: date) -> list[Due]:
    """What comes next in the company's journey, with its date where the programme sets one."""
    key, state = view.company.key, view.state
    simple = {
        J.APPLIED: Due("the eligibility decision", command="edrtrial applications review " + key),
        J.CALL_CONFIRMED: Due(
            "the pre-diagnosis (事前診断)", command=f"edrtrial applications prediagnose {key} …"
        ),
        J.PRE_DIAGNOSED: Due("admission to its cohort"),
        J.ADMITTED: Due(
            "the consent URL to send to its administrator",
            command=f"edrtrial tenants consent-url {key}",
        ),
        J.CONSENTED: Due("the tenant's verification", command=f"edrtrial tenants verify {key}"),
        J.CONTINUING: Due("nothing: the company contracts with the vendor directly"),
        J.OFFBOARDING: Due(
            "offboarding: every device uninstalled and verified", command="edrtrial offboarding"
        ),
        J.PURGED: Due("nothing: only its anonymous figures remain"),
    }
    sent = [h for h in view.history if h.action == CONSENT_URL_ISSUED]
    if state == J.ADMITTED and sent:
        return [
            Due(
                f"its administrator's consent (the link went out {jst_date(sent[-1].at)})",
                command=f"edrtrial tenants consented {key} --reply URL | --tenant-id ID",
            )
        ]
    if state in simple:
        return [simple[state]]
    if state == J.ELIGIBLE:
        return [
            Due(
                "the confirmation call",
                view.call_due_on,
                f"edrtrial applications call {key}",
                late=view.call_overdue,
            )
        ]
    if state == J.NEEDS_REVIEW:
        return [
            Due(
                "a review of its eligibility, then the confirmation call",
                view.call_due_on,
                f"edrtrial applications review {key}",
                late=view.call_overdue,
            )
        ]
    if state == J.WAITING_LIST:
        waiting = view.places.waiting if view.places else 0
        found = [Due(f"a free place: position {view.position} of {waiting} on the waiting list")]
        if view.diagnosis is None:
            found.append(
                Due(
                    "the pre-diagnosis (may be done while waiting)",
                    command=f"edrtrial applications prediagnose {key} …",
                )
            )
        return found
    if state == J.TENANT_VERIFIED:
        if view.trial is None:
            return [Due("the trial's start to record")]
        return [Due("the trial's start", view.trial.starts_on)]
    if state in (J.IN_TRIAL, J.ENDING):
        return _trial_due(view, programme, today)
    # Ended without a trial (refused, not eligible, withdrawn) or offboarded: the purge.
    since = view.company.state_since
    purge_on = jst_date(since) + timedelta(days=programme.retention_days) if since else None
    return [Due("the purge of its detailed data", purge_on)]


def _trial_due(view: CompanyView, programme: ProgrammeConfig, today: date) -> list[Due]:
    trial, key = view.trial, view.company.key
    if trial is None:
        return [Due("the trial's dates to record")]
    decided = trial.decision not in ("", "undecided")
    # Only an undecided company is asked (the trial-lifecycle job's reminders).
    found = [
        Due(f"the reminder mail (T-{days})", trial.ends_on - timedelta(days=days))
        for days in programme.reminder_days
        if not decided and trial.ends_on - timedelta(days=days) >= today
    ]
    if not decided:
        found.append(
            Due(
                "the company's decision (continue or offboard)",
                trial.ends_on,
                f"edrtrial trial decide {key} continue|offboard|extend",
                late=trial.ends_on < today,
            )
        )
    found.append(Due(f"the trial's end ({trial.decision})", trial.ends_on))
    return found
