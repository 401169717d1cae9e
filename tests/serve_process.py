"""`edrtrial serve` as a real process for tests: started on the test's clock, its output in a
file the test reads while it runs, and waits that fail with that output."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import clock

EDRTRIAL = str(Path(sys.executable).parent / "edrtrial")


def edrtrial(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """One command to its end, on the test's clock (stdout and stderr kept apart)."""
    return subprocess.run(
        [EDRTRIAL, "--config", str(config), *args],
        capture_output=True,
        text=True,
        env=clock.subprocess_env(),
        timeout=120,
    )


class Serve:
    """A running `edrtrial serve`, its stdout and stderr together in `log`."""

    def __init__(self, config: Path, log: Path, *args: str) -> None:
        self.log = log
        self._out = log.open("ab")
        self.process = subprocess.Popen(
            [EDRTRIAL, "--config", str(config), "serve", *args],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            # The service (and its sandbox) run at the test's now; a service that does not
            # stop is made to print every thread's stack (faulthandler on SIGABRT).
            env={**clock.subprocess_env(), "PYTHONFAULTHANDLER": "1"},
        )

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_until(self, what: str, done: Callable[[], bool], seconds: float) -> None:
        """Wait until `done()`, failing with the output if the process ends or time runs out."""
        deadline = time.monotonic() + seconds
        while not done():
            assert self.alive(), f"serve ended ({self.process.returncode}) before {what}:\n" + (
                self.output()
            )
            assert time.monotonic() < deadline, f"no {what} within {seconds} s:\n{self.output()}"
            time.sleep(0.3)

    def stop(self, sig: int | None = None, timeout: float = 60) -> int:
        """Send `sig` (SIGINT by default) unless it has ended; wait for it; its exit code.

        A service still running after `timeout` fails the test with its output and the
        stack of each of its threads, which show what the stop was waiting for."""
        if self.alive():
            self.process.send_signal(signal.SIGINT if sig is None else sig)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGABRT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            raise AssertionError(
                f"serve did not stop within {timeout} s of the signal; its output and "
                f"threads:\n{self.output()}"
            ) from None
        finally:
            self._out.close()
