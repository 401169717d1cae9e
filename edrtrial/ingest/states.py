"""Transition table of a tenant's polling (states: `edrtrial.states.TenantState`).

A tenant is `active`; a transient failure makes it `failing` (it backs off, see
`ingest/health.py`), a success makes it `active` again; an authentication or configuration
failure `parks` it until an operator `resumes` it. A poll that succeeds after another job
parked the tenant does not unpark it: only the operator who fixed the cause does.
"""

from __future__ import annotations

from edrtrial.machine import Machine, Step
from edrtrial.models import Tenant
from edrtrial.states import TenantState

ACTIVE, FAILING, PARKED = TenantState.ACTIVE, TenantState.FAILING, TenantState.PARKED

TENANTS = Machine(
    "tenant",
    Tenant,
    "state",
    {
        "succeed": Step((ACTIVE, FAILING), ACTIVE),
        "fail": Step((ACTIVE, FAILING), FAILING),
        "park": Step((ACTIVE, FAILING, PARKED), PARKED),  # parked again: the newest reason
        # From active too, as before: the operator's resume is recorded even when moot.
        "resume": Step((ACTIVE, FAILING, PARKED), ACTIVE),
    },
)
