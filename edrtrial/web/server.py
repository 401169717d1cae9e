"""Run the console: uvicorn in a thread of its own, beside the scheduler or alone."""

from __future__ import annotations

import logging
import socket
import threading
import time

import uvicorn

from edrtrial.config import Config
from edrtrial.service.runtime import Runtime
from edrtrial.web.app import create_app
from edrtrial.web.keys import session_key

log = logging.getLogger(__name__)

_START_SECONDS = 15.0


class ConsoleServer:
    """The console's HTTP server on `web.host:web.port` (port 0: any free port)."""

    def __init__(self, runtime: Runtime, config: Config, port: int | None = None) -> None:
        self.web = config.settings.web
        self.app = create_app(runtime, self.web, session_key(config))
        self._port = self.web.port if port is None else port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def port(self) -> int:
        """The port it listens on (known once started)."""
        return self._port

    @property
    def base_url(self) -> str:
        """The console's address as a browser reaches it."""
        return self.web.base_url(self._port)

    def start(self) -> None:
        """Listen and serve in the background; returns once accepting connections."""
        family = socket.AF_INET6 if ":" in self.web.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.web.host, self._port))
        except OSError as err:
            sock.close()
            raise OSError(
                f"the console cannot listen on {self.web.host}:{self._port}: {err.strerror}"
            ) from err
        sock.listen(128)
        self._socket = sock
        self._port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
            proxy_headers=False,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="console-http", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + _START_SECONDS
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the console did not start on {self.web.host}:{self._port}")
            time.sleep(0.02)
        log.info("console listening on %s", self.base_url)

    def why_stopped(self) -> str | None:
        """None while serving; else, in one line, that its server has ended."""
        if self._thread is not None and not self._thread.is_alive():
            return "the console's HTTP server has ended"
        return None

    def stop(self) -> None:
        """Stop serving; waits for its thread. Safe to call twice."""
        if self._server is not None:
            self._server.should_exit = True
            if self._thread is not None and self._thread.is_alive():
                self._thread.join(timeout=5)
            self._server.force_exit = True
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=5)
        if self._socket is not None:
            self._socket.close()
        self._server, self._thread, self._socket = None, None, None
