"""The playbook file format: pydantic models that refuse any mistake before a rule ever runs."""

from __future__ import annotations

import ipaddress
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
    "severity",
    "status",
    "category",
    "title",
    "title_regex",
    "detection_source",
    "service_source",
    "mitre",
    "device_name_regex",
    "company",
    "business_hours",
    "user",
    "user_regex",
    "file_hash",
    "ip",
    "url",
    "url_regex",
    "command_line",
    "command_line_regex",
    "every_file_hash",
    "every_command_line_regex",
    "device_tag",
    "tenant",
)
OUTCOME_KEYS = (
    "priority",
    "ticket",
    "notify_desk",
    "notify_company",
    "suppress",
    "mark_device_verified",
    "correlate",
    "correlate_window_minutes",
    "escalate",
    "isolate",
    "classification",
    "determination",
)

Correlate = Literal["incident", "device-technique", "alert"]
CORRELATE_MODES: tuple[str, ...] = get_args(Correlate)
Isolate = Literal["propose", "request"]
ISOLATE_MODES: tuple[str, ...] = get_args(Isolate)
MAX_WINDOW_MINUTES = 7 * 24 * 60

# Graph alerts_v2 verdicts (defender-api.md §6), lower-cased as connectors/base.py AlertUpdate
# stores them. Each classification allows its own determinations; `apt` and
# `securityPersonnel` are deprecated but still documented. `unknown` and
# `unknownFutureValue` are what Graph reports when nothing was set, never a verdict to write.
_DETERMINATIONS_BY_CLASSIFICATION: dict[str, tuple[str, ...]] = {
    "truePositive": (
        "multiStagedAttack",
        "maliciousUserActivity",
        "compromisedUser",
        "malware",
        "phishing",
        "unwantedSoftware",
        "apt",
        "other",
    ),
    "informationalExpectedActivity": (
        "securityTesting",
        "lineOfBusinessApplication",
        "confirmedUserActivity",
        "securityPersonnel",
        "other",
    ),
    "falsePositive": ("clean", "insufficientData", "other"),
}
CLASSIFICATIONS: dict[str, str] = {c.casefold(): c for c in _DETERMINATIONS_BY_CLASSIFICATION}
DETERMINATIONS: dict[str, dict[str, str]] = {
    c.casefold(): {d.casefold(): d for d in ds}
    for c, ds in _DETERMINATIONS_BY_CLASSIFICATION.items()
}
_ALL_DETERMINATIONS: dict[str, str] = {
    d.casefold(): d for ds in _DETERMINATIONS_BY_CLASSIFICATION.values() for d in ds
}

_MITRE = re.compile(r"^T\d{4}(\.\d{3})?$", re.IGNORECASE)
_COMPANY = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
_CHANNEL = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_HEX = re.compile(r"^[0-9a-fA-F]+$")
_HASH_KINDS = {32: "md5", 40: "sha1", 64: "sha256"}


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


def _choice(allowed: tuple[str, ...], key: str) -> BeforeValidator:
    """Refuse a value outside `allowed` naming them, not pydantic's literal-union wording."""

    def check(value: object) -> object:
        if value not in allowed:
            raise ValueError(f"{key} must be one of {', '.join(allowed)} (got {value!r})")
        return value

    return BeforeValidator(check)


def _window(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"correlate_window_minutes must be a whole number (got {value!r})")
    if not 1 <= value <= MAX_WINDOW_MINUTES:
        raise ValueError(
            f"correlate_window_minutes must be from 1 to {MAX_WINDOW_MINUTES} (7 days), not {value}"
        )
    return value


CorrelateField = Annotated[Correlate, _choice(CORRELATE_MODES, "correlate")]
WindowField = Annotated[int, BeforeValidator(_window)]


def _hashes(values: list[str]) -> list[str]:
    out = []
    for value in values:
        text = value.strip()
        if not _HEX.match(text):
            raise ValueError(f"{value!r} is not hexadecimal (a hash is digits 0-9 and a-f)")
        if len(text) not in _HASH_KINDS:
            raise ValueError(
                f"{value!r} has {len(text)} hex digits; md5, sha1 and sha256 have 32, 40 and 64"
            )
        out.append(text.lower())
    return out


