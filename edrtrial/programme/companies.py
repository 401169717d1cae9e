"""Companies, tenants and trials brought into the store, once, from an old config file.

Companies live in the store; the service reads them nowhere else. A config file from before
(its `[[companies]]` blocks) is moved in by `edrtrial companies import-config`: each company
with its tenant, its trial and a journey that stands where its trial stands today, every
step audited with the file as its source. A key already in the store is left as it is, so
importing a file twice changes nothing; a tenant another company holds is refused (one
tenant belongs to one company: each would read the other's alerts). A contact's address and
name are personal data: the audit names the company, not them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from edrtrial import audit
from edrtrial.config import CompanyConfig, ProgrammeConfig
from edrtrial.errors import ConfigError, JourneyError
from edrtrial.models import Cohort, Company, Tenant, Trial
from edrtrial.programme import cohorts
from edrtrial.programme.journey import walk
from edrtrial.states import POLLED_JOURNEY, JourneyState
from edrtrial.timeutil import jst_date
from edrtrial.untrusted import one_line
from edrtrial.words import Words

IMPORTED_COHORT = "imported"
"""The key of the cohort imported companies join when none is named (one per course: the
first course's is this, another's `imported-<course>`)."""


def _journey_of(trial: Trial, today: date) -> JourneyState:
    """Where a company brought with its trial stands on `today` (JST)."""
    if trial.ends_on < today:
        return JourneyState.CONTINUING if trial.decision == "continue" else JourneyState.OFFBOARDING
    if trial.starts_on > today:
        return JourneyState.TENANT_VERIFIED
    if (trial.ends_on - today).days < 14:
        return JourneyState.ENDING
    return JourneyState.IN_TRIAL


@dataclass(frozen=True, slots=True)
class Imported:
    """What the import did with one company: `imported` (`detail`: its journey state),
    `present` (the key is in the store already; nothing changed) or `refused` (why)."""

    key: str
    outcome: Literal["imported", "present", "refused"]
    detail: str


def _course_of(programme: ProgrammeConfig, connector: str) -> str | None:
    """The first course whose EDR is this connector's."""
    return next((k for k, c in programme.courses.items() if c.connector == connector), None)


def _cohort(
    session: Session, programme: ProgrammeConfig, course: str, key: str | None, at: datetime
) -> Cohort:
    """The named cohort (ConfigError when the store has none), else the course's import
    cohort, created on first use."""
    if key is not None:
        found = session.scalar(select(Cohort).where(Cohort.key == key))
        if found is None:
            known = ", ".join(session.scalars(select(Cohort.key).order_by(Cohort.key))) or "none"
            raise ConfigError(f"no cohort {key!r} in the store (cohorts: {known})")
        return found
    first = next(iter(programme.courses))
    key = IMPORTED_COHORT if course == first else f"{IMPORTED_COHORT}-{course}"
    found = session.scalar(select(Cohort).where(Cohort.key == key))
    if found is None:
        label = programme.courses[course].label_ja
        found = Cohort(key=key, name=f"{label}（設定ファイルから移行）", course=course, capacity=0)
        found.created_at = at
        session.add(found)
        session.flush()
    return found


#: Keys of a connection block that hold a path (beside `file:` secret references).
_PATH_KEYS = frozenset({"ca_bundle"})


def _anchored(block: dict[str, Any], base_dir: Path | None) -> dict[str, Any]:
    """The block with each relative path (a `file:` reference, a CA bundle) made absolute
    from the directory of the file it came from: the store outlives that file's place."""
    if base_dir is None:
        return block
    anchored = dict(block)
    for key, value in block.items():
        if isinstance(value, str) and value.startswith("file:"):
            path = Path(value.removeprefix("file:").strip())
            if not path.is_absolute():
                anchored[key] = f"file:{(base_dir / path).resolve()}"
        elif key in _PATH_KEYS and isinstance(value, str) and value:
            if not Path(value).is_absolute():
                anchored[key] = str((base_dir / value).resolve())
    return anchored


