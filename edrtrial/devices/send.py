"""The one way a device action reaches the EDR: claim, send, settle; then follow.

Isolate, release and offboard travel the same road:

1. **claim** — `planned` → `sending`, audited, in its own commit *before* the EDR is
   called, so a second operator, a second process or a restart never sends it again;
   a send interrupted by a crash stays `sending`, with a note to check the portal. In the
   same transaction the route's `check_send` looks at the company and device *as they are
   now* (a task planned days ago may no longer fit): if it objects, the action is
   cancelled with its reason (audited) and nothing is sent;
2. **send** — `connector.start_action`;
3. **settle** — what the EDR answered (its machine action and status, or its refusal) is
   recorded and audited in one commit;
4. **reconcile** — a send that got no answer (timeout, dropped connection, 5xx:
   `OutcomeUnknown`) may still have created the action, so it is never settled as refused:
   the device's machine actions of that kind created since the claim are read and the one
   found is adopted as if the send had answered. Until one appears the action is
   `unconfirmed` (under way: a second isolate is refused); the desk job looks again, also
   for actions a crash left `sending`, and only after the reconciliation window with
   nothing found is it `lost`. One request never becomes two actions at the EDR;
5. **follow** — the EDR's status of sent actions is read until it is terminal (audited by
   the caller's `on_finished`, which may also tell the company).

What differs between the kinds is a `Route`: its transition table, its audit names and
wording, the check that the connector talks to the action's tenant, and, for offboarding,
a platform the EDR cannot uninstall remotely (settled as manual work without a send).

The module is longer than most (~450 lines) because the steps are one road: reconciliation
settles through the same `settle` as an answer, and `send_action` reconciles at once after
a send without one; split apart, the two halves would import each other.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from edrtrial import audit
from edrtrial.connectors.base import ActionKind, ActionResult, Capability, Connector
from edrtrial.db import transaction
from edrtrial.devices.states import FOLLOWED, RECONCILED, reported, sent
from edrtrial.errors import ConnectorError, OutcomeUnknown
from edrtrial.machine import Machine
from edrtrial.models import Device, ResponseAction, Tenant
from edrtrial.states import ActionState
from edrtrial.timeutil import as_utc, to_jst

log = logging.getLogger(__name__)

Finished = Callable[[Session, ResponseAction], None]
"""Runs in the commit that records an action's terminal status: audit it, tell the company."""

RECONCILE_WINDOW = timedelta(minutes=10)
"""How long after a send without an answer its action may still appear at the EDR (the
desk's `reconcile_minutes`)."""
CLOCK_SKEW = timedelta(minutes=2)
"""The EDR stamps its actions with its own clock: an action whose comment does not name the
send is taken for it only if created no more than this before the claim."""
PLAN_SKEW = timedelta(hours=1)
"""A send's own action is never older than its plan: one marked as this send's but created
more than this before the plan (the EDR's clock allowed for) belongs to another store that
numbers its actions the same way."""
_MARKER = re.compile(r"(action #\d+(?:/[0-9a-f]{6})?)\)?\s*$")


def marker(action: ResponseAction) -> str:
    """The words every send ends the EDR's comment with: after a send without an answer they
    tell which action at the EDR is this one's.

    The number alone is unique in one store only; a staging store sharing the app
    registration, or a store restored from a backup, numbers its actions the same. So the
    number carries a short digest of what only this row has (its key and the instant it was
    planned): another store's action #12 has another digest.
    """
    planned = as_utc(action.created_at).isoformat() if action.created_at else ""
    digest = hashlib.sha256(f"{action.id}|{action.dedupe_key}|{planned}".encode()).hexdigest()
    return f"action #{action.id}/{digest[:6]}"


def _marker_in(comment: str) -> str | None:
    """The marker that ends a comment, if any: only the end counts, so a device name earlier
    in the comment cannot pass for one."""
    found = _MARKER.search(comment)
    return found.group(1) if found else None


SENDING_GRACE = timedelta(minutes=5)
"""A `sending` row older than this was left by a crash: a send's own calls (timeouts, a few
retries of the reads before it, budget waits) end well within it, so reconciling it cannot
race a send still under way."""
RECONCILER = "edr"
"""The audit actor of what the EDR's own records settle."""


def _never_manual(connector: Connector, device: Device) -> str | None:
    return None


