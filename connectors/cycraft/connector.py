"""CyCraft AIR: alerts, incidents, endpoints and tasks, read through the configured REST mapping.

This module is longer than most (~450 lines) because it is the whole connector contract of one
EDR in one place — mapping each record kind, the cursor, and the device actions share the
same payload helpers; split by kind, every part would import every other.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar, cast

import httpx
from pydantic import BaseModel, ValidationError

from edrtrial import __version__
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
    DeviceRef,
    Evidence,
    IncidentRecord,
    Rejected,
    inventory_check,
)
from edrtrial.connectors.cycraft.auth import ApiKeyAuth
from edrtrial.connectors.cycraft.client import CyCraftClient
from edrtrial.connectors.cycraft.config import (
    AlertFields,
    CyCraftSettings,
    RestMapping,
    default_capabilities,
    default_mapping,
)
from edrtrial.connectors.cycraft.models import (
    CyCraftAlert,
    CyCraftDevice,
    CyCraftIncident,
    CyCraftTask,
    dig,
    gather,
    pick,
)
from edrtrial.connectors.support import (
    EvidenceCollector,
    describe_errors,
    distinct_tags,
    map_page,
    map_record,
    tls_verify,
)
from edrtrial.errors import (
    ConfigError,
    Conflict,
    OutcomeUnknown,
    PermanentError,
    ResourceNotFound,
    SchemaDriftError,
    TransientError,
    Unmappable,
)
from edrtrial.secrets import resolve_secret
from edrtrial.timeutil import TICKS_PER_SECOND, Stamp

log = logging.getLogger(__name__)

R = TypeVar("R")
A = TypeVar("A", bound="CyCraftAdapter")

_OPEN = frozenset({ActionStatus.PENDING, ActionStatus.IN_PROGRESS})
_CAPABILITY_OF = {
    ActionKind.ISOLATE: Capability.ISOLATE,
    ActionKind.RELEASE: Capability.RELEASE,
    ActionKind.AV_SCAN: Capability.AV_SCAN,
    ActionKind.OFFBOARD: Capability.OFFBOARD,
}
_PLATFORM_NOISE = re.compile(r"[\s_-]")


class CyCraftAdapter:
    """One CyCraft AIR organisation, read and acted on through its REST mapping.

    `capabilities` on this class are those of the shipped mapping; `from_settings` returns
    an instance of a subclass whose `capabilities` are those of the tenant's own mapping,
    because the contract makes them a class attribute while here they depend on config.
    """

    name: ClassVar[str] = "cycraft"
    settings_model: ClassVar[type[BaseModel]] = CyCraftSettings
    capabilities: ClassVar[frozenset[Capability]] = default_capabilities()

    def __init__(
        self, settings: CyCraftSettings, client: CyCraftClient, http: httpx.Client
    ) -> None:
        self.settings = settings
        self._client = client
        self._http = http
        self._mapping = settings.mapping

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], base_dir: Path) -> Self:
        """Validate the connection block over the defaults, read the key, open the client."""
        try:
            parsed = CyCraftSettings.model_validate(dict(settings))
        except ValidationError as err:
            raise ConfigError(f"cycraft connection: {describe_errors(err)}") from err
        key = resolve_secret(parsed.api_key, base_dir, f"cycraft tenant {parsed.tenant_id} api_key")
        http = httpx.Client(
            verify=tls_verify(parsed.ca_bundle, base_dir, f"cycraft tenant {parsed.tenant_id}"),
            timeout=parsed.timeout_seconds,
            headers={"User-Agent": f"edrtrial/{__version__}"},
        )
        client = CyCraftClient(parsed, http, ApiKeyAuth(parsed, key))
        return _with_capabilities(cls, parsed.mapping.capabilities)(parsed, client, http)

    @classmethod
    def alert_payloads(cls, document: Any) -> list[Any]:
        """Alerts in a saved answer, read with the shipped mapping: a page (the list at
        `paging.items_path`), a list, one alert, or one wrapped at `item_path`."""
        mapping = default_mapping()
        if isinstance(document, list):
            return list(document)
        if isinstance(document, dict):
            items = dig(document, mapping.paging.items_path)
            if isinstance(items, list):
                return items
            item = dig(document, mapping.item_path)
            if isinstance(item, dict):
                return [item]
        return [document]

    @classmethod
    def map_alert(cls, payload: Any) -> AlertRecord:
        """A CyCraft alert through the shipped mapping (`defaults.toml`; a tenant's overrides
        are not applied); `Unmappable` says why it cannot be mapped."""
        return map_record(partial(_alert_record, mapping=default_mapping()), payload)

    @property
    def tenant_id(self) -> str:
        """The CyCraft organisation id this adapter talks to."""
        return self.settings.tenant_id

    def fetch_alerts(self, since: Stamp | None) -> Iterator[Batch[AlertRecord]]:
        """Alerts updated since `since` minus the overlap, page by page."""
        spec = self._mapping.alerts
        params = dict(spec.params) | self._since_filter(since)
        for page in self._client.pages(self._client.endpoint(spec.path), params):
            yield self._map_page(page, _alert_record, "alert", spec.fields.id)

    def fetch_incidents(
        self, source_ids: Sequence[str], since: Stamp | None = None
    ) -> Batch[IncidentRecord]:
        """The named incidents, one GET each (no list endpoint is known for CyCraft)."""
        if not source_ids:
            return Batch([])
        spec = self._mapping.incidents
        self._require(Capability.INCIDENTS, "mapping.incidents.path")
        items: list[Any] = []
        for source_id in dict.fromkeys(source_ids):
            path = self._client.endpoint(spec.path, id=source_id)
            try:
                items.append(self._client.item(path, self._client.get(path)))
            except ResourceNotFound:
                log.info("tenant %s: incident %s no longer exists", self._tenant, source_id)
        return self._map_page(items, _incident_record, "incident", spec.fields.id)

    def fetch_devices(self) -> Batch[DeviceRecord]:
        """Every endpoint of the organisation (a partial answer is marked by `rejected`)."""
        spec = self._mapping.devices
        self._require(Capability.DEVICES, "mapping.devices.path")
        devices: list[DeviceRecord] = []
        rejected: list[Rejected] = []
        for page in self._client.pages(self._client.endpoint(spec.path), spec.params):
            batch = self._map_page(page, _device_record, "device", spec.fields.id)
            devices.extend(batch.records)
            rejected.extend(batch.rejected)
        return Batch(devices, rejected)

    def start_action(self, device_source_id: str, kind: ActionKind, comment: str) -> ActionResult:
        """Reuse an open task of this kind on the device, else ask CyCraft for a new one."""
        spec = self._mapping.actions
        self._require(_CAPABILITY_OF[kind], f"mapping.actions.{kind.value}.path")
        if not device_source_id:
            raise PermanentError(f"tenant {self._tenant}: no device id given for {kind}")
        if (pending := self._open_task(device_source_id, kind)) is not None:
            log.info(
                "tenant %s: reusing %s task %s on device %s",
                self._tenant,
                kind,
                pending.source_action_id,
                device_source_id,
            )
            return pending
        path = self._client.endpoint(spec.of(kind).path, device_id=device_source_id)
        body = {spec.comment_field: comment} if spec.comment_field else {}
        try:
            answer = self._client.send(spec.method, path, body)
        except Conflict as err:
            pending = self._open_task(device_source_id, kind)
            if pending is None:
                raise TransientError(
                    f"tenant {self._tenant}: {kind} on {device_source_id} conflicts with a task "
                    "that is not listed yet; try again shortly"
                ) from err
            return pending
        try:
            result = self._task_result(self._client.item(path, answer), ActionStatus.PENDING)
        except SchemaDriftError as err:  # accepted, so the task may exist: never a refusal
            raise OutcomeUnknown(
                f"{err}; CyCraft accepted the {kind} of {device_source_id}, so it may be under way"
            ) from err
        log.info(
            "tenant %s: started %s task %s on device %s",
            self._tenant,
            kind,
            result.source_action_id,
            device_source_id,
        )
        return result

    def action_status(self, source_action_id: str) -> ActionResult:
        """Where an earlier task stands."""
        if not self._mapping.actions.status:
            raise PermanentError(
                f"tenant {self._tenant}: CyCraft task status is not configured "
                "(mapping.actions.status is empty)"
            )
        path = self._client.endpoint(self._mapping.actions.status, action_id=source_action_id)
        return self._task_result(self._client.item(path, self._client.get(path)), None)

    def find_actions(
        self, device_source_id: str, kind: ActionKind, since: datetime, marker: str = ""
    ) -> list[ActionResult]:
        """Not offered: CyCraft's task list names neither the requester nor the creation time,
        so a task found there cannot be told apart from an older or someone else's one."""
        raise PermanentError(
            f"tenant {self._tenant}: CyCraft cannot list a device's tasks by requester and "
            "creation time; check the device in the CyCraft console"
        )

    def can_offboard(self, os_platform: str) -> bool:
        """Whether the platform is in `offboard_platforms` (by prefix, case and spaces ignored)."""
        if Capability.OFFBOARD not in self.capabilities:
            return False
        platform = _PLATFORM_NOISE.sub("", os_platform).lower()
        allowed = (
            _PLATFORM_NOISE.sub("", entry).lower() for entry in self.settings.offboard_platforms
        )
        return bool(platform) and any(entry and platform.startswith(entry) for entry in allowed)

    def update_alert(self, source_id: str, update: AlertUpdate) -> None:
        """Write the desk's verdict back, when the mapping names a write-back endpoint."""
        spec = self._mapping.write_back
        self._require(Capability.WRITE_BACK, "mapping.write_back.path")
        values = {
            spec.status_field: spec.status_values.get(update.status, update.status),
            spec.classification_field: update.classification,
            spec.determination_field: update.determination,
            spec.comment_field: update.comment,
        }
        body = {field: value for field, value in values.items() if field and value}
        self._client.send(spec.method, self._client.endpoint(spec.path, id=source_id), body)

    def verify_access(self) -> list[AccessCheck]:
        """The API key opens everything the edition gives, so reading the endpoints once
        says whether the service can work."""
        return inventory_check(self, "CyCraft AIR endpoints (API key)")

    def close(self) -> None:
        """Release the HTTP client."""
        self._http.close()

    @property
    def _tenant(self) -> str:
        return self.settings.tenant_id

    def _require(self, capability: Capability, key: str) -> None:
        if capability not in self.capabilities:
            raise PermanentError(
                f"tenant {self._tenant}: CyCraft {capability} is not configured ({key} is empty)"
            )

    def _since_filter(self, since: Stamp | None) -> dict[str, str]:
        spec = self._mapping.alerts
        if since is None or not spec.since_param:
            return {}
        start = since - timedelta(seconds=self.settings.overlap_seconds)
        # Each form is cut (floored) to its own unit: the filter may only reach further back.
        if spec.since_format == "epoch_seconds":
            value = str(start.ticks // TICKS_PER_SECOND)
        elif spec.since_format == "epoch_millis":
            value = str(start.ticks // (TICKS_PER_SECOND // 1000))
        else:
            value = start.datetime.strftime("%Y-%m-%dT%H:%M:%SZ")
        return {spec.since_param: value}

    def _map_page(
        self,
        items: Iterable[Any],
        mapper: Callable[[Mapping[str, Any], RestMapping], R],
        kind: str,
        id_path: str,
    ) -> Batch[R]:
        """`support.map_page` with this tenant's mapping and the record's mapped id path."""
        return map_page(
            items,
            lambda item: mapper(item, self._mapping),
            kind,
            tenant=self._tenant,
            source_id=partial(dig, path=id_path),
        )

    def _open_task(self, device_source_id: str, kind: ActionKind) -> ActionResult | None:
        """An open task of this kind on the device, if the mapping can list tasks."""
        spec = self._mapping.actions
        if not spec.tasks:
            return None
        wanted = spec.of(kind).type.strip().lower()
        path = self._client.endpoint(spec.tasks, device_id=device_source_id)
        for page in self._client.pages(path, {}):
            # An unreadable task is set aside (logged): it must not block a new action.
            tasks = self._map_page(page, _task_with_raw, "task", spec.fields.id)
            for task, item in tasks.records:
                status = spec.status_map.get(task.status or "")
                if (
                    task.id
                    and task.type == wanted
                    and status in _OPEN
                    and task.device_id in (None, device_source_id)
                ):
                    return self._task_result(item, None)
        return None

    def _task_result(self, item: Mapping[str, Any], default: ActionStatus | None) -> ActionResult:
        """A task as edrtrial sees it; one we cannot read is schema drift, not a skip."""
        spec = self._mapping.actions
        try:
            task = CyCraftTask.model_validate(pick(item, spec.fields))
        except ValidationError as err:
            raise SchemaDriftError(
                f"tenant {self._tenant}: task not understood: {describe_errors(err)}"
            ) from err
        if not task.id:
            raise SchemaDriftError(
                f"tenant {self._tenant}: task without an id at '{spec.fields.id}'"
            )
        if task.status:
            status = spec.status_map.get(task.status)
        else:
            status = default
        if status is None:
            raise SchemaDriftError(
                f"tenant {self._tenant}: task {task.id} has status {task.status!r}, which "
                "mapping.actions.status_map does not list"
            )
        return ActionResult(source_action_id=task.id, status=status, raw=item)


_BOUND: dict[tuple[type[CyCraftAdapter], frozenset[Capability]], type[CyCraftAdapter]] = {}


def _with_capabilities(cls: type[A], capabilities: frozenset[Capability]) -> type[A]:
    """`cls`, or a subclass of it, whose class-level capabilities are these."""
    if capabilities == cls.capabilities:
        return cls
    key = (cls, capabilities)
    if key not in _BOUND:
        namespace = {
            "capabilities": capabilities,
            "__module__": cls.__module__,
            "__qualname__": cls.__qualname__,
        }
        _BOUND[key] = cast(type[CyCraftAdapter], type(cls.__name__, (cls,), namespace))
    return cast(type[A], _BOUND[key])


def _alert_record(item: Mapping[str, Any], mapping: RestMapping) -> AlertRecord:
    fields = mapping.alerts.fields
    alert = CyCraftAlert.model_validate(pick(item, fields))
    updated = _last_update(alert.updated, alert.created, fields.updated, fields.created)
    return AlertRecord(
        source_id=_required(alert.id, fields.id),
        title=alert.title or "",
        severity=_translated(mapping.severity_map, alert.severity),
        status=_translated(mapping.status_map, alert.status),
        last_update_at=updated,
        created_at=_datetime(alert.created),
        incident_source_id=alert.incident_id or None,
        description=alert.description or "",
        category=alert.category or "",
        service_source="cycraft",
        mitre_techniques=alert.mitre,
        devices=_device_refs(alert.device_id, alert.device_name),
        evidence=_evidence(item, fields),
        raw=item,
    )


def _incident_record(item: Mapping[str, Any], mapping: RestMapping) -> IncidentRecord:
    fields = mapping.incidents.fields
    incident = CyCraftIncident.model_validate(pick(item, fields))
    updated = _last_update(incident.updated, incident.created, fields.updated, fields.created)
    return IncidentRecord(
        source_id=_required(incident.id, fields.id),
        title=incident.title or "",
        severity=_translated(mapping.severity_map, incident.severity),
        status=_translated(mapping.status_map, incident.status),
        last_update_at=updated,
        created_at=_datetime(incident.created),
        raw=item,
    )


def _device_record(item: Mapping[str, Any], mapping: RestMapping) -> DeviceRecord:
    fields = mapping.devices.fields
    device = CyCraftDevice.model_validate(pick(item, fields))
    return DeviceRecord(
        source_id=_required(device.id, fields.id),
        name=device.name or "",
        os_platform=device.os_platform or "",
        os_version=device.os_version or "",
        health_status=device.health_status or "",
        onboarding_status=device.onboarding_status or "",
        risk_score=device.risk_score or "",
        first_seen=_datetime(device.first_seen),
        last_seen=device.last_seen,
        tags=distinct_tags(gather(item, fields.tags)),
        raw=item,
    )


def _task_with_raw(
    item: Mapping[str, Any], mapping: RestMapping
) -> tuple[CyCraftTask, Mapping[str, Any]]:
    return CyCraftTask.model_validate(pick(item, mapping.actions.fields)), item


def _translated(table: Mapping[str, str], value: str | None) -> str:
    """A severity or status through its table; a value not listed is kept (already lower-case)."""
    if not value:
        return "unknown"
    return table.get(value, value)


def _required(value: str | None, path: str) -> str:
    if not value:
        raise Unmappable(f"no id at '{path}'")
    return value


def _device_refs(ids: tuple[str, ...], names: tuple[str, ...]) -> tuple[DeviceRef, ...]:
    """Devices named by the alert, once each; names pair with ids by position."""
    found: dict[str, DeviceRef] = {}
    for index, device_id in enumerate(ids):
        if device_id and device_id not in found:
            name = names[index] if index < len(names) else ""
            found[device_id] = DeviceRef(device_id, name)
    return tuple(found.values())


def _evidence(item: Mapping[str, Any], fields: AlertFields) -> Evidence:
    """Users, hashes, IPs and URLs at the mapped paths; a value that is not text is skipped."""
    found = EvidenceCollector()
    for user in gather(item, fields.users):
        found.user(user)
    for file_hash in gather(item, fields.file_hashes):
        found.file_hash(file_hash)
    for ip in gather(item, fields.ips):
        found.ip(ip)
    for url in gather(item, fields.urls):
        found.url(url)
    return found.evidence()


def _datetime(stamp: Stamp | None) -> datetime | None:
    return None if stamp is None else stamp.datetime


def _last_update(
    updated: Stamp | None, created: Stamp | None, updated_path: str, created_path: str
) -> Stamp:
    """A record's last-update time (its creation time when it was never updated)."""
    found = updated or created
    if found is None:
        where = " or ".join(f"'{path}'" for path in (updated_path, created_path) if path)
        raise Unmappable(f"no timestamp at {where or '(none mapped)'}")
    return found
