"""The small part of OData the APIs' clients use: `$filter` with `and`, `$top`, `$skiptoken`.

Anything beyond it is refused with 400, as the real services refuse what they do not
support, so a client mistake shows up in the sandbox rather than in a customer tenant.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from edrtrial.timeutil import Stamp

FieldKind = Literal["datetime", "string"]
Value = Stamp | datetime | str | None

_OPS = ("eq", "ne", "gt", "ge", "lt", "le")
_OP_NAMES = {
    "eq": "Equal",
    "ne": "NotEqual",
    "gt": "GreaterThan",
    "ge": "GreaterThanOrEqual",
    "lt": "LessThan",
    "le": "LessThanOrEqual",
}
_TOKEN = re.compile(r"\s*(?:('(?:[^']|'')*')|([()])|([^\s()']+))")
_DATETIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,7})?)?)?(?:Z|[+-]\d{2}:\d{2})$",
    re.IGNORECASE,
)


class ODataError(ValueError):
    """The query cannot be answered; the message is what the API tells the client."""


class TopExceededError(ODataError):
    """`$top` is above the endpoint's maximum (Graph answers this in its own words)."""

    def __init__(self, limit: int, requested: str) -> None:
        super().__init__(
            "The query specified in the URI is not valid. The limit of "
            f"'{limit}' for Top query has been exceeded. The value from the incoming request "
            f"is '{requested}'."
        )


@dataclass(frozen=True, slots=True)
class Clause:
    """One `property op value` comparison of a `$filter`."""

    field: str
    op: str
    value: Value

    def matches(self, actual: Value) -> bool:
        """Whether an item's value satisfies this comparison (instants to the 100 ns)."""
        if isinstance(self.value, Stamp):
            if isinstance(actual, datetime):
                actual = Stamp.of(actual)
            if not isinstance(actual, Stamp):
                return False
            return _compare(actual, self.op, self.value)
        left = actual.lower() if isinstance(actual, str) else actual
        right = self.value.lower() if isinstance(self.value, str) else self.value
        return (left == right) if self.op == "eq" else (left != right)


def _compare(left: Stamp, op: str, right: Stamp) -> bool:
    if op == "eq":
        return left == right
    if op == "ne":
        return left != right
    if op == "gt":
        return left > right
    if op == "ge":
        return left >= right
    if op == "lt":
        return left < right
    return left <= right


def odata_time(value: datetime) -> str:
    """A timestamp as Microsoft sends it: UTC, seven fractional digits, `Z`."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "0Z"


def _tokens(text: str) -> list[str]:
    tokens: list[str] = []
    position = 0
    while position < len(text):
        if not text[position:].strip():
            break
        match = _TOKEN.match(text, position)
        if match is None:
            raise ODataError(f"Invalid filter clause: syntax error at position {position}.")
        tokens.append(match.group(1) or match.group(2) or match.group(3))
        position = match.end()
    return tokens


def _literal(raw: str, kind: FieldKind, field: str, op: str) -> Value:
    if kind == "datetime":
        if raw.startswith("'"):
            raise ODataError(
                "Invalid filter clause: A binary operator with incompatible types was detected. "
                f"Found operand types 'Edm.DateTimeOffset' and 'Edm.String' for operator kind "
                f"'{_OP_NAMES[op]}'."
            )
        if not _DATETIME.match(raw):
            raise ODataError(f"Invalid filter clause: '{raw}' is not a valid DateTimeOffset.")
        text = raw if "T" in raw.upper() else f"{raw[:10]}T00:00:00{raw[10:]}"
        return Stamp.from_iso(text)
    if raw.lower() == "null":
        return None
    if not raw.startswith("'"):
        raise ODataError(f"Invalid filter clause: the value for '{field}' must be a quoted string.")
    return raw[1:-1].replace("''", "'")


def parse_filter(text: str | None, fields: Mapping[str, FieldKind]) -> list[Clause]:
    """Parse `prop op value [and prop op value]...` over the given filterable properties."""
    if text is None or not text.strip():
        return []
    tokens = _tokens(text)
    by_lower = {name.lower(): name for name in fields}
    clauses: list[Clause] = []
    index = 0
    while True:
        if index + 3 > len(tokens):
            raise ODataError("Invalid filter clause: expected 'property operator value'.")
        prop, op, raw = tokens[index : index + 3]
        name = by_lower.get(prop.lower())
        if name is None:
            raise ODataError(
                f"Invalid filter clause: filtering on '{prop}' is not supported; supported "
                f"properties: {', '.join(sorted(fields))}."
            )
        op = op.lower()
        kind = fields[name]
        if op not in _OPS or (kind == "string" and op not in ("eq", "ne")):
            raise ODataError(
                f"Invalid filter clause: operator '{op}' is not supported on '{name}'."
            )
        clauses.append(Clause(name, op, _literal(raw, kind, name, op)))
        index += 3
        if index == len(tokens):
            return clauses
        if tokens[index].lower() != "and":
            raise ODataError(
                f"Invalid filter clause: '{tokens[index]}' is not supported; join comparisons "
                "with 'and'."
            )
        index += 1


def matches_all(clauses: list[Clause], value_of: Callable[[str], Value]) -> bool:
    """Whether an item passes every clause; `value_of` reads a property of the item."""
    return all(clause.matches(value_of(clause.field)) for clause in clauses)


def parse_count(raw: str | None, name: str, default: int, maximum: int | None = None) -> int:
    """Parse `$top` or `$skip`; above `maximum` is refused as the service does."""
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as err:
        raise ODataError(f"Invalid value '{raw}' for {name}; expected a number.") from err
    if value < 0:
        raise ODataError(f"Invalid value '{raw}' for {name}; it must not be negative.")
    if maximum is not None and value > maximum:
        raise TopExceededError(maximum, raw)
    return value


def encode_skiptoken(updated: Stamp, item_id: str) -> str:
    """An opaque continuation token naming the last item of a page."""
    raw = json.dumps([updated.iso(), item_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_skiptoken(token: str) -> tuple[Stamp, str]:
    """The (lastUpdateDateTime, id) after which the next page starts."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        updated, item_id = json.loads(raw)
        return Stamp.from_iso(updated), str(item_id)
    except (binascii.Error, ValueError, TypeError) as err:
        raise ODataError("The $skiptoken is invalid or has expired.") from err
