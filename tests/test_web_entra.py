"""Signing in with Microsoft Entra: MSAL's auth-code flow against a faked Microsoft (its
OpenID metadata and token endpoint, with pytest-httpx), giving real signed ID tokens. The
token's app roles and groups become console roles; a token with none, another app's token,
a disabled account, a local account of the same name and a forged state are all refused with
a message on the sign-in page."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from pytest_httpx import HTTPXMock
from sqlalchemy import select

from edrtrial.access import accounts
from edrtrial.db import transaction
from edrtrial.models import AuditEvent, ConsoleUser

from web_support import Console, console_settings, start_console

HOST = "https://login.test"
TENANT = "6f1c2d3e-4a5b-4c6d-8e7f-901234567890"
CLIENT_ID = "0d9e8f7a-1b2c-4d3e-9f4a-5b6c7d8e9f01"
SECRET = "entra-client-secret-for-the-console"
ADMINS_GROUP = "a1b2c3d4-0000-4000-8000-00000000cafe"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)

pytestmark = pytest.mark.httpx_mock(should_mock=lambda request: request.url.host == "login.test")


@dataclass
class Microsoft:
    """The faked Entra: what the next token says, and the token requests it was sent."""

    claims: dict[str, Any] = field(default_factory=dict)
    audience: str = CLIENT_ID
    error: str = ""
    forms: list[dict[str, list[str]]] = field(default_factory=list)
    nonce: str = ""
    down: bool = False

    def answer(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if self.down:
            return httpx.Response(503, json={"error": "temporarily_unavailable"})
        if path == f"/{TENANT}/v2.0/.well-known/openid-configuration":
            return httpx.Response(
                200,
                json={
                    "issuer": f"{HOST}/{TENANT}/v2.0",
                    "authorization_endpoint": f"{HOST}/{TENANT}/oauth2/v2.0/authorize",
                    "token_endpoint": f"{HOST}/{TENANT}/oauth2/v2.0/token",
                    "jwks_uri": f"{HOST}/{TENANT}/discovery/v2.0/keys",
                },
            )
        if path == f"/{TENANT}/oauth2/v2.0/token":
            form = parse_qs(request.content.decode())
            self.forms.append(form)
            if form.get("client_secret") != [SECRET] or self.error:
                return httpx.Response(
                    400, json={"error": self.error or "invalid_client", "error_description": "no"}
                )
            return httpx.Response(200, json=self.tokens())
        return httpx.Response(404, json={"error": "not_found"})

    def tokens(self) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": f"{HOST}/{TENANT}/v2.0",
            "aud": self.audience,
            "tid": TENANT,
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "nonce": self.nonce,
            "ver": "2.0",
            "sub": "subject",
            **self.claims,
        }
        id_token = jwt.encode(claims, KEY, algorithm="RS256", headers={"kid": "test-key"})
        return {
            "token_type": "Bearer",
            "scope": "openid profile",
            "expires_in": 3600,
            "access_token": "not-used",
            "id_token": id_token,
        }


@pytest.fixture
def microsoft(httpx_mock: HTTPXMock) -> Microsoft:
    fake = Microsoft()
    httpx_mock.add_callback(fake.answer, is_reusable=True, is_optional=True)
    return fake


@pytest.fixture
def console(
    tmp_path: Path, database_url: str, now, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Console]:
    monkeypatch.setenv("EDRTRIAL_TEST_ENTRA_SECRET", SECRET)
    data = console_settings(database_url, tmp_path)
    data["web"]["entra"] = {
        "tenant_id": TENANT,
        "client_id": CLIENT_ID,
        "client_secret": "env:EDRTRIAL_TEST_ENTRA_SECRET",
        "authority_host": HOST,
        "roles": {"Console.Operator": "operator", ADMINS_GROUP: "admin"},
    }
    with start_console(tmp_path, database_url, data=data) as running:
        yield running


def person(oid: str = "", name: str = "sato@contoso.jp", **more: Any) -> dict[str, Any]:
    return {"oid": oid or str(uuid.uuid4()), "preferred_username": name, "name": "佐藤", **more}


def sign_in(console: Console, microsoft: Microsoft, next_path: str = "/admin/status", **query):
    """Go through the flow as a browser does: start, Microsoft's page (skipped: it answers
    with a code and the state it was given), back to the console."""
    client = console.client()
    started = client.get("/login/entra", params={"next": next_path})
    assert started.status_code == 303
    auth = urlsplit(started.headers["location"])
    assert f"{auth.scheme}://{auth.netloc}{auth.path}" == f"{HOST}/{TENANT}/oauth2/v2.0/authorize"
    asked = {k: v[0] for k, v in parse_qs(auth.query).items()}
    assert asked["client_id"] == CLIENT_ID and asked["response_type"] == "code"
    assert asked["redirect_uri"] == f"{console.base_url}/login/entra/done"
    assert asked["code_challenge_method"] == "S256"
    microsoft.nonce = asked["nonce"]
    back = {"state": asked["state"], **query}
    if "error" not in back:
        back["code"] = "the-code"
    return client, client.get("/login/entra/done", params=back)


def user(console: Console, username: str) -> ConsoleUser | None:
    with console.runtime.sessions() as session:
        found = session.scalar(select(ConsoleUser).where(ConsoleUser.username == username))
        if found is not None:
            session.expunge(found)
        return found


def test_the_sign_in_page_offers_microsoft(console: Console) -> None:
    page = console.client().get("/login?next=/admin")
    assert 'href="/login/entra?next=/admin"' in page.text


def test_app_roles_and_groups_become_console_roles(console: Console, microsoft: Microsoft):
    oid = str(uuid.uuid4())
    microsoft.claims = person(oid, roles=["Console.Operator", "Unrelated"], groups=[ADMINS_GROUP])
    client, back = sign_in(console, microsoft, "/admin/users")
    assert back.status_code == 303 and back.headers["location"] == "/admin/users"
    page = client.get("/admin/users")
    assert page.status_code == 200 and "sato@contoso.jp" in page.text
    made = user(console, "sato@contoso.jp")
    assert made is not None and made.entra_object_id == oid
    assert made.roles == ["operator", "admin"] and made.password_hash is None
    [form] = microsoft.forms
    assert form["grant_type"] == ["authorization_code"] and form["code"] == ["the-code"]
    assert form["code_verifier"][0]  # PKCE
    with console.runtime.sessions() as session:
        signed = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "users.sign-in")
        ).all()
    assert [(e.actor, e.detail["method"]) for e in signed] == [("web:sato@contoso.jp", "entra")]

    # The app role taken away in Entra: the next sign-in gives only what is left.
    microsoft.claims = person(oid, roles=["Console.Operator"])
    client, back = sign_in(console, microsoft)
    assert back.status_code == 303
    assert user(console, "sato@contoso.jp").roles == ["operator"]
    assert client.get("/admin/users").status_code == 403


def test_a_token_with_no_mapped_role_is_refused(console: Console, microsoft: Microsoft):
    microsoft.claims = person(roles=["Something.Else"], groups=["not-a-mapped-group"])
    client, back = sign_in(console, microsoft)
    assert back.status_code == 403
    assert "このコンソールのロールがありません" in back.text
    assert user(console, "sato@contoso.jp") is None
    assert client.get("/admin/status").status_code == 303  # not signed in


def test_a_disabled_account_is_refused(console: Console, microsoft: Microsoft):
    oid = str(uuid.uuid4())
    microsoft.claims = person(oid, roles=["Console.Operator"])
    assert sign_in(console, microsoft)[1].status_code == 303
    with transaction(console.runtime.sessions) as session:
        accounts.set_disabled(
            session, "sato@contoso.jp", True, actor="cli:test", at=console.runtime.clock()
        )
    client, back = sign_in(console, microsoft)
    assert back.status_code == 403 and "アカウントが無効か" in back.text
    assert client.get("/admin/status").status_code == 303


def test_a_local_account_of_the_same_name_is_not_taken_over(console: Console, microsoft):
    password = console.add_user("sato@contoso.jp", ["viewer"])
    microsoft.claims = person(roles=["Console.Operator"], groups=[ADMINS_GROUP])
    client, back = sign_in(console, microsoft)
    assert back.status_code == 403 and "同じ名前のローカルアカウント" in back.text
    local = user(console, "sato@contoso.jp")
    assert local is not None and local.roles == ["viewer"] and local.entra_object_id is None
    assert client.get("/admin/users").status_code == 303
    console.signed_in("sato@contoso.jp", password)  # the local account still works


def test_a_forged_state_is_refused(console: Console, microsoft: Microsoft):
    microsoft.claims = person(roles=["Console.Operator"])
    client, back = sign_in(console, microsoft, state="forged-state")
    assert back.status_code == 403
    assert "Microsoft でのサインインに失敗しました" in back.text
    assert microsoft.forms == []  # no code was redeemed
    assert user(console, "sato@contoso.jp") is None
    # Nor can the answer be replayed without a flow begun in this browser.
    fresh = console.client().get("/login/entra/done", params={"code": "c", "state": "s"})
    assert fresh.status_code == 400 and "失敗しました" in fresh.text


def test_a_token_for_another_app_or_an_error_from_microsoft_is_refused(console, microsoft):
    microsoft.claims = person(roles=["Console.Operator"])
    microsoft.audience = str(uuid.uuid4())
    _, back = sign_in(console, microsoft)
    assert back.status_code == 403 and user(console, "sato@contoso.jp") is None
    microsoft.audience = CLIENT_ID
    microsoft.error = "invalid_grant"
    _, back = sign_in(console, microsoft)
    assert back.status_code == 403 and "失敗しました" in back.text
    microsoft.error = ""
    _, back = sign_in(console, microsoft, error="access_denied", error_description="cancelled")
    assert back.status_code == 403 and user(console, "sato@contoso.jp") is None
    assert len(microsoft.forms) == 2  # the declined sign-in sent no code to redeem


def test_a_hostile_name_in_the_token_stays_text(console: Console, microsoft: Microsoft):
    microsoft.claims = person(
        name="sato@contoso.jp", roles=["Console.Operator"], groups=[ADMINS_GROUP]
    )
    microsoft.claims["name"] = '<script>alert(1)</script><img src=x onerror="alert(2)">'
    client, back = sign_in(console, microsoft, "/admin/users")
    assert back.status_code == 303
    page = client.get("/admin/users").text
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page


def test_microsoft_unreachable_is_a_message_on_the_sign_in_page(console, microsoft):
    microsoft.down = True
    answer = console.client().get("/login/entra", params={"next": "/admin"})
    assert answer.status_code == 502
    assert "Microsoft のサインインに接続できません" in answer.text
    assert 'name="next" value="/admin"' in answer.text
    # Down between the two steps: the way back is refused the same way, not with an error.
    microsoft.down = False
    client = console.client()
    started = client.get("/login/entra")
    state = parse_qs(urlsplit(started.headers["location"]).query)["state"][0]
    microsoft.down = True
    back = client.get("/login/entra/done", params={"code": "c", "state": state})
    assert back.status_code == 403 and "失敗しました" in back.text


def test_without_entra_configured_there_is_no_microsoft_sign_in(tmp_path, database_url, now):
    with start_console(tmp_path, database_url) as plain:
        client = plain.client()
        assert "/login/entra" not in client.get("/login").text
        assert client.get("/login/entra").status_code == 404
        assert client.get("/login/entra/done", params={"code": "c"}).status_code == 404
