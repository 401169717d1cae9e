"""The figures behind a cohort's anonymised results report, one `CompanyFigures` per company.

A company still in the store is summed up by the purge's own `aggregates` (under a throw-away
code, never stored); a purged one has only its stored `CompanyAggregate` rows. Both are then
read by the same code, so a company's figures do not change the day it is purged, and the
report never sees a name, a key, a tenant id, a device name or an anonymous code: the
protection of the cells is `reports/cohort_results.py`.

Who counts: every company of the cohort that had a trial (a company refused or withdrawn
before its trial has no trial figures). With `month`, the companies with a row for that month.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from edrtrial.config import ProgrammeConfig
from edrtrial.models import Cohort, Company, CompanyAggregate, Trial
from edrtrial.programme.cohorts import get
from edrtrial.programme.purge import aggregates
from edrtrial.reports.cohort_results import CohortResults, CompanyFigures, cohort_results

#: Decisions a purged company's rows carry when it had a trial (else its journey's state).
TRIAL_DECISIONS = frozenset({"undecided", "continue", "offboard", "extend"})
_THROW_AWAY = "-"


def _figures(rows: Sequence[CompanyAggregate]) -> CompanyFigures:
    """One company's months summed; devices as in its last month (the counts are cumulative)."""
    detections: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        for category, severities in (row.detections or {}).items():
            for severity, n in severities.items():
                detections[category][severity] += int(n)
    last = max(rows, key=lambda r: r.month)
    return CompanyFigures(
        industry=last.industry_row,
        detections={c: dict(s) for c, s in detections.items()},
        incidents=sum(r.incidents for r in rows),
        ack_minutes=[m for r in rows for m in r.ack_minutes],
        resolve_minutes=[m for r in rows for m in r.resolve_minutes],
        devices_onboarded=last.devices_onboarded,
        devices_active=last.devices_active,
        decision=last.decision,
        pre_diagnosis=dict(last.pre_diagnosis or {}),
    )


def cohort_figures(
    session: Session, programme: ProgrammeConfig, cohort: Cohort, month: date | None = None
) -> list[CompanyFigures]:
    """Every trial company's figures for the cohort (or for `month`'s first day), in random
    order: the report's input carries no order that could follow the companies' ids."""
    by_company: list[list[CompanyAggregate]] = []
    live = session.scalars(
        select(Company)
        .join(Trial, Trial.company_id == Company.id)
        .where(Company.cohort_id == cohort.id, Company.purged_at.is_(None))
    )
    for company in live:
        by_company.append(aggregates(session, programme, company, _THROW_AWAY))
    stored: dict[str, list[CompanyAggregate]] = defaultdict(list)
    for row in session.scalars(
        select(CompanyAggregate).where(CompanyAggregate.cohort_id == cohort.id)
    ):
        stored[row.anon_code].append(row)
    by_company += [rows for rows in stored.values() if rows[0].decision in TRIAL_DECISIONS]
    if month is not None:
        by_company = [[r for r in rows if r.month == month] for rows in by_company]
    figures = [_figures(rows) for rows in by_company if rows]
    random.SystemRandom().shuffle(figures)
    return figures


def cohort_report(
    session: Session, programme: ProgrammeConfig, key: str, month: date | None = None
) -> CohortResults:
    """The cohort's protected results report (an unknown key fails naming the known ones)."""
    cohort = get(session, key)
    return cohort_results(
        cohort_figures(session, programme, cohort, month),
        programme=programme.name,
        secretariat=programme.secretariat,
        secretariat_contact=programme.secretariat_contact,
        cohort_name=cohort.name,
        month=month,
    )
