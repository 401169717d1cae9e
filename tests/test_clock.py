"""The suite's own clock (clock.py): tests, and the processes they start, run at its now."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from edrtrial.timeutil import JST, jst_date

import clock

_spec = importlib.util.spec_from_file_location("clock_site", clock.SITE / "sitecustomize.py")
assert _spec is not None and _spec.loader is not None
site = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(site)  # under another name it only defines its functions
PRINT_NOW = "import datetime; print(datetime.datetime.now(datetime.UTC).isoformat())"


def child_now(env: dict[str, str]) -> datetime:
    """What a Python process started with `env` reads as the time."""
    out = subprocess.run(
        [sys.executable, "-c", PRINT_NOW], env=env, capture_output=True, text=True, check=True
    )
    return datetime.fromisoformat(out.stdout.strip())


def test_now_is_a_weekday_morning_in_business_hours_in_tokyo():
    local = clock.NOW.astimezone(JST)
    assert local.weekday() < 5 and 9 <= local.hour < 17
    assert clock.TODAY == local.date() and clock.day(-1) == clock.TODAY - timedelta(days=1)
    assert clock.this_monday().weekday() == 0 and 0 <= (clock.TODAY - clock.this_monday()).days < 7


def test_the_now_fixture_moves_the_clock_and_lets_it_tick(now):
    assert now == clock.NOW
    first = datetime.now(UTC)
    assert timedelta(0) <= first - now < timedelta(seconds=5)
    assert jst_date(first) == clock.TODAY
    time.sleep(0.05)
    assert datetime.now(UTC) > first


def test_a_process_started_with_the_suite_env_runs_at_the_tests_now(now):
    seen = child_now(clock.subprocess_env())
    assert timedelta(0) <= seen - now < timedelta(seconds=30)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("+365d", timedelta(days=365)),
        ("-3h", timedelta(hours=-3)),
        ("+90m", timedelta(minutes=90)),
        ("-812345.250000s", timedelta(seconds=-812345.25)),
        ("2026-11-25T10:00:00+09:00", clock.NOW),
    ],
)
def test_the_clock_variable_takes_a_shift_or_an_instant(spec, expected):
    assert site.destination(spec) == expected


def test_an_instant_without_its_utc_offset_is_refused():
    with pytest.raises(ValueError, match="UTC offset"):
        site.destination("2026-11-25T10:00:00")
