"""What others read of devices and their actions, outside the modules that act on them."""

from __future__ import annotations

from sqlalchemy.orm import Session

from edrtrial.models import Device, ResponseAction


def device(session: Session, device_id: int) -> Device:
    """The stored device with this id (it must exist)."""
    return session.get_one(Device, device_id)


def action_status(session: Session, action_id: int) -> str:
    """The current status of a device action (it must exist)."""
    return session.get_one(ResponseAction, action_id).status
