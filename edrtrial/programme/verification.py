"""A consented tenant verified (every API the service needs answered), and what is still not.

`tenants verify` runs the connector's access checks; what it found is recorded here: the
journey's `verify` step with `Tenant.verified_at`, or a failed verification in the audit
log (the company stays consented). A tenant recorded by one of its domains is bound to the
GUID its sign-in named, refused if another company holds that tenant.

`unverified` lists what is still not verified after `programme.unverified_days`: tenants of
consented (or later) companies never verified since their consent, and devices that have
run no detection test since they were first seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from edrtrial import audit
from edrtrial.models import Company, Device, Tenant
from edrtrial.programme.journey import advance, state_of
from edrtrial.programme.tenants import bind_tenant
from edrtrial.states import JourneyState

VERIFY_FAILED = "company.verify_failed"
REVERIFIED = "company.reverified"
#: Companies whose tenant and devices are expected to be verified by now.
CONNECTED = (
    JourneyState.CONSENTED,
    JourneyState.TENANT_VERIFIED,
    JourneyState.IN_TRIAL,
    JourneyState.ENDING,
)


def record_verified(
    session: Session,
    company: Company,
    tenant: Tenant,
    resolved: str,
    *,
    actor: str,
    at: datetime,
    checks: list[str],
) -> JourneyState:
    """Every check passed: bind the tenant to the id its sign-in named, set `verified_at`,
    and take the `verify` step (a company already past it only has its date renewed)."""
    bind_tenant(session, tenant, tenant.external_id, resolved)
    tenant.verified_at = at
    if state_of(company) is JourneyState.CONSENTED:
        return advance(
            session,
            company,
            "verify",
            actor=actor,
            at=at,
            why=f"every check passed in tenant {tenant.external_id}",
            detail={"checks": checks},
        )
    audit.record(
        session,
        at=at,
        actor=actor,
        action=REVERIFIED,
        tenant_id=tenant.id,
        target=f"company:{company.key}",
        detail={"checks": checks, "state": company.state},
    )
    return state_of(company)


def record_failed(
    session: Session,
    company: Company,
    tenant: Tenant,
    *,
    actor: str,
    at: datetime,
    failed: list[str],
) -> None:
    """A verification that found problems: audited, nothing else changes."""
    audit.record(
        session,
        at=at,
        actor=actor,
        action=VERIFY_FAILED,
        tenant_id=tenant.id,
        target=f"company:{company.key}",
        detail={"failed": failed, "state": company.state},
    )


@dataclass(frozen=True, slots=True)
class Unverified:
    """A tenant never verified, or a device that ran no detection test, past the days allowed."""

    company_key: str
    company_name: str
    state: JourneyState
    what: str  # "tenant" | "device"
    name: str  # the tenant id, or the device's name (its id when it has none)
    since: datetime  # consented, or first seen
    device_id: str = ""

    def days(self, now: datetime) -> int:
        """Whole days since `since`."""
        return (now - self.since).days


def unverified(session: Session, now: datetime, days: int) -> list[Unverified]:
    """Tenants consented more than `days` ago and never verified, then devices first seen
    more than `days` ago without a detection test, of companies consented or further on;
    by company key."""
    cutoff = now - timedelta(days=days)
    states = [s.value for s in CONNECTED]
    found: list[Unverified] = []
    tenants = session.execute(
        select(Company, Tenant)
        .join(Tenant, Tenant.company_id == Company.id)
        .where(
            Company.state.in_(states),
            Tenant.verified_at.is_(None),
            Tenant.consented_at.is_not(None),
            Tenant.consented_at <= cutoff,
        )
        .order_by(Company.key)
    )
    for company, tenant in tenants:
        assert tenant.consented_at is not None
        found.append(
            Unverified(
                company.key,
                company.name,
                JourneyState(company.state),
                "tenant",
                tenant.external_id,
                tenant.consented_at,
            )
        )
    devices = session.execute(
        select(Company, Device)
        .join(Tenant, Tenant.company_id == Company.id)
        .join(Device, Device.tenant_id == Tenant.id)
        .where(
            Company.state.in_(states),
            Device.in_inventory.is_(True),
            Device.detection_test_at.is_(None),
            Device.first_seen.is_not(None),
            Device.first_seen <= cutoff,
        )
        .order_by(Company.key, Device.first_seen, Device.id)
    )
    for company, device in devices:
        assert device.first_seen is not None
        found.append(
            Unverified(
                company.key,
                company.name,
                JourneyState(company.state),
                "device",
                device.name or device.source_id,
                device.first_seen,
                device.source_id,
            )
        )
    return sorted(found, key=lambda u: (u.company_key, u.what != "tenant", u.since))
