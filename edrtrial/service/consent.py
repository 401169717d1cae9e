"""The company's consent, as the CLI (`tenants consent-url`, `tenants consented`) and the
console take it: a new link with the mail that carries it, and the administrator's answer
recorded, from the reply address or the tenant id the secretariat entered.

The programme decides (`programme.consent`); this puts the link and its mail together, and
reads a reply before it is recorded, so both callers take the same steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from edrtrial.config import Settings
from edrtrial.errors import JourneyError
from edrtrial.models import Tenant
from edrtrial.notify.consent import consent_request_mail
from edrtrial.programme import consent
from edrtrial.programme.companies import company_named
from edrtrial.reports.render import RenderedMail
from edrtrial.states import JourneyState
from edrtrial.words import Words


@dataclass(frozen=True, slots=True)
class IssuedLink:
    """A consent link just issued, and the mail to send the company's administrator."""

    company_key: str
    company_name: str
    url: str
    mail: RenderedMail


def issue_consent_link(
    session: Session, settings: Settings, key: str, *, actor: str, at: datetime
) -> IssuedLink:
    """A new admin-consent link for the company (audited) and its mail, in the company's
    language; earlier links of the company stay valid. Does not commit."""
    company = company_named(session, key)
    link = consent.issue_link(session, settings.programme, company, actor=actor, at=at)
    again = company.state == JourneyState.CONSENTED.value
    mail = consent_request_mail(company, link.url, settings.programme, settings.desk, again=again)
    return IssuedLink(company.key, company.name, link.url, mail)


def record_consented(
    session: Session,
    settings: Settings,
    key: str,
    *,
    reply: str | None = None,
    tenant_id: str | None = None,
    actor: str,
    at: datetime,
) -> Tenant:
    """Record the company's admin consent from the reply address its administrator landed
    on (its state must be that of a link issued for this company), or from the tenant id
    entered: exactly one of them. Does not commit."""
    if (reply is None) == (tenant_id is None):
        raise JourneyError(Words("give one of --reply URL or --tenant-id ID"))
    company = company_named(session, key)
    if reply is not None:
        answer = consent.parse_reply(reply)
        if not answer.granted:
            raise JourneyError(f"company {key!r}: {consent.explain_error(answer)}")
        used = consent.check_state(session, company, answer.state)
        tenant, via = answer.tenant, "reply"
    else:
        assert tenant_id is not None
        tenant, via, used = tenant_id, "entered", ""
    return consent.record_consent(
        session,
        settings.programme,
        company,
        tenant,
        actor=actor,
        at=at,
        via=via,
        state_sha256=used,
    )