def _always_send(session: Session, action: ResponseAction, device: Device, at: datetime) -> None:
    return None


@dataclass(frozen=True, slots=True)
class Route:
    """How one kind of action travels: the kind-specific parts of the one send path."""

    machine: Machine[ActionState]
    target: Callable[[ResponseAction, Device], str]
    """The audit target (a ticket, or the device)."""
    check_tenant: Callable[[Tenant, Connector], None]
    """Raises unless the connector talks to the action's tenant (before anything is written)."""
    comment: Callable[[ResponseAction, Device, str], str]
    """The comment the EDR keeps with its machine action (action, device, actor)."""
    interrupted: str
    """The detail while `sending`: what to check if it stays so."""
    refused: str
    """The detail after the EDR refused the send; `{error}` is its message."""
    lost: str = "no answer to the send, and no action appeared at the EDR within the window"
    """The detail when a send without an answer created nothing at the EDR."""
    noun: str = ""
    """The audit prefix ("offboarding"); empty: the action's kind ("isolate", "release")."""
    manual: Callable[[Connector, Device], str | None] = _never_manual
    """The note for work the EDR cannot do remotely, settled without a send; None: send it."""
    sender_requests: bool = False
    """The operator who sends becomes the requester (a task planned by the lifecycle job)."""
    check_send: Callable[[Session, ResponseAction, Device, datetime], str | None] = _always_send
    """Why the action must not be sent now (it is cancelled with this reason); None: send it.

    Runs inside the claim's transaction, so what it reads is what the send acts on."""

    def event(self, action: ResponseAction, what: str) -> str:
        """The audit action's name, e.g. `isolate.sending` or `offboarding.manual`."""
        return f"{self.noun or action.kind}.{what}"


class Outcome(StrEnum):
    """What one `send_action` did."""

    NOT_PLANNED = "not_planned"  # no longer planned (sent, or taken by another process)
    MANUAL = "manual"  # handed over as manual work, nothing sent
    SENT = "sent"  # the EDR accepted it
    REFUSED = "refused"  # the EDR refused it; settled by the route's "refused" step
    CANCELLED = "cancelled"  # no longer fits (the route's check at send time): nothing sent
    UNCONFIRMED = "unconfirmed"  # no answer and no action found yet: looked for again later
    LOST = "lost"  # no answer, and no action appeared within the reconciliation window


@dataclass(frozen=True, slots=True)
class _Claimed:
    kind: ActionKind
    device_source_id: str
    device_name: str
    target: str
    comment: str


def send_action(
    sessions: sessionmaker[Session],
    route: Route,
    action_id: int,
    connector: Connector,
    actor: str,
    now: Callable[[], datetime],
    window: timedelta = RECONCILE_WINDOW,
    on_finished: Finished | None = None,
) -> Outcome:
    """Send one planned action once: claimed (and audited) in its own commit before the call."""
    claimed = _claim(sessions, route, action_id, connector, actor, now)
    if not isinstance(claimed, _Claimed):
        return claimed
    try:
        result = connector.start_action(claimed.device_source_id, claimed.kind, claimed.comment)
    except OutcomeUnknown as err:  # it may exist: look before deciding
        log.warning("%s of %s got no answer: %s", claimed.kind.value, claimed.device_name, err)
        return reconcile(
            sessions, route, action_id, connector, actor, now, window, err, on_finished
        )
    except ConnectorError as err:  # refused: the EDR created nothing
        log.warning("%s of %s failed: %s", claimed.kind.value, claimed.device_name, err)
        settle(
            sessions,
            route,
            action_id,
            "refused",
            at=now(),
            actor=actor,
            what="failed",
            target=claimed.target,
            audit_detail={"error": str(err)},
            detail=route.refused.format(error=err),
        )
        return Outcome.REFUSED
    settle(
        sessions,
        route,
        action_id,
        sent(result.status),
        at=now(),
        actor=actor,
        what="sent",
        target=claimed.target,
        audit_detail={"machine_action": result.source_action_id, "status": result.status.value},
        source_action_id=result.source_action_id,
        detail=f"machine action {result.source_action_id}",
        on_finished=on_finished,
        **_finished(result, now()),
    )
    return Outcome.SENT


