"""Defender for Business: alerts and incidents from Graph, devices and actions from the MDE API.

This module is longer than most (~450 lines) because it is the whole connector contract of one
EDR in one place — mapping each record kind, the cursor, and the device actions share the
same payload helpers; split by kind, every part would import every other.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Self
from urllib.parse import quote

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
    IncidentRecord,
    Rejected,
)
from edrtrial.connectors.defender import verify
from edrtrial.connectors.defender.auth import TokenProvider
from edrtrial.connectors.defender.budget import Clock
from edrtrial.connectors.defender.client import Api, DefenderClient
from edrtrial.connectors.defender.config import DefenderSettings
from edrtrial.connectors.defender.credential import load_credential
from edrtrial.connectors.defender.evidence import graph_evidence
from edrtrial.connectors.defender.models import (
    GraphAlert,
    GraphIncident,
    MdeMachine,
    MdeMachineAction,
)
from edrtrial.connectors.support import (
    describe_errors,
    map_page,
    map_record,
    text_of,
    tls_verify,
)
from edrtrial.errors import (
    ApiRefused,
    CommentNotAdded,
    ConfigError,
    ConnectorError,
    OutcomeUnknown,
    PermanentError,
    ResourceNotFound,
    SchemaDriftError,
    TransientError,
    Unmappable,
)
from edrtrial.timeutil import Stamp, as_utc, format_iso

log = logging.getLogger(__name__)

# edrtrial's lower-case vocabulary → Graph's camelCase enum members, for write-back.
_GRAPH_VALUES = {
    "inprogress": "inProgress",
    "truepositive": "truePositive",
    "falsepositive": "falsePositive",
    "informationalexpectedactivity": "informationalExpectedActivity",
    "securitytesting": "securityTesting",
    "unwantedsoftware": "unwantedSoftware",
    "multistagedattack": "multiStagedAttack",
    "compromiseduser": "compromisedUser",
    "malicioususeractivity": "maliciousUserActivity",
    "insufficientdata": "insufficientData",
    "confirmeduseractivity": "confirmedUserActivity",
    "lineofbusinessapplication": "lineOfBusinessApplication",
}

ALERTS_PATH = "/v1.0/security/alerts_v2"
INCIDENTS_PAGE_SIZE = 50  # Graph answers 400 to a larger $top on /security/incidents
GET_INCIDENTS_MAX = 25  # incidents read one by one per call; the rest wait for the next poll
INCIDENTS_PATH = "/v1.0/security/incidents"
MACHINES_PATH = "/api/machines"
MACHINE_ACTIONS_PATH = "/api/machineactions"
ALERT_COMMENT_TYPE = "microsoft.graph.security.alertComment"
DEVICE_EVIDENCE = "#microsoft.graph.security.deviceevidence"
ALREADY_IN_PROGRESS = "action is already in progress"
_OPEN = frozenset({ActionStatus.PENDING.value, ActionStatus.IN_PROGRESS.value})
# Offboarding by API: Windows 10/11 and Windows Server 2019+ (2012 R2/2016 need the unified
# agent, which the API cannot tell us about); never macOS, Linux or mobile.
_OFFBOARDABLE = re.compile(r"^windows(?:10|11|server(?P<year>\d{4}))$")


@dataclass(frozen=True, slots=True)
class _ActionSpec:
    mde_type: str
    endpoint: str
    body: Mapping[str, str] = field(default_factory=dict)


_ACTIONS: Mapping[ActionKind, _ActionSpec] = {
    ActionKind.ISOLATE: _ActionSpec("Isolate", "isolate"),  # IsolationType from the settings
    ActionKind.RELEASE: _ActionSpec("Unisolate", "unisolate"),
    ActionKind.AV_SCAN: _ActionSpec("RunAntiVirusScan", "runAntiVirusScan", {"ScanType": "Quick"}),
    ActionKind.OFFBOARD: _ActionSpec("Offboard", "offboard"),
}


class DefenderForBusinessConnector:
    """One customer tenant of Microsoft Defender for Business."""

    name: ClassVar[str] = "defender"
    settings_model: ClassVar[type[BaseModel]] = DefenderSettings
    # What a tenant with default settings offers; an instance adds WRITE_BACK when its
    # `write_back` setting is on.
    capabilities: ClassVar[frozenset[Capability]] = frozenset(Capability) - {Capability.WRITE_BACK}

    def __init__(
        self,
        settings: DefenderSettings,
        client: DefenderClient,
        http: httpx.Client,
        tokens: TokenProvider,
    ) -> None:
        self.settings = settings
        self._client = client
        self._http = http
        self._tokens = tokens
        if settings.write_back:
            # Per tenant, so the instance shadows the class-wide set (the protocol's ClassVar).
            self.capabilities = type(self).capabilities | {Capability.WRITE_BACK}  # type: ignore[misc]

    @classmethod
    def from_settings(
        cls, settings: Mapping[str, Any], base_dir: Path, *, clock: Clock | None = None
    ) -> Self:
        """Validate the connection block, read the credential and open the tenant's client."""
        try:
            parsed = DefenderSettings.model_validate(dict(settings))
        except ValidationError as err:
            raise ConfigError(f"defender connection: {describe_errors(err)}") from err
        credential = load_credential(parsed, base_dir)
        http = httpx.Client(
            verify=tls_verify(parsed.ca_bundle, base_dir, f"defender tenant {parsed.tenant_id}"),
            timeout=parsed.timeout_seconds,
            headers={"User-Agent": f"edrtrial/{__version__}"},
        )
        tokens = TokenProvider(parsed, credential, http)
        return cls(parsed, DefenderClient(parsed, http, tokens, clock), http, tokens)

    @classmethod
    def alert_payloads(cls, document: Any) -> list[Any]:
        """Alerts in a saved Graph answer: an alerts_v2 page (`{"value": [...]}`), a list, one
        alert, or incidents read with `$expand=alerts` (their alerts, in order)."""
        if isinstance(document, dict) and isinstance(document.get("value"), list):
            document = document["value"]
        found: list[Any] = []
        for item in document if isinstance(document, list) else [document]:
            # An incident has a displayName and its expanded alerts; an alert has a title.
            incident = isinstance(item, dict) and "title" not in item
            if incident and isinstance(item.get("alerts"), list):
                found.extend(item["alerts"])
            else:
                found.append(item)
        return found

    @classmethod
    def map_alert(cls, payload: Any) -> AlertRecord:
        """A Graph alerts_v2 alert as edrtrial's record; `Unmappable` says why it cannot be."""
        return map_record(_alert_record, payload)

    def fetch_alerts(self, since: Stamp | None) -> Iterator[Batch[AlertRecord]]:
        """Graph alerts_v2 updated since `since` minus the overlap, page by page."""
        params = {"$top": str(self.settings.alert_page_size)} | self._since_filter(since)
        for page in self._client.graph_pages(ALERTS_PATH, params):
            yield map_page(page, _alert_record, "alert", tenant=self._tenant)

    def fetch_incidents(
        self, source_ids: Sequence[str], since: Stamp | None = None
    ) -> Batch[IncidentRecord]:
        """The named Graph incidents: a few by id, many by listing those changed since `since`.

        A backlog (a tenant's first poll) thus costs a handful of pages of 50, not one call per
        incident; any the listing misses are read by id, at most GET_INCIDENTS_MAX per call.
        """
        wanted = list(dict.fromkeys(source_ids))
        items: list[Any] = []
        if since is not None and len(wanted) > GET_INCIDENTS_MAX // 5:
            pending = set(wanted)
            params = {"$top": str(INCIDENTS_PAGE_SIZE)} | self._since_filter(since)
            for page in self._client.graph_pages(INCIDENTS_PATH, params):
                for item in page:
                    if isinstance(item, dict) and str(item.get("id")) in pending:
                        pending.discard(str(item.get("id")))
                        items.append(item)
                if not pending:
                    break
            wanted = [i for i in wanted if i in pending]
        for source_id in wanted[:GET_INCIDENTS_MAX]:
            path = f"{INCIDENTS_PATH}/{quote(source_id, safe='')}"
            try:
                items.append(self._client.get_json(Api.GRAPH, path))
            except ResourceNotFound:
                log.info("tenant %s: incident %s no longer exists", self._tenant, source_id)
        return map_page(items, _incident_record, "incident", tenant=self._tenant)

    def fetch_devices(self) -> Batch[DeviceRecord]:
        """Every machine of the tenant; MDE answers 404 when it has no recent machines."""
        devices: list[DeviceRecord] = []
        rejected: list[Rejected] = []
        try:
            for page in self._client.mde_pages(MACHINES_PATH):
                batch = map_page(page, _device_record, "device", tenant=self._tenant)
                devices.extend(batch.records)
                rejected.extend(batch.rejected)
        except ResourceNotFound as err:
            if devices or rejected:  # a later page vanished: this inventory is not whole
                raise SchemaDriftError(
                    f"tenant {self._tenant}: {MACHINES_PATH} answered 404 after a first page"
                ) from err
            log.info("tenant %s: no recent machines (404 from %s)", self._tenant, MACHINES_PATH)
        return Batch(devices, rejected)

    def update_alert(self, source_id: str, update: AlertUpdate) -> None:
        """PATCH the verdict in Graph (camelCase values), then add the desk's comment if any.

        Once the PATCH is accepted the alert is settled in the customer's Defender: a comment
        that fails after it is `CommentNotAdded`, never a failure of the whole write.
        """
        if not self.settings.write_back:
            raise PermanentError(
                f"tenant {self._tenant}: write-back is off; set write_back = true in the "
                "tenant's connection block (the app then needs SecurityAlert.ReadWrite.All)"
            )
        body: dict[str, Any] = {"status": _GRAPH_VALUES.get(update.status, update.status)}
        if update.classification:
            body["classification"] = _GRAPH_VALUES.get(update.classification, update.classification)
        if update.determination:
            body["determination"] = _GRAPH_VALUES.get(update.determination, update.determination)
        path = f"{ALERTS_PATH}/{quote(source_id, safe='')}"
        self._client.patch_json(Api.GRAPH, path, body)
        log.info("tenant %s: wrote %s back to alert %s", self._tenant, body, source_id)
        if update.comment.strip():
            comment = {"@odata.type": ALERT_COMMENT_TYPE, "comment": update.comment}
            try:
                self._client.post_json(Api.GRAPH, f"{path}/comments", comment)
            except ConnectorError as err:  # the verdict stands: never send it (or this) again
                raise CommentNotAdded(
                    f"tenant {self._tenant}: alert {source_id} was updated, but its comment "
                    f"was not added: {err}"
                ) from err

    def start_action(self, device_source_id: str, kind: ActionKind, comment: str) -> ActionResult:
        """Reuse a pending action of this kind on the device, else ask MDE for a new one."""
        spec = _ACTIONS[kind]
        if not comment.strip():
            raise PermanentError(f"tenant {self._tenant}: Defender needs a comment for {kind}")
        if not device_source_id:
            raise PermanentError(f"tenant {self._tenant}: no device id given for {kind}")
        if (pending := self._open_action(device_source_id, spec)) is not None:
            log.info(
                "tenant %s: reusing %s action %s on device %s",
                self._tenant,
                spec.mde_type,
                pending.source_action_id,
                device_source_id,
            )
            return pending
        path = f"{MACHINES_PATH}/{quote(device_source_id, safe='')}/{spec.endpoint}"
        body = {"Comment": comment, **spec.body}
        if kind is ActionKind.ISOLATE:
            body["IsolationType"] = self.settings.isolation_type
        try:
            payload = self._client.post_json(Api.MDE, path, body)
        except ApiRefused as err:
            if err.status != 400 or ALREADY_IN_PROGRESS not in err.api_message.lower():
                raise
            pending = self._open_action(device_source_id, spec)
            if pending is None:
                raise TransientError(
                    f"tenant {self._tenant}: {spec.mde_type} on {device_source_id} is 'already in "
                    "progress' but no open action is listed yet; try again shortly"
                ) from err
            log.info(
                "tenant %s: %s already in progress on device %s, action %s",
                self._tenant,
                spec.mde_type,
                device_source_id,
                pending.source_action_id,
            )
            return pending
        try:
            result = self._action_result(payload)
        except SchemaDriftError as err:  # accepted, but which action it started is unreadable
            raise OutcomeUnknown(
                f"{err} (answer to {spec.mde_type} on {device_source_id})"
            ) from err
        log.info(
            "tenant %s: started %s action %s on device %s",
            self._tenant,
            spec.mde_type,
            result.source_action_id,
            device_source_id,
        )
        return result

    def action_status(self, source_action_id: str) -> ActionResult:
        """Where an earlier machine action stands."""
        path = f"{MACHINE_ACTIONS_PATH}/{quote(source_action_id, safe='')}"
        return self._action_result(self._client.get_json(Api.MDE, path))

    def find_actions(
        self, device_source_id: str, kind: ActionKind, since: datetime, marker: str = ""
    ) -> list[ActionResult]:
        """This app's machine actions of this type on the device created at or after `since`.

        MDE filters machine actions by machineId, type, requestor (an app's actions carry
        its client id) and creationDateTimeUtc; the same conditions are checked again here,
        so a server that ignored part of the filter cannot make us adopt a stranger's action.
        Offboard actions have been seen with machineId null, so for them the device is not
        part of the filter: one naming no device counts only if its comment carries `marker`.
        """
        spec = _ACTIONS[kind]
        device = device_source_id.replace("'", "''")  # OData string literal escaping
        requestor = self.settings.client_id.replace("'", "''")
        start = as_utc(since)
        on_device = "" if kind is ActionKind.OFFBOARD else f"machineId eq '{device}' and "
        query = {
            "$filter": f"{on_device}type eq '{spec.mde_type}' and requestor eq '{requestor}' "
            f"and creationDateTimeUtc ge {format_iso(start)}"
        }
        found: list[ActionResult] = []
        for page in self._client.mde_pages(MACHINE_ACTIONS_PATH, query):
            for action, raw in map_page(
                page, _with_raw, "machine action", tenant=self._tenant
            ).records:
                created = action.creation_date_time_utc
                anonymous = action.machine_id is None and bool(marker)
                if (
                    action.type == spec.mde_type.lower()
                    and (
                        action.machine_id == device_source_id
                        or (anonymous and _ends_with(action.requestor_comment or "", marker))
                    )
                    and (action.requestor or "").lower() == self.settings.client_id.lower()
                    and created is not None
                    and created >= start
                ):
                    found.append(replace(self._action_result(raw), created_at=created))
        return sorted(found, key=lambda result: (result.created_at, result.source_action_id))

    def can_offboard(self, os_platform: str) -> bool:
        """Whether the offboard API supports the platform: Windows 10/11, Server 2019 or later."""
        found = _OFFBOARDABLE.match(re.sub(r"[\s_-]", "", os_platform).lower())
        if found is None:
            return False
        year = found.group("year")
        return year is None or int(year) >= 2019

    def verify_access(self) -> list[AccessCheck]:
        """Sign-in to Graph and MDE, a `$top=1` read of each endpoint polled, and the
        permissions of isolation, offboarding (and write-back) in each token's `roles`."""
        reads = verify.probes(ALERTS_PATH, INCIDENTS_PATH, MACHINES_PATH, MACHINE_ACTIONS_PATH)
        return verify.verify_access(self.settings, self._client, self._tokens, reads)

    def close(self) -> None:
        """Release the HTTP client."""
        self._http.close()

    @property
    def tenant_id(self) -> str:
        """The Entra tenant this connector talks to, always as its lower-case GUID.

        A tenant configured by domain is resolved on first use (one request for its sign-in
        metadata), so every guard compares GUID with GUID.
        """
        return self._tokens.tenant_id

    @property
    def _tenant(self) -> str:
        return self.settings.tenant_id

    def _since_filter(self, since: Stamp | None) -> dict[str, str]:
        if since is None:
            return {}
        # All seven digits, as the cursor holds them (Microsoft documents such filters).
        start = since - timedelta(seconds=self.settings.overlap_seconds)
        return {"$filter": f"lastUpdateDateTime ge {start.iso()}"}

    def _open_action(self, device_source_id: str, spec: _ActionSpec) -> ActionResult | None:
        """The newest Pending/InProgress action of this type on the device, if any."""
        device = device_source_id.replace("'", "''")  # OData string literal escaping
        query = {"$filter": f"machineId eq '{device}' and type eq '{spec.mde_type}'"}
        candidates: list[tuple[MdeMachineAction, Any]] = []
        for page in self._client.mde_pages(MACHINE_ACTIONS_PATH, query):
            actions = map_page(page, _with_raw, "machine action", tenant=self._tenant)
            for action, raw in actions.records:
                if (
                    action.id
                    and action.status in _OPEN
                    and action.type == spec.mde_type.lower()
                    # Offboard actions have been seen with machineId null.
                    and action.machine_id in (None, device_source_id)
                ):
                    candidates.append((action, raw))
        if not candidates:
            return None
        oldest = datetime.min.replace(tzinfo=UTC)
        _, raw = max(candidates, key=lambda pair: pair[0].creation_date_time_utc or oldest)
        return self._action_result(raw)

    def _action_result(self, payload: Any) -> ActionResult:
        """A machine action as edrtrial sees it; one we cannot read is schema drift, not a skip."""
        try:
            action = MdeMachineAction.model_validate(payload)
        except ValidationError as err:
            raise SchemaDriftError(
                f"tenant {self._tenant}: machine action not understood: {describe_errors(err)}"
            ) from err
        if not action.id:
            raise SchemaDriftError(f"tenant {self._tenant}: machine action without an id")
        try:
            status = ActionStatus(action.status or "")
        except ValueError as err:
            raise SchemaDriftError(
                f"tenant {self._tenant}: machine action {action.id} has unknown status "
                f"{action.status!r}"
            ) from err
        kind = next(
            (k for k, spec in _ACTIONS.items() if spec.mde_type.lower() == action.type), None
        )
        return ActionResult(
            source_action_id=action.id,
            status=status,
            raw=payload,
            comment=action.requestor_comment or "",
            device_source_id=action.machine_id,
            kind=kind,
        )


