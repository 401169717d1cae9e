"""A company's tenant under one name: the id its connector talks to, held by one company only.

A Defender tenant may be configured by one of its domains; its connector resolves the domain
to the tenant's GUID on first use. The store then holds the GUID, so the guards that compare
a connector's tenant with the stored one (before any send, any mail) compare like with like,
and a second company whose domain turns out to be a tenant already held is refused before
one record of that tenant is stored under it.
"""

from __future__ import annotations

import logging
import re

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from edrtrial.errors import ConfigError
from edrtrial.models import Alert, Company, Device, Incident, PollCursor, Tenant

log = logging.getLogger(__name__)

_GUID = re.compile(r"^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$")


def may_stand_for(stored: str, configured: str) -> bool:
    """Whether a configured tenant id may name the stored tenant without a look-up.

    The same id does; so does a name configured for a stored GUID (the tenant configured
    by its domain, resolved earlier), which `bind_tenant` checks once the connector has
    resolved it again, before anything is read.
    """
    return stored == configured or (bool(_GUID.match(stored)) and not _GUID.match(configured))


def _holder(session: Session, tenant: Tenant, resolved: str) -> str | None:
    """The key of another company holding the tenant `resolved`, if any."""
    return session.scalar(
        select(Company.key)
        .join(Tenant, Tenant.company_id == Company.id)
        .where(
            Tenant.connector == tenant.connector,
            Tenant.external_id == resolved,
            Tenant.id != tenant.id,
        )
    )


def _held_by(company: str, configured: str, resolved: str, holder: str | None) -> ConfigError:
    held = f"company {holder!r}" if holder else "another company"
    return ConfigError(
        f"company {company!r}: tenant_id {configured} is tenant {resolved}, which {held} "
        "holds; one tenant belongs to one company: correct the config"
    )


def holds_data(session: Session, tenant_id: int) -> bool:
    """Whether the store holds anything read from this tenant: alerts, incidents, devices or
    a poll cursor. A tenant that holds none may be corrected to another (a mistyped id)."""
    return any(
        session.scalar(select(model.id).where(model.tenant_id == tenant_id).limit(1)) is not None
        for model in (Alert, Incident, Device, PollCursor)
    )


def bind_tenant(session: Session, tenant: Tenant, configured: str, resolved: str) -> None:
    """Hold `resolved` (the connector's tenant id) for this tenant's company, or refuse.

    Refused (ConfigError naming both companies) when another company holds that tenant, or
    when the store holds another tenant's data for this company. A domain not resolved
    before is replaced by its GUID. Two companies binding the same tenant at once (two
    domains of one tenant, polled in parallel) both pass the look-up; the store's unique
    key lets one win, and the other gets the same refusal, not an IntegrityError.
    """
    if tenant.external_id == resolved:
        return
    company = session.get_one(Company, tenant.company_id).key
    holder = _holder(session, tenant, resolved)
    if holder is not None:
        raise _held_by(company, configured, resolved, holder)
    if tenant.external_id != configured:  # a GUID found earlier, not what it resolves to now
        raise ConfigError(
            f"company {company!r}: tenant_id {configured} is now tenant {resolved}, but the "
            f"store holds tenant {tenant.external_id}'s data for this company; restore the old "
            "value, or configure the new tenant as a new company key"
        )
    try:
        with session.begin_nested():
            tenant.external_id = resolved
            session.flush()
    except IntegrityError:
        raise _held_by(company, configured, resolved, _holder(session, tenant, resolved)) from None
    log.info("company %s: tenant %s is tenant %s", company, configured, resolved)
