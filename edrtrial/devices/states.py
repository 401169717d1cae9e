"""Transition tables of device actions (isolate, release) and offboarding tasks.

Both live in `response_action.status`, with the states of `edrtrial.states.ActionState`.
Every status write is a step of one of these machines, taken with a conditional claim, so
a writer that read a state another process has left since is refused instead of
overwriting it. The two tables differ where the two kinds of action differ: only an
isolation is proposed (and superseded); only an offboarding can be manual work; a send the
EDR refuses fails an isolation (the desk decides again) but puts an offboarding back to
`planned` (an operator may retry it). Either is cancelled from `planned` when the check at
send time finds it no longer fits (the company continues, its trial ended, the device is
offboarded) or when a company's decision or trial makes a planned offboarding moot.

A send that got no answer (timeout, dropped connection, 5xx) is `unconfirmed`: the EDR may
have created the action, so it is looked for (`devices/send.py` `reconcile`) and adopted by
the same `sent:` steps as an answer; only when none has appeared within the reconciliation
window is it `lost` (failed, or for an offboarding back to `planned`). An offboarding the
EDR reports succeeded is then `verified` once the device stops reporting, or flagged
`still_reporting` for the desk.

The EDR's own states are steps named after them: `sent(status)` records the EDR's answer to
the send, `reported(status)` what a later status read says.
"""

from __future__ import annotations

from edrtrial.connectors.base import ActionKind, ActionStatus
from edrtrial.machine import Machine, Step
from edrtrial.models import ResponseAction
from edrtrial.states import ActionState

FOLLOWED = (ActionState.PENDING, ActionState.IN_PROGRESS)
"""Sent and not finished: the EDR's status is read until it is terminal."""

RECONCILED = (ActionState.SENDING, ActionState.UNCONFIRMED)
"""Sent without a recorded answer: the EDR's machine actions say whether it exists."""

UNDER_WAY = (ActionState.PLANNED, *RECONCILED, *FOLLOWED)
"""An isolate or release in one of these states blocks a second one for the device."""


def sent(status: ActionStatus) -> str:
    """The step that records the EDR's answer to the send."""
    return f"sent:{status.value}"


def reported(status: ActionStatus) -> str:
    """The step that records a later status read from the EDR."""
    return f"reported:{status.value}"


def _edr_steps() -> dict[str, Step[ActionState]]:
    steps: dict[str, Step[ActionState]] = {}
    for status in ActionStatus:
        state = ActionState(status.value)
        steps[sent(status)] = Step(RECONCILED, state)
        steps[reported(status)] = Step(FOLLOWED, state)
    return steps


DEVICE_ACTIONS = Machine(
    "device action",
    ResponseAction,
    "status",
    {
        "supersede": Step((ActionState.PROPOSED,), ActionState.SUPERSEDED),
        "cancel": Step((ActionState.PLANNED,), ActionState.CANCELLED),
        "claim": Step((ActionState.PLANNED,), ActionState.SENDING),
        "refused": Step((ActionState.SENDING,), ActionState.FAILED),
        "unconfirmed": Step((ActionState.SENDING,), ActionState.UNCONFIRMED),
        "lost": Step(RECONCILED, ActionState.FAILED),
        **_edr_steps(),
    },
)

OFFBOARDING = Machine(
    "offboarding task",
    ResponseAction,
    "status",
    {
        "manual": Step((ActionState.PLANNED,), ActionState.MANUAL),
        "cancel": Step((ActionState.PLANNED,), ActionState.CANCELLED),
        "claim": Step((ActionState.PLANNED,), ActionState.SENDING),
        "refused": Step((ActionState.SENDING,), ActionState.PLANNED),
        "unconfirmed": Step((ActionState.SENDING,), ActionState.UNCONFIRMED),
        # None appeared at the EDR within the window: nothing was created, it may be sent again.
        "lost": Step(RECONCILED, ActionState.PLANNED),
        **_edr_steps(),
        "verify": Step((ActionState.SUCCEEDED, ActionState.STILL_REPORTING), ActionState.VERIFIED),
        "flag": Step((ActionState.SUCCEEDED,), ActionState.STILL_REPORTING),
        # A person uninstalled it by hand (the offboarding script) and says so: the device
        # handed over as manual work, or one still reporting after the EDR's offboarding.
        "uninstalled": Step(
            (ActionState.MANUAL, ActionState.STILL_REPORTING), ActionState.VERIFIED
        ),
    },
)


def machine_for(kind: str) -> Machine[ActionState]:
    """The machine of an action of this kind."""
    return OFFBOARDING if kind == ActionKind.OFFBOARD.value else DEVICE_ACTIONS
