"""Each company's journey through the programme: one transition table, every step audited.

From the application to the purge of its data, a company is in one `JourneyState`. Every
step goes through `advance`, which takes it with the conditional claim (`edrtrial.machine`:
of two secretaries recording the same call, one wins and the other is told it moved
meanwhile) and writes the audit event in the same transaction: who, when, from where to
where, and why.

The steps, in the order a company meets them:

    applied ─judge→ eligible | needs_review | not_eligible      (the rules; a review decides)
    eligible ─call→ call_confirmed (a place held) | waiting_list (the cohort was full)
    call_confirmed ─diagnose→ pre_diagnosed ─admit→ admitted
    waiting_list ─move_up→ call_confirmed, or admitted when already pre-diagnosed
    admitted ─consent→ consented ─verify→ tenant_verified ─start→ in_trial
    in_trial ─near_end→ ending ─continue→ continuing | ─offboard→ offboarding
    offboarding ─offboarded→ offboarded (every device verified)
    ending | continuing | offboarding ─extend→ in_trial (the end moved; nothing was sent yet)
    offboarding ─continue→ continuing (a late answer, before any device was offboarded)
    offboarded | refused | not_eligible | withdrawn ─purge→ purged
    refuse: any step before admission; withdraw: any step before the trial (→ withdrawn),
    or once a tenant is connected (→ offboarding, its devices are uninstalled).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from edrtrial import audit
from edrtrial.errors import JourneyError
from edrtrial.machine import Machine, Step
from edrtrial.models import Company, Tenant
from edrtrial.states import JourneyState as J
from edrtrial.words import Words

_BEFORE_ADMISSION = (
    J.APPLIED,
    J.ELIGIBLE,
    J.NEEDS_REVIEW,
    J.NOT_ELIGIBLE,
    J.CALL_CONFIRMED,
    J.WAITING_LIST,
    J.PRE_DIAGNOSED,
)
_CONNECTED = (J.CONSENTED, J.TENANT_VERIFIED, J.IN_TRIAL, J.ENDING)

JOURNEY = Machine(
    "company",
    Company,
    "state",
    {
        # Eligibility: the rule engine's verdict, or the secretariat's review of it.
        "judge_eligible": Step((J.APPLIED, J.NEEDS_REVIEW, J.NOT_ELIGIBLE), J.ELIGIBLE),
        "judge_review": Step((J.APPLIED,), J.NEEDS_REVIEW),
        "judge_not_eligible": Step((J.APPLIED, J.NEEDS_REVIEW, J.ELIGIBLE), J.NOT_ELIGIBLE),
        # The confirmation call completes the application: a place is held, or it waits.
        "call": Step((J.ELIGIBLE,), J.CALL_CONFIRMED),
        "queue": Step((J.ELIGIBLE,), J.WAITING_LIST),
        "diagnose": Step((J.CALL_CONFIRMED,), J.PRE_DIAGNOSED),
        "admit": Step((J.PRE_DIAGNOSED, J.WAITING_LIST), J.ADMITTED),
        # A place freed: the first on the waiting list takes it (admitted if diagnosed).
        "move_up": Step((J.WAITING_LIST,), J.CALL_CONFIRMED),
        "refuse": Step(_BEFORE_ADMISSION, J.REFUSED),
        "withdraw": Step((*_BEFORE_ADMISSION, J.ADMITTED), J.WITHDRAWN),
        "withdraw_connected": Step(_CONNECTED, J.OFFBOARDING),
        "consent": Step((J.ADMITTED,), J.CONSENTED),
        "verify": Step((J.CONSENTED,), J.TENANT_VERIFIED),
        "start": Step((J.TENANT_VERIFIED,), J.IN_TRIAL),
        "near_end": Step((J.IN_TRIAL,), J.ENDING),
        # An extension takes it back into the trial, also after its end while nothing was sent.
        "extend": Step((J.ENDING, J.CONTINUING, J.OFFBOARDING), J.IN_TRIAL),
        # After the end too: a company that answers late, before any device was offboarded.
        "continue": Step((J.IN_TRIAL, J.ENDING, J.OFFBOARDING), J.CONTINUING),
        "offboard": Step((J.IN_TRIAL, J.ENDING, J.CONTINUING), J.OFFBOARDING),
        "offboarded": Step((J.OFFBOARDING,), J.OFFBOARDED),
        "purge": Step((J.OFFBOARDED, J.REFUSED, J.NOT_ELIGIBLE, J.WITHDRAWN), J.PURGED),
    },
    error=JourneyError,
)


def state_of(company: Company) -> J:
    """The company's journey state as the enum."""
    return J(company.state)


def advance(
    session: Session,
    company: Company,
    step: str,
    *,
    actor: str,
    at: datetime,
    why: str = "",
    detail: dict[str, Any] | None = None,
    **values: Any,
) -> J:
    """Take `step` for the company and audit it (`company.<step>`): who, when, from, to, why.

    `values` are written with the state (a cohort, a place's time). Raises JourneyError when
    the company is not in a state the step starts from, naming where it stands, or when
    another writer moved it meanwhile.
    """
    before = company.state
    JOURNEY.check(step, before, f"company {company.key!r}")
    moved = JOURNEY.move(session, company, step, state_since=at, state_reason=why, **values)
    if not moved:
        raise JourneyError(
            Words(
                "company %(key)r moved to %(state)s meanwhile; nothing was changed",
                key=company.key,
                state=company.state,
            )
        )
    tenant_id = session.scalar(select(Tenant.id).where(Tenant.company_id == company.id))
    audit.record(
        session,
        at=at,
        actor=actor,
        action=f"company.{step}",
        tenant_id=tenant_id,
        target=f"company:{company.key}",
        detail={"from": before, "to": company.state, "why": why} | (detail or {}),
    )
    return J(company.state)


#: The steps of a company that goes the whole way, in order: `walk` follows them.
ROUTE: tuple[tuple[str, J], ...] = (
    ("judge_eligible", J.ELIGIBLE),
    ("call", J.CALL_CONFIRMED),
    ("diagnose", J.PRE_DIAGNOSED),
    ("admit", J.ADMITTED),
    ("consent", J.CONSENTED),
    ("verify", J.TENANT_VERIFIED),
    ("start", J.IN_TRIAL),
    ("near_end", J.ENDING),
)
_ENDS = {J.CONTINUING: "continue", J.OFFBOARDING: "offboard"}


def walk(
    session: Session, company: Company, to: J, *, actor: str, at: datetime, why: str
) -> list[str]:
    """Take a new company (applied) along `ROUTE` to `to` (a state on it, or the end
    of a trial: continuing or offboarding), each step through `advance`, so a company brought
    in whole (imported from an old config file, the sandbox's sample) has the same audited
    journey as one that went through it. Returns the steps taken."""
    steps = [step for step, _ in ROUTE]
    targets = [state for _, state in ROUTE]
    if to in _ENDS:
        plan = [*steps, _ENDS[to]]
    elif to in targets:
        plan = steps[: targets.index(to) + 1]
    else:
        raise JourneyError(Words("company %(key)r: no route to %(to)s", key=company.key, to=to))
    if state_of(company) != J.APPLIED:
        raise JourneyError(
            Words(
                "company %(key)r is %(state)s, not at the start",
                key=company.key,
                state=company.state,
            )
        )
    for step in plan:
        advance(session, company, step, actor=actor, at=at, why=why)
    return plan
