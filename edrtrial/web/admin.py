"""The administrator's pages: people and roles, playbooks, the audit log, the status.

Each page asks for its own permission (`users.admin`, `playbooks.admin`, `audit.read`,
`status.read`), so a role that gets one of them gets that page only. Every change is the
call `edrtrial users` makes, audited with the administrator as actor; a playbook tried on
an uploaded file of alerts decides without acting, as `edrtrial playbooks test` does.
"""

from __future__ import annotations

import json
import re
import secrets
from datetime import date
from typing import Any
from urllib.parse import quote, urlencode

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from edrtrial.access import administration
from edrtrial.access.accounts import MIN_PASSWORD, Person
from edrtrial.access.audit_log import AuditFilter, actions_seen, audit_page, audit_rows
from edrtrial.access.roles import Permission, Role
from edrtrial.connectors import connector_class
from edrtrial.db import transaction
from edrtrial.desk.calendar import BusinessCalendar
from edrtrial.desk.playbook_trial import (
    Tried,
    check_playbooks,
    configured_files,
    decide,
    payload_cases,
    read_alert_file,
)
from edrtrial.errors import AccountError, EdrTrialError
from edrtrial.playbooks.explain import summary
from edrtrial.reports.csvout import excel_csv
from edrtrial.service import ownership
from edrtrial.service.runtime import Runtime
from edrtrial.service.status import as_seen_by, read_status
from edrtrial.timeutil import to_jst
from edrtrial.untrusted import one_line, visible
from edrtrial.web.i18n import N_, _
from edrtrial.web.keys import forget_sample_password
from edrtrial.web.security import (
    SignInNeeded,
    action,
    begin_session,
    flash,
    need,
    signed_in,
)
from edrtrial.web.templating import render

MAX_UPLOAD = 2 * 1024 * 1024
"""The largest alert file the playbook page takes (a page of Graph alerts is far smaller)."""

ROLE_LABELS = {
    Role.OPERATOR.value: N_("operator"),
    Role.SECRETARIAT.value: N_("secretariat"),
    Role.ADMIN.value: N_("admin"),
    Role.VIEWER.value: N_("viewer"),
}

# The reasons `accounts` and `administration` give, for the page in the person's language.
REASONS = (
    N_("the console must keep at least one enabled administrator"),
    N_("you cannot take your own admin role away"),
    N_("you cannot disable your own account"),
    N_("give at least one role"),
)


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


# Refusals of `accounts` that carry a value, as (their English, the message to show).
PATTERNS = (
    (
        re.compile(r"^a password needs at least (\d+) characters$"),
        N_("a password needs at least %(n)s characters"),
    ),
    (
        re.compile(r"^a password has at most (\d+) characters$"),
        N_("a password has at most %(n)s characters"),
    ),
    (re.compile(r"^console user '(.+)' already exists$"), N_("%(n)s already exists")),
    (
        re.compile(r"^username (.+): use 1-64 letters"),
        N_("%(n)s: a username holds 1 to 64 letters, digits and . _ @ -, from a letter or digit"),
    ),
)


def _why(err: AccountError) -> str:
    """An account's refusal in the person's language where it is one of ours."""
    text = str(err)
    for pattern, message in PATTERNS:
        if found := pattern.match(text):
            return _(message, n=found.group(1))
    return _(text)


# -- the admin's home ------------------------------------------------------------------------


async def admin_home(request: Request) -> Response:
    """Links to the administrator's pages this person may use."""
    who = signed_in(request)
    if who is None:
        raise SignInNeeded
    pages = [
        (Permission.USERS_ADMIN, "/admin/users", N_("Users and roles")),
        (Permission.PLAYBOOKS_ADMIN, "/admin/playbooks", N_("Playbooks")),
        (Permission.AUDIT_READ, "/admin/audit", N_("Audit log")),
        (Permission.STATUS_READ, "/admin/status", N_("Service status")),
    ]
    links = [(href, label) for permission, href, label in pages if who.may(permission)]
    if not links:
        need(request, Permission.USERS_ADMIN)  # answers 403
    return render(request, "admin_home.html.j2", section="admin", links=links)


# -- users and roles -------------------------------------------------------------------------


def _users_context(request: Request) -> dict[str, Any]:
    with _runtime(request).sessions() as session:
        rows = administration.account_rows(session)
        cohorts = administration.cohort_choices(session)
    return {
        "section": "admin",
        "rows": rows,
        "cohorts": cohorts,
        "roles": list(ROLE_LABELS.items()),
        "role_labels": ROLE_LABELS,
        "min_password": MIN_PASSWORD,
    }


