"""The sandbox in a child process, so the poll's CPU time and memory are edrtrial's alone."""

from __future__ import annotations

import multiprocessing
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from types import TracebackType

from edrtrial.sandbox import Budgets, SampleTenant, SandboxServer, SandboxWorld

NEVER = 10**7  # seconds between random new alerts: none during the run
UNLIMITED = Budgets(graph_per_minute=None, mde_per_minute=None, mde_per_hour=None)
_START_TIMEOUT = 600.0

Counts = dict[str, dict[str, int]]
"""Requests per tenant id, then per API ("graph:list_alerts", "login:token", …)."""


@dataclass(frozen=True, slots=True)
class SandboxInfo:
    """What the parent needs to point a config at the child's sandbox."""

    base_url: str
    ca_path: Path
    tenants: tuple[SampleTenant, ...]
    app_secret: Path
    alerts: int
    build_seconds: float


def _serve(conn: Connection, tenants: int, alerts: int, state_dir: Path, throttle: bool) -> None:
    started = time.perf_counter()
    world = SandboxWorld(
        seed=11, tenants=tenants, alert_interval_seconds=NEVER, backlog_alerts=alerts
    )
    if not throttle:
        world.set_budgets(UNLIMITED)
    built = time.perf_counter() - started
    server = SandboxServer(world, host="127.0.0.1", port=0, state_dir=state_dir)
    server.start()
    try:
        conn.send(
            SandboxInfo(
                base_url=server.base_url,
                ca_path=server.ca_path,
                tenants=tuple(world.tenants),
                app_secret=server.app_secret_path,
                alerts=sum(world.alert_count(t.tenant_id) for t in world.tenants),
                build_seconds=built,
            )
        )
        while (command := conn.recv()) != "stop":
            if command == "counts":
                conn.send({t.tenant_id: world.request_counts(t.tenant_id) for t in world.tenants})
            elif command == "reset":
                world.reset_request_counts()
                conn.send(None)
    finally:
        server.stop()


class SandboxProcess:
    """Start the sandbox in a spawned process; ask it for request counts; stop it."""

    def __init__(self, tenants: int, alerts: int, state_dir: Path, *, throttle: bool) -> None:
        context = multiprocessing.get_context("spawn")  # no fork of a threaded parent
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_serve,
            args=(child, tenants, alerts, state_dir, throttle),
            name="bench-sandbox",
            daemon=True,
        )
        self.info: SandboxInfo | None = None

    def __enter__(self) -> SandboxInfo:
        self._process.start()
        if not self._conn.poll(_START_TIMEOUT):
            self._process.kill()
            raise RuntimeError("the sandbox process did not start")
        self.info = self._receive()
        return self.info

    def _receive(self) -> SandboxInfo:
        try:
            info = self._conn.recv()
        except EOFError as err:
            raise RuntimeError("the sandbox process died (see its traceback above)") from err
        assert isinstance(info, SandboxInfo)
        return info

    def counts(self) -> Counts:
        """Requests per tenant and API since the last reset."""
        self._conn.send("counts")
        counts: Counts = self._conn.recv()
        return counts

    def reset(self) -> None:
        """Count from zero."""
        self._conn.send("reset")
        self._conn.recv()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._process.is_alive():
            try:
                self._conn.send("stop")
            except (BrokenPipeError, OSError):
                pass
            self._process.join(timeout=15)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
