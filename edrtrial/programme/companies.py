"""Companies, tenants and trials: brought into the store from the configuration."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from edrtrial.config import CompanyConfig
from edrtrial.errors import ConfigError
from edrtrial.models import Company, Tenant, Trial
from edrtrial.programme.tenants import may_stand_for


def sync_companies(session: Session, companies: Sequence[CompanyConfig]) -> list[Company]:
    """Create or update each configured company with its tenant and trial (never deletes)."""
    result = []
    for cfg in companies:
        company = session.scalar(select(Company).where(Company.key == cfg.key))
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
            # Its stored alerts, devices and cursors belong to the old tenant: never mix them.
            raise ConfigError(
                f"company {cfg.key!r}: its tenant changed from {tenant.connector} "
                f"{tenant.external_id} to {cfg.connection.connector} {external_id}, but the "
                "store holds the old tenant's data for this company; restore the old value, "
                "or configure the new tenant as a new company key"
            )
        if tenant is None:
            tenant = Tenant(
                company_id=company.id, connector=cfg.connection.connector, external_id=external_id
            )
            session.add(tenant)

        trial = session.scalar(select(Trial).where(Trial.company_id == company.id))
        if trial is None:
            trial = Trial(company_id=company.id, starts_on=cfg.trial.start, ends_on=cfg.trial.end)
            session.add(trial)
        trial.starts_on, trial.ends_on = cfg.trial.start, cfg.trial.end
        trial.decision = cfg.trial.decision
        result.append(company)
    session.flush()
    return result


def company_by_key(session: Session, key: str) -> Company | None:
    """The stored company with this key."""
    return session.scalar(select(Company).where(Company.key == key))


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
