"""The test's now: the instant at which tests of dated things run, whatever today is.

Trial dates, report periods, acknowledgement deadlines, business hours, weekly reports,
"days left" and the sandbox's generated data all depend on the date. A test of any of them
either hands the code its own instants or takes the `now` fixture (conftest.py):
time-machine moves the clock to NOW for the test and lets it tick from there, and the test
builds its data relative to NOW (the sample trials: sandbox_config.py). NOW is a Wednesday
morning in the desk's business hours, not a holiday, with the year-end closure a month away.

The clock time-machine moves is Python's (time.time, datetime.now, ...): monotonic time,
sleeps and the C libraries' clocks stay real, so threads, timeouts and TLS (the sandbox's
trustme certificates are valid 2000-3000) work as usual, and MSAL's token expiry reads the
moved clock like the sandbox that issues the tokens. A process the test starts gets the same
clock through `subprocess_env()` (clock_site/sitecustomize.py); CI runs the whole suite
once more a year ahead (EDRTRIAL_TEST_CLOCK=+365d) to prove that nothing reads today's date.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import time_machine

from edrtrial.timeutil import JST

#: The test's now: Wednesday 25 November 2026, 10:00 in Tokyo.
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=JST).astimezone(UTC)
#: The test's today, in Tokyo (the programme's calendar).
TODAY = NOW.astimezone(JST).date()

#: Put on PYTHONPATH, it starts a Python process on EDRTRIAL_TEST_CLOCK's time.
SITE = Path(__file__).parent / "clock_site"
ENV = "EDRTRIAL_TEST_CLOCK"


def day(offset: int) -> date:
    """The Tokyo date `offset` days from TODAY (negative: before)."""
    return TODAY + timedelta(days=offset)


def this_monday() -> date:
    """The Monday of TODAY's week."""
    return TODAY - timedelta(days=TODAY.weekday())


@contextmanager
def travel(to: datetime = NOW) -> Iterator[time_machine.Traveller]:
    """Run the block at `to`, the clock ticking from there (the `now` fixture uses this)."""
    # A plain timestamp, so that time-machine leaves the process's TZ alone.
    with time_machine.travel(to.timestamp(), tick=True) as traveller:
        yield traveller


def subprocess_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a Python process that must run on this process's clock.

    `base` (default: os.environ) plus this folder's sitecustomize on PYTHONPATH and the
    clock's distance from real time, so the child's clock and the test's tick together.
    """
    env = dict(os.environ if base is None else base)
    hatch = time_machine.escape_hatch
    real = hatch.time.time() if hatch.is_travelling() else time.time()
    env[ENV] = f"{time.time() - real:+.6f}s"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SITE), env.get("PYTHONPATH")) if p)
    return env
