"""The console's people: local accounts (argon2), Entra accounts, and their sign-ins.

Usernames are compared as typed through NFKC and lower case, so `Sato`, `ｓａｔｏ` and
`sato` are one account. Passwords are hashed with argon2id (argon2-cffi's defaults, the
hash OWASP recommends first) and re-hashed at sign-in when those defaults grow. A sign-in
is refused, with the same words whatever went wrong, after too many failures for the
account or from the address within the window; a refused try is itself recorded, so a
guesser gains nothing by going on.

Every change to an account is audited with who made it, as `users.*` events.
"""

from __future__ import annotations

import hmac
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.orm import Session

from edrtrial import audit
from edrtrial.access.roles import Permission, Role, parse_roles, permissions_of
from edrtrial.access.scope import Scope
from edrtrial.errors import AccountError, SignInRefused
from edrtrial.models import Cohort, ConsoleUser, LoginAttempt
from edrtrial.untrusted import one_line

_HASHER = PasswordHasher()
# Verified against when the account does not exist, so an unknown name costs as long.
_DUMMY_HASH = _HASHER.hash("edrtrial: no such account")

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,63}$")
MIN_PASSWORD = 12
MAX_PASSWORD = 1024


def fold(username: str) -> str:
    """The stored form of a username: NFKC, trimmed, lower case."""
    return unicodedata.normalize("NFKC", username).strip().lower()


def check_username(username: str) -> str:
    """The username folded, or an AccountError saying what a username may hold."""
    name = fold(username)
    if not USERNAME.fullmatch(name):
        raise AccountError(
            f"username {one_line(username)!r}: use 1-64 letters, digits and . _ @ -, "
            "starting with a letter or digit"
        )
    return name


def check_password(password: str) -> str:
    """The password, or an AccountError: at least 12 characters, not all blank."""
    if len(password) < MIN_PASSWORD or not password.strip():
        raise AccountError(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"a password has at most {MAX_PASSWORD} characters")
    return password


@dataclass(frozen=True, slots=True)
class Person:
    """A signed-in person as a request sees them: no session holds an ORM row."""

    id: int
    username: str
    display_name: str
    roles: tuple[str, ...]
    permissions: frozenset[Permission]
    scope: Scope
    cohort_keys: tuple[str, ...]
    epoch: int
    language: str

    @property
    def actor(self) -> str:
        """The audit log's actor for this person's steps in the console."""
        return f"web:{self.username}"

    def may(self, permission: Permission) -> bool:
        """Whether this person may do `permission`."""
        return permission in self.permissions


def person(user: ConsoleUser) -> Person:
    """The account as a request's `Person`."""
    cohorts = list(user.cohorts)
    scope = Scope.limited_to(c.id for c in cohorts) if cohorts else Scope()
    return Person(
        id=user.id,
        username=user.username,
        display_name=user.display_name or user.username,
        roles=tuple(user.roles),
        permissions=permissions_of(user.roles),
        scope=scope,
        cohort_keys=tuple(c.key for c in cohorts),
        epoch=user.epoch,
        language=user.language,
    )


def find(session: Session, username: str) -> ConsoleUser | None:
    """The account of that name, however typed; None when there is none."""
    return session.scalar(select(ConsoleUser).where(ConsoleUser.username == fold(username)))


def get(session: Session, username: str) -> ConsoleUser:
    """The account of that name, or an AccountError naming it."""
    user = find(session, username)
    if user is None:
        raise AccountError(f"no console user {one_line(username)!r}")
    return user


def cohorts_named(session: Session, keys: Iterable[str]) -> list[Cohort]:
    """The cohorts of these keys, or an AccountError naming one there is not."""
    wanted = [key.strip() for key in keys if key.strip()]
    found = {c.key: c for c in session.scalars(select(Cohort).where(Cohort.key.in_(wanted)))}
    for key in wanted:
        if key not in found:
            known = ", ".join(session.scalars(select(Cohort.key).order_by(Cohort.key))) or "none"
            raise AccountError(f"no cohort {one_line(key)!r} (cohorts: {known})")
    return [found[key] for key in dict.fromkeys(wanted)]


def _roles(names: Sequence[str]) -> list[str]:
    try:
        roles = parse_roles(names)
    except ValueError as err:
        raise AccountError(str(err)) from None
    if not roles:
        raise AccountError("give at least one role")
    return roles


