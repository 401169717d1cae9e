"""From an eligible application to a confirmed place: the call, the pre-diagnosis, refusals
and withdrawals, each one journey step (or two) in the caller's transaction.

The programme's rules as its documents state them: the secretariat phones within three
business days of the application to confirm the rules and consent, and only then is the
application complete (申込み完了) and a place held, first come first served; the expert's
pre-diagnosis (事前診断) then confirms participation (事業参加確定) or refuses it with the
reason. A place released goes to the first on the cohort's waiting list (`cohorts.fill`);
what the companies must be told is returned, for the caller to queue (mail is not this
layer's business).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from edrtrial.audit import person_of
from edrtrial.config import CourseConfig, ProgrammeConfig
from edrtrial.errors import JourneyError
from edrtrial.models import Application, Cohort, Company, PreDiagnosis, Trial
from edrtrial.programme import cohorts
from edrtrial.programme.applicants import DueOn
from edrtrial.programme.journey import JOURNEY, advance, state_of
from edrtrial.states import JourneyState as J
from edrtrial.timeutil import jst_date
from edrtrial.words import Words

Reason = dict[str, str]
"""{"code": …, "ja": …, "en": …}: one reason, in both languages, as the rules give it."""

POLICIES = ("none", "partial", "documented", "published")


def call_due_on(application: Application, due_on: DueOn) -> date:
    """The day the confirmation call is due: as intake recorded it, else counted from the
    Tokyo day the application came (`due_on`: the desk's business days after it)."""
    return application.call_due_on or due_on(jst_date(application.received_at))


@dataclass(frozen=True, slots=True)
class Outcome:
    """Where a step left the company, and who took a place it freed."""

    company_id: int
    state: J
    cohort_key: str | None = None
    position: int | None = None  # on the waiting list, 1 = next
    reasons: tuple[Reason, ...] = ()
    moved: tuple[cohorts.Moved, ...] = ()
    news: bool = True  # False: the step left the company where it was told it stands

    @property
    def event(self) -> str | None:
        """What the company is told of this step, if anything."""
        if not self.news:
            return None
        return {J.WAITING_LIST: "waiting", J.ADMITTED: "admitted", J.REFUSED: "refused"}.get(
            self.state
        )


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """What the expert found at the pre-diagnosis (事前診断)."""

    edr_users: int
    utm_devices: int = 0
    free_hub_ports: int | None = None
    existing_utm: bool = False
    existing_edr: str | None = None  # the product's name; None: no EDR
    antivirus: str = ""
    policy: str = "none"  # none | partial | documented | published
    network: str = ""
    notes: str = ""


CURRENT_FIRST = (Application.repeat_of.is_not(None), Application.received_at.desc())
"""A company's applications, the one its journey follows first: the latest not a repeat."""


def current_application(session: Session, company_id: int) -> Application | None:
    """The company's application its journey follows: the latest that is not a repeat."""
    latest = (
        select(Application)
        .where(Application.company_id == company_id)
        .order_by(*CURRENT_FIRST)
        .limit(1)
    )
    return session.scalar(latest)


def _course(programme: ProgrammeConfig, name: str) -> CourseConfig:
    try:
        return programme.courses[name]
    except KeyError:
        raise JourneyError(
            Words(
                "the course %(course)r is not in the config's programme.courses "
                "(courses: %(courses)s)",
                course=name,
                courses=", ".join(programme.courses),
            )
        ) from None


def record_call(
    session: Session,
    programme: ProgrammeConfig,
    company: Company,
    due_on: DueOn,
    *,
    actor: str,
    at: datetime,
    notes: str = "",
    cohort_key: str | None = None,
) -> Outcome:
    """The confirmation call completed the application: a place held, or the waiting list."""
    JOURNEY.check("call", company.state, f"company {company.key!r}")
    application = current_application(session, company.id)
    if application is None:
        raise JourneyError(Words("company %(key)r has no application to confirm", key=company.key))
    chosen = cohorts.choose(session, application.course, cohort_key)
    cohort = cohorts.lock(session, chosen.id)
    application.call_due_on = call_due_on(application, due_on)
    application.call_done_at = at
    application.call_by = person_of(actor)
    application.call_notes = notes
    full = cohorts.held(session, cohort.id) >= cohort.capacity
    advance(
        session,
        company,
        "queue" if full else "call",
        actor=actor,
        at=at,
        why=(
            f"cohort {cohort.key} is full ({cohort.capacity})"
            if full
            else "the confirmation call completed the application"
        ),
        detail={"cohort": cohort.key, "due_on": application.call_due_on.isoformat()},
        cohort_id=cohort.id,
        queued_at=at,
        place_since=None if full else at,
        course=cohort.course,
    )
    return Outcome(
        company.id,
        state_of(company),
        cohort.key,
        cohorts.waiting_position(session, company),
    )


def refusals(course: CourseConfig, diagnosis: Diagnosis) -> list[Reason]:
    """Why the pre-diagnosis refuses the course, each reason in Japanese and English."""
    found: list[Reason] = []
    if diagnosis.existing_edr is not None and course.refuses_existing_edr:
        name = diagnosis.existing_edr or "EDR"
        found.append(
            {
                "code": "existing_edr",
                "ja": f"既にEDR製品（{name}）を導入済みのため、{course.label_ja}の対象外です",
                "en": f"an EDR product ({name}) is already installed, so the "
                f"{course.label_en} is not open to the company",
            }
        )
    if diagnosis.edr_users > course.seat_cap:
        if course.seat_unit == "users":
            ja = (
                f"EDRの利用予定者数（{diagnosis.edr_users}名）が、1社あたりの上限"
                f"（{course.seat_cap}名まで）を超えています"
            )
            en = f"{diagnosis.edr_users} planned EDR users: at most {course.seat_cap} per company"
        else:
            ja = (
                f"EDRの導入予定台数（{diagnosis.edr_users}台）が、1社あたりの上限"
                f"（{course.seat_cap}台まで）を超えています"
            )
            en = f"{diagnosis.edr_users} planned EDR devices: at most {course.seat_cap} per company"
        found.append({"code": "seat_cap", "ja": ja, "en": en})
    return found


def record_prediagnosis(
    session: Session,
    programme: ProgrammeConfig,
    company: Company,
    diagnosis: Diagnosis,
    *,
    actor: str,
    at: datetime,
) -> Outcome:
    """Record the pre-diagnosis: admitted, refused with its reasons (the place released), or,
    on the waiting list, recorded while the company keeps waiting."""
    label = f"company {company.key!r}"
    if company.state != J.WAITING_LIST:
        JOURNEY.check("diagnose", company.state, label)
    if diagnosis.policy not in POLICIES:
        raise JourneyError(
            Words("the security policy is one of %(policies)s", policies=", ".join(POLICIES))
        )
    if session.scalar(select(PreDiagnosis.id).where(PreDiagnosis.company_id == company.id)):
        raise JourneyError(
            Words("company %(key)r's pre-diagnosis is recorded already", key=company.key)
        )
    course = _course(programme, company.course)
    reasons = refusals(course, diagnosis)
    session.add(
        PreDiagnosis(
            company_id=company.id,
            done_at=at,
            done_by=person_of(actor),
            network_notes=diagnosis.network,
            free_hub_ports=diagnosis.free_hub_ports,
            existing_utm=diagnosis.existing_utm,
            existing_edr=diagnosis.existing_edr is not None,
            existing_edr_name=diagnosis.existing_edr or "",
            existing_antivirus=diagnosis.antivirus,
            edr_users=diagnosis.edr_users,
            utm_devices=diagnosis.utm_devices,
            security_policy=diagnosis.policy,
            notes=diagnosis.notes,
            outcome="refused" if reasons else "passed",
            reasons=reasons,
        )
    )
    if reasons:
        return _release(session, company, "refuse", actor=actor, at=at, reasons=reasons)
    company.planned_seats = diagnosis.edr_users
    company.seat_cap = course.seat_cap
    if company.state == J.WAITING_LIST:
        session.flush()
        return Outcome(
            company.id,
            J.WAITING_LIST,
            _cohort_key(company),
            cohorts.waiting_position(session, company),
            news=False,
        )
    why = "the pre-diagnosis passed"
    advance(session, company, "diagnose", actor=actor, at=at, why=why)
    advance(session, company, "admit", actor=actor, at=at, why=why)
    return Outcome(company.id, J.ADMITTED, _cohort_key(company))


def _cohort_key(company: Company) -> str | None:
    return company.cohort.key if company.cohort is not None else None


def refuse(session: Session, company: Company, reason: str, *, actor: str, at: datetime) -> Outcome:
    """The secretariat refuses the company (before admission); its place goes to the next."""
    JOURNEY.check("refuse", company.state, f"company {company.key!r}")
    found: Reason = {"code": "secretariat", "ja": reason, "en": reason}
    return _release(session, company, "refuse", actor=actor, at=at, reasons=[found])


def withdraw(
    session: Session, company: Company, reason: str, *, actor: str, at: datetime
) -> Outcome:
    """The company withdraws: before its tenant is connected it leaves (its place goes to the
    next on the waiting list); once connected its devices are offboarded."""
    if JOURNEY.can("withdraw_connected", company.state):
        detail: dict[str, object] | None = None
        trial = session.scalar(select(Trial).where(Trial.company_id == company.id))
        if trial is not None and trial.decision == "continue":
            # Leaving the programme undoes an earlier "continue": left standing, it would
            # keep its devices from ever being offboarded, and the company offboarding forever.
            trial.decision, trial.decided_at, trial.decided_by = "offboard", at, actor
            detail = {"decision": {"from": "continue", "to": "offboard"}}
        advance(
            session,
            company,
            "withdraw_connected",
            actor=actor,
            at=at,
            why=reason,
            detail=detail,
            withdrawn_at=at,
        )
        return Outcome(company.id, state_of(company), _cohort_key(company))
    JOURNEY.check("withdraw", company.state, f"company {company.key!r}")
    return _release(session, company, "withdraw", actor=actor, at=at, reasons=[], why=reason)


def _release(
    session: Session,
    company: Company,
    step: str,
    *,
    actor: str,
    at: datetime,
    reasons: list[Reason],
    why: str = "",
) -> Outcome:
    """Take a step that ends the company's hold on its place, and give the place on."""
    cohort: Cohort | None = None
    if company.cohort_id is not None:
        cohort = cohorts.lock(session, company.cohort_id)
    had_place = company.place_since is not None and state_of(company) in cohorts.HOLDING
    why = why or "; ".join(r["en"] for r in reasons)
    values: dict[str, object] = {"place_since": None}
    if step == "withdraw":
        values["withdrawn_at"] = at
    advance(
        session,
        company,
        step,
        actor=actor,
        at=at,
        why=why,
        detail={"reasons": reasons} if reasons else None,
        **values,
    )
    moved: list[cohorts.Moved] = []
    if cohort is not None and had_place:
        freed = f"the place {company.key} held was released ({step})"
        moved = cohorts.fill(session, cohort.id, actor=actor, at=at, why=freed)
    return Outcome(
        company.id,
        state_of(company),
        cohort.key if cohort else None,
        reasons=tuple(reasons),
        moved=tuple(moved),
    )
