"""The cohorts a person may see, as the filter their every query takes.

A person limited to some cohorts never sees another cohort's companies, tickets, alerts,
reports or counts. Every console query is given a `Scope` and filters by company through
it (`companies`), so the limit holds by construction in lists, pages, CSV files and the
fragments a page refreshes; a company not yet in a cohort (an applicant) is seen only by
people who see every cohort.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, select, true
from sqlalchemy.orm import Session

from edrtrial.models import Company, Tenant, Ticket


@dataclass(frozen=True, slots=True)
class Scope:
    """All cohorts (`cohort_ids` None) or only these."""

    cohort_ids: frozenset[int] | None = None

    @classmethod
    def limited_to(cls, cohort_ids: Iterable[int]) -> Scope:
        """Only these cohorts (none at all: nothing)."""
        return cls(frozenset(cohort_ids))

    @property
    def everything(self) -> bool:
        """True when the person sees every cohort and the companies in none."""
        return self.cohort_ids is None

    def companies(self) -> ColumnElement[bool]:
        """The condition on `Company` for a company this person may see."""
        if self.cohort_ids is None:
            return true()
        return Company.cohort_id.in_(sorted(self.cohort_ids))

    def company_ids(self) -> Select[Any]:
        """The ids of the companies this person may see, as a subquery."""
        return select(Company.id).where(self.companies())

    def tenant_ids(self) -> Select[Any]:
        """The ids of the tenants of those companies, as a subquery."""
        return (
            select(Tenant.id).join(Company, Tenant.company_id == Company.id).where(self.companies())
        )

    def tenants(self) -> ColumnElement[bool]:
        """The condition on any row with a `tenant_id` (a ticket, an alert, a device)."""
        if self.cohort_ids is None:
            return true()
        return Tenant.id.in_(self.tenant_ids())

    def tickets(self) -> ColumnElement[bool]:
        """The condition on `Ticket` for a ticket this person may see."""
        if self.cohort_ids is None:
            return true()
        return Ticket.tenant_id.in_(self.tenant_ids())

    def sees_company(self, session: Session, company_id: int | None) -> bool:
        """Whether this person may see the company (a missing one: no)."""
        if company_id is None:
            return False
        if self.cohort_ids is None:
            return session.get(Company, company_id) is not None
        found = session.scalar(select(Company.id).where(Company.id == company_id, self.companies()))
        return found is not None

    def hide_others(self, session: Session, text: str, instead: str = "another company") -> str:
        """`text` (a service's message) with every company outside this scope named only as
        `instead` ("another company", in the reader's language): a refusal such as "tenant …
        is held by company 'x'" must not tell a person limited to some cohorts who else is
        in the programme."""
        if self.cohort_ids is None:
            return text
        others = session.execute(
            select(Company.key, Company.name).where(~self.companies() | Company.cohort_id.is_(None))
        )
        names = sorted(
            {value for row in others for value in row if value and len(value) >= 3},
            key=len,
            reverse=True,
        )
        for name in names:
            text = text.replace(f"'{name}'", instead).replace(name, instead)
        return text

    def sees_tenant(self, session: Session, tenant_id: int | None) -> bool:
        """Whether this person may see the tenant's company."""
        if tenant_id is None:
            return self.cohort_ids is None
        tenant = session.get(Tenant, tenant_id)
        return tenant is not None and self.sees_company(session, tenant.company_id)


EVERYTHING = Scope()