def _ends_with(comment: str, marker: str) -> bool:
    """The comment ends with the marker (before a closing parenthesis): a device name
    earlier in the comment cannot pass for it."""
    return comment.rstrip().rstrip(")").endswith(marker)


def _with_raw(item: Mapping[str, Any]) -> tuple[MdeMachineAction, Mapping[str, Any]]:
    return MdeMachineAction.model_validate(item), item


def _required(value: str | None, what: str) -> str:
    if not value:
        raise Unmappable(f"no {what}")
    return value


def _timestamp_required(value: Stamp | None, what: str) -> Stamp:
    if value is None:
        raise Unmappable(f"no {what}")
    return value


def _alert_record(item: Mapping[str, Any]) -> AlertRecord:
    alert = GraphAlert.model_validate(item)
    return AlertRecord(
        source_id=_required(alert.id, "id"),
        title=alert.title or "",
        severity=alert.severity or "unknown",
        status=alert.status or "unknown",
        last_update_at=_timestamp_required(alert.last_update_date_time, "lastUpdateDateTime"),
        created_at=alert.created_date_time,
        incident_source_id=alert.incident_id,
        description=alert.description or "",
        category=(alert.category or "").lower(),
        detection_source=alert.detection_source or "",
        service_source=alert.service_source or "",
        mitre_techniques=alert.mitre_techniques,
        devices=_device_refs(alert.evidence),
        evidence=graph_evidence(alert.evidence),
        raw=item,
    )


