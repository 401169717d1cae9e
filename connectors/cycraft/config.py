"""The settings of one CyCraft AIR organisation, with the REST mapping the adapter follows.

CyCraft publishes no public API reference, so every endpoint, header and field name the
adapter uses is data: `defaults.toml` beside this file holds them (each marked as an
assumption) and a tenant's connection block may override any key.
"""

from __future__ import annotations

import copy
import re
import string
import tomllib
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from edrtrial.connectors.base import ActionKind, ActionStatus, Capability
from edrtrial.secrets import SecretRef
from edrtrial.transport import require_https

DEFAULTS_FILE = "defaults.toml"
ALERT_STATUSES = ("new", "inprogress", "resolved")

# The organisation id ends up in URL paths: keep it to safe characters.
_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
_PATH_PART = re.compile(r"^[^.\s]+$")


def _json_path(value: str) -> str:
    if not value:
        return value
    parts = value.split(".")
    if not all(_PATH_PART.match(part) for part in parts):
        raise ValueError(f"{value!r} is not a dotted JSON path such as 'endpoint.id'")
    if parts.count("*") > 1:
        raise ValueError(f"{value!r}: at most one '*' per path")
    return value


def _required_path(value: str) -> str:
    if not value:
        raise ValueError("must name where the value is (it cannot be left empty)")
    return value


JsonPath = Annotated[str, AfterValidator(_json_path)]
"""A dotted JSON path; "" when the API does not send the field."""

RequiredPath = Annotated[JsonPath, AfterValidator(_required_path)]


def _path_list(value: Any) -> Any:
    if isinstance(value, str):  # one path where a list is expected
        return [value] if value else []
    return value


JsonPaths = Annotated[tuple[JsonPath, ...], BeforeValidator(_path_list)]
"""Dotted JSON paths whose values are gathered in order; a single path is accepted too."""


def _template(value: str, allowed: frozenset[str], required: frozenset[str]) -> str:
    """Check an endpoint template's placeholders; "" means the endpoint is not available."""
    if not value:
        return value
    if not value.startswith("/"):
        raise ValueError("must start with '/' (it is joined to base_url)")
    names = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
    if unknown := sorted(names - allowed):
        raise ValueError(
            f"unknown placeholder {{{unknown[0]}}} (allowed: "
            + ", ".join(f"{{{name}}}" for name in sorted(allowed))
            + ")"
        )
    if missing := sorted(required - names):
        raise ValueError(f"must contain {{{missing[0]}}}")
    return value


def _endpoint(*placeholders: str) -> AfterValidator:
    """A template that may use {tenant_id} and must use each of `placeholders`."""
    required = frozenset(placeholders)
    return AfterValidator(lambda value: _template(value, required | {"tenant_id"}, required))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Paging(_Strict):
    """How list endpoints page: by page number or by an opaque cursor token."""

    style: Literal["page", "cursor"]
    items_path: JsonPath  # "" = the answer is the list itself
    page_param: str
    first_page: int = Field(ge=0)
    size_param: str  # "" = the server chooses the page size
    cursor_param: str
    next_cursor_path: JsonPath

    @model_validator(mode="after")
    def _style_needs(self) -> Paging:
        if self.style == "page" and not self.page_param:
            raise ValueError("style 'page' needs page_param")
        if self.style == "cursor" and not (self.cursor_param and self.next_cursor_path):
            raise ValueError("style 'cursor' needs cursor_param and next_cursor_path")
        return self


class AlertFields(_Strict):
    """Where each part of an edrtrial alert sits in a CyCraft alert."""

    id: RequiredPath
    title: JsonPath
    description: JsonPath
    severity: JsonPath
    status: JsonPath
    created: JsonPath
    updated: JsonPath
    incident_id: JsonPath
    device_id: JsonPath
    device_name: JsonPath
    mitre: JsonPath
    category: JsonPath
    # Evidence for playbook rules: every path's values, gathered in order, each kept once.
    users: JsonPaths
    file_hashes: JsonPaths
    ips: JsonPaths
    urls: JsonPaths

    @model_validator(mode="after")
    def _a_timestamp(self) -> AlertFields:
        if not (self.updated or self.created):
            raise ValueError("updated or created must name a timestamp (the poll cursor needs one)")
        return self


class Alerts(_Strict):
    """The alert list endpoint and its filter on the last update."""

    path: Annotated[str, _endpoint(), AfterValidator(_required_path)]
    since_param: str
    since_format: Literal["iso", "epoch_seconds", "epoch_millis"]
    params: dict[str, str]
    fields: AlertFields


class IncidentFields(_Strict):
    """Where each part of an edrtrial incident sits in a CyCraft incident."""

    id: RequiredPath
    title: JsonPath
    severity: JsonPath
    status: JsonPath
    created: JsonPath
    updated: JsonPath


class Incidents(_Strict):
    """The incident endpoint (one GET per incident id)."""

    path: Annotated[str, _endpoint("id")]
    fields: IncidentFields


class DeviceFields(_Strict):
    """Where each part of an edrtrial device sits in a CyCraft endpoint."""

    id: RequiredPath
    name: JsonPath
    os_platform: JsonPath
    os_version: JsonPath
    health_status: JsonPath
    onboarding_status: JsonPath
    risk_score: JsonPath
    first_seen: JsonPath
    last_seen: JsonPath
    tags: JsonPaths


class Devices(_Strict):
    """The endpoint (device) list."""

    path: Annotated[str, _endpoint()]
    params: dict[str, str]
    fields: DeviceFields


class Action(_Strict):
    """One device action: where to send it and the task type CyCraft then reports."""

    path: Annotated[str, _endpoint("device_id")]  # "" = not offered
    type: str


