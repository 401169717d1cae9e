"""Signing in to the console and the protections every request gets: the session cookie's
flags, the CSRF token on every POST, other sites' POSTs, the security headers, the limit on
guessing, sessions that end when the account changes, and the audit of each refusal."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from starlette.routing import Route

from edrtrial.access import accounts
from edrtrial.config import WebConfig
from edrtrial.db import transaction
from edrtrial.models import AuditEvent, LoginAttempt
from edrtrial.web.app import routes
from edrtrial.web.security import safe_next

from web_support import Console, csrf_of, start_console


@pytest.fixture
def console(tmp_path: Path, database_url: str, now) -> Iterator[Console]:
    with start_console(tmp_path, database_url) as running:
        yield running


def audit_events(console: Console, action: str) -> list[AuditEvent]:
    with console.runtime.sessions() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def test_signing_in_opens_the_console_and_signing_out_closes_it(console: Console) -> None:
    password = console.add_user("sato", ["operator"], display_name="佐藤 一郎")
    client = console.client()
    assert client.get("/").headers["location"] == "/login?next=%2F"
    page = client.get("/login")
    assert page.status_code == 200
    answer = client.post(
        "/login",
        data={
            "csrf": csrf_of(page.text),
            "username": "Sato",
            "password": password,
            "next": "/desk",
        },
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/desk"
    home = client.get("/", follow_redirects=True)
    assert "佐藤 一郎" in home.text
    [signed] = audit_events(console, "users.sign-in")
    assert signed.actor == "web:sato" and signed.detail["method"] == "password"
    token = csrf_of(home.text)
    assert client.post("/logout", data={"csrf": token}).status_code == 303
    assert client.get("/").headers["location"].startswith("/login")  # signed out


def test_a_wrong_password_and_an_unknown_account_read_the_same(console: Console) -> None:
    console.add_user("sato", ["operator"], password="correct horse battery")
    client = console.client()
    token = csrf_of(client.get("/login").text)
    wrong = client.post("/login", data={"csrf": token, "username": "sato", "password": "nope"})
    unknown = client.post("/login", data={"csrf": token, "username": "nobody", "password": "nope"})
    assert wrong.status_code == unknown.status_code == 401
    message = "The username or password is wrong"
    assert csrf_of(wrong.text) and ("ユーザー名またはパスワードが正しくない" in wrong.text)
    assert wrong.text.count("正しくない") == unknown.text.count("正しくない") == 1
    assert message not in wrong.text  # Japanese by default


def test_guessing_is_cut_off_per_account_even_with_the_right_password(console: Console) -> None:
    password = console.add_user("sato", ["operator"])
    client = console.client()
    token = csrf_of(client.get("/login").text)
    for _ in range(5):
        tried = client.post("/login", data={"csrf": token, "username": "sato", "password": "guess"})
        assert tried.status_code == 401
    late = client.post("/login", data={"csrf": token, "username": "sato", "password": password})
    assert late.status_code == 401, "the sixth try within the window is refused"
    with console.runtime.sessions() as session:
        tries = session.scalars(select(LoginAttempt).where(LoginAttempt.username == "sato"))
        assert [t.succeeded for t in tries] == [False] * 6


def test_the_window_passes_and_the_account_opens_again(console: Console) -> None:
    password = console.add_user("sato", ["operator"])
    limits = accounts.Limits(per_account=2, per_address=50, window=timedelta(minutes=15))
    start = console.runtime.clock()
    with transaction(console.runtime.sessions) as session:
        for _ in range(2):
            accounts.sign_in(session, "sato", "x", address="10.0.0.1", at=start, limits=limits)
        assert (
            accounts.sign_in(session, "sato", password, address="10.0.0.1", at=start, limits=limits)
            is None
        )
        later = start + timedelta(minutes=16)
        assert (
            accounts.sign_in(session, "sato", password, address="10.0.0.1", at=later, limits=limits)
            is not None
        )


def test_the_session_cookie_is_httponly_and_lax_and_secure_behind_tls(console: Console) -> None:
    cookie = console.client().get("/login").headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    assert "secure" not in cookie  # plain HTTP on this machine only
    behind = WebConfig(host="0.0.0.0", public_url="https://console.example.jp")
    assert behind.secure_cookies


def test_the_console_refuses_plain_http_outside_this_machine() -> None:
    with pytest.raises(ValueError, match="put it behind TLS"):
        WebConfig(host="0.0.0.0")
    with pytest.raises(ValueError, match="plain http:// is for this machine only"):
        WebConfig(public_url="http://console.example.jp")


def test_every_page_carries_a_csp_without_inline_script(console: Console) -> None:
    headers = console.client().get("/login").headers
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["cache-control"] == "no-store"


def test_a_post_without_the_csrf_token_is_refused_and_audited(console: Console) -> None:
    password = console.add_user("sato", ["operator"])
    client = console.signed_in("sato", password)
    refused = client.http.post("/logout", data={})
    assert refused.status_code == 403
    wrong = client.http.post("/logout", data={"csrf": "x" * 43})
    assert wrong.status_code == 403
    events = audit_events(console, "web.refused")
    assert [e.detail["why"] for e in events] == ["missing or wrong CSRF token"] * 2
    assert {e.actor for e in events} == {"web:sato"}
    assert client.get("/").headers["location"] == "/desk"  # still signed in


def test_a_post_from_another_site_is_refused(console: Console) -> None:
    password = console.add_user("sato", ["operator"])
    client = console.signed_in("sato", password)
    forged = client.post("/logout", headers={"origin": "https://evil.example"})
    assert forged.status_code == 403
    assert audit_events(console, "web.refused")[0].detail["why"] == "cross-site request"


def test_a_new_password_or_disabling_ends_the_open_sessions(console: Console) -> None:
    password = console.add_user("sato", ["operator"])
    first = console.signed_in("sato", password)
    with transaction(console.runtime.sessions) as session:
        accounts.set_password(
            session,
            "sato",
            "another long password",
            actor="cli:admin",
            at=console.runtime.clock(),
        )
    assert first.get("/").headers["location"].startswith("/login")
    second = console.signed_in("sato", "another long password")
    with transaction(console.runtime.sessions) as session:
        accounts.set_disabled(session, "sato", True, actor="cli:admin", at=console.runtime.clock())
    assert second.get("/").headers["location"].startswith("/login")
    client = console.client()
    token = csrf_of(client.get("/login").text)
    refused = client.post(
        "/login",
        data={"csrf": token, "username": "sato", "password": "another long password"},
    )
    assert refused.status_code == 401


def test_every_post_route_checks_the_csrf_token() -> None:
    posts = [
        route for route in routes() if isinstance(route, Route) and "POST" in (route.methods or ())
    ]
    assert posts, "the console has forms"
    unchecked = [r.path for r in posts if not getattr(r.endpoint, "csrf_checked", False)]
    assert unchecked == []


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("/desk?state=new", "/desk?state=new"),
        ("//evil.example/x", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("", "/"),
    ],
)
def test_after_signing_in_only_a_local_page_is_next(given: str, kept: str) -> None:
    assert safe_next(given) == kept


def test_signing_out_ends_the_session_a_copied_cookie_included(console: Console) -> None:
    password = console.add_user("sato", ["operator"])
    client = console.signed_in("sato", password)
    copied = console.client()
    copied.cookies.update(client.http.cookies)
    assert copied.get("/").headers["location"] == "/desk"
    assert client.post("/logout").status_code == 303
    assert copied.get("/").headers["location"].startswith("/login")
    [out] = audit_events(console, "users.sign-out")
    assert out.actor == "web:sato"


def test_a_form_too_large_is_refused_before_it_is_read(console: Console) -> None:
    client = console.client()
    token = csrf_of(client.get("/login").text)
    big = client.post("/login", data={"csrf": token, "username": "x", "password": "y" * 300_000})
    assert big.status_code == 413
    files = client.post("/login", data={"csrf": token}, files={"f": ("a.bin", b"x" * 10)})
    assert files.status_code in (400, 403)  # no file is taken on a plain form


def test_behind_a_trusted_proxy_a_guesser_locks_out_only_their_own_address(
    tmp_path: Path, database_url: str, now
) -> None:
    from web_support import console_settings

    data = console_settings(database_url, tmp_path)
    data["web"]["trusted_proxies"] = ["127.0.0.1"]
    data["web"]["login_failures_per_address"] = 3
    with start_console(tmp_path, database_url, data=data) as proxied:
        password = proxied.add_user("sato", ["operator"])
        client = proxied.client()
        token = csrf_of(client.get("/login").text)
        for n in range(3):
            client.post(
                "/login",
                data={"csrf": token, "username": f"guess{n}", "password": "x"},
                headers={"x-forwarded-for": "203.0.113.9"},
            )
        fine = client.post(
            "/login",
            data={"csrf": token, "username": "sato", "password": password},
            headers={"x-forwarded-for": "10.1.2.3, 198.51.100.7"},
        )
        assert fine.status_code == 303, "another address behind the proxy still signs in"
        with proxied.runtime.sessions() as session:
            seen = set(session.scalars(select(LoginAttempt.address)))
        assert seen == {"203.0.113.9", "198.51.100.7"}


def test_entra_sign_in_is_for_the_console_s_own_tenant_only() -> None:
    from edrtrial.config import EntraConfig

    for tenant in ("common", "organizations", "consumers", "contoso.onmicrosoft.com"):
        with pytest.raises(ValueError, match="tenant_id"):
            EntraConfig(
                tenant_id=tenant, client_id="x", client_secret="env:X", roles={"A": "admin"}
            )