async def users_page(request: Request) -> Response:
    """Every account, and the form to add a local one."""
    need(request, Permission.USERS_ADMIN)
    return render(request, "admin_users.html.j2", error="", entered={}, **_users_context(request))


def _new_password(form: Any) -> tuple[str, bool]:
    """The password the form gives (typed twice) or a generated one; whether generated."""
    if form.get("generate"):
        return secrets.token_urlsafe(15), True
    password, again = str(form.get("password", "")), str(form.get("password2", ""))
    if password != again:
        raise AccountError(_("the two passwords are not the same"))
    return password, False


@action(Permission.USERS_ADMIN)
async def add_user(request: Request) -> Response:
    """Add a local account; a generated password is shown on the next page, once."""
    who = need(request, Permission.USERS_ADMIN)
    form = request.state.form
    entered: dict[str, Any] = {
        "username": str(form.get("username", "")),
        "display_name": str(form.get("display_name", "")),
        "roles": [str(r) for r in form.getlist("role")],
        "cohorts": [str(c) for c in form.getlist("cohort")],
    }
    runtime = _runtime(request)
    try:
        password, generated = _new_password(form)
        with transaction(runtime.sessions) as session:
            user = administration.add_account(
                session,
                entered["username"],
                password,
                entered["roles"],
                cohorts=entered["cohorts"],
                display_name=entered["display_name"],
                by=who,
                at=runtime.clock(),
            )
            name = user.username
    except AccountError as err:
        return render(
            request,
            "admin_users.html.j2",
            status_code=400,
            error=_("Not added: %(why)s", why=_why(err)),
            entered=entered,
            **_users_context(request),
        )
    if generated:
        return render(
            request,
            "admin_password_once.html.j2",
            section="admin",
            username=name,
            password=password,
        )
    flash(request, _("%(name)s was added.", name=name), "ok")
    return RedirectResponse(f"/admin/users/{quote(name)}", status_code=303)


async def user_page(request: Request) -> Response:
    """One account: its roles and cohorts, its password, disable or enable it."""
    who = need(request, Permission.USERS_ADMIN)
    with _runtime(request).sessions() as session:
        row = administration.account_row(session, request.path_params["username"])
        cohorts = administration.cohort_choices(session)
    if row is None:
        return render(request, "not_found.html.j2", status_code=404)
    return render(
        request,
        "admin_user.html.j2",
        section="admin",
        row=row,
        cohorts=cohorts,
        roles=list(ROLE_LABELS.items()),
        myself=row.username == who.username,
        min_password=MIN_PASSWORD,
    )


def _password_once(request: Request, username: str, password: str) -> Response:
    """The page that shows a generated password, the only time it is shown."""
    return render(
        request,
        "admin_password_once.html.j2",
        section="admin",
        username=username,
        password=password,
    )


def _back_to(username: str) -> RedirectResponse:
    return RedirectResponse(f"/admin/users/{quote(username)}", status_code=303)


@action(Permission.USERS_ADMIN)
async def change_roles(request: Request) -> Response:
    """New roles and cohorts (none ticked: every cohort); the person's sessions end."""
    who = need(request, Permission.USERS_ADMIN)
    username, form, runtime = request.path_params["username"], request.state.form, _runtime(request)
    try:
        with transaction(runtime.sessions) as session:
            user = administration.change_roles(
                session,
                username,
                [str(r) for r in form.getlist("role")],
                [str(c) for c in form.getlist("cohort")],
                by=who,
                at=runtime.clock(),
            )
            if user.id == who.id:  # their own change: the session goes on with it
                begin_session(request, user)
    except AccountError as err:
        flash(request, _("Not changed: %(why)s", why=_why(err)), "error")
    else:
        flash(request, _("Roles and cohorts saved."), "ok")
    return _back_to(username)


@action(Permission.USERS_ADMIN)
async def reset_password(request: Request) -> Response:
    """A new password (typed twice, or generated and shown once); the sessions end."""
    who = need(request, Permission.USERS_ADMIN)
    username, form, runtime = request.path_params["username"], request.state.form, _runtime(request)
    try:
        password, generated = _new_password(form)
        with transaction(runtime.sessions) as session:
            user = administration.reset_password(
                session, username, password, by=who, at=runtime.clock()
            )
            name = user.username
            if user.id == who.id:  # their own password: this session goes on
                begin_session(request, user)
    except AccountError as err:
        flash(request, _("Not changed: %(why)s", why=_why(err)), "error")
        return _back_to(username)
    forget_sample_password(runtime.config, name)
    if generated:
        return render(
            request,
            "admin_password_once.html.j2",
            section="admin",
            username=name,
            password=password,
        )
    flash(request, _("The password of %(name)s was changed.", name=name), "ok")
    return _back_to(name)


