"""Logging: plain or JSON lines, with the tenant on every line and never a secret."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from edrtrial.untrusted import visible

current_tenant: ContextVar[str] = ContextVar("current_tenant", default="-")


@contextmanager
def tenant_context(tenant: str) -> Iterator[None]:
    """Tag every log line emitted inside the block with this tenant."""
    token = current_tenant.set(tenant)
    try:
        yield
    finally:
        current_tenant.reset(token)


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
        entry = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "tenant": getattr(record, "tenant", "-"),
            "msg": visible(record.getMessage()),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class _PlainFormatter(logging.Formatter):
    """One line as a person reads it in a terminal: EDR text in a message stays text."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        return visible(super().formatMessage(record))


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
    for noisy in (
        "httpx",
        "httpcore",
        "msal",
        "alembic",
        "apscheduler.executors",
        "uvicorn.access",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
