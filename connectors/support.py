"""Helpers every connector needs the same way: Retry-After, bad settings, mapping a page of
records (setting aside those that cannot be mapped), evidence and tags."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import ValidationError

from edrtrial.connectors.base import Batch, Evidence, Rejected
from edrtrial.errors import ConfigError, Unmappable

log = logging.getLogger(__name__)

R = TypeVar("R")

_RAW_EXCERPT = 2000  # characters of a non-object item kept for the quarantine


def tls_verify(ca_bundle: Path | None, base_dir: Path, who: str) -> ssl.SSLContext | bool:
    """A private CA when `ca_bundle` is set (the sandbox, an on-premises console), else the
    system's trust store; `who` names the tenant in the error."""
    if ca_bundle is None:
        return True
    path = ca_bundle if ca_bundle.is_absolute() else base_dir / ca_bundle
    try:
        return ssl.create_default_context(cafile=str(path))
    except OSError as err:  # also ssl.SSLError: a file that is not a PEM bundle
        raise ConfigError(f"{who}: ca_bundle {path} is unusable: {err}") from err


def retry_after_seconds(response: httpx.Response, now: datetime) -> float | None:
    """Seconds from a Retry-After header (seconds or an HTTP date); None when absent or garbled."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def describe_errors(err: ValidationError) -> str:
    """Name each bad key and why, without echoing the input (it may be a pasted secret)."""
    parts = []
    for item in err.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            message = "unknown key (check the spelling)"
        elif item["type"] == "missing":
            message = "required key is missing"
        else:
            message = item["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


def map_record(mapper: Callable[[Mapping[str, Any]], R], raw: Any) -> R:
    """One raw record through `mapper`; whatever stops it is raised as `Unmappable`.

    `mapper` only ever sees a JSON object. It raises `Unmappable` itself for a missing id or
    timestamp; pydantic's `ValidationError` becomes `Unmappable` with `describe_errors`'s
    text (each bad key and why).
    """
    if not isinstance(raw, dict):
        raise Unmappable(f"not a JSON object ({type(raw).__name__})")
    try:
        return mapper(raw)
    except ValidationError as err:
        raise Unmappable(describe_errors(err)) from err


def map_page(
    items: Iterable[Any],
    mapper: Callable[[Mapping[str, Any]], R],
    kind: str,
    *,
    tenant: str,
    source_id: Callable[[Mapping[str, Any]], Any] | None = None,
) -> Batch[R]:
    """The records of one page, with a `Rejected` for each item `mapper` cannot map.

    One bad record never spoils its page: it is logged and set aside with its id (found by
    `source_id`, default the top-level `id`; "" when there is none), the reason and the raw
    item, for the core to keep in quarantine. `kind` names the record in both (`"alert"`).
    """
    records: list[R] = []
    rejected: list[Rejected] = []
    for item in items:
        try:
            records.append(map_record(mapper, item))
        except Unmappable as err:
            if isinstance(item, dict):
                raw: Mapping[str, Any] = item
                record_id = _id_text((source_id or _top_level_id)(item))
            else:
                raw, record_id = {"value": repr(item)[:_RAW_EXCERPT]}, ""
            log.warning(
                "tenant %s: set aside %s%s: %s",
                tenant,
                kind,
                f" {record_id}" if record_id else "",
                err.reason,
            )
            rejected.append(Rejected(kind, record_id, err.reason, raw))
    return Batch(records, rejected)


def _top_level_id(raw: Mapping[str, Any]) -> Any:
    return raw.get("id")


def _id_text(value: Any) -> str:
    """A rejected record's id as text; "" when absent or not a single value."""
    if value is None or isinstance(value, dict | list):
        return ""
    return str(value)


_HASH_LENGTHS = frozenset({32, 40, 64})  # md5, sha1, sha256
_HEX = frozenset("0123456789abcdef")


def text_of(value: Any) -> str | None:
    """A value as stripped text when it is text (or a whole number); None for anything else.

    Evidence and tags only add detail to a record, so a value of the wrong type is dropped
    on its own instead of costing the record.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value.strip() or None
    return None


def flat(value: Any) -> list[Any]:
    """One value, or the items of a list (one level), for fields that may be either."""
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def distinct_tags(value: Any) -> tuple[str, ...]:
    """Device tags: text items only, stripped, each once, in the order sent."""
    found = (text for item in flat(value) if (text := _only_text(item)))
    return tuple(dict.fromkeys(found))


def _only_text(value: Any) -> str | None:
    return (value.strip() or None) if isinstance(value, str) else None


class EvidenceCollector:
    """Gathers what an alert names, each value once, in the order first seen.

    Users compare case-insensitively (Windows accounts and UPNs are), keeping the first
    spelling; hashes are kept only when they look like md5/sha1/sha256 hex, lower-cased;
    IPs, URLs and process command lines are kept as sent. Anything that is not text is ignored.
    """

    def __init__(self) -> None:
        self._users: dict[str, str] = {}
        self._hashes: dict[str, None] = {}
        self._ips: dict[str, None] = {}
        self._urls: dict[str, None] = {}
        self._command_lines: dict[str, None] = {}

    def user(self, value: Any) -> None:
        """An account name, `DOMAIN\\name` or UPN."""
        if (text := _only_text(value)) is not None:
            self._users.setdefault(text.casefold(), text)

    def account(self, name: Any, domain: Any = None, upn: Any = None) -> None:
        """A Windows-style account: its name, `DOMAIN\\name` when the domain is known, the UPN."""
        account_name = _only_text(name)
        if account_name is not None:
            self.user(account_name)
            if (domain_name := _only_text(domain)) is not None and "\\" not in account_name:
                self.user(f"{domain_name}\\{account_name}")
        self.user(upn)

    def file_hash(self, value: Any) -> None:
        """An md5, sha1 or sha256 in hex; other text (or a wrong length) is ignored."""
        text = _only_text(value)
        if text is None:
            return
        lowered = text.lower()
        if len(lowered) in _HASH_LENGTHS and set(lowered) <= _HEX:
            self._hashes.setdefault(lowered)

    def ip(self, value: Any) -> None:
        """An IP address, as sent."""
        if (text := _only_text(value)) is not None:
            self._ips.setdefault(text)

    def url(self, value: Any) -> None:
        """A URL, as sent."""
        if (text := _only_text(value)) is not None:
            self._urls.setdefault(text)

    def command_line(self, value: Any) -> None:
        """A process's command line, stripped (a blank one says nothing and is dropped)."""
        if (text := _only_text(value)) is not None:
            self._command_lines.setdefault(text)

    def evidence(self) -> Evidence:
        """What was gathered, as the contract's record."""
        return Evidence(
            users=tuple(self._users.values()),
            file_hashes=tuple(self._hashes),
            ips=tuple(self._ips),
            urls=tuple(self._urls),
            command_lines=tuple(self._command_lines),
        )
