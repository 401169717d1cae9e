"""The purge of a company's audit trail: ids, actions, states and dates stay; any other value
goes, also one that names a tenant by an id or a domain the company no longer holds."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Engine, select

from edrtrial import audit
from edrtrial.config import ProgrammeConfig, load_config
from edrtrial.db import transaction
from edrtrial.models import AuditEvent, Base, Company, PreDiagnosis, Tenant, Ticket, Trial
from edrtrial.programme.admission import Diagnosis
from edrtrial.programme.purge import purge_company
from edrtrial.service import admission

import admission_rows
from admission_rows import add_cohort, eligible
from sandbox_config import settings, write_config

AT = datetime(2027, 6, 1, 1, 0, tzinfo=UTC)
MISTYPED = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"  # the tenant id first entered by mistake
DOMAIN = "kestrel-works.onmicrosoft.com"  # how the tenant was first recorded
GUID = "5f1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c09"  # what its sign-in resolved it to


@pytest.fixture
def programme(tmp_path) -> ProgrammeConfig:
    path = write_config(tmp_path / "config.toml", settings("sqlite:///x.db"), companies=0)
    return load_config(path).settings.programme


def test_tenant_ids_domains_and_alert_titles_are_purged(sessions, engine, programme):
    with transaction(sessions) as session:
        company = Company(
            key="kestrel",
            name="Kestrel Works",
            contact_email="it@kestrel.example.jp",
            state="offboarded",
            state_since=AT,
        )
        session.add(company)
        session.flush()
        tenant = Tenant(company_id=company.id, connector="defender", external_id=GUID)
        session.add(tenant)
        session.add(
            Trial(company_id=company.id, starts_on=date(2026, 11, 25), ends_on=date(2027, 2, 24))
        )
        session.flush()
        title = "Suspicious download on KESTREL-PC1"  # no category: the title groups it
        session.add(
            Ticket(
                tenant_id=tenant.id,
                correlation_key=f"device:-:{title}",
                correlation_base=f"device:-:{title}",
                title=title,
                priority="P2",
            )
        )
        for before, after in ((MISTYPED, DOMAIN), (DOMAIN, DOMAIN.upper())):
            audit.record(
                session,
                at=AT,
                actor="cli:secretariat",
                action="company.consent_corrected",
                tenant_id=tenant.id,
                target="company:kestrel",
                detail={"from": before, "to": after, "via": "entered"},
            )
        audit.record(
            session,
            at=AT,
            actor="trial-lifecycle",
            action="company.offboarded",
            tenant_id=tenant.id,
            target="company:kestrel",
            detail={"from": "offboarding", "to": "offboarded", "when": "2027-03-01"},
        )
    with transaction(sessions) as session:
        purge_company(session, programme, session.scalars(select(Company)).one(), actor="t", at=AT)
    with sessions() as session:
        details = [e.detail for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))]
    text = (repr(details) + everything_in(engine)).lower()
    for secret in (MISTYPED, DOMAIN, GUID, "kestrel"):
        assert secret not in text, secret
    # What names nothing stays: the journey's states and dates.
    assert {"from": "offboarding", "to": "offboarded", "when": "2027-03-01", "purged": True} in (
        details
    )


def everything_in(engine: Engine) -> str:
    """Every row of every table, as text."""
    with engine.connect() as conn:
        return "\n".join(
            json.dumps([str(v) for v in row], ensure_ascii=False)
            for table in Base.metadata.sorted_tables
            for row in conn.execute(table.select())
        )


def test_a_purged_company_is_not_named_by_the_company_that_took_its_place(sessions, engine):
    settings = admission_rows.settings()
    add_cohort(sessions, capacity=1)
    eligible(sessions, "alpha", "beta")
    for minute, key in enumerate(("alpha", "beta")):
        with transaction(sessions) as session:
            admission.call(
                session, settings, key, actor="cli:sato", at=AT + timedelta(minutes=minute)
            )
    with transaction(sessions) as session:
        refused = admission.prediagnose(
            session,
            settings,
            "alpha",
            Diagnosis(edr_users=4, existing_edr="Falcon"),
            actor="cli:sato",
            at=AT + timedelta(minutes=5),
        )
    assert [m.event for m in refused.moved] == ["moved_up"]  # beta took alpha's place

    with transaction(sessions) as session:
        alpha = session.scalars(select(Company).where(Company.key == "alpha")).one()
        purge_company(session, settings.programme, alpha, actor="t", at=AT + timedelta(days=91))

    store = everything_in(engine)
    assert "alpha" not in store.lower()
    assert "Falcon" not in store  # the product named in the refusal's reason
    with sessions() as session:
        reasons = session.scalars(select(PreDiagnosis.reasons)).all()
    assert [{"code": "existing_edr"}] in reasons  # what the refusal was, in its code
    assert "beta" in store  # the other company stays whole
