"""The suite's clock for a whole Python process, from its first line (tests/clock.py).

Python runs `sitecustomize` at start-up when it is on the path, so a process started with
this folder on PYTHONPATH and EDRTRIAL_TEST_CLOCK set lives at that time, ticking from it:

    EDRTRIAL_TEST_CLOCK=2026-11-25T01:00:00+00:00   an instant (ISO 8601, with its offset)
    EDRTRIAL_TEST_CLOCK=+365d                       real time shifted (d, h, m or s; + or -;
                                                    fractions allowed: -812345.25s)

Tests hand their own now to the processes they start (`clock.subprocess_env`); CI runs the
whole suite with `+365d` to prove that no test reads today's date. time-machine moves the
Python-level clock (time.time, datetime.now, ...); monotonic time, sleeps and C libraries'
clocks stay real, so threads, timeouts and TLS work as usual. Without EDRTRIAL_TEST_CLOCK
this file does nothing.
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timedelta

_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def destination(spec: str) -> datetime | timedelta:
    """The instant or the shift that an EDRTRIAL_TEST_CLOCK value names."""
    shift = re.fullmatch(r"([+-]\d+(?:\.\d+)?)([dhms])", spec.strip())
    if shift:
        return timedelta(**{_UNITS[shift[2]]: float(shift[1])})
    instant = datetime.fromisoformat(spec.strip())
    if instant.tzinfo is None:
        raise ValueError(f"EDRTRIAL_TEST_CLOCK needs a UTC offset: {spec!r}")
    return instant


def _start(spec: str) -> None:
    import time

    import time_machine

    where = destination(spec)
    if isinstance(where, timedelta):
        where = datetime.now().astimezone() + where
    # A plain timestamp, so that time-machine leaves the process's TZ alone. Stays in force
    # until the process ends; reading the clock at once makes it tick from this moment.
    time_machine.travel(where.timestamp(), tick=True).start()
    time.time()


# Only at start-up: test_clock.py loads this file under another name for its functions.
if __name__ == "sitecustomize" and os.environ.get("EDRTRIAL_TEST_CLOCK"):
    try:
        _start(os.environ["EDRTRIAL_TEST_CLOCK"])
    except Exception as err:
        # Python's site hook would print this and go on at today's time: a mistyped clock
        # would then pass as a run at another date. Stop instead.
        raise SystemExit(f"EDRTRIAL_TEST_CLOCK: {err}") from err