def _check_limit(roles: Sequence[str], cohorts: Sequence[Cohort]) -> None:
    """An administrator sees every cohort: they manage the people, the playbooks and the
    audit log of all of them, and could otherwise lift their own limit."""
    if cohorts and Role.ADMIN.value in roles:
        raise AccountError(
            "an administrator sees every cohort: give the admin role without cohorts"
        )


def _audit(
    session: Session, user: ConsoleUser, action: str, actor: str, at: datetime, **detail: object
) -> None:
    audit.record(
        session,
        at=at,
        actor=actor,
        action=action,
        tenant_id=None,
        target=f"user:{user.username}",
        detail=dict(detail),
    )


def add(
    session: Session,
    username: str,
    password: str,
    roles: Sequence[str],
    *,
    actor: str,
    at: datetime,
    display_name: str = "",
    cohorts: Sequence[str] = (),
) -> ConsoleUser:
    """Make a local account; an AccountError when the name is taken or a value is wrong."""
    name = check_username(username)
    if find(session, name) is not None:
        raise AccountError(f"console user {name!r} already exists")
    user = ConsoleUser(
        username=name,
        display_name=one_line(display_name.strip())[:200],
        password_hash=_HASHER.hash(check_password(password)),
        roles=_roles(roles),
        created_at=at,
        password_changed_at=at,
    )
    user.cohorts = cohorts_named(session, cohorts)
    _check_limit(user.roles, user.cohorts)
    session.add(user)
    session.flush()
    _audit(
        session,
        user,
        "users.add",
        actor,
        at,
        roles=user.roles,
        cohorts=[c.key for c in user.cohorts],
    )
    return user


def set_password(
    session: Session, username: str, password: str, *, actor: str, at: datetime
) -> ConsoleUser:
    """Give the account a new password; its sessions end."""
    user = get(session, username)
    user.password_hash = _HASHER.hash(check_password(password))
    user.password_changed_at = at
    user.epoch += 1
    _audit(session, user, "users.passwd", actor, at)
    return user


def set_disabled(
    session: Session, username: str, disabled: bool, *, actor: str, at: datetime
) -> ConsoleUser:
    """Disable the account (its sessions end at their next request) or enable it again."""
    user = get(session, username)
    if disabled and user.disabled_at is None:
        user.disabled_at = at
        user.epoch += 1
        _audit(session, user, "users.disable", actor, at)
    elif not disabled and user.disabled_at is not None:
        user.disabled_at = None
        _audit(session, user, "users.enable", actor, at)
    return user


def set_roles(
    session: Session,
    username: str,
    roles: Sequence[str],
    *,
    actor: str,
    at: datetime,
    cohorts: Sequence[str] | None = None,
) -> ConsoleUser:
    """Give the account these roles (and, when given, these cohorts; empty: every cohort).
    Its sessions end, so the change holds at once."""
    user = get(session, username)
    before = (list(user.roles), [c.key for c in user.cohorts])
    user.roles = _roles(roles)
    if cohorts is not None:
        user.cohorts = cohorts_named(session, cohorts)
    _check_limit(user.roles, user.cohorts)
    after = (list(user.roles), [c.key for c in user.cohorts])
    if after != before:
        user.epoch += 1
        _audit(
            session,
            user,
            "users.roles",
            actor,
            at,
            roles=after[0],
            cohorts=after[1],
            was_roles=before[0],
            was_cohorts=before[1],
        )
    return user


def listed(session: Session) -> list[ConsoleUser]:
    """Every account, by username."""
    return list(session.scalars(select(ConsoleUser).order_by(ConsoleUser.username)))


def _failures(session: Session, match: ColumnElement[bool], since: datetime) -> int:
    found = session.scalar(
        select(func.count())
        .select_from(LoginAttempt)
        .where(match, LoginAttempt.at >= since, LoginAttempt.succeeded.is_(False))
    )
    return int(found or 0)


@dataclass(frozen=True, slots=True)
class Limits:
    """How many failed sign-ins are allowed within `window`, per account and per address."""

    per_account: int = 5
    per_address: int = 20
    window: timedelta = timedelta(minutes=15)