def _finished(result: ActionResult, at: datetime) -> dict[str, Any]:
    return {"finished_at": at} if result.status.terminal else {}


def _claim(
    sessions: sessionmaker[Session],
    route: Route,
    action_id: int,
    connector: Connector,
    actor: str,
    now: Callable[[], datetime],
) -> _Claimed | Outcome:
    """Take a planned action for sending (audited), or settle it as manual work."""
    with transaction(sessions) as session:
        action = session.get_one(ResponseAction, action_id)
        device = session.get_one(Device, action.device_id)
        route.check_tenant(session.get_one(Tenant, action.tenant_id), connector)
        target, at, seen = route.target(action, device), now(), action.status
        if route.machine.can("cancel", seen) and (
            why := route.check_send(session, action, device, at)
        ):
            return _cancel(session, route, action, device, actor, at, why)
        requester: dict[str, Any] = {"requested_by": actor} if route.sender_requests else {}
        note = route.manual(connector, device)
        if note is None:
            requester["sent_at"] = at  # the EDR's action, if any, is no older
        step, detail = ("claim", route.interrupted) if note is None else ("manual", note)
        if not route.machine.can(step, seen) or not route.machine.move_id(
            session, action_id, seen, step, detail=detail, updated_at=at, **requester
        ):
            return Outcome.NOT_PLANNED  # sent already, or another operator took it
        audit.record(
            session,
            at=at,
            actor=actor,
            action=route.event(action, "sending" if note is None else "manual"),
            tenant_id=action.tenant_id,
            target=target,
            detail={"device": device.name, "requested_by": action.requested_by},
        )
        if note is not None:
            return Outcome.MANUAL
        comment = route.comment(action, device, actor)
        if _marker_in(comment) != marker(action):
            comment = f"{comment} ({marker(action)})"
        return _Claimed(ActionKind(action.kind), device.source_id, device.name, target, comment)


def _cancel(
    session: Session,
    route: Route,
    action: ResponseAction,
    device: Device,
    actor: str,
    at: datetime,
    why: str,
) -> Outcome:
    """Cancel a planned action the send-time check objects to (audited with the reason)."""
    kind, tenant_id, target = action.kind, action.tenant_id, route.target(action, device)
    event = route.event(action, "cancelled")
    if not route.machine.move_id(
        session, action.id, action.status, "cancel", detail=why, updated_at=at
    ):
        return Outcome.NOT_PLANNED  # another operator took it meanwhile
    log.info("%s of %s cancelled at send time: %s", kind, device.name, why)
    audit.record(
        session,
        at=at,
        actor=actor,
        action=event,
        tenant_id=tenant_id,
        target=target,
        detail={"device": device.name, "reason": why, "when": "at send time"},
    )
    return Outcome.CANCELLED


def settle(
    sessions: sessionmaker[Session],
    route: Route,
    action_id: int,
    step: str,
    *,
    at: datetime,
    actor: str,
    what: str,
    target: str,
    audit_detail: dict[str, Any],
    seen: str = ActionState.SENDING,
    on_finished: Finished | None = None,
    answered: bool = True,
    **values: Any,
) -> None:
    """Move an action out of `seen` (`sending`) by `step`, with what the EDR answered; audit it.

    The audit is written even if the row had left `sending` meanwhile (nothing but this
    send moves it from there, so that means someone edited the store): the EDR was called,
    and the audit log must say so. What reconciliation found (`answered` false) is audited
    only if it was recorded: another reconciler that got there first has audited its own
    finding, and a second, older one would contradict it. An answer that is already
    terminal (an action found finished by reconciliation, minutes after a crash) runs
    `on_finished` in the same commit, as following it would have: the company hears of its
    isolated device either way.
    """
    with transaction(sessions) as session:
        action = session.get_one(ResponseAction, action_id)
        moved = route.machine.move_id(session, action_id, seen, step, updated_at=at, **values)
        if not moved and not answered:
            return  # another reconciler settled it first, and audited what it found
        if not moved:
            log.warning(
                "%s #%d left %s before its answer (%s) was recorded; it is %s",
                route.machine.entity,
                action_id,
                seen,
                step,
                session.get_one(ResponseAction, action_id).status,
            )
        audit.record(
            session,
            at=at,
            actor=actor,
            action=route.event(action, what),
            tenant_id=action.tenant_id,
            target=target,
            detail=audit_detail,
        )
        if moved and on_finished is not None and "finished_at" in values:
            on_finished(session, session.get_one(ResponseAction, action_id))


