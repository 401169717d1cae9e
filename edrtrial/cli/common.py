"""What every command shares: the consoles, clean failure, the config, the runtime, the actor.

The consoles show every string as data: an alert title such as `[link=https://x]update[/link]`
or one carrying `\x1b[2J` is printed as it was sent, never interpreted (see `SafeConsole`),
and on one line: a line break inside a string is shown as `␊`. A command styles its own
words with `styled`, and prints a free-text body (a note, a summary field) with `body`, the
one way to put several lines on the screen, each indented under its label.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import sys
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import wraps
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click
from rich.console import Console
from rich.style import Style
from rich.table import Column, Table
from rich.text import Text

from edrtrial import audit, db, logsetup
from edrtrial.audit import ACTOR_WIDTH, BEHALF_WIDTH, SYSTEM_ACTORS
from edrtrial.config import Config, load_config
from edrtrial.errors import ActorError, ConfigError, EdrTrialError
from edrtrial.notify.outbox import DeliveryStats
from edrtrial.programme.companies import store_keys
from edrtrial.service import jobs
from edrtrial.service.runtime import Runtime
from edrtrial.timeutil import as_utc
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


LIST_WIDTH = 100
"""The widest a list is printed without `--wide`: a 100-column terminal shows it whole."""

FLEX_FLOOR = 12
"""How narrow a free-text column (a title, a reason) is cut before the others give way."""

KEPT = 11
"""How much of any column is kept while free text can still give: a time (`11/25 10:00`)
whole, a company key recognisable (`sakura-sei…`)."""


def terminal_width() -> int | None:
    """The terminal's columns: `$COLUMNS` when set (a shell exports it), else the terminal's
    own size; None when the output is piped or captured and no width was given."""
    columns = os.environ.get("COLUMNS", "").strip()
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    return None


class ListTable(Table):
    """A list's table: one line per row, every cell on one line, a cell too long for its
    column cut with an ellipsis; `flex` columns (free text: a title, a reason) are cut first,
    `whole` ones (a deadline, a trial's end: cut, they mislead) never.

    Every list is made with it and printed with `print_list`, so every list behaves the same
    at any width.
    """

    def __init__(self, *headers: str, flex: Sequence[str] = (), whole: Sequence[str] = ()) -> None:
        super().__init__(
            *(Column(h, no_wrap=True, overflow="ellipsis") for h in headers),
            box=None,
            padding=(0, 1),
            pad_edge=False,
            header_style="bold underline",
        )
        self.flex = tuple(headers.index(name) for name in flex)
        self.whole = tuple(headers.index(name) for name in whole)


def _measure(cells: Sequence[Any]) -> int:
    """The widest of the cells, uncut (0 for none)."""
    options = console.options.update_width(10_000)
    return max((console.measure(cell, options=options).maximum for cell in cells), default=0)


def _water_fill(
    widths: list[int], budget: int, among: Sequence[int], floors: Sequence[int]
) -> None:
    """Cut the widest of `among` first, none below its floor, until all fit `budget` (or the
    floors stop it): a column narrower than the cut stays whole."""
    while sum(widths) > budget:
        cuttable = [i for i in among if widths[i] > floors[i]]
        if not cuttable:
            return
        widest = max(widths[i] for i in cuttable)
        for i in cuttable:
            if widths[i] == widest and sum(widths) > budget:
                widths[i] -= 1


def fit_widths(table: ListTable, width: int) -> None:
    """Give each column of a list its width so that every row fits `width`, losing as
    little as it can, in this order: free text down to `FLEX_FLOOR`; one space between
    columns instead of two; headers down to their cells; any column down to `KEPT` (a
    long company key); free text down to 6; then the widest of all. A `whole` column is
    never cut."""
    columns = table.columns
    if not columns:
        return
    count = len(columns)
    natural = [_measure((c.header, *c.cells)) for c in columns]
    cells = [_measure(tuple(c.cells)) for c in columns]
    everything = [i for i in range(count) if i not in table.whole]
    budget = width - 2 * (count - 1)  # one space each side, none at the table's edges
    widths = list(natural)
    _water_fill(widths, budget, table.flex, [FLEX_FLOOR] * count)
    if sum(widths) > budget:
        table.collapse_padding = True  # columns one space apart, and free text cut afresh
        budget = width - (count - 1)
        widths = list(natural)
        _water_fill(widths, budget, table.flex, [FLEX_FLOOR] * count)
    _water_fill(widths, budget, everything, [max(c, 5) for c in cells])
    _water_fill(widths, budget, everything, [KEPT] * count)
    _water_fill(widths, budget, table.flex, [6] * count)
    _water_fill(widths, budget, everything, [1] * count)
    for column, fitted in zip(columns, widths, strict=True):
        column.width = fitted


def print_list(table: ListTable, *, wide: bool) -> None:
    """Print a list: within 100 columns or the terminal if narrower, each row on one line
    with long cells cut; with `wide`, every cell whole however long the rows."""
    if wide:
        width = _measure((table,))
    else:
        width = min(terminal_width() or LIST_WIDTH, LIST_WIDTH)
        fit_widths(table, width)
    # A console of the list's own width: the shared one stops at the terminal's (or 200).
    SafeConsole(width=width, markup=False, emoji=False, highlight=False).print(table)


def print_legend(text: str) -> None:
    """A list's legend (what its short headers stand for), wrapped at the list's width."""
    width = min(terminal_width() or LIST_WIDTH, LIST_WIDTH)
    SafeConsole(width=width, markup=False, emoji=False, highlight=False).print(Text(text))


def print_notes(notes: Sequence[tuple[str, str]]) -> None:
    """Under a list, what its rows cut and a person must read whole (a parked tenant's
    reason): each `label: text` wrapped at the list's width, never cut."""
    width = min(terminal_width() or LIST_WIDTH, LIST_WIDTH)
    out = SafeConsole(width=width, markup=False, emoji=False, highlight=False)
    for label, text in notes:
        out.print(Text(f"{label}: ", style="bold") + Text(" ".join(text.split())))


def list_options(func: Callable[P, T]) -> Callable[P, T]:
    """`--wide` and `--json`, the options every list has (`wide` and `as_json` arguments)."""
    func = click.option(
        "--json", "as_json", is_flag=True, help="Print the list as JSON (every value whole)."
    )(func)
    return click.option(
        "--wide", is_flag=True, help="Show every cell whole, however wide the rows."
    )(func)


def iso(value: datetime | None) -> str | None:
    """An instant for JSON: ISO 8601 in UTC, or null."""
    return None if value is None else as_utc(value).isoformat()


def print_json(value: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> None:
    """A list (or one record) as JSON on stdout, for scripts and monitoring.

    Every value whole and as data: ASCII-only JSON escapes every control, line break and
    non-ASCII character (`\\u001b`, `\\u3042`), so no text the EDR or a user sent can reach
    the terminal as anything but text; any JSON reader gives it back as it was.
    """
    click.echo(json.dumps(value, ensure_ascii=True, indent=2))


def fails_cleanly(func: Callable[P, T]) -> Callable[P, T]:
    """Our own errors end the command with their message (exit 2, or the error's own
    `exit_code`), not a traceback: one
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
            sys.exit(err.exit_code)
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


def _warn(line: str) -> None:
    err_console.print(Text.assemble(styled("warning:", "bold yellow"), " ", line), soft_wrap=True)


def runtime_of(ctx: click.Context) -> Runtime:
    """The runtime over the command's config, closed when the command ends."""
    runtime = Runtime.open(config_of(ctx), notice=_warn)
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


BY_HELP = "Whom you act for; the audit log keeps your login as the actor and this name beside it."
_BY_KEY = "edrtrial.by"


def take_by(ctx: click.Context, by: str | None) -> None:
    """Act for `--by`'s name until the command ends. Given both before and after the
    sub-command, the two must name the same person."""
    if by is None:
        return
    name = on_behalf_of(by)
    root = ctx.find_root()
    given = root.meta.get(_BY_KEY)
    if given is not None:
        if given != name:
            raise ActorError(
                f"--by names both {one_line(given)!r} and {one_line(name)!r}; give one"
            )
        return
    root.meta[_BY_KEY] = name
    ctx.with_resource(audit.acting_for(name))


def acting_for(func: Callable[..., T]) -> Callable[..., T]:
    """`--by NAME` on a command that is not a sub-command of an `ActingForGroup` (`report`,
    `offboarding`): who the operator acts for, kept beside the login in the audit log."""

    @wraps(func)
    def with_by(*args: Any, by: str | None = None, **kwargs: Any) -> T:
        take_by(click.get_current_context(), by)
        return func(*args, **kwargs)

    return click.option("--by", help=BY_HELP)(fails_cleanly(with_by))


class ActingForGroup(click.Group):
    """A group with `--by NAME` taken before its sub-command (`ticket --by sato ack 5`) or
    after it (`ticket ack 5 --by sato`): each sub-command added gets the option too."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        """Add the sub-command, with `--by` among its options."""
        callback = cmd.callback
        if callback is not None:

            @fails_cleanly
            def with_by(*args: Any, by: str | None = None, **kwargs: Any) -> Any:
                take_by(click.get_current_context(), by)
                return callback(*args, **kwargs)

            cmd.callback = with_by
            cmd.params.append(click.Option(["--by"], help=BY_HELP))
        super().add_command(cmd, name)


def company_key(runtime: Runtime, key: str) -> str:
    """The stored company `key` names, or an error naming it (a command never answers an
    unknown company with an empty list)."""
    with runtime.sessions() as session:
        return known_key(store_keys(session), key)


def configured_key(config: Config, key: str) -> str:
    """`company_key` for a command that opens no runtime: the store's keys, read once."""
    engine = db.existing_engine(config.database_url)
    try:
        db.ensure_current(engine)
        with db.make_sessions(engine)() as session:
            keys = store_keys(session)
    finally:
        engine.dispose()
    return known_key(keys, key)


def known_key(keys: Sequence[str], key: str) -> str:
    """`key` when it is one of `keys`, else an error naming it and the keys there are.

    Keys are lower case (the store holds no other) and compared exactly everywhere, so a
    key spelled in another case is refused with the key meant.
    """
    if key in keys:
        return key
    lowered = key.strip().lower()
    if lowered != key and lowered in keys:
        raise ConfigError(
            f"no company {one_line(key)!r}: company keys are lower case; did you mean {lowered!r}?"
        )
    known = ", ".join(keys) or "none; import them with `edrtrial companies import-config`"
    raise ConfigError(f"no company {one_line(key)!r} in the store (companies: {known})")


def deliver(runtime: Runtime, *, always: bool = True) -> None:
    """Send the outbox now and say how it went (unless `always` is off and nothing went)."""
    said_delivery(jobs.deliver_outbox(runtime), always=always)


def said_delivery(stats: DeliveryStats, *, always: bool = True) -> None:
    """How the outbox's sending went (unless `always` is off and nothing went)."""
    if always or stats.sent or stats.retried or stats.failed:
        console.print(f"mail: {stats.sent} sent, {stats.retried} to retry, {stats.failed} failed")