def _networks(values: list[str]) -> list[str]:
    out = []
    for value in values:
        text = value.strip()
        try:
            network = ipaddress.ip_network(text, strict=True)
        except ValueError as err:
            hint = ""
            try:
                loose = ipaddress.ip_network(text, strict=False)
                hint = f"; did you mean {str(loose)!r}?"
            except ValueError:
                pass
            problem = f"{value!r} is not an IP address or CIDR network: {err}{hint}"
            raise ValueError(problem) from err
        out.append(str(network))
    return out


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DefaultsSpec(_Strict):
    """What an alert gets for every outcome no matching rule set."""

    priority: Annotated[Priority, BeforeValidator(_priority)] | None = None
    severity_priority: dict[str, Annotated[Priority, BeforeValidator(_priority)]] | None = None
    ticket: StrictBool | None = None
    notify_desk: StrictBool | None = None
    notify_company: StrictBool | None = None
    correlate: CorrelateField | None = None
    correlate_window_minutes: WindowField | None = None

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
    user: Texts | None = None
    user_regex: Texts | None = None
    file_hash: Texts | None = None
    ip: Texts | None = None
    url: Texts | None = None
    url_regex: Texts | None = None
    command_line: Texts | None = None
    command_line_regex: Texts | None = None
    # The "every" forms: the alert names at least one such item and each of them is listed
    # (matches), so a test signature beside anything else does not hold.
    every_file_hash: Texts | None = None
    every_command_line_regex: Texts | None = None
    device_tag: Texts | None = None
    tenant: Texts | None = None
    priority: Annotated[Priority, BeforeValidator(_priority)] | None = None
    ticket: StrictBool | None = None
    notify_desk: StrictBool | None = None
    notify_company: StrictBool | None = None
    suppress: StrictStr | None = None
    mark_device_verified: StrictBool | None = None
    correlate: CorrelateField | None = None
    correlate_window_minutes: WindowField | None = None
    escalate: StrictStr | None = None
    isolate: Annotated[Isolate, _choice(ISOLATE_MODES, "isolate")] | None = None
    classification: StrictStr | None = None
    determination: StrictStr | None = None
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

    @field_validator(
        "category",
        "title",
        "detection_source",
        "service_source",
        "user",
        "url",
        "command_line",
        "device_tag",
        "tenant",
    )
    @classmethod
    def _texts(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _not_blank(value)

    @field_validator("file_hash", "every_file_hash")
    @classmethod
    def _file_hash(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _hashes(value)

    @field_validator("ip")
    @classmethod
    def _ip(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _networks(value)

    @field_validator("escalate")
    @classmethod
    def _escalate(cls, value: str | None) -> str | None:
        if value is not None and not _CHANNEL.match(value):
            raise ValueError(
                f"channel name {value!r} must be 1-63 lower-case letters, digits or '-', "
                "starting with a letter or digit (as in the config's [[desk.channels]])"
            )
        return value

    @field_validator("classification")
    @classmethod
    def _classification(cls, value: str | None) -> str | None:
        if value is None:
            return None
        folded = value.strip().casefold()
        if folded not in CLASSIFICATIONS:
            raise ValueError(
                f"unknown classification {value!r} (known: {', '.join(CLASSIFICATIONS.values())})"
            )
        return folded

    @field_validator("determination")
    @classmethod
    def _determination(cls, value: str | None) -> str | None:
        if value is None:
            return None
        folded = value.strip().casefold()
        if folded not in _ALL_DETERMINATIONS:
            known = ", ".join(sorted(_ALL_DETERMINATIONS.values(), key=str.casefold))
            raise ValueError(f"unknown determination {value!r} (known: {known})")
        return folded

    @field_validator(
        "title_regex",
        "device_name_regex",
        "user_regex",
        "url_regex",
        "command_line_regex",
        "every_command_line_regex",
    )
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
            raise ValueError('a suppression needs a reason, e.g. "known-benign"')
        return value

    @model_validator(mode="after")
    def _verdict(self) -> RuleSpec:
        if self.determination is None:
            return self
        if self.classification is None:
            raise ValueError(
                "determination needs a classification in the same rule: Defender files each "
                'determination under one (e.g. classification = "informationalExpectedActivity"'
                ' with determination = "securityTesting")'
            )
        allowed = DETERMINATIONS[self.classification]
        if self.determination not in allowed:
            raise ValueError(
                f"determination {_ALL_DETERMINATIONS[self.determination]!r} does not go with "
                f"classification {CLASSIFICATIONS[self.classification]!r} "
                f"(allowed: {', '.join(allowed.values())})"
            )
        return self

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
