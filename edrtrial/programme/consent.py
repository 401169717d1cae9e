"""A company's admin consent to the programme's app: the link, the reply, the tenant recorded.

The link is Entra ID's v2.0 admin-consent endpoint
(`{authority}/organizations/v2.0/adminconsent?client_id=…&scope=…&redirect_uri=…&state=…`):
unlike the older `/adminconsent`, it names the permissions asked for (`scope`: the `.default`
of Graph and of the Defender for Endpoint API, i.e. every application permission configured
on the app), and with "organizations" the administrator's own sign-in picks the tenant, so
the secretariat need not know the tenant id beforehand. Microsoft documents that `common`
must not be used here.

The `state` binds the reply to one company: a random nonce, whose SHA-256 is kept in the
audit event of the link's issue (never the nonce itself). A reply is accepted for a company
only if its state is the hash of a link issued for that company: a state made up, mistyped,
or issued for another company is refused, naming that company, so a reply pasted into the
wrong company's command cannot attach a tenant to it. A state is used once (its hash is
kept in the consent's audit detail), and only the newest link issued for a company is
answered: a reply replayed after a correction, or one to a link sent again since, changes
nothing. The nonce lives in the store, not in a
key file, so every machine sharing the store checks the same links.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from edrtrial import audit
from edrtrial.config import ProgrammeConfig
from edrtrial.connectors.defender.config import DefenderSettings, tenant_spelling
from edrtrial.errors import ConfigError, JourneyError
from edrtrial.models import AuditEvent, Company, Tenant
from edrtrial.programme.journey import advance, state_of
from edrtrial.programme.tenants import holds_data
from edrtrial.states import JourneyState
from edrtrial.timeutil import to_jst
from edrtrial.untrusted import one_line
from edrtrial.words import Words

ISSUED = "company.consent_url"
CORRECTED = "company.consent_corrected"
CONFIRMED = "company.consent_confirmed"
CONSENTED = "company.consent"  # the journey's `consent` step, as `advance` audits it
_USED = "state_sha256"  # in a consent's audit detail: the reply's state, used once
_PLACEHOLDER = "00000000-0000-0000-0000-000000000000"  # validates the app block alone
# Entra's admin-consent errors an administrator meets, in words a secretariat can pass on.
_CONSENT_ERRORS = {
    "access_denied": "the administrator declined the consent, or closed the page",
    "consent_required": "the account that signed in may not consent for the organisation",
}
_AADSTS_WORDS = {
    90094: "the account that signed in is not an administrator who may grant this consent "
    "(a global administrator must open the link)",
    65004: "the administrator declined the consent",
    50020: "the account that signed in belongs to no organisation (a personal Microsoft "
    "account); sign in with the company's work account",
    700016: "the programme's app was not found (check the app registration's client id)",
    90002: "the organisation named in the link does not exist",
    50011: "the reply address is not registered on the programme's app",
    650052: "the organisation lacks a service the app asks for (Defender for Business not "
    "provisioned yet?): finish the set-up in security.microsoft.com, then consent again",
}


@dataclass(frozen=True, slots=True)
class ConsentLink:
    """The admin-consent URL for one company, with the state it carries."""

    url: str
    state: str
    tenant_hint: str  # "organizations", or the tenant already recorded (a link re-issued)


@dataclass(frozen=True, slots=True)
class ConsentReply:
    """What the administrator's browser landed on: a tenant and the state, or Entra's error."""

    tenant: str = ""
    state: str = ""
    error: str = ""
    description: str = ""

    @property
    def granted(self) -> bool:
        """Consent was given: a tenant came back and no error."""
        return bool(self.tenant) and not self.error


def app_settings(programme: ProgrammeConfig) -> DefenderSettings:
    """The programme's app registration as the Defender connector reads it."""
    if programme.app is None:
        raise ConfigError(
            "no [programme.app] in the config: the programme's app registration (client id, "
            "secret or certificate reference) is needed for a consent link"
        )
    try:
        return DefenderSettings.model_validate(programme.app.connection(_PLACEHOLDER))
    except ValidationError as err:
        raise ConfigError(f"[programme.app]: {err.errors()[0]['msg']}") from err


