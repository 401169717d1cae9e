"""Payload models for Graph security and Defender for Endpoint, as lenient as the APIs are loose.

Every field is optional (null and absent mean the same), unknown fields are kept, and
enum-like values are lower-cased because Graph sends camelCase and MDE PascalCase.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, PlainValidator
from pydantic.alias_generators import to_camel

from edrtrial.connectors.support import distinct_tags
from edrtrial.timeutil import Stamp, parse_iso


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _timestamp(value: Any) -> Any:
    return parse_iso(value) if isinstance(value, str) else value


def _stamp(value: Any) -> Stamp | None:
    if value is None or isinstance(value, Stamp):
        return value
    if isinstance(value, str):
        return Stamp.from_iso(value)
    raise ValueError(f"expected an ISO-8601 timestamp, got {type(value).__name__}")


def _empty_if_null(value: Any) -> Any:
    if isinstance(value, str):  # a lone value where a list was documented
        return (value,)
    return () if value is None else value


def _objects_only(value: Any) -> Any:
    # Evidence only adds detail: an item that is not an object, or an evidence field that is
    # not even a list, must not cost us the alert.
    if isinstance(value, list):
        return tuple(item for item in value if isinstance(item, dict))
    return ()


EnumText = Annotated[str | None, BeforeValidator(_lower)]
"""An enum-like string, lower-cased: 'TruePositive' and 'truePositive' become 'truepositive'."""

Timestamp = Annotated[datetime | None, BeforeValidator(_timestamp)]
"""A Microsoft timestamp (up to 7 fractional digits), UTC-aware."""

Stamped = Annotated[Stamp | None, PlainValidator(_stamp)]
"""A Microsoft change stamp kept to the 100 ns (all 7 fractional digits): "newer" and the
cursor are decided on it."""

Strings = Annotated[tuple[str, ...], BeforeValidator(_empty_if_null)]


class _Payload(BaseModel):
    model_config = ConfigDict(
        extra="allow",
        frozen=True,
        alias_generator=to_camel,
        coerce_numbers_to_str=True,  # MDE sends incidentId as a number, Graph as a string
    )


class ODataPage(_Payload):
    """The list envelope both APIs use; items stay raw so one bad item cannot spoil the page."""

    value: list[Any]
    next_link: str | None = Field(None, alias="@odata.nextLink")


Evidences = Annotated[tuple[dict[str, Any], ...], BeforeValidator(_objects_only)]
"""A Graph alert's evidence entries, kept raw: each is read field by field (evidence.py)."""

Tags = Annotated[tuple[str, ...], BeforeValidator(distinct_tags)]
"""MDE machineTags: text items only, each once, in the order sent."""


class GraphAlert(_Payload):
    """A Graph `alerts_v2` alert."""

    id: str | None = None
    incident_id: str | None = None
    title: str | None = None
    description: str | None = None
    severity: EnumText = None
    status: EnumText = None
    classification: EnumText = None
    determination: EnumText = None
    category: str | None = None
    detection_source: EnumText = None
    service_source: EnumText = None
    mitre_techniques: Strings = ()
    created_date_time: Timestamp = None
    last_update_date_time: Stamped = None
    evidence: Evidences = ()


class GraphIncident(_Payload):
    """A Graph security incident (with or without `$expand=alerts`; alerts stay in raw)."""

    id: str | None = None
    display_name: str | None = None
    severity: EnumText = None
    status: EnumText = None
    classification: EnumText = None
    determination: EnumText = None
    created_date_time: Timestamp = None
    last_update_date_time: Stamped = None


class MdeMachine(_Payload):
    """A Defender for Endpoint machine."""

    id: str | None = None
    computer_dns_name: str | None = None
    os_platform: str | None = None
    os_version: str | None = None
    version: str | None = None
    os_build: str | None = None
    health_status: EnumText = None
    onboarding_status: EnumText = None
    risk_score: EnumText = None
    first_seen: Timestamp = None
    last_seen: Stamped = None
    machine_tags: Tags = ()


class MdeMachineAction(_Payload):
    """A Defender for Endpoint machine action (isolate, scan, offboard, ...)."""

    id: str | None = None
    type: EnumText = None
    scope: EnumText = None
    status: EnumText = None
    machine_id: str | None = None
    computer_dns_name: str | None = None
    requestor: str | None = None  # a person's UPN, or an app's client id
    requestor_comment: str | None = None
    creation_date_time_utc: Timestamp = None
    # The resource page says lastUpdateDateTimeUtc, the list examples lastUpdateTimeUtc.
    last_update_date_time_utc: Timestamp = Field(
        None, validation_alias=AliasChoices("lastUpdateDateTimeUtc", "lastUpdateTimeUtc")
    )