def _switch(disabled: bool) -> Any:
    @action(Permission.USERS_ADMIN)
    async def switch(request: Request) -> Response:
        who = need(request, Permission.USERS_ADMIN)
        username, runtime = request.path_params["username"], _runtime(request)
        try:
            with transaction(runtime.sessions) as session:
                administration.switch_account(
                    session, username, disabled, by=who, at=runtime.clock()
                )
        except AccountError as err:
            flash(request, _("Not changed: %(why)s", why=_why(err)), "error")
        else:
            text = _("The account is disabled.") if disabled else _("The account is enabled.")
            flash(request, text, "ok")
        return _back_to(username)

    switch.__doc__ = "Disable the account." if disabled else "Enable the account again."
    return switch


# -- playbooks -------------------------------------------------------------------------------


def _playbooks_context(request: Request) -> dict[str, Any]:
    runtime = _runtime(request)
    config = runtime.config
    channels = [c.name for c in config.settings.desk.escalation_channels()]
    checked = check_playbooks(configured_files(config), channels)
    in_force = runtime.playbook
    companies = [t.company_key for t in runtime.tenants()]
    return {
        "section": "admin",
        "checked": checked,
        "rules": in_force.rules,
        "companies": companies,
        "max_mb": MAX_UPLOAD // (1024 * 1024),
    }


async def playbooks_page(request: Request) -> Response:
    """The playbooks in force (their files and rules, checked) and the form to try them."""
    need(request, Permission.PLAYBOOKS_ADMIN)
    return render(
        request, "admin_playbooks.html.j2", tried=None, error="", **_playbooks_context(request)
    )


def _tried_view(tried: list[Tried]) -> list[dict[str, Any]]:
    shown = []
    for one in tried:
        case, decision = one.case, one.decision
        shown.append(
            {
                "label": case.label,
                "title": case.title,
                "severity": case.severity,
                "company": case.company,
                "problem": case.problem,
                "decision": decision,
                "summary": summary(decision) if decision is not None else "",
                "explain": visible(decision.explain()) if decision is not None else "",
            }
        )
    return shown


@action(Permission.PLAYBOOKS_ADMIN, max_bytes=MAX_UPLOAD + 64 * 1024)
async def try_playbooks(request: Request) -> Response:
    """Decide the alerts of an uploaded file with the playbooks in force, acting on nothing."""
    need(request, Permission.PLAYBOOKS_ADMIN)
    form, runtime = request.state.form, _runtime(request)
    upload = form.get("alerts")
    company = one_line(str(form.get("company", "") or "unknown"))[:64]
    connector_name = str(form.get("connector", "defender"))
    error = ""
    tried: list[dict[str, Any]] | None = None
    if not isinstance(upload, UploadFile) or not upload.filename:
        error = _("Choose a file of alerts to try.")
    else:
        data = await upload.read(MAX_UPLOAD + 1)
        name = one_line(upload.filename)[:100]
        if len(data) > MAX_UPLOAD:
            error = _(
                "%(name)s is larger than %(mb)s MB: try a smaller file.",
                name=name,
                mb=MAX_UPLOAD // (1024 * 1024),
            )
        else:
            try:
                connector = connector_class(connector_name)
                calendar = BusinessCalendar.from_config(runtime.config.settings.calendar)
                cases = payload_cases(
                    read_alert_file(data, name), name, connector, company, calendar
                )
                if not cases:
                    error = _("%(name)s holds no alerts.", name=name)
                else:
                    tried = _tried_view(decide(cases, runtime.playbook))
            except (EdrTrialError, ValueError) as err:
                error = _("Not tried: %(why)s", why=one_line(str(err))[:500])
    return render(
        request,
        "admin_playbooks.html.j2",
        status_code=400 if error else 200,
        tried=tried,
        error=error,
        **_playbooks_context(request),
    )


# -- the audit log ---------------------------------------------------------------------------


