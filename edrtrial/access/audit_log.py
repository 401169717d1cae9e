"""The audit log as an administrator reads it: filtered, newest first, a page at a time.

The filters are what a person looking into an event knows: who (the actor, as written:
`web:sato`, `cli:tanaka`, `playbook`), what (the action, or its family: `users` for every
`users.*`), which company, which target, and between which days (Tokyo days). A person
limited to some cohorts sees only the events of their companies' tenants.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.orm import Session

from edrtrial.access.scope import Scope
from edrtrial.models import AuditEvent, Company, Tenant
from edrtrial.timeutil import jst_day_bounds

PAGE_SIZE = 50
CSV_LIMIT = 100_000
"""The most events one CSV file holds (a narrower filter gives the rest)."""


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """What to look for; an empty field does not filter."""

    actor: str = ""
    action: str = ""
    company: str = ""
    target: str = ""
    since: date | None = None  # a Tokyo day, from its start
    until: date | None = None  # a Tokyo day, to its end

    def conditions(self, scope: Scope) -> list[ColumnElement[bool]]:
        """The SQL conditions of this filter, within what `scope` sees."""
        found: list[ColumnElement[bool]] = []
        if not scope.everything:
            found.append(AuditEvent.tenant_id.in_(scope.tenant_ids()))
        if self.actor.strip():
            found.append(AuditEvent.actor == self.actor.strip())
        if action := self.action.strip():
            found.append(
                or_(AuditEvent.action == action, AuditEvent.action.startswith(f"{action}."))
            )
        if self.company.strip():
            tenants = (
                select(Tenant.id)
                .join(Company, Tenant.company_id == Company.id)
                .where(Company.key == self.company.strip())
            )
            found.append(AuditEvent.tenant_id.in_(tenants))
        if self.target.strip():
            found.append(AuditEvent.target.contains(self.target.strip(), autoescape=True))
        if self.since is not None:
            found.append(AuditEvent.at >= jst_day_bounds(self.since, self.since)[0])
        if self.until is not None:
            found.append(AuditEvent.at < jst_day_bounds(self.until, self.until)[1])
        return found


@dataclass(frozen=True, slots=True)
class AuditRow:
    """One event as the page and the CSV show it."""

    id: int
    at: datetime
    actor: str
    on_behalf_of: str
    action: str
    company_key: str
    target: str
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AuditPage:
    """One page of the filtered log, and how many events the filter finds in all."""

    rows: tuple[AuditRow, ...]
    total: int
    page: int
    pages: int


def _rows(scope: Scope, wanted: AuditFilter) -> Select[AuditEvent, str]:
    return (
        select(AuditEvent, Company.key)
        .outerjoin(Tenant, AuditEvent.tenant_id == Tenant.id)
        .outerjoin(Company, Tenant.company_id == Company.id)
        .where(*wanted.conditions(scope))
        .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
    )


def _row(event: AuditEvent, company_key: str | None) -> AuditRow:
    return AuditRow(
        id=event.id,
        at=event.at,
        actor=event.actor,
        on_behalf_of=event.on_behalf_of,
        action=event.action,
        company_key=company_key or "",
        target=event.target,
        detail=dict(event.detail or {}),
    )


def audit_page(session: Session, scope: Scope, wanted: AuditFilter, page: int = 1) -> AuditPage:
    """The `page`th page (from 1) of the events the filter finds, newest first."""
    total = int(
        session.scalar(
            select(func.count()).select_from(AuditEvent).where(*wanted.conditions(scope))
        )
        or 0
    )
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(max(1, page), pages)
    found = session.execute(_rows(scope, wanted).limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE))
    return AuditPage(tuple(_row(e, key) for e, key in found), total, page, pages)


def audit_rows(session: Session, scope: Scope, wanted: AuditFilter) -> Sequence[AuditRow]:
    """Every event the filter finds (up to `CSV_LIMIT`), newest first."""
    found = session.execute(_rows(scope, wanted).limit(CSV_LIMIT))
    return [_row(e, key) for e, key in found]


def actions_seen(session: Session, scope: Scope) -> list[str]:
    """The actions the log holds (within what `scope` sees), for the filter's choices."""
    query = select(AuditEvent.action).distinct().order_by(AuditEvent.action)
    if not scope.everything:
        query = query.where(AuditEvent.tenant_id.in_(scope.tenant_ids()))
    return list(session.scalars(query))
