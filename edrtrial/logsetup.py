"""Logging: plain or JSON lines, with the tenant on every line and never a secret."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from edrtrial.untrusted import lines_under, one_line, visible

current_tenant: ContextVar[str] = ContextVar("current_tenant", default="-")


@contextmanager
def tenant_context(tenant: str) -> Iterator[None]:
    """Tag every log line emitted inside the block with this tenant."""
    token = current_tenant.set(tenant)
    try:
        yield
    finally:
        current_tenant.reset(token)


def details(lines: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """`extra=` for a log message of ours followed by lines of ours (each problem of a
    refused playbook): each is logged on its own line under the message, where one joined
    into the message would be shown on one line with `␊` between them.
    """
    return {"details": tuple(lines)}


def _details(record: logging.LogRecord) -> tuple[str, ...]:
    found = getattr(record, "details", ())
    return tuple(str(line) for line in found) if isinstance(found, tuple | list) else ()


class _TenantFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "tenant"):
            tenant = current_tenant.get()
            if tenant == "-" and hasattr(record, "tenant_id"):
                tenant = f"#{record.tenant_id}"  # a store id, where no EDR tenant id is at hand
            record.tenant = tenant
        return True


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "tenant": getattr(record, "tenant", "-"),
            "msg": one_line(record.getMessage()),
        }
        if found := _details(record):
            entry["details"] = [one_line(line) for line in found]
        if record.exc_info:
            entry["exc"] = visible(self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = visible(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False)


_TRACE_INDENT = "    "


class _PlainFormatter(logging.Formatter):
    """A record as a person reads it in a terminal: the message on one line (EDR text in it
    stays text and cannot start a line, such as another tenant's), its `details` each on a
    line of their own indented under it, and a traceback below it
    with its controls shown as marks and every line indented, so no line of it (an exception
    message quoting EDR text) can pass for a log line either.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        return lines_under((super().formatMessage(record), *_details(record)), _TRACE_INDENT)

    def formatException(self, ei: Any) -> str:  # noqa: N802 (logging's name)
        return _indented(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:  # noqa: N802 (logging's name)
        return _indented(super().formatStack(stack_info))


def _indented(text: str) -> str:
    return "\n".join(_TRACE_INDENT + line for line in visible(text).splitlines())


def configure(level: str = "INFO", json_lines: bool = False) -> None:
    """Set up the root logger once for the process."""
    handler = logging.StreamHandler()
    handler.addFilter(_TenantFilter())
    if json_lines:
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(
            _PlainFormatter("%(asctime)s %(levelname)-7s [%(tenant)s] %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Libraries' progress lines (WeasyPrint's "Step 6 - Creating PDF", fontTools' subsetting,
    # matplotlib's font cache) would bury a command's own lines: only their warnings show.
    for noisy in (
        "weasyprint",
        "fontTools",
        "matplotlib",
        "PIL",
        "httpx",
        "httpcore",
        "msal",
        "alembic",
        "apscheduler.executors",
        "uvicorn.access",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
