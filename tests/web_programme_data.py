"""A second cohort with its own company beside the sample programme's, for the secretariat's
pages: what a person limited to one cohort must never see of the other, and a hostile name.
"""

from __future__ import annotations

from datetime import timedelta

from edrtrial.db import transaction
from edrtrial.models import Company, Device, Tenant, Trial

import clock
from admission_rows import add_cohort, add_eligible
from web_support import Console

OTHER_COHORT = "other-2"
OTHER_KEY = "kirishima-kogyo"
OTHER_NAME = "霧島工業株式会社"
HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)>\u202eevil"
HOSTILE_KEY = "hostile-shoji"


def add_other_cohort(console: Console) -> None:
    """Cohort `other-2` with one company in its trial (a tenant, a device), and an applicant
    whose name is hostile markup (in no cohort: seen only by a person who sees all)."""
    sessions = console.runtime.sessions
    cohort_id = add_cohort(sessions, OTHER_COHORT, capacity=5)
    with transaction(sessions) as session:
        company = add_eligible(
            session,
            OTHER_KEY,
            state="in_trial",
            name=OTHER_NAME,
            cohort_id=cohort_id,
            place_since=clock.NOW - timedelta(days=40),
            planned_seats=4,
        )
        tenant = Tenant(company_id=company.id, connector="defender", external_id="t-kirishima")
        session.add(tenant)
        session.add(
            Trial(
                company_id=company.id,
                starts_on=clock.TODAY - timedelta(days=30),
                ends_on=clock.TODAY + timedelta(days=61),
            )
        )
        session.flush()
        session.add(
            Device(
                tenant_id=tenant.id,
                source_id="dev-kirishima-1",
                name="KIRISHIMA-PC01",
                onboarding_status="Onboarded",
                last_seen=clock.NOW - timedelta(hours=2),
                in_inventory=True,
            )
        )
        add_eligible(session, HOSTILE_KEY, name=HOSTILE)


def company(console: Console, key: str) -> Company:
    """The company as stored now (read in its own session)."""
    with console.runtime.sessions() as session:
        from sqlalchemy import select

        found = session.scalar(select(Company).where(Company.key == key))
        assert found is not None
        session.expunge(found)
        return found
