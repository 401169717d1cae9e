"""The end of a company's offboarding: every device verified, or uninstalled by hand.

An offboarding is done when each device's task is `verified`: the EDR offboarded it and an
inventory read since shows it quiet (`offboarding.verify_offboarding`), or a person ran the
offboarding script where the EDR cannot uninstall remotely and said so here. Only then is
the company offboarded and its tenant's credentials dropped (`service/trial_lifecycle.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from edrtrial import audit
from edrtrial.connectors.base import ActionKind
from edrtrial.devices.states import OFFBOARDING
from edrtrial.ingest.queries import inventory_read_at
from edrtrial.models import Device, ResponseAction
from edrtrial.states import ActionState
from edrtrial.words import Words


def confirm_uninstalled(
    session: Session, tenant_id: int, device_name: str, *, actor: str, at: datetime, note: str
) -> ResponseAction:
    """Record that a person uninstalled the EDR from a device by hand (audited).

    For a task handed over as manual work (a platform the EDR cannot uninstall remotely) or
    one still reporting after the EDR's offboarding: the operator ran the offboarding script.
    Raises LookupError naming the devices that wait for it when `device_name` is none of them.
    """
    waiting = session.execute(
        select(ResponseAction, Device)
        .join(Device, ResponseAction.device_id == Device.id)
        .where(
            ResponseAction.tenant_id == tenant_id,
            ResponseAction.kind == ActionKind.OFFBOARD.value,
            ResponseAction.status.in_((ActionState.MANUAL, ActionState.STILL_REPORTING)),
        )
        .order_by(Device.name)
    ).all()
    wanted = device_name.casefold()
    found = [(t, d) for t, d in waiting if wanted in (d.name.casefold(), d.source_id.casefold())]
    if not found:
        names = ", ".join(d.name or d.source_id for _, d in waiting) or "none"
        raise LookupError(
            Words(
                "no device %(device)r waits for a manual uninstall (waiting: %(names)s)",
                device=device_name,
                names=names,
            )
        )
    task, device = found[0]
    detail = f"uninstalled by hand, confirmed by {actor}" + (f": {note}" if note else "")
    if not OFFBOARDING.move(session, task, "uninstalled", detail=detail, updated_at=at):
        raise LookupError(
            Words(
                "the task of %(device)s moved to %(status)s meanwhile",
                device=device.name,
                status=task.status,
            )
        )
    audit.record(
        session,
        at=at,
        actor=actor,
        action="offboarding.uninstalled",
        tenant_id=tenant_id,
        target=f"device:{device.source_id}",
        detail={"device": device.name, "note": note},
    )
    return task


@dataclass(frozen=True, slots=True)
class OffboardingDone:
    """Whether a company's offboarding is complete, and if not what it waits for."""

    done: bool
    devices: int  # devices verified as no longer running the EDR
    waiting: str = ""


def offboarding_done(session: Session, tenant_id: int, since: datetime) -> OffboardingDone:
    """Whether every device of the tenant is verified as no longer running the EDR.

    VERIFIED tasks only (an operator's confirmation for manual ones). A tenant with no task
    is done only once an inventory read after `since` (the offboarding's start) found no
    device: before that, "no device" may only mean "not read yet".
    """
    statuses = list(
        session.scalars(
            select(ResponseAction.status).where(
                ResponseAction.tenant_id == tenant_id,
                ResponseAction.kind == ActionKind.OFFBOARD.value,
                ResponseAction.status != ActionState.CANCELLED,
            )
        )
    )
    open_tasks = [s for s in statuses if s != ActionState.VERIFIED]
    if open_tasks:
        return OffboardingDone(False, len(statuses) - len(open_tasks), f"{len(open_tasks)} open")
    uncovered = session.scalar(
        select(Device.id)
        .where(Device.tenant_id == tenant_id, Device.in_inventory.is_(True))
        .where(
            ~select(ResponseAction.id)
            .where(
                ResponseAction.device_id == Device.id,
                ResponseAction.kind == ActionKind.OFFBOARD.value,
                ResponseAction.status == ActionState.VERIFIED,
            )
            .exists()
        )
        .limit(1)
    )
    if uncovered is not None:
        return OffboardingDone(False, len(statuses), "a device without a task yet")
    if not statuses:
        read_at = inventory_read_at(session, tenant_id)
        if read_at is None or read_at < since:
            return OffboardingDone(False, 0, "no inventory read since the offboarding began")
    return OffboardingDone(True, len(statuses))
