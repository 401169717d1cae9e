"""The web console for tests: a real server on a free loopback port over a test store seeded
with the sample programme, accounts made as `edrtrial users add` makes them, and an HTTP
client that signs in through the sign-in form.

`start_console` serves it (with the sandbox's HTTPS server when a test acts on devices);
`Browser` tests (tests/browser.py) drive the same server in Debian's chromium.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from edrtrial.access import accounts
from edrtrial.config import Config, load_config
from edrtrial.db import make_engine, transaction, upgrade
from edrtrial.programme.sample import seed_sample_programme
from edrtrial.sandbox import SandboxServer, SandboxWorld
from edrtrial.service.runtime import Runtime
from edrtrial.web.server import ConsoleServer

from sandbox_config import sample_world, settings, write_config

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Console:
    """A running console and what it runs on."""

    server: ConsoleServer
    runtime: Runtime
    config: Config
    world: SandboxWorld

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def add_user(
        self,
        username: str,
        roles: Sequence[str],
        *,
        cohorts: Sequence[str] = (),
        password: str | None = None,
        display_name: str = "",
    ) -> str:
        """Make a local account (as `edrtrial users add` does); its password."""
        password = password or secrets.token_urlsafe(16)
        with transaction(self.runtime.sessions) as session:
            accounts.add(
                session,
                username,
                password,
                list(roles),
                actor="cli:test",
                at=self.runtime.clock(),
                display_name=display_name,
                cohorts=list(cohorts),
            )
        return password

    def client(self) -> httpx.Client:
        """An HTTP client of the console that keeps its cookies (not signed in)."""
        return httpx.Client(base_url=self.base_url, follow_redirects=False, timeout=30)

    def signed_in(self, username: str, password: str) -> SignedIn:
        """A client signed in through the sign-in form, with its CSRF token."""
        client = self.client()
        token = csrf_of(client.get("/login").text)
        answer = client.post(
            "/login",
            data={"csrf": token, "username": username, "password": password, "next": "/"},
        )
        assert answer.status_code == 303, answer.text
        return SignedIn(client, csrf_of(client.get("/login?next=/", follow_redirects=True).text))


@dataclass
class SignedIn:
    """A signed-in HTTP client and the CSRF token its forms carry."""

    http: httpx.Client
    csrf: str

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.get(path, **kwargs)

    def post(self, path: str, data: dict[str, Any] | None = None, **kwargs: Any) -> httpx.Response:
        """A POST as the console's own forms send it (with the CSRF token)."""
        return self.http.post(path, data={"csrf": self.csrf, **(data or {})}, **kwargs)


def csrf_of(html: str) -> str:
    """The CSRF token a page's forms carry."""
    found = CSRF.search(html)
    assert found, "the page carries no CSRF token"
    return found.group(1)


def console_settings(
    database_url: str, tmp_path: Path, sandbox: SandboxServer | None = None
) -> dict[str, Any]:
    """The test config: the sandbox's programme app, the console on a free port."""
    if sandbox is not None:
        data = settings(
            database_url,
            base_url=sandbox.base_url,
            state_dir=sandbox.state_dir,
            mail_dir=tmp_path / "mail",
        )
    else:
        data = settings(database_url, state_dir=tmp_path / "sandbox", mail_dir=tmp_path / "mail")
    data["web"] = {"port": 0, "key_file": str(tmp_path / "console-session.key")}
    data["reports"] = {"archive_dir": str(tmp_path / "reports")}
    return data


@contextmanager
def start_console(
    tmp_path: Path,
    database_url: str,
    *,
    sandbox: SandboxServer | None = None,
    world: SandboxWorld | None = None,
    data: dict[str, Any] | None = None,
) -> Iterator[Console]:
    """The console over a store seeded with the sample programme, as `serve --with-sandbox`
    seeds an empty one (`sandbox`: the tenants are reached through its server)."""
    world = sandbox.world if sandbox is not None else (world or sample_world())
    data = data or console_settings(database_url, tmp_path, sandbox)
    path = write_config(tmp_path / "config.toml", data, companies=0)
    engine = make_engine(database_url)
    upgrade(engine)
    engine.dispose()
    config = load_config(path)
    runtime = Runtime.open(config)
    with transaction(runtime.sessions) as session:
        seed_sample_programme(session, config.settings.programme, world.tenants, at=runtime.clock())
    server = ConsoleServer(runtime, config, port=0)
    server.start()
    try:
        yield Console(server, runtime, config, world)
    finally:
        server.stop()
        runtime.close()