def _day(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def _audit_filter(request: Request) -> AuditFilter:
    q = request.query_params
    return AuditFilter(
        actor=q.get("actor", "")[:200],
        action=q.get("action", "")[:64],
        company=q.get("company", "")[:64],
        target=q.get("target", "")[:200],
        since=_day(q.get("from")),
        until=_day(q.get("to")),
    )


def _filter_query(wanted: AuditFilter) -> dict[str, str]:
    return {
        key: value
        for key, value in (
            ("actor", wanted.actor),
            ("action", wanted.action),
            ("company", wanted.company),
            ("target", wanted.target),
            ("from", wanted.since.isoformat() if wanted.since else ""),
            ("to", wanted.until.isoformat() if wanted.until else ""),
        )
        if value
    }


def _pretty(detail: dict[str, Any]) -> str:
    return json.dumps(detail, ensure_ascii=False, indent=2, sort_keys=True, default=str)


async def audit_page_view(request: Request) -> Response:
    """The audit log, newest first, filtered, a page at a time."""
    who = need(request, Permission.AUDIT_READ)
    wanted = _audit_filter(request)
    try:
        page_no = int(request.query_params.get("page", "1"))
    except ValueError:
        page_no = 1
    with _runtime(request).sessions() as session:
        found = audit_page(session, who.scope, wanted, page_no)
        actions = actions_seen(session, who.scope)
    query = _filter_query(wanted)
    return render(
        request,
        "admin_audit.html.j2",
        section="admin",
        found=found,
        rows=[(row, _pretty(row.detail)) for row in found.rows],
        wanted=wanted,
        actions=actions,
        csv_url="/admin/audit.csv" + ("?" + urlencode(query) if query else ""),
        page_url=lambda n: "/admin/audit?" + urlencode({**query, "page": n}),
    )


async def audit_csv(request: Request) -> Response:
    """The filtered log as a CSV file for Excel (UTF-8 with a BOM)."""
    who: Person = need(request, Permission.AUDIT_READ)
    wanted = _audit_filter(request)
    with _runtime(request).sessions() as session:
        rows = audit_rows(session, who.scope, wanted)
    header = [
        _("Number"),
        _("At (JST)"),
        _("Actor"),
        _("On behalf of"),
        _("Action"),
        _("Company"),
        _("Target"),
        _("Detail"),
    ]
    body = excel_csv(
        header,
        (
            (
                r.id,
                f"{to_jst(r.at):%Y-%m-%d %H:%M:%S}",
                r.actor,
                r.on_behalf_of,
                r.action,
                r.company_key,
                r.target,
                json.dumps(r.detail, ensure_ascii=False, sort_keys=True, default=str),
            )
            for r in rows
        ),
    )
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": 'attachment; filename="audit-log.csv"'},
    )


# -- the service's status --------------------------------------------------------------------


async def status_page(request: Request) -> Response:
    """What `edrtrial status` shows, as a page (limited to the person's cohorts)."""
    who = need(request, Permission.STATUS_READ)
    runtime = _runtime(request)
    held = ownership.is_held(runtime.engine)
    with runtime.sessions() as session:
        found = read_status(session, runtime.config.settings, runtime.clock(), held=held)
        found = as_seen_by(session, found, who.scope, runtime.config.settings)
    return render(request, "admin_status.html.j2", section="admin", status=found)


ROUTES = [
    Route("/admin", admin_home, methods=["GET"], name="admin"),
    Route("/admin/users", users_page, methods=["GET"], name="admin_users"),
    Route("/admin/users", add_user, methods=["POST"], name="admin_users_add"),
    Route("/admin/users/{username}", user_page, methods=["GET"], name="admin_user"),
    Route("/admin/users/{username}/roles", change_roles, methods=["POST"], name="admin_roles"),
    Route(
        "/admin/users/{username}/password",
        reset_password,
        methods=["POST"],
        name="admin_password",
    ),
    Route("/admin/users/{username}/disable", _switch(True), methods=["POST"], name="admin_off"),
    Route("/admin/users/{username}/enable", _switch(False), methods=["POST"], name="admin_on"),
    Route("/admin/playbooks", playbooks_page, methods=["GET"], name="admin_playbooks"),
    Route("/admin/playbooks/try", try_playbooks, methods=["POST"], name="admin_playbooks_try"),
    Route("/admin/audit", audit_page_view, methods=["GET"], name="admin_audit"),
    Route("/admin/audit.csv", audit_csv, methods=["GET"], name="admin_audit_csv"),
    Route("/admin/status", status_page, methods=["GET"], name="admin_status"),
]
