"""What every command shares: the consoles, clean failure, the config, the runtime, the actor.

The consoles show every string as data: an alert title such as `[link=https://x]update[/link]`
or one carrying `\x1b[2J` is printed as it was sent, never interpreted (see `SafeConsole`),
and on one line: a line break inside a string is shown as `␊`. A command styles its own
words with `styled`, and prints a free-text body (a note, a summary field) with `body`, the
one way to put several lines on the screen, each indented under its label.
"""

from __future__ import annotations

import getpass
import os
import sys
import unicodedata
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click
from rich.console import Console
from rich.style import Style
from rich.text import Text

from edrtrial import db, logsetup
from edrtrial.audit import ACTOR_WIDTH, BEHALF_WIDTH, SYSTEM_ACTORS
from edrtrial.config import Config, load_config
from edrtrial.desk import operator
from edrtrial.errors import ActorError, EdrTrialError, TicketError
from edrtrial.service import jobs
from edrtrial.service.runtime import Runtime, TenantRef
from edrtrial.untrusted import lines_under, one_line, visible

P = ParamSpec("P")
T = TypeVar("T")


class SafeConsole(Console):
    """A rich console that shows every string literally and on one line: no markup, no
    emoji codes, every control or invisible character and every line break shown as a mark
    (`edrtrial.untrusted.one_line`).

    Rich turns each string it prints (a `print` argument, a table cell, a header) into text
    through `render_str`, so doing it there covers every command by construction: a new
    command cannot forget to escape an alert title, nor let one write a line of its own.
    Several lines are printed only as `Text` built on purpose (`body`).
    """

    def render_str(
        self,
        text: str,
        *,
        style: str | Style = "",
        justify: Any = None,
        overflow: Any = None,
        emoji: bool | None = None,
        markup: bool | None = None,
        highlight: bool | None = None,
        highlighter: Any = None,
    ) -> Text:
        """The string as plain text, whatever the caller asked for."""
        return super().render_str(
            one_line(text),
            style=style,
            justify=justify,
            overflow=overflow,
            emoji=False,
            markup=False,
            highlight=highlight,
            highlighter=highlighter,
        )


def styled(text: str, style: str) -> Text:
    """The command's own emphasis (a red "overdue", a bold title) over text shown literally."""
    return Text(one_line(text), style=style)


BODY_INDENT = "    "


def body(label: str, text: str, indent: str = "") -> Text:
    """A free-text body under its label: `label:` then each of its lines indented further,
    so no line of it can pass for one of ours (a heading, a state line) however written."""
    lines = visible(text.replace("\r\n", "\n")).split("\n")
    if len(lines) == 1:
        return Text(f"{indent}{one_line(label)}: {lines[0]}")
    under = indent + BODY_INDENT
    return Text(f"{indent}{one_line(label)}:\n" + "\n".join(under + line for line in lines))


# Piped or captured output is not cut to 80 columns (rich's default off a terminal).
console = SafeConsole(width=None if sys.stdout.isatty() else 200, markup=False, emoji=False)
err_console = SafeConsole(stderr=True, markup=False, emoji=False)


def fails_cleanly(func: Callable[P, T]) -> Callable[P, T]:
    """Our own errors end the command with their message (exit 2), not a traceback: one
    line, or each problem of a listing on its own line (`EdrTrialError.listing`). So does
    a store that is damaged, not a database or out of reach (`edrtrial.db.explain`)."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return func(*args, **kwargs)
        except EdrTrialError as err:
            # Each line of ours whole however narrow the terminal (soft_wrap leaves wrapping
            # to the terminal); a listing's problems each on a line under the first.
            message = lines_under(err.lines or (str(err),), BODY_INDENT)
            line = Text.assemble(styled("error:", "bold red"), " ", message)
            err_console.print(line, highlight=False, soft_wrap=True)
            sys.exit(2)
        except Exception as err:
            # A store that is damaged, not a database or out of reach: one line saying what
            # to do. Any other error is a bug, and its traceback is wanted.
            if (problem := db.explain(err)) is None:
                raise
            line = Text.assemble(
                styled("error:", "bold red"), " ", styled(f"the store: {problem}", "")
            )
            err_console.print(line, highlight=False, soft_wrap=True)
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


def login_name() -> str:
    """The operating-system account running the command, by its user id.

    Not `$USER` or `$LOGNAME` (which `getpass.getuser` reads first): anyone can set those.
    """
    try:
        import pwd  # POSIX only

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):  # Windows, or a uid with no account (a container)
        try:
            return getpass.getuser()
        except OSError:
            return f"uid {os.getuid()}"


def invoking_login(account: str) -> str:
    """The person behind the account, when it is not the account itself; else "".

    The terminal's login (`os.getlogin`, read from the login records, which a user cannot
    set) comes first: `sudo -u edrtrial edrtrial …` or `su edrtrial` from sato's terminal
    names sato. When it is the account itself there is one person, whatever `SUDO_USER`
    says: anyone can type `SUDO_USER=tanaka edrtrial …`. Only without a controlling
    terminal (sudo from a script, a pipe) is `SUDO_USER`, which sudo sets to the login that
    ran it, the one name left.
    """
    try:
        person = os.getlogin()
    except OSError:  # no controlling terminal: a service, a pipe, cron, sudo from a script
        person = os.environ.get("SUDO_USER", "")
    person = person.strip()
    return "" if person in ("", account) else person


def actor(ctx: click.Context) -> str:
    """Who acts, for the audit log: `cli:<login name>`, whatever `--by` says, and the
    person who ran it through sudo beside the account: `cli:sato (as edrtrial)`.

    `--by NAME` is who the operator acts for; `on_behalf_of` gives it to the audit log.
    """
    account = login_name()
    person = invoking_login(account)
    if not person:
        return f"cli:{one_line(account)}"[:ACTOR_WIDTH]
    tail = f" (as {one_line(account)})"
    return f"cli:{one_line(person)}"[: ACTOR_WIDTH - len(tail)] + tail


def _folded(name: str) -> str:
    """A name as compared with the system actors: NFKC, case-folded, letters and digits only."""
    folded = unicodedata.normalize("NFKC", name).casefold()
    return "".join(c for c in folded if c.isalnum())


_SYSTEM = {_folded(name) for name in SYSTEM_ACTORS}


def on_behalf_of(by: str | None) -> str:
    """The `--by` name checked: empty without one, refused when it names a system actor.

    The service's own jobs write the audit log as `playbook`, `edr`, `desk`, ...; a person
    claiming one of those names ("Playbook", "play book", fullwidth "ｐｌａｙｂｏｏｋ")
    would make their action read as the service's.
    """
    if by is None:
        return ""
    name = by.strip()
    folded = _folded(name)
    if not folded:
        raise ActorError(f"--by {one_line(by)!r} names nobody")
    if len(name) > BEHALF_WIDTH:
        raise ActorError(
            f"--by names someone in {len(name)} characters; at most {BEHALF_WIDTH} fit the "
            "audit log"
        )
    if folded in _SYSTEM:
        raise ActorError(
            f"--by {one_line(by)!r} is the service's own name in the audit log; "
            "give the name of the person you act for"
        )
    return name


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
