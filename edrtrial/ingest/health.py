"""A tenant's polling health: the coordinator contract, written plainly.

A success resets the tenant; a transient failure counts, honours Retry-After and, after
repeated failures, opens a circuit breaker with growing pauses; an authentication failure
parks the tenant until an operator resumes it. Each is logged once going down and once
coming back, not on every poll. Every state write is a step of `ingest/states.py`, taken
from the state just read: an outcome that finds the tenant moved by another job meanwhile
(parked by the desk job while this poll ran) is not recorded over it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from edrtrial import audit
from edrtrial.db import transaction
from edrtrial.errors import ConfigError, ConnectorError, TransitionError
from edrtrial.ingest.states import TENANTS
from edrtrial.models import Company, Tenant
from edrtrial.programme.companies import tenant_of
from edrtrial.states import TenantState
from edrtrial.timeutil import JST

log = logging.getLogger(__name__)

BREAKER_AFTER = 3
"""Consecutive failures after which a tenant waits (growing pauses) instead of every poll."""
BREAKER_MAX = timedelta(minutes=30)


def _label(session: Session, row: Tenant) -> str:
    return f"{row.external_id} ({session.get_one(Company, row.company_id).key})"


def _unrecorded(session: Session, row: Tenant, outcome: str) -> None:
    label = _label(session, row)
    log.info(
        "tenant %s is %s (moved meanwhile); this %s is not recorded", label, row.state, outcome
    )


def _since(row: Tenant, after: TenantState, now: datetime) -> dict[str, Any]:
    """`state_since` moves only when the state changes: a tenant parked again stays parked
    since the first time, and one failing again stays failing since its first failure.

    A tenant already in its state at the upgrade to 0009 has none: it counts from now (its
    last poll, which each failed poll moves on, cannot say how long it has been failing).
    """
    return {} if row.state == after and row.state_since is not None else {"state_since": now}


def succeeded(sessions: sessionmaker[Session], tenant_id: int, now: datetime) -> None:
    """Record a successful poll: the tenant is active, its breaker closed."""
    with transaction(sessions) as session:
        row = session.get_one(Tenant, tenant_id)
        before = row.state
        if not TENANTS.can("succeed", before):
            _unrecorded(session, row, "success")
            return
        if not TENANTS.move(
            session,
            row,
            "succeed",
            state_reason="",
            failures=0,
            not_before=None,
            last_poll_at=now,
            last_success_at=now,
            **_since(row, TenantState.ACTIVE, now),
        ):
            _unrecorded(session, row, "success")
        elif before != TenantState.ACTIVE:  # logged once coming back
            log.info("tenant %s is reachable again", _label(session, row))


def failed(
    sessions: sessionmaker[Session],
    tenant_id: int,
    err: ConnectorError,
    now: datetime,
    poll_seconds: float,
) -> str:
    """Count a failure; honour Retry-After, and open the breaker after repeated failures.

    Returns the reason as stored (with the next try's time when the tenant waits).
    """
    with transaction(sessions) as session:
        row = session.get_one(Tenant, tenant_id)
        failures = row.failures + 1
        wait = timedelta(seconds=getattr(err, "retry_after", None) or 0)
        if failures >= BREAKER_AFTER:
            base = timedelta(seconds=poll_seconds)
            wait = max(wait, min(base * 2 ** (failures - BREAKER_AFTER + 1), BREAKER_MAX))
        not_before = now + wait if wait else None
        reason = str(err)
        if not_before is not None:
            reason += f" (next try after {not_before.astimezone(JST):%H:%M:%S} JST)"
        before = row.state
        if not TENANTS.can("fail", before) or not TENANTS.move(
            session,
            row,
            "fail",
            failures=failures,
            not_before=not_before,
            state_reason=reason,
            last_poll_at=now,
            **_since(row, TenantState.FAILING, now),
        ):
            _unrecorded(session, row, "failure")
            return f"{err} (not retried: the tenant is {row.state}: {row.state_reason})"
        if before == TenantState.ACTIVE:  # logged once going down
            log.warning("tenant %s is failing: %s", _label(session, row), reason)
        return reason


def on_first_poll(session: Session, tenant_id: int) -> bool:
    """Whether the tenant has yet to complete a poll (what it brings is then its backlog)."""
    done = session.scalar(select(Tenant.first_poll_done_at).where(Tenant.id == tenant_id))
    return done is None


def complete_first_poll(session: Session, tenant_id: int, now: datetime) -> bool:
    """Record the tenant's first complete poll; False if a repeat finds it recorded already.

    A conditional update, so of two runs finishing the same first poll only one goes on to
    announce its backlog.
    """
    moved = session.execute(
        update(Tenant)
        .where(Tenant.id == tenant_id, Tenant.first_poll_done_at.is_(None))
        .values(first_poll_done_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(moved, "rowcount", 0) == 1)


def park(sessions: sessionmaker[Session], tenant_id: int, reason: str, now: datetime) -> None:
    """Stop polling the tenant until an operator fixes the cause and resumes it."""
    with transaction(sessions) as session:
        row = session.get_one(Tenant, tenant_id)
        before = row.state
        since = _since(row, TenantState.PARKED, now)
        if not TENANTS.move(session, row, "park", state_reason=reason, last_poll_at=now, **since):
            _unrecorded(session, row, "park")  # e.g. an operator resumed it just now
        elif before != TenantState.PARKED:  # logged once going down
            log.error(
                "tenant %s parked until an operator fixes it: %s", _label(session, row), reason
            )


def resume_tenant(session: Session, company_key: str, actor: str, now: datetime) -> Tenant:
    """Put a parked (or failing) tenant back to polling, once its operator fixed the cause."""
    tenant = tenant_of(session, company_key)
    if tenant is None:
        raise ConfigError(f"no tenant for company {company_key!r}")
    previous = (tenant.state, tenant.state_reason)
    if not TENANTS.move(session, tenant, "resume", state_reason="", state_since=now):
        raise TransitionError(
            f"the tenant of {company_key} changed meanwhile (now {tenant.state}); look again"
        )
    audit.record(
        session,
        at=now,
        actor=actor,
        action="tenant.resumed",
        tenant_id=tenant.id,
        target=f"company:{company_key}",
        detail={"was": previous[0], "reason": previous[1]},
    )
    return tenant
