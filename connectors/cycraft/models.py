"""CyCraft payloads: a dotted-path getter and lenient models of the values it picks out.

CyCraft's payload shape is an assumption (see defaults.toml), so a record is not parsed
whole: the configured JSON paths pick each field out of it, and the models below coerce
what they find. Null and absent mean the same; enum-like values are lower-cased; numbers
are accepted where text is expected (a severity of 4, an id of 1234).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainValidator

from edrtrial.timeutil import TICKS_PER_SECOND, Stamp

# Epoch numbers at or above this are milliseconds (as seconds it would be the year 5138).
_MILLIS_FROM = 100_000_000_000


def dig(data: Any, path: str) -> Any:
    """The value at a dotted path ('endpoint.id', 'items.0', 'mitre.*.id'); None if absent."""
    if not path:
        return None
    return _dig(data, path.split("."))


def _dig(data: Any, parts: list[str]) -> Any:
    for index, part in enumerate(parts):
        if part == "*":
            if not isinstance(data, list):
                return None
            found = (_dig(item, parts[index + 1 :]) for item in data)
            return [value for value in found if value is not None]
        if isinstance(data, Mapping):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit():
            data = data[int(part)] if int(part) < len(data) else None
        else:
            return None
        if data is None:
            return None
    return data


def pick(item: Mapping[str, Any], fields: BaseModel) -> dict[str, Any]:
    """Each mapped single-path field's value from `item`, keyed by field name.

    Unmapped fields are left out, and so are list-of-paths fields (see `gather`).
    """
    return {
        name: dig(item, path)
        for name, path in fields.model_dump().items()
        if path and isinstance(path, str)
    }


def gather(item: Mapping[str, Any], paths: Sequence[str]) -> list[Any]:
    """The values at each path in turn, lists flattened one level; absent ones left out."""
    found: list[Any] = []
    for path in paths:
        value = dig(item, path)
        if isinstance(value, list):
            found.extend(value)
        elif value is not None:
            found.append(value)
    return found


def _text(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value


def _lower(value: Any) -> Any:
    value = _text(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value.strip().lower() if isinstance(value, str) else value


def _timestamp(value: Any) -> Stamp | None:
    if value is None or isinstance(value, Stamp):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _epoch(value)
    if isinstance(value, str):
        return Stamp.from_iso(value)  # any number of fractional digits; naive is UTC
    raise ValueError(f"expected a timestamp, got {type(value).__name__}")


def _epoch(value: float) -> Stamp:
    """Epoch seconds or milliseconds, to the 100 ns: in decimal, so 1714644672.1234567 keeps
    its seventh digit (binary float arithmetic would not)."""
    try:
        seconds = Decimal(str(value))
        if abs(seconds) >= _MILLIS_FROM:
            seconds /= 1000
        stamp = Stamp(int((seconds * TICKS_PER_SECOND).to_integral_value(ROUND_FLOOR)))
        stamp.datetime  # noqa: B018 (raises for an instant no datetime can hold)
    except (OverflowError, ValueError, InvalidOperation) as err:
        raise ValueError(f"epoch {value} is out of range") from err
    return stamp


def _strings(value: Any) -> Any:
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    return tuple(_text(item) for item in items)


Text = Annotated[str | None, BeforeValidator(_text)]
EnumText = Annotated[str | None, BeforeValidator(_lower)]
"""An enum-like value, lower-cased; a number becomes its text ("4")."""

Timestamp = Annotated[Stamp | None, PlainValidator(_timestamp)]
"""ISO-8601 text, or epoch seconds / milliseconds (as a number or digits), kept to 100 ns."""

Strings = Annotated[tuple[str, ...], BeforeValidator(_strings)]
"""One value or a list of them."""


class _Picked(BaseModel):
    # Only picked values arrive here; extra="allow" keeps a mapping addition harmless.
    model_config = ConfigDict(extra="allow", frozen=True, coerce_numbers_to_str=True)


class CyCraftAlert(_Picked):
    """The parts of a CyCraft alert the mapping picked out."""

    id: Text = None
    title: Text = None
    description: Text = None
    severity: EnumText = None
    status: EnumText = None
    created: Timestamp = None
    updated: Timestamp = None
    incident_id: Text = None
    device_id: Strings = ()
    device_name: Strings = ()
    mitre: Strings = ()
    category: EnumText = None


class CyCraftIncident(_Picked):
    """The parts of a CyCraft incident the mapping picked out."""

    id: Text = None
    title: Text = None
    severity: EnumText = None
    status: EnumText = None
    created: Timestamp = None
    updated: Timestamp = None


class CyCraftDevice(_Picked):
    """The parts of a CyCraft endpoint (device) the mapping picked out."""

    id: Text = None
    name: Text = None
    os_platform: Text = None
    os_version: Text = None
    health_status: EnumText = None
    onboarding_status: EnumText = None
    risk_score: EnumText = None
    first_seen: Timestamp = None
    last_seen: Timestamp = None


class CyCraftTask(_Picked):
    """The parts of a CyCraft task (a device action) the mapping picked out."""

    id: Text = None
    status: EnumText = None
    type: EnumText = None
    device_id: Text = None