def _own_connection(
    programme: ProgrammeConfig, block: dict[str, Any], tenant: str, base_dir: Path | None
) -> dict[str, Any]:
    """What the tenant keeps as its own connection: nothing when the block is simply the
    programme's app for it, else the block (its secrets are references, as in the file,
    anchored to the file's directory)."""
    if programme.app is not None and block == programme.app.connection(tenant):
        return {}
    return _anchored(block, base_dir)


def _holder(session: Session, connector: str, tenant: str) -> str | None:
    """The key of the company holding this tenant, whatever the case it is spelled in."""
    return session.scalar(
        select(Company.key)
        .join(Tenant, Tenant.company_id == Company.id)
        .where(Tenant.connector == connector, func.lower(Tenant.external_id) == tenant.lower())
    )


def import_company(
    session: Session,
    cfg: CompanyConfig,
    programme: ProgrammeConfig,
    *,
    source: str,
    actor: str,
    at: datetime,
    cohort: str | None = None,
    base_dir: Path | None = None,
) -> Imported:
    """Bring one config block into the store, unless its key or its tenant is there already.

    The company gets its tenant (consented and verified: it was polled before), its trial
    (relative sample dates counted from `at`'s day), a place in the cohort, and walks its
    journey to where the trial stands today, each step audited with `source`.
    """
    if session.scalar(select(Company.id).where(Company.key == cfg.key)) is not None:
        return Imported(cfg.key, "present", "already in the store; left as it is")
    block = cfg.connection.model_dump()
    connector = cfg.connection.connector
    external_id = str(block.get("tenant_id", cfg.key))
    if holder := _holder(session, connector, external_id):
        return Imported(
            cfg.key,
            "refused",
            f"tenant {external_id} is held by company {holder!r}; one tenant belongs to one "
            "company",
        )
    course = _course_of(programme, connector)
    if course is None:
        return Imported(cfg.key, "refused", f"no course of the programme uses {connector!r}")
    place = _cohort(session, programme, course, cohort, at)
    if programme.courses[place.course].connector != connector:
        return Imported(
            cfg.key,
            "refused",
            f"cohort {place.key!r} is the {place.course!r} course, not one for {connector!r}",
        )
    if cohort is not None and cohorts.held(session, place.id) >= place.capacity:
        return Imported(cfg.key, "refused", f"cohort {place.key!r} is full ({place.capacity})")
    company = Company(
        key=cfg.key,
        name=cfg.name,
        contact_name=cfg.contact_name,
        contact_email=str(cfg.contact_email),
        language=cfg.language,
        planned_seats=cfg.planned_seats,
        seat_cap=cfg.seat_cap,
        auto_isolation=cfg.auto_isolation,
        course=place.course,
        cohort_id=place.id,
        queued_at=at,
        place_since=at,
        state=JourneyState.APPLIED.value,
        state_since=at,
    )
    company.created_at = at
    session.add(company)
    session.flush()
    if cohort is None:  # the import cohort has a place for each company imported into it
        place.capacity = max(place.capacity, cohorts.held(session, place.id))
    session.add(
        Tenant(
            company_id=company.id,
            connector=connector,
            external_id=external_id,
            connection=_own_connection(programme, block, external_id, base_dir),
            consented_at=at,
            verified_at=at,
        )
    )
    starts_on, ends_on = cfg.trial.dates(jst_date(at))
    trial = Trial(
        company_id=company.id, starts_on=starts_on, ends_on=ends_on, decision=cfg.trial.decision
    )
    if cfg.trial.decision != "undecided":
        trial.decided_at, trial.decided_by = at, actor
    session.add(trial)
    session.flush()
    audit.record(
        session,
        at=at,
        actor=actor,
        action="company.imported",
        tenant_id=session.scalar(select(Tenant.id).where(Tenant.company_id == company.id)),
        target=f"company:{company.key}",
        detail={
            "source": source,
            "cohort": place.key,
            "tenant": f"{connector} {external_id}",
            "trial": [starts_on.isoformat(), ends_on.isoformat()],
            "decision": cfg.trial.decision,
            "auto_isolation": cfg.auto_isolation,
        },
    )
    state = _journey_of(trial, jst_date(at))
    walk(session, company, state, actor=actor, at=at, why=f"imported from {source}")
    return Imported(cfg.key, "imported", state.value)


