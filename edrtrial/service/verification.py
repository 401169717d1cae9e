"""`tenants verify`: a consented company's tenant checked for everything the service needs.

The connector does the checking (`Connector.verify_access`: sign-in, the smallest read of
each endpoint, the permissions of the actions it cannot try); the outcome is recorded in the
journey (`programme/verification.py`). The network is called outside any transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from edrtrial.connectors import connector_class
from edrtrial.connectors.base import AccessCheck
from edrtrial.db import transaction
from edrtrial.errors import JourneyError
from edrtrial.models import Tenant
from edrtrial.programme.companies import company_named
from edrtrial.programme.connection import connection_settings
from edrtrial.programme.journey import state_of
from edrtrial.programme.verification import CONNECTED, record_failed, record_verified
from edrtrial.service.runtime import Runtime
from edrtrial.states import POLLED_JOURNEY, JourneyState
from edrtrial.words import Words


@dataclass(frozen=True, slots=True)
class Verification:
    """What `verify` found for one company, and where its journey stands afterwards."""

    company_key: str
    tenant: str
    checks: list[AccessCheck]
    state: JourneyState

    @property
    def passed(self) -> bool:
        """Every check passed."""
        return all(check.ok for check in self.checks)


def verify_tenant(runtime: Runtime, key: str, actor: str) -> Verification:
    """Check the company's tenant and record the outcome: `verify` on success (consented →
    tenant_verified), an audited failure otherwise (the company stays where it is)."""
    with runtime.sessions() as session:
        company = company_named(session, key)
        state = state_of(company)
        tenant = session.scalar(select(Tenant).where(Tenant.company_id == company.id))
        if tenant is None or state not in (*CONNECTED, *POLLED_JOURNEY):
            raise JourneyError(
                Words(
                    "company %(key)r is %(state)s (%(state_ja)s): there is no consented "
                    "tenant to verify yet; record the consent first (`tenants consented`)",
                    key=company.key,
                    state=state.value,
                    state_ja=state.ja,
                )
            )
        settings = connection_settings(runtime.config.settings.programme, tenant)
        tenant_row_id, external_id = tenant.id, tenant.external_id
    connector = connector_class(str(settings.get("connector", ""))).from_settings(
        settings, runtime.config.base_dir
    )
    try:
        checks = connector.verify_access()
        resolved = connector.tenant_id if all(c.ok for c in checks) else ""
    finally:
        connector.close()
    at = runtime.clock()
    with transaction(runtime.sessions) as session:
        company = company_named(session, key)
        tenant = session.get_one(Tenant, tenant_row_id)
        names = [check.name for check in checks]
        if resolved:
            state = record_verified(
                session, company, tenant, resolved, actor=actor, at=at, checks=names
            )
        else:
            failed = [check.name for check in checks if not check.ok]
            record_failed(session, company, tenant, actor=actor, at=at, failed=failed)
            state = state_of(company)
        external_id = tenant.external_id
    return Verification(key, external_id, checks, state)
