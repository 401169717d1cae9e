"""Applications into the store: each a company's journey begun and judged, or a repeat noted.

One transaction per application: a bad or refused row never blocks the good ones, and a
crash never leaves half an application (a company without its application, or one not
judged). The same application imported again (same `fingerprint`) changes nothing. A second
application of a business already in the store (same 法人番号, or for a sole proprietor the
same name, address and representative) is kept, marked as a repeat of the first, judged
`needs_review` pointing to it, and starts no second journey.

Company keys are generated, short and lower-case ASCII: a corporation's is `c-` and the last
7 digits of its 法人番号 (9, 11 or all 13 when those are taken), a sole proprietor's `sp-` and
a serial number (`sp-0001`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from edrtrial import audit
from edrtrial.config import ProgrammeConfig
from edrtrial.db import transaction
from edrtrial.errors import JourneyError
from edrtrial.models import Application, Company, PredecessorRecord
from edrtrial.programme.eligibility import Found, Judgement, Verdict, judge, repeat_reason
from edrtrial.programme.intake import ApplicationRow
from edrtrial.programme.journey import JOURNEY, advance
from edrtrial.programme.written import SOLE_PROPRIETOR
from edrtrial.timeutil import jst_date
from edrtrial.words import Words

RULES_ACTOR = "intake"
"""The audit actor of the rules' verdict (a person's review is audited under their name)."""

_JUDGE_STEP = {
    Verdict.ELIGIBLE: "judge_eligible",
    Verdict.NEEDS_REVIEW: "judge_review",
    Verdict.NOT_ELIGIBLE: "judge_not_eligible",
}

DueOn = Callable[[date], date]
"""The day the confirmation call is due, from the day (JST) the application was received."""


@dataclass(frozen=True)
class Recorded:
    """What became of one application: `status` is imported, repeat or already (imported)."""

    line: int
    status: str
    company_key: str
    company_name: str
    application_id: int
    verdict: str
    reasons: tuple[dict[str, str], ...] = ()
    repeat_of: str = ""  # for a repeat: the company and its first application
    call_due_on: date | None = None


def record_application(
    session: Session,
    row: ApplicationRow,
    programme: ProgrammeConfig,
    *,
    at: datetime,
    actor: str,
    source: str,
    due_on: DueOn,
) -> Recorded:
    """Store one application in the caller's transaction and judge it (see the module)."""
    fingerprint = row.fingerprint
    same = session.scalar(select(Application).where(Application.fingerprint == fingerprint))
    if same is not None:
        company = session.get_one(Company, same.company_id)
        return Recorded(row.line, "already", company.key, company.name, same.id, same.eligibility)
    first = _same_business(session, row)
    if first is not None:
        return _record_repeat(session, row, first, at=at, actor=actor, source=source)
    company = _new_company(session, row, programme, at)
    found = Found(
        predecessor=_predecessor(session, row),
        repeat_of=_lookalike(session, company),
    )
    judgement = judge(row.facts(), programme.eligibility, programme.courses.get(row.course), found)
    application = _application(session, row, company, source=source, judgement=judgement, at=at)
    # Due whatever the rules said: a review may yet make it eligible.
    application.call_due_on = due_on(jst_date(row.received_at))
    _audit_received(session, application, company, at=at, actor=actor)
    advance(
        session,
        company,
        _JUDGE_STEP[judgement.verdict],
        actor=RULES_ACTOR,
        at=at,
        why="; ".join(r.ja for r in judgement.reasons if judgement.verdict is not Verdict.ELIGIBLE),
        detail={"application": application.id, "reasons": [r.code for r in judgement.reasons]},
    )
    return Recorded(
        row.line,
        "imported",
        company.key,
        company.name,
        application.id,
        judgement.verdict,
        tuple(judgement.stored()),
        call_due_on=application.call_due_on,
    )


def import_rows(
    sessions: sessionmaker[Session],
    rows: list[ApplicationRow],
    programme: ProgrammeConfig,
    *,
    at: datetime,
    actor: str,
    source: str,
    due_on: DueOn,
) -> list[Recorded]:
    """Each row in its own transaction; the same file imported twice changes nothing.

    A row another import stored meanwhile (its application, its company, or a key it was
    about to take) breaks a unique index: it is read again once, and is then "already"
    imported, a repeat, or takes the next key.
    """
    done: list[Recorded] = []
    for row in rows:
        where = f"{source} line {row.line}"
        for attempt in (1, 2):
            try:
                with transaction(sessions) as session:
                    done.append(
                        record_application(
                            session, row, programme, at=at, actor=actor, source=where, due_on=due_on
                        )
                    )
                break
            except IntegrityError:
                if attempt == 2:
                    raise
    return done


def _same_business(session: Session, row: ApplicationRow) -> Company | None:
    """The company in the store this application is from: by 法人番号, or for a sole
    proprietor by its identity key."""
    if row.corporate_number is not None:
        return session.scalar(
            select(Company).where(Company.corporate_number == row.corporate_number)
        )
    return session.scalar(
        select(Company)
        .where(Company.kind == SOLE_PROPRIETOR, Company.identity_key == row.identity_key)
        .order_by(Company.id)
        .limit(1)
    )


def _first_application(session: Session, company: Company) -> Application | None:
    return session.scalar(
        select(Application)
        .where(Application.company_id == company.id, Application.repeat_of.is_(None))
        .order_by(Application.id)
        .limit(1)
    )


