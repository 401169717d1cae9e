"""The connector contract: what every EDR connector gives the core, and nothing more.

A connector knows one EDR. It turns a tenant's API into the normalised records below and
carries out device actions. It never decides anything and never touches the store.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar, runtime_checkable

from pydantic import BaseModel

from edrtrial.errors import AuthError, ConnectorError, TransientError
from edrtrial.timeutil import Stamp


class ActionKind(StrEnum):
    """Device actions the core can ask for."""

    ISOLATE = "isolate"
    RELEASE = "release"
    AV_SCAN = "av_scan"
    OFFBOARD = "offboard"


class ActionStatus(StrEnum):
    """Normalised machine-action states (Microsoft's six, lower-case)."""

    PENDING = "pending"
    IN_PROGRESS = "inprogress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """True once the action can no longer change."""
        return self not in (ActionStatus.PENDING, ActionStatus.IN_PROGRESS)


@dataclass(frozen=True, slots=True)
class DeviceRef:
    """A device named in an alert's evidence."""

    source_id: str
    name: str = ""


@dataclass(frozen=True, slots=True)
class Evidence:
    """What an alert names besides devices, for playbook rules: deduplicated, as sent."""

    users: tuple[str, ...] = ()  # account names or UPNs
    file_hashes: tuple[str, ...] = ()  # sha256 / sha1 / md5, lower-case hex
    ips: tuple[str, ...] = ()
    urls: tuple[str, ...] = ()
    # Process command lines: what ran is a signature an alert's title cannot fake (the
    # onboarding detection test is known by its documented command).
    command_lines: tuple[str, ...] = ()

    def as_json(self) -> dict[str, list[str]]:
        """The stored form (`Alert.evidence`): only the kinds that are present."""
        kinds = {
            "users": self.users,
            "file_hashes": self.file_hashes,
            "ips": self.ips,
            "urls": self.urls,
            "command_lines": self.command_lines,
        }
        return {kind: list(values) for kind, values in kinds.items() if values}


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """One alert, normalised. Enum-like fields are lower-case; `raw` is the payload as sent."""

    source_id: str
    title: str
    severity: str
    status: str
    last_update_at: Stamp  # exact (100 ns): a newer version wins on it
    created_at: datetime | None = None
    incident_source_id: str | None = None
    description: str = ""
    category: str = ""
    detection_source: str = ""
    service_source: str = ""
    mitre_techniques: tuple[str, ...] = ()
    devices: tuple[DeviceRef, ...] = ()
    evidence: Evidence = Evidence()
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class IncidentRecord:
    """One incident (a group of alerts), normalised."""

    source_id: str
    title: str
    severity: str
    status: str
    last_update_at: Stamp  # exact (100 ns): a newer version wins on it
    created_at: datetime | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """One device from the tenant's inventory."""

    source_id: str
    name: str
    os_platform: str = ""
    os_version: str = ""
    health_status: str = ""
    onboarding_status: str = ""
    risk_score: str = ""
    first_seen: datetime | None = None
    last_seen: Stamp | None = None  # exact: a stored device never goes back to an older one
    tags: tuple[str, ...] = ()  # MDE machineTags: operators tag servers, VIP PCs…
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ActionResult:
    """Where a device action stands at the source."""

    source_action_id: str
    status: ActionStatus
    raw: Mapping[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None  # when the EDR created it, if it says
    comment: str = ""  # the requester's comment the EDR keeps with it (`start_action`'s)
    device_source_id: str | None = None  # the device it acts on, where the EDR names it
    kind: ActionKind | None = None  # what it does, where the EDR's type maps to one


@dataclass(frozen=True, slots=True)
class AlertUpdate:
    """The desk's verdict on an alert, in edrtrial's lower-case vocabulary."""

    status: str  # new | inprogress | resolved
    classification: str | None = (
        None  # truepositive | falsepositive | informationalexpectedactivity
    )
    determination: str | None = None  # e.g. malware, phishing, securitytesting, clean, other
    comment: str = ""


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record the connector could not map: kept with its reason, never silently dropped."""

    kind: str
    source_id: str
    reason: str
    raw: Mapping[str, Any] = field(default_factory=dict)


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Batch(Generic[T]):
    """Records mapped from one response (or page), with those that could not be mapped."""

    records: list[T]
    rejected: list[Rejected] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Every source record was mapped (a partial inventory must not mark devices absent)."""
        return not self.rejected


class Remedy(StrEnum):
    """Who must act on a failed access check, so the core can add its own next step (the
    consent URL for the company) without reading the connector's words."""

    NONE = ""
    CONSENT = "consent"  # the company's global administrator consents (again)
    PERMISSION = "permission"  # add the permission to the programme's app, then consent again
    APP = "app"  # the programme's app registration: its secret or certificate, not the company
    TENANT_ID = "tenant_id"  # the recorded tenant id names no tenant
    PROVISIONING = "provisioning"  # the EDR is not set up in the tenant yet, or has no device
    NETWORK = "network"  # no answer in time: nothing is known yet, try again later


@dataclass(frozen=True, slots=True)
class AccessCheck:
    """One thing the service needs from a tenant, tried (a smallest read) or read from the
    token's granted permissions: whether it holds, and if not why and what a person does."""

    name: str  # "Graph alerts_v2 (SecurityAlert.Read.All)"
    ok: bool
    reason: str = ""  # what went wrong, in words; on success an optional remark
    action: str = ""  # what an operator does about it (who, where)
    remedy: Remedy = Remedy.NONE


class Capability(StrEnum):
    """What a connector can do beyond reading alerts."""

    INCIDENTS = "incidents"
    DEVICES = "devices"
    ISOLATE = "isolate"
    RELEASE = "release"
    AV_SCAN = "av_scan"
    OFFBOARD = "offboard"
    WRITE_BACK = "write_back"
    FIND_ACTIONS = "find_actions"
    """It can list a device's actions by type and creation time (`find_actions`): after an
    unanswered send the core looks for the action instead of guessing."""


@runtime_checkable
class Connector(Protocol):
    """What the core needs from an EDR. Implementations raise `ConnectorError` subclasses."""

    name: ClassVar[str]
    settings_model: ClassVar[type[BaseModel]]

    @property
    def capabilities(self) -> frozenset[Capability]:
        """What this tenant's connection can do (it may depend on the tenant's settings)."""
        ...

    @property
    def tenant_id(self) -> str:
        """The EDR tenant this instance talks to (checked before any destructive action)."""
        ...

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], base_dir: Path) -> Self:
        """Build a connector for one tenant from its validated connection block."""
        ...

    @classmethod
    def alert_payloads(cls, document: Any) -> list[Any]:
        """The raw alerts in a JSON document saved from the EDR's API (a page of its alert
        list, a list of alerts, or one alert), each for `map_alert`."""
        ...

    @classmethod
    def map_alert(cls, payload: Any) -> AlertRecord:
        """One raw alert, as the EDR's API sends it, mapped as `fetch_alerts` maps it.

        Needs no tenant, credentials or network, so tools (`edrtrial playbooks test`) can
        use it. Raises `edrtrial.errors.Unmappable` with the reason when the payload cannot
        become a record.
        """
        ...

    def fetch_alerts(self, since: Stamp | None) -> Iterator[Batch[AlertRecord]]:
        """Alerts updated at or after `since` (minus the connector's overlap), page by page.

        A filter sent with `since` must not round it up: an update at the cursor's instant,
        to the 100 ns, is still fetched.
        """
        ...

    def fetch_incidents(
        self, source_ids: Sequence[str], since: Stamp | None = None
    ) -> Batch[IncidentRecord]:
        """The incidents with these ids (those the EDR no longer knows are left out).

        `since` is the earliest change among the alerts that named them: a connector may list
        incidents changed since then instead of reading many one by one.
        """
        ...

    def fetch_devices(self) -> Batch[DeviceRecord]:
        """The tenant's whole device inventory."""
        ...

    def start_action(self, device_source_id: str, kind: ActionKind, comment: str) -> ActionResult:
        """Ask the EDR to act on a device; reuses an action of that kind already pending."""
        ...

    def action_status(self, source_action_id: str) -> ActionResult:
        """Read where an earlier action stands."""
        ...

    def find_actions(
        self, device_source_id: str, kind: ActionKind, since: datetime, marker: str = ""
    ) -> list[ActionResult]:
        """The device's actions of this kind requested by this connection at or after `since`,
        oldest first, each with its comment (only with FIND_ACTIONS): how the core learns
        whether a send that got no answer created an action.

        An action the EDR lists without naming its device (Defender has shown Offboard
        actions so) is included only when its comment carries `marker`, the text the core
        put in the comment of the send it is looking for.
        """
        ...

    def can_offboard(self, os_platform: str) -> bool:
        """Whether the EDR can uninstall itself remotely from a device of this platform."""
        ...

    def update_alert(self, source_id: str, update: AlertUpdate) -> None:
        """Write the desk's verdict back to the EDR (only with the WRITE_BACK capability)."""
        ...

    def verify_access(self) -> list[AccessCheck]:
        """Check everything the service will need from this tenant, without changing anything
        there: sign-in to each API, the smallest read of each endpoint polled, and each
        permission of an action it cannot try without harm. Every check is listed, passed or
        not; a connector with nothing finer to check reads its device inventory
        (`inventory_check`)."""
        ...

    def close(self) -> None:
        """Release the HTTP client."""
        ...


def inventory_check(connector: Connector, name: str) -> list[AccessCheck]:
    """The default `verify_access`: the device inventory read once, or why it cannot be.

    For an EDR whose key opens everything it gives (CyCraft's API key), reading works or
    nothing does, so one read says all there is to say.
    """
    try:
        found = connector.fetch_devices()
    except AuthError as err:
        return [AccessCheck(name, False, str(err), err.operator_action)]
    except TransientError as err:
        return [AccessCheck(name, False, str(err), "Try again later.", Remedy.NETWORK)]
    except ConnectorError as err:
        return [AccessCheck(name, False, str(err))]
    return [AccessCheck(name, True, f"{len(found.records)} device(s) listed")]