def follow_actions(
    sessions: sessionmaker[Session],
    machine: Machine[ActionState],
    tenant_id: int,
    connector: Connector,
    kinds: Sequence[str],
    now: datetime,
    on_finished: Finished,
) -> tuple[int, list[int]]:
    """Read the EDR's status of a tenant's sent actions of these kinds, one commit each.

    Each status is written from the state read before the (slow) EDR call, so of two
    followers (the desk job and `ticket isolate --wait`) only one records a change and runs
    `on_finished`; the other's older reading never overwrites a newer status.
    `on_finished` runs in the commit that records a terminal status (to audit it, tell the
    company…). Returns how many changed and the ids of those that finished. The caller has
    checked that the connector talks to this tenant.
    """
    with sessions() as session:
        pending = [
            (a.id, a.status, a.source_action_id)
            for a in session.scalars(
                select(ResponseAction).where(
                    ResponseAction.tenant_id == tenant_id,
                    ResponseAction.kind.in_(list(kinds)),
                    ResponseAction.status.in_(FOLLOWED),
                    ResponseAction.source_action_id.is_not(None),
                )
            )
        ]
    changed, finished = 0, []
    for action_id, seen, source_action_id in pending:
        assert source_action_id is not None
        try:
            result = connector.action_status(source_action_id)
        except ConnectorError as err:  # one unreadable action must not hide the others
            log.warning("machine action %s unreadable: %s", source_action_id, err)
            continue
        if result.status.value == seen:
            continue
        with transaction(sessions) as session:
            if not machine.move_id(
                session,
                action_id,
                seen,
                reported(result.status),
                updated_at=now,
                **_finished(result, now),
            ):
                continue  # another follower recorded it first
            changed += 1
            if result.status.terminal:
                on_finished(session, session.get_one(ResponseAction, action_id))
                finished.append(action_id)
    return changed, finished


@dataclass(frozen=True, slots=True)
class _Unanswered:
    seen: str
    kind: ActionKind
    device_source_id: str
    target: str
    sent_at: datetime
    planned_at: datetime
    marks: frozenset[str]  # this send's marker, and the bare number an older version wrote
    known: frozenset[str]


def _unanswered(session: Session, route: Route, action_id: int) -> _Unanswered | None:
    action = session.get_one(ResponseAction, action_id)
    if action.status not in RECONCILED:
        return None
    device = session.get_one(Device, action.device_id)
    adopted = session.scalars(  # an action another row already holds is not this one's
        select(ResponseAction.source_action_id).where(
            ResponseAction.tenant_id == action.tenant_id,
            ResponseAction.device_id == action.device_id,
            ResponseAction.source_action_id.is_not(None),
        )
    )
    return _Unanswered(
        action.status,
        ActionKind(action.kind),
        device.source_id,
        route.target(action, device),
        action.sent_at or action.updated_at,
        as_utc(action.created_at) if action.created_at else action.sent_at or action.updated_at,
        frozenset((marker(action), f"action #{action.id}")),
        frozenset(a for a in adopted if a),
    )


def _this_send(open_: _Unanswered, listed: Sequence[ActionResult]) -> list[ActionResult]:
    """The listed actions that may be this send's, best first.

    One ending with this send's marker and created after its plan (the EDR's clock allowed
    for) is it, however the EDR's clock stamped it. Failing that, one carrying no marker
    (created by hand in the console with the same app) is taken only if created since the
    claim, less the clock skew; one carrying another send's marker, or held by another row,
    is never this one's.
    """
    free = [a for a in listed if a.source_action_id not in open_.known]
    not_before = open_.planned_at - PLAN_SKEW
    ours = [
        a
        for a in free
        if _marker_in(a.comment) in open_.marks
        and (a.created_at is None or a.created_at >= not_before)
    ]
    if ours:
        return ours
    earliest = open_.sent_at - CLOCK_SKEW
    return [
        a
        for a in free
        if _marker_in(a.comment) is None and (a.created_at is None or a.created_at >= earliest)
    ]