def _lookalike(session: Session, company: Company) -> str | None:
    """Another company with the same name, address and representative (a corporation that
    applies again under another 法人番号, say): the first application to look at."""
    other = session.scalar(
        select(Company)
        .where(Company.identity_key == company.identity_key, Company.id != company.id)
        .order_by(Company.id)
        .limit(1)
    )
    if other is None:
        return None
    first = _first_application(session, other)
    return other.key if first is None else f"{other.key}、申込#{first.id}"


def _record_repeat(
    session: Session,
    row: ApplicationRow,
    company: Company,
    *,
    at: datetime,
    actor: str,
    source: str,
) -> Recorded:
    first = _first_application(session, company)
    pointer = company.key if first is None else f"{company.key}、申込#{first.id}"
    reason = Judgement(Verdict.NEEDS_REVIEW, (repeat_reason(pointer),))
    application = _application(session, row, company, source=source, judgement=reason, at=at)
    application.repeat_of = None if first is None else first.id
    session.flush()
    _audit_received(session, application, company, at=at, actor=actor)
    return Recorded(
        row.line,
        "repeat",
        company.key,
        company.name,
        application.id,
        reason.verdict,
        tuple(reason.stored()),
        repeat_of=company.key if first is None else f"{company.key} application #{first.id}",
    )


def _predecessor(session: Session, row: ApplicationRow) -> str | None:
    """The predecessor programme (and year) whose list names this business, if any."""
    match = [PredecessorRecord.identity_key == row.identity_key]
    if row.corporate_number is not None:
        match.append(PredecessorRecord.corporate_number == row.corporate_number)
    record = session.scalar(
        select(PredecessorRecord).where(or_(*match)).order_by(PredecessorRecord.id).limit(1)
    )
    if record is None:
        return None
    when = f"（{record.year}）" if record.year else ""
    return f"{record.programme or '先行事業'}{when}"


def _new_company(
    session: Session, row: ApplicationRow, programme: ProgrammeConfig, at: datetime
) -> Company:
    course = programme.courses.get(row.course)
    company = Company(
        key=_new_key(session, row),
        name=row.name,
        contact_name=row.contact_name,
        contact_email=row.contact_email,
        language=row.language,
        planned_seats=row.planned_seats,
        seat_cap=course.seat_cap if course else 300,
        created_at=at,
        state="applied",
        state_since=at,
        kind=row.kind,
        corporate_number=row.corporate_number,
        identity_key=row.identity_key,
        representative=row.representative,
        address=row.address,
        prefecture=row.prefecture,
        industry=row.industry,
        capital_yen=row.capital_yen,
        employees=row.employees,
        contact_phone=row.contact_phone,
        course=row.course,
    )
    session.add(company)
    session.flush()
    return company


def _new_key(session: Session, row: ApplicationRow) -> str:
    if row.corporate_number is not None:
        for digits in (7, 9, 11, 13):
            key = f"c-{row.corporate_number[-digits:]}"
            if session.scalar(select(Company.id).where(Company.key == key)) is None:
                return key
        raise JourneyError(Words("company key c-%(number)s is taken", number=row.corporate_number))
    taken = session.scalars(select(Company.key).where(Company.key.like("sp-%"))).all()
    serials = [int(k[3:]) for k in taken if k[3:].isdigit()]
    return f"sp-{max(serials, default=0) + 1:04d}"


def _application(
    session: Session,
    row: ApplicationRow,
    company: Company,
    *,
    source: str,
    judgement: Judgement,
    at: datetime,
) -> Application:
    application = Application(
        company_id=company.id,
        received_at=row.received_at,
        source=source,
        fingerprint=row.fingerprint,
        raw=row.raw,
        course=row.course,
        planned_seats=row.planned_seats,
        existing_edr=row.existing_edr,
        existing_edr_name=row.existing_edr_name,
        prior_support=row.prior_support,
        tokyo_subsidy=row.tokyo_subsidy,
        attestations=list(row.attestations),
        eligibility=judgement.verdict.value,
        eligibility_reasons=judgement.stored(),
        decided_at=at,
    )
    session.add(application)
    session.flush()
    return application


def _audit_received(
    session: Session, application: Application, company: Company, *, at: datetime, actor: str
) -> None:
    audit.record(
        session,
        at=at,
        actor=actor,
        action="application.received",
        tenant_id=None,
        target=f"company:{company.key}",
        detail={
            "application": application.id,
            "source": application.source,
            "repeat_of": application.repeat_of,
        },
    )


def review(
    session: Session,
    company: Company,
    decision: Verdict,
    *,
    reason: str,
    actor: str,
    at: datetime,
) -> None:
    """The secretariat decides what the rules could not (or overrules them), with its reason:
    the journey moves (audited under the person's name) and the application keeps the
    decision beside the rules' reasons."""
    if decision is Verdict.NEEDS_REVIEW:
        raise JourneyError(Words("a review decides: eligible or not eligible"))
    why = reason.strip()
    if not why:
        raise JourneyError(Words("a review gives its reason (--reason)"))
    step = _JUDGE_STEP[decision]
    if not JOURNEY.can(step, company.state):
        if company.state == decision:
            raise JourneyError(
                Words("company %(key)r is %(state)s already", key=company.key, state=company.state)
            )
        raise JourneyError(
            Words(
                "company %(key)r is %(state)s: a review decides only before the "
                "confirmation call (needs_review, eligible, not_eligible)",
                key=company.key,
                state=company.state,
            )
        )
    advance(session, company, step, actor=actor, at=at, why=why)
    application = _first_application(session, company)
    if application is not None:
        application.eligibility = decision.value
        application.eligibility_reasons = [
            *application.eligibility_reasons,
            {"code": "review", "ja": f"事務局の確認: {why}", "en": f"reviewed: {why}"},
        ]
        application.decided_at = at