def _digest(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def issue_link(
    session: Session, programme: ProgrammeConfig, company: Company, *, actor: str, at: datetime
) -> ConsentLink:
    """A new consent link for an admitted company (or one consented but not yet verified,
    whose administrator must consent again), its issue audited with the state's hash."""
    state = state_of(company)
    if state not in (JourneyState.ADMITTED, JourneyState.CONSENTED):
        raise JourneyError(
            Words(
                "company %(key)r is %(state)s (%(state_ja)s): a consent link is for an "
                "admitted company, or one consented whose tenant is not verified yet",
                key=company.key,
                state=state.value,
                state_ja=state.ja,
            )
        )
    app = app_settings(programme)
    tenant = session.scalar(select(Tenant).where(Tenant.company_id == company.id))
    hint = tenant.external_id if tenant is not None else "organizations"
    nonce = secrets.token_urlsafe(24)
    query: dict[str, str] = {
        "client_id": app.client_id,
        "scope": f"{app.graph_scope} {app.mde_scope}",
    }
    if programme.consent_redirect_uri:
        query["redirect_uri"] = programme.consent_redirect_uri
    query["state"] = nonce
    url = f"{app.authority_host}/{hint}/v2.0/adminconsent?{urlencode(query)}"
    audit.record(
        session,
        at=at,
        actor=actor,
        action=ISSUED,
        tenant_id=tenant.id if tenant is not None else None,
        target=f"company:{company.key}",
        detail={"state_sha256": _digest(nonce), "tenant_hint": hint},
    )
    return ConsentLink(url, nonce, hint)


def parse_reply(url: str) -> ConsentReply:
    """The reply address the administrator landed on, read (query or fragment)."""
    parts = urlsplit(url.strip())
    fields = parse_qs(parts.query or parts.fragment, keep_blank_values=True)

    def one(name: str) -> str:
        return fields.get(name, [""])[0].strip()

    error = one("error")
    granted = one("admin_consent").lower() == "true"
    if not error and not granted:
        raise JourneyError(
            Words(
                "the reply address carries neither admin_consent=True nor an error: give the "
                "whole address the administrator's browser showed after the consent"
            )
        )
    return ConsentReply(
        tenant=one("tenant") if granted else "",
        state=one("state"),
        error=error,
        description=one("error_description"),
    )


def explain_error(reply: ConsentReply) -> str:
    """Entra's refusal in words: what happened and what to do, with its own code."""
    code = _aadsts(reply.description)
    words = _AADSTS_WORDS.get(code) if code else None
    words = words or _CONSENT_ERRORS.get(reply.error, "Entra ID refused the consent")
    first = reply.description.splitlines()[0] if reply.description else ""
    quoted = f" ({one_line(first)})" if first else f" ({one_line(reply.error)})"
    return f"consent was not given: {words}{quoted}; nothing was recorded"


def _aadsts(text: str) -> int | None:
    found = re.search(r"AADSTS(\d+)", text)
    return int(found.group(1)) if found else None


def check_state(session: Session, company: Company, state: str) -> str:
    """Refuse a reply whose state was not issued for this company's consent link, was
    already used to record a consent, or belongs to a link a newer one replaced; the
    state's hash, for `record_consent` to mark it used."""
    if not state:
        raise JourneyError(
            Words(
                "company %(key)r: the reply carries no state; give the whole address, or "
                "record the tenant id with --tenant-id once the company has confirmed it",
                key=company.key,
            )
        )
    digest = _digest(state)
    issued = session.scalars(
        select(AuditEvent).where(AuditEvent.action == ISSUED).order_by(AuditEvent.id)
    ).all()
    mine = [e for e in issued if e.target == f"company:{company.key}"]
    for event in issued:
        if event.detail.get("state_sha256") != digest:
            continue
        if event not in mine:
            other = event.target.removeprefix("company:")
            raise JourneyError(
                Words(
                    "this reply belongs to company %(other)r's consent link, not %(key)r's; "
                    "nothing was recorded",
                    other=other,
                    key=company.key,
                )
            )
        if _used(session, digest):
            raise JourneyError(
                Words(
                    "company %(key)r: this reply was already recorded once; a reply is "
                    "used once (for a new consent, issue a new link with `tenants consent-url`); "
                    "nothing was recorded",
                    key=company.key,
                )
            )
        if event is not mine[-1]:
            raise JourneyError(
                Words(
                    "company %(key)r: this reply answers a consent link that a newer one "
                    "(issued %(issued)s JST) replaced; give the reply to the newest link; "
                    "nothing was recorded",
                    key=company.key,
                    issued=to_jst(mine[-1].at).strftime("%Y-%m-%d %H:%M"),
                )
            )
        return digest
    raise JourneyError(
        Words(
            "company %(key)r: the reply's state was not issued by `tenants consent-url`; "
            "nothing was recorded (a link issued elsewhere, or the address was changed)",
            key=company.key,
        )
    )


def _used(session: Session, digest: str) -> bool:
    """Whether a consent (or its correction) was already recorded from this state."""
    recorded = select(AuditEvent.detail).where(
        AuditEvent.action.in_((CONSENTED, CORRECTED, CONFIRMED))
    )
    return any(detail.get(_USED) == digest for detail in session.scalars(recorded))


def spelled(programme: ProgrammeConfig, company: Company, tenant: str) -> tuple[str, str]:
    """The course's connector and the tenant id in that connector's one spelling."""
    course = programme.courses.get(company.course)
    if course is None:
        raise ConfigError(f"company {company.key!r}: no course {company.course!r} in the config")
    if course.connector != "defender":
        raise JourneyError(
            Words(
                "company %(key)r: its course's EDR (%(connector)s) takes no admin "
                "consent; its connection is configured with its own key",
                key=company.key,
                connector=course.connector,
            )
        )
    try:
        return course.connector, tenant_spelling(tenant)
    except ValueError as err:
        raise JourneyError(f"tenant id {one_line(tenant)!r}: {err}") from None


def _holder(session: Session, connector: str, external_id: str, company: Company) -> str | None:
    return session.scalar(
        select(Company.key)
        .join(Tenant, Tenant.company_id == Company.id)
        .where(
            Tenant.connector == connector,
            Tenant.external_id == external_id,
            Company.id != company.id,
        )
    )


def _refuse_held(company: Company, external_id: str, holder: str) -> JourneyError:
    return JourneyError(
        Words(
            "tenant %(tenant)s is held by company %(holder)r; one tenant belongs to one "
            "company, nothing was recorded for %(key)r",
            tenant=external_id,
            holder=holder,
            key=company.key,
        )
    )


def record_consent(
    session: Session,
    programme: ProgrammeConfig,
    company: Company,
    tenant: str,
    *,
    actor: str,
    at: datetime,
    via: str,
    state_sha256: str = "",
) -> Tenant:
    """Record the tenant the company's administrator consented in, and take the `consent`
    step; or, for a company consented but not yet verified, correct a mistyped tenant id
    while the store holds nothing read from it. `via` says how it came ("reply", "entered");
    `state_sha256` (from `check_state`) marks the reply's state used."""
    connector, external_id = spelled(programme, company, tenant)
    holder = _holder(session, connector, external_id, company)
    if holder is not None:
        raise _refuse_held(company, external_id, holder)
    row = session.scalar(select(Tenant).where(Tenant.company_id == company.id))
    state = state_of(company)
    if state is JourneyState.CONSENTED and row is not None:
        return _correct(
            session, company, row, external_id, actor=actor, at=at, via=via, used=state_sha256
        )
    if state is not JourneyState.ADMITTED:
        raise JourneyError(
            Words(
                "company %(key)r is %(state)s (%(state_ja)s): consent is recorded for "
                "an admitted company (or corrected while consented and not yet verified)",
                key=company.key,
                state=state.value,
                state_ja=state.ja,
            )
        )
    if row is not None:  # a tenant kept from an earlier step (an imported company)
        row.connector, row.external_id, row.consented_at = connector, external_id, at
    else:
        row = Tenant(
            company_id=company.id, connector=connector, external_id=external_id, consented_at=at
        )
        session.add(row)
    _flush_held(session, company, connector, external_id)
    advance(
        session,
        company,
        "consent",
        actor=actor,
        at=at,
        why=f"admin consent in tenant {external_id} ({via})",
        detail={"tenant": external_id, "via": via}
        | ({_USED: state_sha256} if state_sha256 else {}),
    )
    return row


def _flush_held(session: Session, company: Company, connector: str, external_id: str) -> None:
    """Flush; two companies recording one tenant at once: the store's key lets one win."""
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        holder = _holder(session, connector, external_id, company) or "another company"
        raise _refuse_held(company, external_id, holder) from None


def _correct(
    session: Session,
    company: Company,
    row: Tenant,
    external_id: str,
    *,
    actor: str,
    at: datetime,
    via: str,
    used: str,
) -> Tenant:
    if row.external_id == external_id:
        if used:  # the same tenant again from a new link: its reply is used all the same
            audit.record(
                session,
                at=at,
                actor=actor,
                action=CONFIRMED,
                tenant_id=row.id,
                target=f"company:{company.key}",
                detail={"tenant": external_id, "via": via, _USED: used},
            )
        return row  # the same consent told twice: nothing changes
    if holds_data(session, row.id):
        raise JourneyError(
            Words(
                "company %(key)r: the store already holds data read from tenant "
                "%(tenant)s; its tenant cannot be changed to %(new)s",
                key=company.key,
                tenant=row.external_id,
                new=external_id,
            )
        )
    before = row.external_id
    row.external_id, row.consented_at = external_id, at
    _flush_held(session, company, row.connector, external_id)
    detail: dict[str, Any] = {"from": before, "to": external_id, "via": via}
    if used:
        detail[_USED] = used
    audit.record(
        session,
        at=at,
        actor=actor,
        action=CORRECTED,
        tenant_id=row.id,
        target=f"company:{company.key}",
        detail=detail,
    )
    return row
