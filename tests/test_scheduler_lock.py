"""One scheduler per store: a second refuses with a clear message; a dead one's lease expires."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from edrtrial.errors import LockHeldError
from edrtrial.service.scheduler import STALE_AFTER, acquire_lock, release_lock

NOW = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)


def test_a_second_scheduler_is_refused_naming_the_first(sessions):
    acquire_lock(sessions, "host-a:100", NOW)
    with pytest.raises(LockHeldError, match="host-a:100.*stop it first"):
        acquire_lock(sessions, "host-b:200", NOW + timedelta(seconds=30))


def test_the_holder_renews_and_a_stale_lease_is_taken_over(sessions):
    acquire_lock(sessions, "host-a:100", NOW)
    acquire_lock(sessions, "host-a:100", NOW + timedelta(seconds=60))  # heartbeat
    with pytest.raises(LockHeldError):
        acquire_lock(sessions, "host-b:200", NOW + timedelta(seconds=60) + STALE_AFTER / 2)
    acquire_lock(sessions, "host-b:200", NOW + timedelta(seconds=61) + STALE_AFTER)
    with pytest.raises(LockHeldError, match="host-b:200"):
        acquire_lock(sessions, "host-a:100", NOW + timedelta(seconds=62) + STALE_AFTER)


def test_a_released_lease_is_free_at_once(sessions):
    acquire_lock(sessions, "host-a:100", NOW)
    release_lock(sessions, "host-a:100")
    acquire_lock(sessions, "host-b:200", NOW + timedelta(seconds=1))
