"""An in-memory connector for core tests that must not depend on any EDR's HTTP API."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Self

from pydantic import BaseModel

from edrtrial.connectors.base import (
    AccessCheck,
    ActionKind,
    ActionResult,
    ActionStatus,
    AlertRecord,
    AlertUpdate,
    Batch,
    Capability,
    DeviceRecord,
    IncidentRecord,
    Rejected,
    inventory_check,
)
from edrtrial.errors import Unmappable
from edrtrial.timeutil import Stamp


class FakeSettings(BaseModel):
    connector: str = "fake"


class Crash(Exception):
    """Stands for the process dying between two pages."""


class FakeConnector:
    """Serves alerts from a list in pages; can be told to die after N pages."""

    name: ClassVar[str] = "fake"
    settings_model: ClassVar[type[BaseModel]] = FakeSettings
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.INCIDENTS, Capability.DEVICES, Capability.OFFBOARD, Capability.FIND_ACTIONS}
    )

    def __init__(
        self, page_size: int = 3, overlap: timedelta = timedelta(0), tenant_id: str = "t-acme"
    ) -> None:
        self.tenant_id = tenant_id
        self.alerts: dict[str, AlertRecord] = {}
        self.devices: list[DeviceRecord] = []
        self.page_size = page_size
        self.overlap = overlap
        self.crash_after_pages: int | None = None
        self.started: list[tuple[str, ActionKind]] = []
        self.incidents: dict[str, IncidentRecord] = {}
        self.incident_requests: list[list[str]] = []
        self.bad_alerts: list[dict[str, Any]] = []
        self.statuses: dict[str, ActionStatus] = {}
        # The EDR's machine actions (device, kind, action), as `find_actions` lists them.
        self.actions: list[tuple[str, ActionKind, ActionResult]] = []
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        # Raised by `start_action`, after the EDR created the action unless `fault_records`
        # is off (a 5xx or a timeout after Microsoft acted, or before it did).
        self.fault: Exception | None = None
        self.fault_records = True

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], base_dir: Path) -> Self:
        return cls()

    @classmethod
    def alert_payloads(cls, document: Any) -> list[Any]:
        return list(document) if isinstance(document, list) else [document]

    @classmethod
    def map_alert(cls, payload: Any) -> AlertRecord:
        raise Unmappable("the fake connector maps no payloads")

    def fetch_alerts(self, since: Stamp | None) -> Iterator[Batch[AlertRecord]]:
        rows = sorted(self.alerts.values(), key=lambda a: (a.last_update_at, a.source_id))
        if since is not None:
            rows = [a for a in rows if a.last_update_at >= since - self.overlap]
        for n, start in enumerate(range(0, max(len(rows), 1), self.page_size)):
            if self.crash_after_pages is not None and n >= self.crash_after_pages:
                raise Crash(f"died before page {n}")
            rejected = (
                [Rejected("alert", str(b.get("id", "")), "no title", b) for b in self.bad_alerts]
                if n == 0
                else []
            )
            yield Batch(rows[start : start + self.page_size], rejected)

    def fetch_incidents(
        self, source_ids: Sequence[str], since: Stamp | None = None
    ) -> Batch[IncidentRecord]:
        self.incident_requests.append(list(source_ids))
        return Batch([self.incidents[i] for i in source_ids if i in self.incidents])

    def fetch_devices(self) -> Batch[DeviceRecord]:
        return Batch(list(self.devices))

    def update_alert(self, source_id: str, update: AlertUpdate) -> None:
        raise AssertionError("write-back is not expected here")

    def start_action(self, device_source_id: str, kind: ActionKind, comment: str) -> ActionResult:
        self.started.append((device_source_id, kind))
        result = ActionResult(
            f"action-{len(self.started)}",
            ActionStatus.PENDING,
            created_at=self.clock(),
            comment=comment,
        )
        if self.fault is None or self.fault_records:
            self.actions.append((device_source_id, kind, result))
        if self.fault is not None:
            raise self.fault
        return result

    def find_actions(
        self, device_source_id: str, kind: ActionKind, since: datetime, marker: str = ""
    ) -> list[ActionResult]:
        return [
            action
            for device, of_kind, action in self.actions
            if device == device_source_id
            and of_kind == kind
            and action.created_at is not None
            and action.created_at >= since
        ]

    def action_status(self, source_action_id: str) -> ActionResult:
        return ActionResult(
            source_action_id, self.statuses.get(source_action_id, ActionStatus.SUCCEEDED)
        )

    def can_offboard(self, os_platform: str) -> bool:
        return os_platform.lower().startswith("windows")

    def verify_access(self) -> list[AccessCheck]:
        return inventory_check(self, "fake inventory")

    def close(self) -> None:
        pass


class HandClock:
    """A runtime's clock, moved by hand from the test's now (`Runtime(clock=...)`)."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now
