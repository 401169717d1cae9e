"""What every command shares: the consoles, clean failure, the config, the runtime, the actor."""

from __future__ import annotations

import getpass
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import ParamSpec, TypeVar

import click
from rich.console import Console

from edrtrial import logsetup
from edrtrial.config import Config, load_config
from edrtrial.desk import operator
from edrtrial.errors import EdrTrialError, TicketError
from edrtrial.service import jobs
from edrtrial.service.runtime import Runtime, TenantRef

P = ParamSpec("P")
T = TypeVar("T")
# Piped or captured output is not cut to 80 columns (rich's default off a terminal).
console = Console(width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True)


def fails_cleanly(func: Callable[P, T]) -> Callable[P, T]:
    """Our own errors end the command with their message (exit 2), not a traceback."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return func(*args, **kwargs)
        except EdrTrialError as err:
            err_console.print(f"[bold red]error:[/] {err}", highlight=False)
            sys.exit(2)

    return wrapper


def config_of(ctx: click.Context) -> Config:
    """The command's config, loaded once (logging set up from it) and kept on the context."""
    found = ctx.obj.get("config")
    if isinstance(found, Config):
        return found
    path: Path = ctx.obj["config_path"]
    if path.name == "config.example.toml" and not ctx.obj.get("explicit"):
        err_console.print(
            f"using {path} (copy it to config.toml to make your own)", style="dim", highlight=False
        )
    config = load_config(path)
    logsetup.configure(
        ctx.obj.get("log_level") or config.settings.logging.level,
        config.settings.logging.json_lines,
    )
    ctx.obj["config"] = config
    return config


def runtime_of(ctx: click.Context) -> Runtime:
    """The runtime over the command's config, closed when the command ends."""
    runtime = Runtime.open(config_of(ctx))
    ctx.call_on_close(runtime.close)
    return runtime


def actor(ctx: click.Context) -> str:
    """Who acts, for the audit log: `ticket --by NAME`, else `cli:<login name>`."""
    by = ctx.find_root().obj.get("by")
    return str(by) if by else f"cli:{getpass.getuser()}"


def ticket_tenant(runtime: Runtime, ticket_id: int) -> TenantRef:
    """The configured tenant of the ticket (a TicketError once its company is not configured)."""
    with runtime.sessions() as session:
        tenant_id = operator.get(session, ticket_id).tenant_id
    for tenant in runtime.tenants():
        if tenant.id == tenant_id:
            return tenant
    raise TicketError(f"ticket #{ticket_id}'s company is no longer configured")


def deliver(runtime: Runtime, *, always: bool = True) -> None:
    """Send the outbox now and say how it went (unless `always` is off and nothing went)."""
    stats = jobs.deliver_outbox(runtime)
    if always or stats.sent or stats.retried or stats.failed:
        console.print(f"mail: {stats.sent} sent, {stats.retried} to retry, {stats.failed} failed")