def _device_refs(evidence: tuple[dict[str, Any], ...]) -> tuple[DeviceRef, ...]:
    """Devices named by device evidence, once each; other evidence types are ignored."""
    found: dict[str, DeviceRef] = {}
    for item in evidence:
        odata_type = item.get("@odata.type")
        if not isinstance(odata_type, str) or odata_type.lower() != DEVICE_EVIDENCE:
            continue
        device_id = text_of(item.get("mdeDeviceId"))
        if device_id and device_id not in found:
            found[device_id] = DeviceRef(device_id, text_of(item.get("deviceDnsName")) or "")
    return tuple(found.values())


def _incident_record(item: Mapping[str, Any]) -> IncidentRecord:
    incident = GraphIncident.model_validate(item)
    return IncidentRecord(
        source_id=_required(incident.id, "id"),
        title=incident.display_name or "",
        severity=incident.severity or "unknown",
        status=incident.status or "unknown",
        last_update_at=_timestamp_required(incident.last_update_date_time, "lastUpdateDateTime"),
        created_at=incident.created_date_time,
        raw=item,
    )


def _device_record(item: Mapping[str, Any]) -> DeviceRecord:
    machine = MdeMachine.model_validate(item)
    return DeviceRecord(
        source_id=_required(machine.id, "id"),
        name=machine.computer_dns_name or "",
        os_platform=machine.os_platform or "",
        os_version=machine.os_version or machine.version or "",
        health_status=machine.health_status or "",
        onboarding_status=machine.onboarding_status or "",
        risk_score=machine.risk_score or "",
        first_seen=machine.first_seen,
        last_seen=machine.last_seen,
        tags=machine.machine_tags,
        raw=item,
    )