def reconcile(
    sessions: sessionmaker[Session],
    route: Route,
    action_id: int,
    connector: Connector,
    actor: str,
    now: Callable[[], datetime],
    window: timedelta = RECONCILE_WINDOW,
    doubt: Exception | None = None,
    on_finished: Finished | None = None,
) -> Outcome:
    """Settle a send that got no answer by what the EDR has: adopt the action it created.

    The device's actions of this kind created since the claim (less the clock skew) that no
    other row holds are read; the oldest is recorded as the send's answer. None yet: the
    action waits `unconfirmed` (audited once) until the window after the claim has passed,
    then it is `lost`. A connector that cannot list actions leaves it `unconfirmed` for an
    operator to check in the EDR's console: it may exist, so it is never assumed absent.
    """
    with sessions() as session:
        open_ = _unanswered(session, route, action_id)
    if open_ is None:
        return Outcome.NOT_PLANNED  # settled meanwhile
    listable = Capability.FIND_ACTIONS in connector.capabilities
    found: list[ActionResult] = []
    read = False  # the EDR's list was read, so "nothing found" means something
    if listable:
        try:
            since = min(open_.planned_at, open_.sent_at) - PLAN_SKEW
            mark = next(m for m in open_.marks if "/" in m)
            listed = connector.find_actions(open_.device_source_id, open_.kind, since, mark)
            found, read = _this_send(open_, listed), True
        except ConnectorError as err:  # unreadable now: looked for again by the desk job
            log.warning("machine actions of %s unreadable: %s", open_.device_source_id, err)
    at = now()
    common: dict[str, Any] = {
        "at": at,
        "actor": actor,
        "target": open_.target,
        "seen": open_.seen,
        "answered": False,
    }
    if found:
        result = found[0]
        settle(
            sessions,
            route,
            action_id,
            sent(result.status),
            what="sent",
            audit_detail={
                "machine_action": result.source_action_id,
                "status": result.status.value,
                "reconciled": True,
            },
            source_action_id=result.source_action_id,
            detail=f"machine action {result.source_action_id} (found at the EDR after the send "
            "got no answer)",
            on_finished=on_finished,
            **_finished(result, at),
            **common,
        )
        return Outcome.SENT
    deadline = open_.sent_at + window
    if read and at >= deadline:
        settle(
            sessions,
            route,
            action_id,
            "lost",
            what="lost",
            audit_detail={"window_minutes": window.total_seconds() / 60},
            detail=route.lost,
            **common,
        )
        return Outcome.LOST
    if open_.seen == ActionState.SENDING:
        looking = (
            f"looking for it at the EDR until {to_jst(deadline):%m/%d %H:%M} JST"
            if listable
            else "the EDR cannot list its actions: check the device in its console"
        )
        settle(
            sessions,
            route,
            action_id,
            "unconfirmed",
            what="unconfirmed",
            audit_detail={"error": str(doubt) if doubt else "interrupted before its answer"},
            detail=f"sent without an answer ({doubt or 'interrupted'}); {looking}",
            **common,
        )
    return Outcome.UNCONFIRMED


def reconcile_pending(
    sessions: sessionmaker[Session],
    route: Route,
    tenant_id: int,
    connector: Connector,
    kinds: Sequence[str],
    now: Callable[[], datetime],
    window: timedelta = RECONCILE_WINDOW,
    on_finished: Finished | None = None,
) -> dict[int, Outcome]:
    """Reconcile a tenant's unanswered sends, and those a crash left `sending` (the desk job).

    A `sending` row younger than `SENDING_GRACE` may be a send still under way and is left
    alone. The caller has checked that the connector talks to this tenant.
    """
    with sessions() as session:
        rows = session.execute(
            select(ResponseAction.id, ResponseAction.status, ResponseAction.sent_at)
            .add_columns(ResponseAction.updated_at)
            .where(
                ResponseAction.tenant_id == tenant_id,
                ResponseAction.kind.in_(list(kinds)),
                ResponseAction.status.in_(RECONCILED),
            )
            .order_by(ResponseAction.id)
        ).all()
    current = now()
    return {
        action_id: reconcile(
            sessions, route, action_id, connector, RECONCILER, now, window, None, on_finished
        )
        for action_id, status, sent_at, updated_at in rows
        if status != ActionState.SENDING or (sent_at or updated_at) <= current - SENDING_GRACE
    }