def import_companies(
    session: Session,
    companies: Sequence[CompanyConfig],
    programme: ProgrammeConfig,
    *,
    source: str,
    actor: str,
    at: datetime,
    cohort: str | None = None,
    base_dir: Path | None = None,
) -> list[Imported]:
    """`import_company` for each block, in the file's order (the caller owns the commit);
    `base_dir` is the directory relative paths in the blocks start from (the file's)."""
    return [
        import_company(
            session,
            cfg,
            programme,
            source=source,
            actor=actor,
            at=at,
            cohort=cohort,
            base_dir=base_dir,
        )
        for cfg in companies
    ]


def worked_on(session: Session) -> frozenset[str]:
    """The keys of the companies whose tenants the service works on: a polled journey state
    and credentials not dropped (a record of any other company is history)."""
    query = (
        select(Company.key).join(Tenant, Tenant.company_id == Company.id).where(*worked_on_filter())
    )
    return frozenset(session.scalars(query))


def worked_on_filter() -> tuple[Any, ...]:
    """The where-clause of `worked_on` (over Company joined with Tenant)."""
    return (
        Company.state.in_([s.value for s in POLLED_JOURNEY]),
        Tenant.credentials_dropped_at.is_(None),
    )


@dataclass(frozen=True, slots=True)
class CompanyRow:
    """A company as `companies list` shows it."""

    key: str
    name: str
    state: str
    cohort: str | None
    tenant: str | None


def company_rows(session: Session) -> list[CompanyRow]:
    """Every company in the store with its cohort's key and its tenant id, by key."""
    query = (
        select(Company.key, Company.name, Company.state, Cohort.key, Tenant.external_id)
        .outerjoin(Cohort, Company.cohort_id == Cohort.id)
        .outerjoin(Tenant, Tenant.company_id == Company.id)
        .order_by(Company.key)
    )
    return [CompanyRow(*row) for row in session.execute(query)]


def store_keys(session: Session) -> list[str]:
    """Every company key in the store, in order."""
    return list(session.scalars(select(Company.key).order_by(Company.key)))


def company_by_key(session: Session, key: str) -> Company | None:
    """The stored company with this key."""
    return session.scalar(select(Company).where(Company.key == key))


def company_named(session: Session, key: str) -> Company:
    """The stored company with this key, or an error naming it (and the key meant, if it was
    typed in another case: keys are lower case and compared exactly)."""
    found = company_by_key(session, key)
    if found is not None:
        return found
    lowered = key.strip().lower()
    if lowered != key and company_by_key(session, lowered) is not None:
        raise JourneyError(
            Words(
                "no company %(key)r: company keys are lower case; did you mean %(lowered)r?",
                key=one_line(key),
                lowered=lowered,
            )
        )
    raise JourneyError(Words("no company %(key)r in the store", key=one_line(key)))


def tenant_of_company(session: Session, company_id: int) -> Tenant | None:
    """The tenant of the company with this id."""
    return session.scalar(select(Tenant).where(Tenant.company_id == company_id))


def tenant_of(session: Session, company_key: str) -> Tenant | None:
    """The tenant of the company with this key."""
    return session.scalar(
        select(Tenant)
        .join(Company, Tenant.company_id == Company.id)
        .where(Company.key == company_key)
    )


def tenants_by_company(session: Session) -> list[tuple[str, Tenant]]:
    """Every stored tenant with its company's key, by company key."""
    query = select(Company.key, Tenant).join(Tenant, Tenant.company_id == Company.id)
    return [(key, tenant) for key, tenant in session.execute(query.order_by(Company.key))]
