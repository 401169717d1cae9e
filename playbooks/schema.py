"""The playbook file format: pydantic models that refuse any mistake before a rule ever runs."""

from __future__ import annotations

import re
from typing import Annotated, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    field_validator,
    model_validator,
)

Priority = Literal["P1", "P2", "P3", "P4"]
PRIORITIES: tuple[str, ...] = get_args(Priority)

# Both APIs' documented values, lower-cased (MDE `UnSpecified`, Graph `unknownFutureValue`).
SEVERITIES = frozenset(
    {"unknown", "unspecified", "informational", "low", "medium", "high", "unknownfuturevalue"}
)
STATUSES = frozenset({"unknown", "new", "inprogress", "resolved", "unknownfuturevalue"})

CONDITION_KEYS = (
    "severity", "status", "category", "title", "title_regex", "detection_source",
    "service_source", "mitre", "device_name_regex", "company", "business_hours",
)
OUTCOME_KEYS = (
    "priority", "ticket", "notify_desk", "notify_company", "suppress", "mark_device_verified",
)

_MITRE = re.compile(r"^T\d{4}(\.\d{3})?$", re.IGNORECASE)
_COMPANY = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")


def _one_or_many(value: object) -> object:
    """Let one value stand for a one-item list, as operators naturally write it."""
    return [value] if isinstance(value, str) else value


Texts = Annotated[list[StrictStr], BeforeValidator(_one_or_many), Field(min_length=1)]


def _priority(value: object) -> object:
    """Refuse a bad priority with the allowed values, not pydantic's literal-union wording."""
    if value not in PRIORITIES:
        raise ValueError(f"priority must be one of {', '.join(PRIORITIES)} (got {value!r})")
    return value


def _not_blank(values: list[str]) -> list[str]:
    if any(not v.strip() for v in values):
        raise ValueError("an empty text would match every alert; remove it")
    return values


def _known(values: list[str], allowed: frozenset[str], what: str) -> list[str]:
    folded = [v.casefold() for v in values]
    for value, fold in zip(values, folded, strict=True):
        if fold not in allowed:
            raise ValueError(f"unknown {what} {value!r} (known: {', '.join(sorted(allowed))})")
    return folded


def _regexes(values: list[str]) -> list[str]:
    for value in values:
        try:
            re.compile(value, re.IGNORECASE)
        except re.error as err:
            raise ValueError(f"regex {value!r} does not compile: {err}") from err
    return _not_blank(values)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DefaultsSpec(_Strict):
    """What an alert gets for every outcome no matching rule set."""

    priority: Annotated[Priority, BeforeValidator(_priority)] | None = None
    severity_priority: dict[str, Annotated[Priority, BeforeValidator(_priority)]] | None = None
    ticket: StrictBool | None = None
    notify_desk: StrictBool | None = None
    notify_company: StrictBool | None = None

    @field_validator("severity_priority")
    @classmethod
    def _severities(cls, value: dict[str, Priority] | None) -> dict[str, Priority] | None:
        if value is None:
            return None
        keys = _known(list(value), SEVERITIES, "severity")
        return dict(zip(keys, value.values(), strict=True))


class RuleSpec(_Strict):
    """One rule: conditions that must all hold, and the outcomes it asks for."""

    name: StrictStr
    description: StrictStr = ""
    severity: Texts | None = None
    status: Texts | None = None
    category: Texts | None = None
    title: Texts | None = None
    title_regex: Texts | None = None
    detection_source: Texts | None = None
    service_source: Texts | None = None
    mitre: Texts | None = None
    device_name_regex: Texts | None = None
    company: Texts | None = None
    business_hours: StrictBool | None = None
    priority: Annotated[Priority, BeforeValidator(_priority)] | None = None
    ticket: StrictBool | None = None
    notify_desk: StrictBool | None = None
    notify_company: StrictBool | None = None
    suppress: StrictStr | None = None
    mark_device_verified: StrictBool | None = None
    stop: StrictBool = False

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                f"rule name {value!r} must be 1-80 letters, digits, '-', '_' or '.', "
                "starting with a letter or digit"
            )
        return value

    @field_validator("severity")
    @classmethod
    def _severity(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _known(value, SEVERITIES, "severity")

    @field_validator("status")
    @classmethod
    def _status(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _known(value, STATUSES, "status")

    @field_validator("category", "title", "detection_source", "service_source")
    @classmethod
    def _texts(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _not_blank(value)

    @field_validator("title_regex", "device_name_regex")
    @classmethod
    def _regex(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _regexes(value)

    @field_validator("mitre")
    @classmethod
    def _mitre(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        for item in value:
            if not _MITRE.match(item):
                raise ValueError(f"MITRE technique {item!r} must look like T1059 or T1059.001")
        return [item.upper() for item in value]

    @field_validator("company")
    @classmethod
    def _company(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        for item in value:
            if not _COMPANY.match(item):
                raise ValueError(f"company {item!r} is not a company key (like 'acme-kogyo')")
        return value

    @field_validator("suppress")
    @classmethod
    def _reason(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("a suppression needs a reason, e.g. \"known-benign\"")
        return value

    @model_validator(mode="after")
    def _does_something(self) -> RuleSpec:
        if not self.stop and all(getattr(self, key) is None for key in OUTCOME_KEYS):
            raise ValueError(
                f"rule sets no outcome: give at least one of {', '.join(OUTCOME_KEYS)} or stop"
            )
        return self


class PlaybookSpec(_Strict):
    """One playbook file as written."""

    description: StrictStr = ""
    defaults: DefaultsSpec = DefaultsSpec()
    rules: list[RuleSpec] = Field(default_factory=list)