class ActionFields(_Strict):
    """Where each part of a task sits in CyCraft's answer."""

    id: RequiredPath
    status: RequiredPath
    type: JsonPath
    device_id: JsonPath


class Actions(_Strict):
    """Device actions, the task status endpoint and the optional per-device task list."""

    method: Literal["POST", "PUT"]
    comment_field: str  # "" = send an empty body
    status: Annotated[str, _endpoint("action_id")]
    tasks: Annotated[str, _endpoint("device_id")]  # a device's tasks; "" = no reuse check
    isolate: Action
    release: Action
    av_scan: Action
    offboard: Action
    fields: ActionFields
    status_map: dict[str, ActionStatus]

    @field_validator("status_map")
    @classmethod
    def _lower_keys(cls, value: dict[str, ActionStatus]) -> dict[str, ActionStatus]:
        return {key.strip().lower(): status for key, status in value.items()}

    @model_validator(mode="after")
    def _status_if_any(self) -> Actions:
        if any(self.of(kind).path for kind in ActionKind) and not self.status:
            raise ValueError("status must be set when any action path is configured")
        return self

    def of(self, kind: ActionKind) -> Action:
        """The mapping of one action kind."""
        actions = {
            ActionKind.ISOLATE: self.isolate,
            ActionKind.RELEASE: self.release,
            ActionKind.AV_SCAN: self.av_scan,
            ActionKind.OFFBOARD: self.offboard,
        }
        return actions[kind]


class WriteBack(_Strict):
    """How the desk's verdict is written to an alert ("" path = not supported)."""

    path: Annotated[str, _endpoint("id")]
    method: Literal["PATCH", "PUT", "POST"]
    status_field: str
    classification_field: str
    determination_field: str
    comment_field: str
    status_values: dict[str, str]

    @field_validator("status_values")
    @classmethod
    def _known_statuses(cls, value: dict[str, str]) -> dict[str, str]:
        if unknown := sorted(set(value) - set(ALERT_STATUSES)):
            raise ValueError(
                f"unknown edrtrial status {unknown[0]!r} (known: {', '.join(ALERT_STATUSES)})"
            )
        return value

    @model_validator(mode="after")
    def _status_field_if_path(self) -> WriteBack:
        if self.path and not self.status_field:
            raise ValueError("status_field must be set when path is configured")
        return self


Severity = Literal["unknown", "informational", "low", "medium", "high"]


class RestMapping(_Strict):
    """Everything the adapter assumes about CyCraft's REST API."""

    item_path: JsonPath  # "" = a single object is the whole answer
    paging: Paging
    alerts: Alerts
    incidents: Incidents
    devices: Devices
    actions: Actions
    write_back: WriteBack
    severity_map: dict[str, Severity]
    status_map: dict[str, str]

    @field_validator("severity_map", "status_map")
    @classmethod
    def _lower_keys(cls, value: dict[str, str]) -> dict[str, str]:
        # Later keys win, so a tenant's "Critical" overrides the shipped "critical".
        return {key.strip().lower(): mapped.lower() for key, mapped in value.items()}

    @property
    def capabilities(self) -> frozenset[Capability]:
        """What this mapping lets the adapter do beyond reading alerts."""
        found = {
            Capability.INCIDENTS: bool(self.incidents.path),
            Capability.DEVICES: bool(self.devices.path),
            Capability.ISOLATE: bool(self.actions.isolate.path),
            Capability.RELEASE: bool(self.actions.release.path),
            Capability.AV_SCAN: bool(self.actions.av_scan.path),
            Capability.OFFBOARD: bool(self.actions.offboard.path),
            Capability.WRITE_BACK: bool(self.write_back.path),
        }
        return frozenset(capability for capability, present in found.items() if present)


class CyCraftSettings(_Strict):
    """One tenant's `connection` block over the shipped defaults; unknown keys are refused."""

    connector: Literal["cycraft"]
    tenant_id: str = Field(pattern=_ID_PATTERN, max_length=256)
    base_url: str
    api_key: SecretRef
    auth_header: str
    auth_template: str
    ca_bundle: Path | None = None
    timeout_seconds: float = Field(gt=0, le=600)
    page_size: int = Field(ge=1, le=10_000)
    overlap_seconds: int = Field(ge=0, le=86_400)
    offboard_platforms: tuple[str, ...]
    mapping: RestMapping

    @model_validator(mode="before")
    @classmethod
    def _over_defaults(cls, data: Any) -> Any:
        return merged(shipped_defaults(), data) if isinstance(data, dict) else data

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        # The API key travels in a header of every request: never in cleartext.
        return require_https(value)

    @field_validator("auth_header")
    @classmethod
    def _header_name(cls, value: str) -> str:
        if not _HEADER_NAME.match(value):
            raise ValueError("must be an HTTP header name such as 'Authorization'")
        return value

    @field_validator("auth_template")
    @classmethod
    def _key_placeholder(cls, value: str) -> str:
        _template("/" + value, frozenset({"key"}), frozenset({"key"}))
        return value


@cache
def _defaults_text() -> str:
    return (files(__package__) / DEFAULTS_FILE).read_text(encoding="utf-8")


def shipped_defaults() -> dict[str, Any]:
    """A fresh copy of `defaults.toml` (callers may change it)."""
    return copy.deepcopy(tomllib.loads(_defaults_text()))


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` laid over `base`: tables merge key by key, other values replace."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


@cache
def default_mapping() -> RestMapping:
    """The shipped mapping alone, without any tenant's overrides (validated once)."""
    return RestMapping.model_validate(shipped_defaults()["mapping"])


def default_capabilities() -> frozenset[Capability]:
    """What the shipped mapping alone allows (a tenant's overrides may add or remove)."""
    return default_mapping().capabilities
