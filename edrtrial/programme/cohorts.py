"""Cohorts and their places: first come, first served, with a waiting list that moves up.

A place is held from the moment the confirmation call completes the application
(`Company.queued_at`, `place_since`, `cohort_id`), confirmed by a passing pre-diagnosis and
released by a failing one, a refusal or a withdrawal. A company that finished its trial keeps
its place: a cohort's capacity is how many companies it serves, not how many run at once.
When a cohort is full the call puts the company on its waiting list, in the order the calls
came; a freed place goes to the first of it in the same transaction (`fill`).

Two secretaries taking or freeing places at once must not over-fill a cohort, so every count
is made after `lock` has taken the cohort's row: the second transaction waits there, then
counts what the first committed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.orm import Session

from edrtrial import audit
from edrtrial.config import ProgrammeConfig
from edrtrial.errors import JourneyError
from edrtrial.models import Cohort, Company, PreDiagnosis
from edrtrial.programme.journey import advance
from edrtrial.states import JourneyState as J
from edrtrial.untrusted import one_line
from edrtrial.words import Words

KEY = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
"""A cohort's key: typed in commands, so as plain as a company's."""

#: A company of the cohort in one of these states holds one of its places.
HOLDING = (
    J.CALL_CONFIRMED,
    J.PRE_DIAGNOSED,
    J.ADMITTED,
    J.CONSENTED,
    J.TENANT_VERIFIED,
    J.IN_TRIAL,
    J.ENDING,
    J.CONTINUING,
    J.OFFBOARDING,
    J.OFFBOARDED,
)


@dataclass(frozen=True, slots=True)
class Moved:
    """A company that took a freed place: the company must be told (`event`)."""

    company_id: int
    key: str
    event: str  # "moved_up" (pre-diagnosis next) | "admitted" (already pre-diagnosed)

    @property
    def state(self) -> J:
        """Where the move left the company."""
        return J.ADMITTED if self.event == "admitted" else J.CALL_CONFIRMED


@dataclass(frozen=True, slots=True)
class Places:
    """A cohort's places as counted now."""

    cohort: Cohort
    held: int
    waiting: int

    @property
    def free(self) -> int:
        """Places nobody holds (never negative, even if the capacity was lowered)."""
        return max(self.cohort.capacity - self.held, 0)


def _holding(cohort_id: int) -> ColumnElement[bool]:
    # A purged company that had served its place still counts: its place is kept.
    return and_(
        Company.cohort_id == cohort_id,
        or_(
            Company.state.in_(HOLDING),
            and_(Company.state == J.PURGED, Company.place_since.is_not(None)),
        ),
    )


def held(session: Session, cohort_id: int) -> int:
    """How many of the cohort's places are held."""
    return session.scalar(select(func.count(Company.id)).where(_holding(cohort_id))) or 0


def waiting_list(session: Session, cohort_id: int) -> list[Company]:
    """The cohort's waiting list, first come first served (by the time of the call)."""
    return list(
        session.scalars(
            select(Company)
            .where(Company.cohort_id == cohort_id, Company.state == J.WAITING_LIST)
            .order_by(Company.queued_at, Company.id)
        )
    )


def waiting_position(session: Session, company: Company) -> int | None:
    """The company's place on its cohort's waiting list (1 = next), or None if not waiting."""
    if company.state != J.WAITING_LIST or company.cohort_id is None:
        return None
    ids = [c.id for c in waiting_list(session, company.cohort_id)]
    return ids.index(company.id) + 1 if company.id in ids else None


def places(session: Session, cohort: Cohort) -> Places:
    """The cohort's places held and companies waiting, counted now."""
    waiting = session.scalar(
        select(func.count(Company.id)).where(
            Company.cohort_id == cohort.id, Company.state == J.WAITING_LIST
        )
    )
    return Places(cohort, held(session, cohort.id), waiting or 0)


