"""The audit log: who did what, when, to which tenant; one function writes it.

The actor is who ran the step: a person's operating-system login (`cli:<login>`), a
person signed in to the web console (`web:<username>`), or one of the service's own
`SYSTEM_ACTORS`. When a person acts for someone else (`ticket --by
NAME`), that name is kept beside the actor as `on_behalf_of`, never in its place, so the
log always names the account that really did it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from sqlalchemy import String
from sqlalchemy.orm import InstrumentedAttribute, Session

from edrtrial.models import AuditEvent

#: The names the service writes as actor for its own steps; no person may claim one.
#: tests/test_audit_actor.py checks that every literal actor in the source is listed here.
SYSTEM_ACTORS = frozenset(
    {
        "playbook",
        "edr",
        "desk",
        "trial-lifecycle",
        "reconcile",
        "scheduler",
        "config",
        "config-sync",
        "service",
        "system",
        "sandbox",
        "write-back",
        "outbox",
        "report",
        "weekly-reports",
        "seat-report",
        "monthly-reports",
        "intake",
        "entra",
    }
)

# Who the person running this command acts for: set once at the command's edge (the CLI's
# `--by`), read by every `record` in between, so no service signature has to carry it.
_on_behalf_of: ContextVar[str] = ContextVar("edrtrial_on_behalf_of", default="")


def width_of(column: InstrumentedAttribute[str]) -> int:
    """The most characters a text column keeps: a longer value is refused where it is typed,
    before PostgreSQL refuses the whole transaction."""
    kind = column.property.columns[0].type
    assert isinstance(kind, String) and kind.length is not None, column
    return kind.length


ACTOR_WIDTH = width_of(AuditEvent.actor)
BEHALF_WIDTH = width_of(AuditEvent.on_behalf_of)


def person_of(actor: str) -> str:
    """Whom a person's step is for: the name they act for (`--by`), else their own login.

    `cli:sato`, `cli:sato (as edrtrial)` (sato through sudo) and `web:sato` are all sato; a
    desk that acknowledges a ticket for tanaka gives it to tanaka, and the audit keeps both
    names.
    """
    if behalf := _on_behalf_of.get():
        return behalf
    login = actor.removeprefix("cli:").removeprefix("web:")
    return login.split(" (as ", 1)[0]


@contextmanager
def acting_for(name: str) -> Iterator[None]:
    """Record `name` as `on_behalf_of` on every audit event written inside the block."""
    token = _on_behalf_of.set(name)
    try:
        yield
    finally:
        _on_behalf_of.reset(token)


def record(
    session: Session,
    *,
    at: datetime,
    actor: str,
    action: str,
    tenant_id: int | None,
    target: str = "",
    detail: dict[str, Any] | None = None,
    on_behalf_of: str | None = None,
) -> AuditEvent:
    """Add an audit event to the caller's transaction (it commits with the change it records).

    `on_behalf_of` defaults to the name set by `acting_for`, and is never kept for a system
    actor (the service acts for nobody).
    """
    behalf = _on_behalf_of.get() if on_behalf_of is None else on_behalf_of
    if actor in SYSTEM_ACTORS:
        behalf = ""
    event = AuditEvent(
        at=at,
        actor=actor,
        on_behalf_of=behalf,
        action=action,
        tenant_id=tenant_id,
        target=target,
        detail=detail or {},
    )
    session.add(event)
    return event
