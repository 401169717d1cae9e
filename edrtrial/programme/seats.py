"""Seat counts for the secretariat: planned, onboarded, active, against the cap."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from edrtrial.access.scope import EVERYTHING, Scope
from edrtrial.connectors.base import ActionKind
from edrtrial.models import Cohort, Company, Device, ResponseAction, Tenant, Trial
from edrtrial.states import ActionState, JourneyState

ACTIVE_WINDOW = timedelta(days=7)
NEAR_CAP = 0.9
"""At this share of its cap a company is warned before it is over (Defender for Business
licenses at most 300 users; the programme's cap is the company's `seat_cap`)."""
HOLDS_SEATS = tuple(
    s.value
    for s in (
        JourneyState.CALL_CONFIRMED,
        JourneyState.PRE_DIAGNOSED,
        JourneyState.ADMITTED,
        JourneyState.CONSENTED,
        JourneyState.TENANT_VERIFIED,
        JourneyState.IN_TRIAL,
        JourneyState.ENDING,
        JourneyState.CONTINUING,
        JourneyState.OFFBOARDING,
        JourneyState.OFFBOARDED,
    )
)
"""Companies the seat counts are about: from the call that gave them a place to the end of
their uninstall. An applicant not (or no longer) in, and a purged company, plan no seat:
counted, their planned seats would swell a cohort's totals."""
OFF = (ActionState.SUCCEEDED, ActionState.VERIFIED)
"""An offboarding the EDR carried out: the device no longer takes a seat."""


@dataclass(frozen=True, slots=True)
class SeatRow:
    """One company's seats and trial dates."""

    company_key: str
    company_name: str
    planned: int
    onboarded: int
    active_7d: int
    verified: int
    cap: int
    trial_start: date | None
    trial_end: date | None
    decision: str
    offboarded: int = 0
    """Devices the EDR offboarded at the trial's end: still listed, no longer a seat."""
    cohort_key: str = ""
    """The cohort holding the company's place ("" for none), for the cohort totals."""
    cohort_name: str = ""

    @property
    def over_cap(self) -> bool:
        """More devices onboarded than the programme allows."""
        return self.onboarded > self.cap

    @property
    def near_cap(self) -> bool:
        """At or above `NEAR_CAP` of the cap, not yet over it."""
        return not self.over_cap and self.onboarded >= NEAR_CAP * self.cap

    def cap_warning(self) -> str:
        """What the secretariat must know about the cap: over it, near it, or ""."""
        share = f"{self.onboarded} of {self.cap} seats ({self.onboarded / self.cap:.0%})"
        if self.over_cap:
            return f"{self.company_key} is over its cap: {share}"
        if self.near_cap:
            return f"{self.company_key} is near its cap: {share}"
        return ""


def past_seats(row: SeatRow, course_cap: int | None, unit: str = "seats") -> str:
    """What a company in its trial has passed, or "": more devices onboarded than its
    planned seats, or than its cap (its own, or its course's when lower). The desk is told
    once of it (`service/alarms.py`)."""
    cap = min(row.cap, course_cap) if course_cap is not None else row.cap
    passed = []
    if row.planned and row.onboarded > row.planned:
        passed.append(f"its {row.planned} planned seats")
    if row.onboarded > cap:
        passed.append(f"the cap of {cap} {unit}")
    if not passed:
        return ""
    return f"{row.onboarded} devices onboarded, more than {' and '.join(passed)}"


def seat_counts(session: Session, now: datetime, scope: Scope = EVERYTHING) -> list[SeatRow]:
    """Per company in the programme (`HOLDS_SEATS`) that `scope` sees: planned seats,
    onboarded devices, devices seen in the last 7 days, cap.

    A device the EDR offboarded (the trial ended) is counted apart: Defender keeps listing it
    as onboarded for a while, but it no longer takes a seat, nor counts as active or tested.
    """
    off = (
        select(ResponseAction.device_id)
        .where(
            ResponseAction.kind == ActionKind.OFFBOARD.value,
            ResponseAction.status.in_([s.value for s in OFF]),
        )
        .scalar_subquery()
    )
    gone = Device.id.in_(off)
    listed = func.lower(Device.onboarding_status) == "onboarded"
    onboarded = func.count(Device.id).filter(listed, ~gone)
    offboarded = func.count(Device.id).filter(gone)
    # Active and tested count among the seats, like onboarded: an uninstalled device seen in
    # its last week would read as "7 active of 0 onboarded" (a still-reporting one is the
    # offboarding's "to check", not a seat).
    active = func.count(Device.id).filter(Device.last_seen >= now - ACTIVE_WINDOW, ~gone)
    verified = func.count(Device.id).filter(Device.detection_test_at.is_not(None), ~gone)
    counts = {
        tenant_id: (o, a, v, x)
        for tenant_id, o, a, v, x in session.execute(
            select(Device.tenant_id, onboarded, active, verified, offboarded)
            .where(Device.in_inventory.is_(True))
            .group_by(Device.tenant_id)
        )
    }
    rows = []
    query = (
        select(Company, Tenant.id, Trial, Cohort.key, Cohort.name)
        .outerjoin(Tenant, Tenant.company_id == Company.id)
        .outerjoin(Trial, Trial.company_id == Company.id)
        .outerjoin(Cohort, Cohort.id == Company.cohort_id)
        .where(Company.state.in_(HOLDS_SEATS), scope.companies())
        .order_by(Company.key)
    )
    for company, tenant_id, trial, cohort_key, cohort_name in session.execute(query):
        o, a, v, x = counts.get(tenant_id, (0, 0, 0, 0)) if tenant_id else (0, 0, 0, 0)
        rows.append(
            SeatRow(
                company.key,
                company.name,
                company.planned_seats,
                o,
                a,
                v,
                company.seat_cap,
                trial.starts_on if trial else None,
                trial.ends_on if trial else None,
                trial.decision if trial else "",
                x,
                cohort_key or "",
                cohort_name or "",
            )
        )
    return rows
