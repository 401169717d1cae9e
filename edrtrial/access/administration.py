"""An administrator's changes to the console's people, with the one rule `accounts` cannot
know: the person changing the accounts must not lock the console, or themselves, out.

An administrator cannot take their own admin role away nor disable their own account, and
no change may leave the console without an enabled administrator (the only way back would
be the command line on the server). Each change is the same `accounts` call the CLI
makes, audited with the administrator as actor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from edrtrial.access import accounts
from edrtrial.access.accounts import Person
from edrtrial.access.roles import Role, parse_roles
from edrtrial.errors import AccountError
from edrtrial.models import Cohort, ConsoleUser


@dataclass(frozen=True, slots=True)
class AccountRow:
    """An account as the administrator's list shows it."""

    username: str
    display_name: str
    roles: tuple[str, ...]
    cohorts: tuple[str, ...]
    entra: bool
    disabled_at: datetime | None
    last_sign_in_at: datetime | None
    created_at: datetime


def _row(user: ConsoleUser) -> AccountRow:
    return AccountRow(
        username=user.username,
        display_name=user.display_name,
        roles=tuple(user.roles),
        cohorts=tuple(c.key for c in user.cohorts),
        entra=user.entra_object_id is not None,
        disabled_at=user.disabled_at,
        last_sign_in_at=user.last_sign_in_at,
        created_at=user.created_at,
    )


def account_rows(session: Session) -> list[AccountRow]:
    """Every account, by username."""
    return [_row(user) for user in accounts.listed(session)]


def account_row(session: Session, username: str) -> AccountRow | None:
    """One account, or None when there is none of that name."""
    user = accounts.find(session, username)
    return None if user is None else _row(user)


def cohort_choices(session: Session) -> list[tuple[str, str]]:
    """Every cohort as (key, name), to limit a person to some of them."""
    return [(c.key, c.name) for c in session.scalars(select(Cohort).order_by(Cohort.key))]


def _enabled_admins(session: Session) -> set[str]:
    users = session.scalars(select(ConsoleUser).where(ConsoleUser.disabled_at.is_(None)))
    return {u.username for u in users if Role.ADMIN.value in u.roles}


def _keeps_an_admin(session: Session, username: str) -> None:
    """Refuse a change that would leave no enabled administrator."""
    if not _enabled_admins(session) - {username}:
        raise AccountError("the console must keep at least one enabled administrator")


def change_roles(
    session: Session,
    username: str,
    roles: Sequence[str],
    cohorts: Sequence[str],
    *,
    by: Person,
    at: datetime,
) -> ConsoleUser:
    """Give the account these roles and cohorts (none: every cohort), as `by` decided."""
    user = accounts.get(session, username)
    try:
        keeps_admin = Role.ADMIN.value in parse_roles(roles)
    except ValueError as err:
        raise AccountError(str(err)) from None
    if not keeps_admin and Role.ADMIN.value in user.roles:
        if user.username == by.username:
            raise AccountError("you cannot take your own admin role away")
        if user.disabled_at is None:
            _keeps_an_admin(session, user.username)
    return accounts.set_roles(session, username, roles, actor=by.actor, at=at, cohorts=cohorts)


def switch_account(
    session: Session, username: str, disabled: bool, *, by: Person, at: datetime
) -> ConsoleUser:
    """Disable the account (its sessions end) or enable it again, as `by` decided."""
    user = accounts.get(session, username)
    if disabled:
        if user.username == by.username:
            raise AccountError("you cannot disable your own account")
        if Role.ADMIN.value in user.roles:
            _keeps_an_admin(session, user.username)
    return accounts.set_disabled(session, username, disabled, actor=by.actor, at=at)


def reset_password(
    session: Session, username: str, password: str, *, by: Person, at: datetime
) -> ConsoleUser:
    """A new password for a local account; an account that signs in with Microsoft has none."""
    user = accounts.get(session, username)
    if user.entra_object_id is not None:
        raise AccountError(f"{user.username} signs in with Microsoft: it has no password here")
    return accounts.set_password(session, username, password, actor=by.actor, at=at)


def add_account(
    session: Session,
    username: str,
    password: str,
    roles: Sequence[str],
    *,
    cohorts: Sequence[str],
    display_name: str,
    by: Person,
    at: datetime,
) -> ConsoleUser:
    """A local account added by `by` (the same call as `edrtrial users add`)."""
    return accounts.add(
        session,
        username,
        password,
        roles,
        actor=by.actor,
        at=at,
        display_name=display_name,
        cohorts=cohorts,
    )
