"""The console's roles and what each may do: one table, read by every page and action.

A page or an action names the permission it needs; nothing asks for a role by name, so a
new role is one row here.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Role(StrEnum):
    """A console role. A person holds one or more."""

    OPERATOR = "operator"  # the incident desk: tickets, device actions
    SECRETARIAT = "secretariat"  # applications, companies, cohorts, reports
    ADMIN = "admin"  # everything, and the people, playbooks and audit log
    VIEWER = "viewer"  # reads what the desk and the secretariat read, changes nothing


class Permission(StrEnum):
    """One thing a person may see or do in the console."""

    DESK_READ = "desk.read"  # the queue and ticket pages
    DESK_ACT = "desk.act"  # acknowledge, assign, note, notify, resolve, reopen, close
    DEVICE_ACT = "device.act"  # isolate and release a device
    PROGRAMME_READ = "programme.read"  # applications, companies, cohorts, calendar
    PROGRAMME_ACT = "programme.act"  # the journey's steps: call, pre-diagnosis, admit, ...
    REPORTS_READ = "reports.read"  # the reports archive and its files, the CSV downloads
    REPORTS_SEND = "reports.send"  # re-send an archived report
    STATUS_READ = "status.read"  # the service's status
    USERS_ADMIN = "users.admin"  # people, roles and cohorts
    PLAYBOOKS_ADMIN = "playbooks.admin"  # check and dry-run playbooks
    AUDIT_READ = "audit.read"  # the audit log


_READ = frozenset(
    {
        Permission.DESK_READ,
        Permission.PROGRAMME_READ,
        Permission.REPORTS_READ,
        Permission.STATUS_READ,
    }
)

PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.OPERATOR: _READ | {Permission.DESK_ACT, Permission.DEVICE_ACT},
    Role.SECRETARIAT: _READ | {Permission.PROGRAMME_ACT, Permission.REPORTS_SEND},
    Role.ADMIN: frozenset(Permission),
    Role.VIEWER: _READ,
}
"""What each role may do. The desk reads the programme (a company's contact, its trial)
and the secretariat reads the desk (what happened to its companies); only the operator
(and admin) acts on tickets and devices."""


def roles_of(names: Iterable[str]) -> frozenset[Role]:
    """The roles among `names` (a stored list); an unknown name gives nothing."""
    known = {role.value for role in Role}
    return frozenset(Role(name) for name in names if name in known)


def permissions_of(names: Iterable[str]) -> frozenset[Permission]:
    """Everything the holder of these roles may do."""
    found: set[Permission] = set()
    for role in roles_of(names):
        found |= PERMISSIONS[role]
    return frozenset(found)


def parse_roles(names: Iterable[str]) -> list[str]:
    """Role names as typed (`--role operator`), checked and in the table's order; a
    ValueError names an unknown one and the roles there are."""
    wanted = {name.strip().lower() for name in names if name.strip()}
    unknown = sorted(wanted - {role.value for role in Role})
    if unknown:
        known = ", ".join(role.value for role in Role)
        raise ValueError(f"no role {unknown[0]!r} (roles: {known})")
    return [role.value for role in Role if role.value in wanted]