def sign_in(
    session: Session,
    username: str,
    password: str,
    *,
    address: str,
    at: datetime,
    limits: Limits,
) -> ConsoleUser | None:
    """The account these credentials open, or None: refused, whatever the reason (the
    caller says so in the same words every time, never telling an account exists). The try
    is recorded either way, in the caller's transaction, which must commit a refusal too.

    Checked in this order, each try recorded: the address's and the account's recent
    failures, then the password (an unknown account is verified against a dummy hash, so
    its answer takes as long), then whether the account is enabled. A success is audited
    as `users.sign-in`; failures are counted, not audited one by one.
    """
    name = fold(username)[:64]
    since = at - limits.window
    attempt = LoginAttempt(username=name, address=address[:64], at=at, succeeded=False)
    session.add(attempt)
    limited = (
        _failures(session, LoginAttempt.address == attempt.address, since) >= limits.per_address
        or _failures(session, LoginAttempt.username == name, since) >= limits.per_account
    )
    user = find(session, name) if USERNAME.fullmatch(name) else None
    stored = user.password_hash if user is not None and user.password_hash else _DUMMY_HASH
    try:
        _HASHER.verify(stored, password[:MAX_PASSWORD])
        matched = user is not None and stored is not _DUMMY_HASH
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        matched = False
    if limited or not matched or user is None or user.disabled_at is not None:
        return None
    attempt.succeeded = True
    if _HASHER.check_needs_rehash(stored):
        user.password_hash = _HASHER.hash(password)
    _signed_in(session, user, at, address=attempt.address, method="password")
    return user


def sign_out(session: Session, user_id: int, *, actor: str, at: datetime) -> None:
    """End every session of the account (a signed cookie cannot be taken back, so its
    epoch moves on): a copy of the cookie left on a shared machine opens nothing."""
    user = session.get(ConsoleUser, user_id)
    if user is not None:
        user.epoch += 1
        _audit(session, user, "users.sign-out", actor, at)


def _signed_in(
    session: Session, user: ConsoleUser, at: datetime, *, method: str, address: str = ""
) -> None:
    """A sign-in that opened the console: when, and audited as the person themselves."""
    user.last_sign_in_at = at
    detail = {"address": address, "method": method} if address else {"method": method}
    audit.record(
        session,
        at=at,
        actor=f"web:{user.username}",
        action="users.sign-in",
        tenant_id=None,
        target=f"user:{user.username}",
        detail=detail,
    )


def forget_attempts(session: Session, before: datetime) -> int:
    """Delete sign-in records older than `before` (they only count within the window)."""
    result = session.execute(delete(LoginAttempt).where(LoginAttempt.at < before))
    return int(getattr(result, "rowcount", 0) or 0)


def entra_sign_in(
    session: Session,
    *,
    object_id: str,
    username: str,
    display_name: str,
    roles: Sequence[str],
    at: datetime,
) -> ConsoleUser:
    """The account of an Entra sign-in, made at the first one, its roles those the token
    gives now (a person whose app role was taken away loses it at their next sign-in).

    A local account of the same username is never taken over: the sign-in is refused.
    A disabled account stays disabled.
    """
    user = session.scalar(select(ConsoleUser).where(ConsoleUser.entra_object_id == object_id))
    name = fold(username)[:64] or object_id
    if user is None:
        if (taken := find(session, name)) is not None and taken.entra_object_id != object_id:
            raise SignInRefused(
                f"the console already has a local account {name!r}; an administrator must "
                "remove or rename it before this Microsoft account can sign in"
            )
        user = ConsoleUser(
            username=name,
            entra_object_id=object_id,
            roles=[],
            created_at=at,
            display_name=one_line(display_name)[:200],
        )
        session.add(user)
        session.flush()
        _audit(session, user, "users.add", "entra", at, roles=list(roles), method="entra")
    if user.disabled_at is not None:
        raise SignInRefused("this account is disabled in the console")
    granted = parse_roles(roles)
    if granted != user.roles:
        _audit(session, user, "users.roles", "entra", at, roles=granted, was_roles=user.roles)
        user.roles = granted
        user.epoch += 1
    user.display_name = one_line(display_name)[:200] or user.display_name
    _signed_in(session, user, at, method="entra")
    return user


def same_secret(a: str, b: str) -> bool:
    """Compare two tokens in constant time."""
    return hmac.compare_digest(a.encode(), b.encode())
