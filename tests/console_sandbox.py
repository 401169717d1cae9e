"""The console over the sample programme on the sandbox's HTTPS server, for the tests that
act through Defender (isolate, poll, offboard): seed 11, machine actions done at once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edrtrial.sandbox import SandboxServer

from sandbox_config import sample_world, serving
from web_support import Console, start_console


@pytest.fixture
def console_sandbox(tmp_path: Path, now) -> Iterator[SandboxServer]:  # type: ignore[no-untyped-def]
    with serving(sample_world(11, actions_at_once=True), tmp_path / "sandbox") as server:
        yield server


@pytest.fixture
def sandboxed_console(
    tmp_path: Path, database_url: str, console_sandbox: SandboxServer, now
) -> Iterator[Console]:  # type: ignore[no-untyped-def]
    with start_console(tmp_path, database_url, sandbox=console_sandbox) as running:
        yield running
