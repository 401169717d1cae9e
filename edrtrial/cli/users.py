"""`edrtrial users`: the web console's local accounts, their roles and cohorts."""

from __future__ import annotations

import sys

import click

from edrtrial.access import accounts
from edrtrial.access.roles import Role
from edrtrial.cli.common import (
    ListTable,
    actor,
    console,
    fails_cleanly,
    iso,
    list_options,
    print_json,
    print_list,
    runtime_of,
)
from edrtrial.db import transaction
from edrtrial.errors import AccountError
from edrtrial.timeutil import to_jst
from edrtrial.web.keys import forget_sample_password

ROLE_HELP = "A console role (repeat for several): " + ", ".join(r.value for r in Role) + "."
COHORT_HELP = "Limit the person to this cohort's companies (repeat for several; none: all)."


def _password(from_stdin: bool) -> str:
    """The new password: one line from stdin with --password-stdin, else asked twice
    (never on the command line, where other users and the shell's history see it)."""
    if from_stdin:
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise AccountError("give the password at the terminal, or on stdin with --password-stdin")
    value: str = click.prompt("password", hide_input=True, confirmation_prompt=True)
    return value


@click.group()
def users() -> None:
    """The web console's people: add, passwd, disable, enable, roles, list."""


@users.command("add")
@click.argument("username")
@click.option("--role", "roles", multiple=True, required=True, help=ROLE_HELP)
@click.option("--cohort", "cohorts", multiple=True, help=COHORT_HELP)
@click.option("--name", "display_name", default="", help="The name the console shows.")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@click.pass_context
@fails_cleanly
def add(
    ctx: click.Context,
    username: str,
    roles: tuple[str, ...],
    cohorts: tuple[str, ...],
    display_name: str,
    password_stdin: bool,
) -> None:
    """Add a local account (at least 12 characters of password)."""
    rt = runtime_of(ctx)
    password = _password(password_stdin)
    with transaction(rt.sessions) as session:
        user = accounts.add(
            session,
            username,
            password,
            roles,
            actor=actor(ctx),
            at=rt.clock(),
            display_name=display_name,
            cohorts=cohorts,
        )
        name, held = user.username, ", ".join(user.roles)
    console.print(f"console user {name} added ({held})", highlight=False)


@users.command("passwd")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@click.pass_context
@fails_cleanly
def passwd(ctx: click.Context, username: str, password_stdin: bool) -> None:
    """Set a new password; the person's open sessions end."""
    rt = runtime_of(ctx)
    password = _password(password_stdin)
    with transaction(rt.sessions) as session:
        name = accounts.set_password(
            session, username, password, actor=actor(ctx), at=rt.clock()
        ).username
    console.print(f"password of {name} changed; their sessions have ended", highlight=False)
    if (gone := forget_sample_password(rt.config, name)) is not None:
        console.print(f"{gone} removed: it held the first password", highlight=False)


def _switch(disabled: bool) -> click.Command:
    verb = "disable" if disabled else "enable"

    @click.command(verb)
    @click.argument("username")
    @click.pass_context
    @fails_cleanly
    def command(ctx: click.Context, username: str) -> None:
        rt = runtime_of(ctx)
        with transaction(rt.sessions) as session:
            name = accounts.set_disabled(
                session, username, disabled, actor=actor(ctx), at=rt.clock()
            ).username
        console.print(f"console user {name} {verb}d", highlight=False)

    command.help = (
        "Disable an account: it cannot sign in, and its sessions end."
        if disabled
        else "Enable a disabled account again."
    )
    return command


users.add_command(_switch(True))
users.add_command(_switch(False))


@users.command("roles")
@click.argument("username")
@click.option("--role", "roles", multiple=True, required=True, help=ROLE_HELP)
@click.option("--cohort", "cohorts", multiple=True, help=COHORT_HELP)
@click.option("--all-cohorts", is_flag=True, help="Lift the limit to some cohorts.")
@click.pass_context
@fails_cleanly
def roles(
    ctx: click.Context,
    username: str,
    roles: tuple[str, ...],
    cohorts: tuple[str, ...],
    all_cohorts: bool,
) -> None:
    """Give an account these roles (and cohorts); its sessions end so the change holds."""
    if cohorts and all_cohorts:
        raise AccountError("give --cohort or --all-cohorts, not both")
    rt = runtime_of(ctx)
    limit = [] if all_cohorts else (list(cohorts) if cohorts else None)
    with transaction(rt.sessions) as session:
        user = accounts.set_roles(
            session, username, roles, actor=actor(ctx), at=rt.clock(), cohorts=limit
        )
        line = f"{user.username}: {', '.join(user.roles)}; cohorts: " + (
            ", ".join(c.key for c in user.cohorts) or "all"
        )
    console.print(line, highlight=False)


@users.command("list")
@list_options
@click.pass_context
@fails_cleanly
def list_users(ctx: click.Context, wide: bool, as_json: bool) -> None:
    """Every console account: roles, cohorts, how it signs in, last sign-in."""
    rt = runtime_of(ctx)
    with rt.sessions() as session:
        people = [
            (u, [c.key for c in u.cohorts], "entra" if u.entra_object_id else "password")
            for u in accounts.listed(session)
        ]
    if as_json:
        print_json(
            [
                {
                    "username": u.username,
                    "name": u.display_name,
                    "roles": list(u.roles),
                    "cohorts": cohorts,
                    "sign_in": how,
                    "disabled": u.disabled_at is not None,
                    "last_sign_in_at": iso(u.last_sign_in_at),
                }
                for u, cohorts, how in people
            ]
        )
        return
    table = ListTable(
        "user", "name", "roles", "cohorts", "sign-in", "state", "last sign-in", flex=("name",)
    )
    for u, cohorts, how in people:
        last = u.last_sign_in_at
        table.add_row(
            u.username,
            u.display_name,
            ", ".join(u.roles),
            ", ".join(cohorts) or "all",
            how,
            "disabled" if u.disabled_at is not None else "active",
            f"{to_jst(last):%Y-%m-%d %H:%M}" if last else "never",
        )
    print_list(table, wide=wide)


COMMANDS = (users,)
