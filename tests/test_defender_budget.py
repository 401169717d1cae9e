"""Client-side call budgets: sliding windows, one log per API, holds after a 429, many threads."""

from __future__ import annotations

import threading

from edrtrial.connectors.defender.budget import HOUR, MINUTE, CallBudget, Window

from test_defender_support import FakeClock


def _mde(clock: FakeClock) -> CallBudget:
    return CallBudget([Window(100, MINUTE), Window(1500, HOUR)], clock.clock())


def test_the_101st_call_in_a_minute_waits_for_the_first_to_leave_the_window() -> None:
    clock = FakeClock()
    budget = _mde(clock)
    for _ in range(100):
        assert budget.take("GET machines") == 0
        clock.advance(0.1)  # 100 calls over 10 s

    assert budget.take("GET machines") == 50.0  # the first call leaves the window at 60 s
    clock.advance(50.0)
    assert budget.take("GET machines") == 0


def test_the_hourly_window_binds_when_the_minutes_do_not() -> None:
    clock = FakeClock()
    budget = _mde(clock)
    for _ in range(15):  # 15 minutes of 100 calls: 1,500 in the hour
        for _ in range(100):
            assert budget.take("GET machineactions/{id}") == 0
        clock.advance(MINUTE)

    assert budget.take("GET machineactions/{id}") == HOUR - 15 * MINUTE


def test_each_api_has_its_own_log() -> None:
    clock = FakeClock()
    budget = CallBudget([Window(1, MINUTE)], clock.clock())

    assert budget.take("GET machines") == 0
    assert budget.take("GET machines") == MINUTE
    assert budget.take("POST machines/{id}/isolate") == 0  # a different API is not charged


def test_a_hold_blocks_the_api_until_it_ends() -> None:
    clock = FakeClock()
    budget = CallBudget([Window(150, MINUTE)], clock.clock())

    budget.hold("security", 37)

    assert budget.take("security") == 37
    clock.advance(37)
    assert budget.take("security") == 0


def test_threads_together_never_exceed_the_budget() -> None:
    clock = FakeClock()  # frozen time: nobody's slot frees up during the race
    budget = CallBudget([Window(100, MINUTE)], clock.clock())
    granted: list[bool] = []
    start = threading.Barrier(20)

    def worker() -> None:
        start.wait()
        for _ in range(10):
            granted.append(budget.take("GET machines") == 0)

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert granted.count(True) == 100
    assert len(granted) == 200
