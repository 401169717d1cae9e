"""Companies, tenants and trials: brought into the store from the configuration.

What a company decided (continue or offboard), whether it agreed to automatic isolation,
and who its contact is decide what the service does to its devices and whom it mails; so
each change the sync makes to them is audited, with the config file as its source. A
company seen for the first time has them audited as changes from nothing (`from` is null):
a consent or a decision it arrives with acts on its devices as much as a changed one. A
contact's address and name are personal data: the audit says that they changed, not what
they were.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from edrtrial import audit
from edrtrial.config import CompanyConfig
from edrtrial.errors import ConfigError, JourneyError
from edrtrial.models import Company, Tenant, Trial
from edrtrial.programme.tenants import holds_data, may_stand_for
from edrtrial.states import JourneyState
from edrtrial.timeutil import jst_date
from edrtrial.untrusted import one_line

SYNC_ACTOR = "config-sync"
"""The audit actor of changes that arrive through the config file."""


def _company_changes(company: Company | None, cfg: CompanyConfig) -> dict[str, dict[str, Any]]:
    """The audited changes the config makes to a company (None: new): audit action → detail."""
    changes: dict[str, dict[str, Any]] = {}
    isolation = None if company is None else company.auto_isolation
    if isolation != cfg.auto_isolation:
        changes["company.auto_isolation_changed"] = {"from": isolation, "to": cfg.auto_isolation}
    email, name, language = (
        (None, None, None)
        if company is None
        else (company.contact_email, company.contact_name, company.language)
    )
    contact = [
        field
        for field, before, after in (
            ("email", email, str(cfg.contact_email)),
            ("name", name, cfg.contact_name),
        )
        if before != after
    ]
    if contact or language != cfg.language:
        detail: dict[str, Any] = {"changed": contact}
        if language != cfg.language:
            detail["changed"].append("language")
            detail["language"] = {"from": language, "to": cfg.language}
        changes["company.contact_changed"] = detail
    return changes


def _trial_dates(trial: Trial | None, cfg: CompanyConfig, at: datetime) -> tuple[date, date]:
    """The dates the store keeps: the config's fixed dates; for a relative trial (a sample),
    counted from the day the company was first seeded, and kept as stored afterwards."""
    if trial is not None and cfg.trial.relative:
        return trial.starts_on, trial.ends_on
    return cfg.trial.dates(jst_date(at))


def _trial_changes(
    trial: Trial | None, cfg: CompanyConfig, dates: tuple[date, date]
) -> dict[str, dict[str, Any]]:
    """The audited changes the config makes to a trial (None: new): audit action → detail.

    A new trial's dates are not a change; its decision is, since `continue` or `offboard`
    decides what happens to the company's devices from the first day.
    """
    changes: dict[str, dict[str, Any]] = {}
    decision = None if trial is None else trial.decision
    if decision != cfg.trial.decision:
        changes["trial.decision_changed"] = {"from": decision, "to": cfg.trial.decision}
    if trial is None:
        return changes
    if (trial.starts_on, trial.ends_on) != dates:
        changes["trial.dates_changed"] = {
            "from": [trial.starts_on.isoformat(), trial.ends_on.isoformat()],
            "to": [dates[0].isoformat(), dates[1].isoformat()],
        }
    return changes


def _journey_of(trial: Trial, today: date) -> JourneyState:
    """Where a company brought with its trial stands on `today` (JST)."""
    if trial.ends_on < today:
        return JourneyState.CONTINUING if trial.decision == "continue" else JourneyState.OFFBOARDING
    if trial.starts_on > today:
        return JourneyState.TENANT_VERIFIED
    if (trial.ends_on - today).days < 14:
        return JourneyState.ENDING
    return JourneyState.IN_TRIAL


MisconfiguredTenant = Callable[[Tenant, str], None]
"""Given a tenant the config cannot name now and why: parks it (the service's business)."""
CorrectedTenant = Callable[[Tenant], None]
"""Given a tenant whose id the config corrected: lets it poll again (the service's business:
parked for the old, mistyped id, it would otherwise wait for an operator's resume)."""


def _retarget(
    session: Session,
    tenant: Tenant,
    cfg: CompanyConfig,
    external_id: str,
    *,
    source: str,
    at: datetime,
    park: MisconfiguredTenant | None,
    corrected: CorrectedTenant | None = None,
) -> None:
    """The config names another tenant for a stored company: take it, or keep the old one.

    A tenant that holds nothing yet (its id was mistyped, so nothing was ever read) takes
    the corrected id, audited with the config file as source. One whose store holds alerts,
    incidents, devices or cursors keeps them apart from the new tenant's: the company is
    handed to `park` with the reason (the others go on), or refused without one.
    """
    connector = cfg.connection.connector
    before = f"{tenant.connector} {tenant.external_id}"
    taken = session.scalar(
        select(Company.key)
        .join(Tenant, Tenant.company_id == Company.id)
        .where(
            Tenant.connector == connector, Tenant.external_id == external_id, Tenant.id != tenant.id
        )
    )
    if taken is None and not holds_data(session, tenant.id):
        audit.record(
            session,
            at=at,
            actor=SYNC_ACTOR,
            action="tenant.changed",
            tenant_id=tenant.id,
            target=f"company:{cfg.key}",
            detail={"from": before, "to": f"{connector} {external_id}", "source": source},
        )
        tenant.connector, tenant.external_id = connector, external_id
        if corrected is not None:
            corrected(tenant)
        return
    held = f"company {taken!r} holds it" if taken else "the store holds the old tenant's data"
    reason = (
        f"company {cfg.key!r}: its tenant changed from {before} to {connector} {external_id} "
        f"in {source}, but {held}; restore the old value, or configure the new tenant as a "
        "new company key"
    )
    if park is None:
        raise ConfigError(reason)
    park(tenant, reason)


def sync_companies(
    session: Session,
    companies: Sequence[CompanyConfig],
    *,
    source: str,
    at: datetime,
    park: MisconfiguredTenant | None = None,
    corrected: CorrectedTenant | None = None,
) -> list[Company]:
    """Create or update each configured company with its tenant and trial (never deletes).

    `source` names the config file in the audit of each change to a decision, a trial, a
    consent, a contact or a corrected tenant id (planned offboarding that no longer fits is
    the devices' business: `devices.offboarding.cancel_moot_offboarding`). A company whose
    tenant cannot change (see `_retarget`) goes to `park`, or stops the sync without it.
    """
    result = []
    for cfg in companies:
        company = session.scalar(select(Company).where(Company.key == cfg.key))
        changes = _company_changes(company, cfg)
        if company is None:
            company = Company(key=cfg.key)
            session.add(company)
        company.name = cfg.name
        company.contact_name = cfg.contact_name
        company.contact_email = str(cfg.contact_email)
        company.language = cfg.language
        company.planned_seats = cfg.planned_seats
        company.seat_cap = cfg.seat_cap
        company.auto_isolation = cfg.auto_isolation
        session.flush()

        connection = cfg.connection.model_dump()
        external_id = str(connection.get("tenant_id", cfg.key))
        tenant = session.scalar(select(Tenant).where(Tenant.company_id == company.id))
        if tenant is not None and (
            tenant.connector != cfg.connection.connector
            or not may_stand_for(tenant.external_id, external_id)
        ):
            _retarget(
                session,
                tenant,
                cfg,
                external_id,
                source=source,
                at=at,
                park=park,
                corrected=corrected,
            )
        if tenant is None:
            tenant = Tenant(
                company_id=company.id,
                connector=cfg.connection.connector,
                external_id=external_id,
                consented_at=at,
            )
            session.add(tenant)
        tenant.connection = connection

        trial = session.scalar(select(Trial).where(Trial.company_id == company.id))
        dates = _trial_dates(trial, cfg, at)
        changes |= _trial_changes(trial, cfg, dates)
        if trial is None:
            trial = Trial(company_id=company.id, starts_on=dates[0], ends_on=dates[1])
            session.add(trial)
        trial.starts_on, trial.ends_on = dates
        trial.decision = cfg.trial.decision
        if company.state == JourneyState.APPLIED:  # new: where its trial stands today
            company.state = _journey_of(trial, jst_date(at))
            company.state_since = at
        session.flush()
        for action, detail in changes.items():
            audit.record(
                session,
                at=at,
                actor=SYNC_ACTOR,
                action=action,
                tenant_id=tenant.id,
                target=f"company:{company.key}",
                detail=detail | {"source": source},
            )
        result.append(company)
    session.flush()
    return result


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
            f"no company {one_line(key)!r}: company keys are lower case; did you mean {lowered!r}?"
        )
    raise JourneyError(f"no company {one_line(key)!r} in the store")


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
