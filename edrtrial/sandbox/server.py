"""Run the sandbox: uvicorn over TLS in a background thread, plus a ticker letting time pass.

The server binds its socket itself so that port 0 works and `.port` is known as soon as
`start()` returns.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path
from types import TracebackType

import uvicorn

from edrtrial.sandbox.app import build_app
from edrtrial.sandbox.credentials import (
    app_secret_path,
    ensure_app_secret,
    ensure_secrets,
    secret_path,
)
from edrtrial.sandbox.tls import ensure_certificates
from edrtrial.sandbox.world import SandboxWorld

log = logging.getLogger(__name__)

TICK_SECONDS = 1.0
_START_TIMEOUT = 15.0
_GRACE_SECONDS = 0.5


class SandboxServer:
    """The sandbox on https://HOST:PORT for one world; usable as a context manager."""

    def __init__(
        self,
        world: SandboxWorld,
        host: str = "127.0.0.1",
        port: int = 0,
        state_dir: Path = Path("var/sandbox"),
    ) -> None:
        self.world = world
        self.host = host
        self.state_dir = state_dir
        self._requested_port = port
        self._port: int | None = None
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._ended: str | None = None

    @property
    def port(self) -> int:
        """The port actually listened on (known once started)."""
        if self._port is None:
            raise RuntimeError("the sandbox server is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """https://127.0.0.1:PORT: the one origin of login, Graph and MDE."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"https://{host}:{self.port}"

    @property
    def ca_path(self) -> Path:
        """The CA certificate clients must trust (`verify=`, `ca_bundle`)."""
        return self.state_dir / "ca.pem"

    def secret_path(self, tenant_id: str) -> Path:
        """The file holding a tenant's client secret (config: `file:<this path>`)."""
        return secret_path(self.state_dir, tenant_id)

    @property
    def app_secret_path(self) -> Path:
        """The file holding the app's client secret (`[programme.app]`: `file:<this path>`)."""
        return app_secret_path(self.state_dir)

    def start(self) -> None:
        """Listen, serve in the background and start the ticker; returns once accepting."""
        if self._server is not None:
            raise RuntimeError("the sandbox server is already started")
        certs = ensure_certificates(self.state_dir)
        tenant_ids = [tenant.tenant_id for tenant in self.world.tenants]
        self.world.set_client_secrets(ensure_secrets(self.state_dir, tenant_ids))
        self.world.set_app_secret(ensure_app_secret(self.state_dir))
        self._socket = _bind(self.host, self._requested_port)
        self._port = int(self._socket.getsockname()[1])
        config = uvicorn.Config(
            build_app(self.world),
            ssl_certfile=str(certs.cert_pem),
            ssl_keyfile=str(certs.key_pem),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._stopping.clear()
        http = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            name="sandbox-http",
            daemon=True,
        )
        ticker = threading.Thread(target=self._tick, name="sandbox-ticker", daemon=True)
        self._threads = [http, ticker]
        http.start()
        deadline = time.monotonic() + _START_TIMEOUT
        while not self._server.started:
            if not http.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the sandbox server did not start on {self.host}")
            time.sleep(0.02)
        ticker.start()
        log.info("sandbox listening on %s (CA %s)", self.base_url, self.ca_path)

    def _tick(self) -> None:
        try:
            while not self._stopping.wait(TICK_SECONDS):
                self.world.tick()
        except Exception as err:
            self._ended = f"{type(err).__name__}: {err}"
            log.debug("the sandbox's ticker ended", exc_info=err)

    def why_stopped(self) -> str | None:
        """None while the sandbox serves and ticks; else, in one line, what has ended (for
        `serve --with-sandbox`, which must not go on polling a sandbox that is gone)."""
        if self._server is None or self._stopping.is_set():
            return None
        http, ticker = self._threads
        if not http.is_alive():
            return "the sandbox's HTTP server has ended"
        if not ticker.is_alive():
            return f"the sandbox's ticker has ended ({self._ended or 'no error given'})"
        return None

    def stop(self) -> None:
        """Stop serving and ticking; waits for both threads. Safe to call twice."""
        self._stopping.set()
        if self._server is not None:
            self._server.should_exit = True
            http = self._threads[0] if self._threads else None
            if http is not None and http.is_alive():
                http.join(timeout=_GRACE_SECONDS)
            # Idle keep-alive TLS connections would hold uvicorn until its graceful timeout.
            self._server.force_exit = True
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server, self._socket, self._threads = None, None, []

    def run_forever(self) -> None:
        """Serve until Ctrl-C (for `edrtrial sandbox`)."""
        if self._server is None:
            self.start()
        http = self._threads[0]
        try:
            while http.is_alive():
                http.join(timeout=0.5)
        except KeyboardInterrupt:
            log.info("sandbox stopping")
        finally:
            self.stop()

    def __enter__(self) -> SandboxServer:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()


def _bind(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    return sock