def lock(session: Session, cohort_id: int) -> Cohort:
    """The cohort's row, locked until the transaction ends, read afresh: what is counted
    next includes every place another transaction took and committed meanwhile.

    PostgreSQL: `SELECT … FOR UPDATE`. SQLite has no row locks, and its driver begins the
    transaction only at the first write: a no-op write takes the database's write lock (a
    second writer waits for it), so the counts that follow are read under it.
    """
    if session.get_bind().dialect.name == "sqlite":
        session.execute(
            update(Cohort).where(Cohort.id == cohort_id).values(capacity=Cohort.capacity)
        )
    found = session.scalar(
        select(Cohort)
        .where(Cohort.id == cohort_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if found is None:
        raise JourneyError(Words("cohort #%(id)s is not in the store", id=cohort_id))
    return found


def get(session: Session, key: str) -> Cohort:
    """The cohort with this key, or an error naming the keys there are."""
    found = session.scalar(select(Cohort).where(Cohort.key == key))
    if found is not None:
        return found
    keys = list(session.scalars(select(Cohort.key).order_by(Cohort.key)))
    lowered = key.strip().lower()
    if any(k == lowered for k in keys) and key != lowered:
        raise JourneyError(
            Words(
                "no cohort %(key)r; cohort keys are lower case: did you mean %(lowered)r?",
                key=one_line(key),
                lowered=lowered,
            )
        )
    if keys:
        raise JourneyError(
            Words("no cohort %(key)r; cohorts: %(keys)s", key=one_line(key), keys=", ".join(keys))
        )
    raise JourneyError(
        Words("no cohort %(key)r; no cohort yet (`edrtrial cohorts add`)", key=one_line(key))
    )


def add(
    session: Session,
    programme: ProgrammeConfig,
    *,
    key: str,
    name: str,
    course: str,
    capacity: int,
    trial_months: int | None = None,
    closed: bool = False,
) -> Cohort:
    """Add a cohort of one of the configured courses."""
    if not KEY.fullmatch(key):
        raise JourneyError(
            Words(
                "cohort key %(key)r: lower-case letters, digits and '-', at most 64 (e.g. 2026-1)",
                key=one_line(key),
            )
        )
    if course not in programme.courses:
        raise JourneyError(
            Words(
                "no course %(course)r in the config's programme.courses (courses: %(courses)s)",
                course=one_line(course),
                courses=", ".join(programme.courses),
            )
        )
    if capacity < 1:
        raise JourneyError(
            Words("a cohort takes at least one company, not %(capacity)s", capacity=capacity)
        )
    if session.scalar(select(Cohort.id).where(Cohort.key == key)) is not None:
        raise JourneyError(Words("cohort %(key)r exists already", key=one_line(key)))
    cohort = Cohort(
        key=key,
        name=name,
        course=course,
        capacity=capacity,
        trial_months=trial_months,
        closed=closed,
    )
    session.add(cohort)
    session.flush()
    return cohort


def change(
    session: Session,
    key: str,
    *,
    actor: str,
    at: datetime,
    capacity: int | None = None,
    closed: bool | None = None,
) -> tuple[Cohort, list[Moved]]:
    """Change a cohort's capacity or close (open) it, audited; places a larger capacity
    adds go to its waiting list at once, first come first served."""
    cohort = lock(session, get(session, key).id)
    before = {"capacity": cohort.capacity, "closed": cohort.closed}
    if capacity is not None:
        taken = held(session, cohort.id)
        if capacity < max(taken, 1):
            raise JourneyError(
                Words(
                    "cohort %(key)r has %(taken)s places held: its capacity cannot be %(capacity)s",
                    key=cohort.key,
                    taken=taken,
                    capacity=capacity,
                )
            )
        cohort.capacity = capacity
    if closed is not None:
        cohort.closed = closed
    after = {"capacity": cohort.capacity, "closed": cohort.closed}
    audit.record(
        session,
        at=at,
        actor=actor,
        action="cohort.changed",
        tenant_id=None,
        target=f"cohort:{cohort.key}",
        detail={"from": before, "to": after},
    )
    moved: list[Moved] = []
    if cohort.capacity > before["capacity"]:
        why = f"cohort {cohort.key}'s capacity went from {before['capacity']} to {capacity}"
        moved = fill(session, cohort.id, actor=actor, at=at, why=why)
    return cohort, moved


def all_cohorts(session: Session) -> Sequence[Cohort]:
    """Every cohort, oldest first."""
    return session.scalars(select(Cohort).order_by(Cohort.created_at, Cohort.id)).all()


def choose(session: Session, course: str, key: str | None) -> Cohort:
    """The cohort a company's call puts it in: the one named, else its course's open one.

    Several open cohorts of the course: the oldest with a free place, else the oldest (its
    waiting list). None: an error saying how to add one.
    """
    if key is not None:
        cohort = get(session, key)
        if cohort.course != course:
            raise JourneyError(
                Words(
                    "cohort %(key)r is of the course %(course)r; the application is for %(asked)r",
                    key=cohort.key,
                    course=cohort.course,
                    asked=course,
                )
            )
        if cohort.closed:
            raise JourneyError(
                Words("cohort %(key)r is closed: it takes no new company", key=cohort.key)
            )
        return cohort
    open_ = [c for c in all_cohorts(session) if c.course == course and not c.closed]
    if not open_:
        raise JourneyError(
            Words(
                "no open cohort of the course %(course)r: add one with `edrtrial cohorts add`",
                course=course,
            )
        )
    for cohort in open_:
        if places(session, cohort).free > 0:
            return cohort
    return open_[0]


def trial_months(programme: ProgrammeConfig, cohort: Cohort) -> int:
    """How long the cohort's trials last: its own months, else its course's."""
    if cohort.trial_months is not None:
        return cohort.trial_months
    return programme.courses[cohort.course].trial_months


def fill(session: Session, cohort_id: int, *, actor: str, at: datetime, why: str) -> list[Moved]:
    """Give the cohort's free places to the first on its waiting list, in call order.

    A waiting company already pre-diagnosed (passing) is admitted at once; the others hold
    the place and are pre-diagnosed next. Audited as the step of `actor`, who freed the place
    (`why` says how). A closed cohort still fills from its waiting list.
    """
    cohort = lock(session, cohort_id)
    moved: list[Moved] = []
    free = cohort.capacity - held(session, cohort.id)
    for company in waiting_list(session, cohort.id)[: max(free, 0)]:
        passed = session.scalar(
            select(PreDiagnosis.id).where(
                PreDiagnosis.company_id == company.id, PreDiagnosis.outcome == "passed"
            )
        )
        step, event = ("admit", "admitted") if passed is not None else ("move_up", "moved_up")
        advance(
            session,
            company,
            step,
            actor=actor,
            at=at,
            why=why,
            detail={"cohort": cohort.key},
            place_since=at,
        )
        moved.append(Moved(company.id, company.key, event))
    return moved
