"""The trial calendar: every company's trial dates, days left, decision and offboarding.

The secretariat plans its calls and the uninstalls from it: who ends soon and has not
answered, who continues, and how far the uninstall of those that do not has gone. The
offboarding tasks are read here from their rows (the devices layer sits above the
programme), counted in four steps the secretariat follows plus the ones needing a look.
"""

from __future__ import annotations

from collections import Counter
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from edrtrial.access.scope import EVERYTHING, Scope
from edrtrial.connectors.base import ActionKind
from edrtrial.models import Cohort, Company, ResponseAction, Tenant, Trial
from edrtrial.reports.trial_calendar import Offboarding, TrialEntry
from edrtrial.states import ActionState, JourneyState

PLANNED = (ActionState.PLANNED,)
SENT = (
    ActionState.SENDING,
    ActionState.UNCONFIRMED,
    ActionState.PENDING,
    ActionState.IN_PROGRESS,
    ActionState.SUCCEEDED,
)
"""Sent to the EDR and not yet confirmed gone: the device must still go quiet."""
DONE = (ActionState.VERIFIED,)
MANUAL = (ActionState.MANUAL,)
TROUBLE = (ActionState.FAILED, ActionState.TIMEOUT, ActionState.STILL_REPORTING)
"""Tasks someone must look at: the EDR failed it, or the device still reports."""


def _offboarding(session: Session) -> dict[int, Offboarding]:
    """Each tenant's offboarding tasks, by step."""
    per: dict[int, Counter[str]] = {}
    rows = session.execute(
        select(ResponseAction.tenant_id, ResponseAction.status, func.count(ResponseAction.id))
        .where(ResponseAction.kind == ActionKind.OFFBOARD.value)
        .group_by(ResponseAction.tenant_id, ResponseAction.status)
    )
    for tenant_id, status, count in rows:
        per.setdefault(tenant_id, Counter())[status] = count

    def step(counts: Counter[str], states: tuple[ActionState, ...]) -> int:
        return sum(counts[s.value] for s in states)

    return {
        tenant_id: Offboarding(
            step(c, PLANNED), step(c, SENT), step(c, DONE), step(c, MANUAL), step(c, TROUBLE)
        )
        for tenant_id, c in per.items()
    }


def trial_calendar(session: Session, today: date, scope: Scope = EVERYTHING) -> list[TrialEntry]:
    """Every company with a trial that `scope` sees, the soonest end first (then by company
    key); a purged company's trial is history, kept only in the anonymous figures.

    `today` is the JST date the days left are counted from.
    """
    progress = _offboarding(session)
    query = (
        select(Company, Trial, Tenant.id, Cohort.key, Cohort.name)
        .join(Trial, Trial.company_id == Company.id)
        .outerjoin(Tenant, Tenant.company_id == Company.id)
        .outerjoin(Cohort, Cohort.id == Company.cohort_id)
        .where(Company.state != JourneyState.PURGED.value, scope.companies())
        .order_by(Trial.ends_on, Company.key)
    )
    return [
        TrialEntry(
            company.key,
            company.name,
            cohort_key or "",
            cohort_name or "",
            trial.starts_on,
            trial.ends_on,
            (trial.ends_on - today).days,
            JourneyState(company.state),
            trial.decision,
            progress.get(tenant_id, Offboarding()) if tenant_id is not None else Offboarding(),
        )
        for company, trial, tenant_id, cohort_key, cohort_name in session.execute(query)
    ]
