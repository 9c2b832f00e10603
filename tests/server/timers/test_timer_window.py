"""The timer service keeps only a read-ahead window of the timer table in memory and still fires every
stored timer once it is due, in order, whether it was read from storage or added after its commit."""

from __future__ import annotations

import asyncio

import pytest

from pyrestate.server.storage.records import Timer, TimerKind
from pyrestate.server.timers.service import TimerService

pytestmark = pytest.mark.timeout(30)


class StepClock:
    def __init__(self, now: int) -> None:
        self.now = now

    def now_ms(self) -> int:
        return self.now


class Table:
    """The committed timer table, as the service reads it."""

    def __init__(self) -> None:
        self.rows: dict[str, Timer] = {}
        self.reads: list[tuple[int, int, int]] = []

    def put(self, t: Timer) -> None:
        self.rows[t.timer_id] = t

    def load(self, after: int, until: int, limit: int) -> list[Timer]:
        self.reads.append((after, until, limit))
        found = [t for t in self.rows.values() if after < t.fire_at <= until]
        found.sort(key=lambda t: (t.fire_at, t.timer_id))
        return found[:limit]


def _timer(at: int, n: int) -> Timer:
    return Timer(at, TimerKind.CLEANUP, f"inv_{n:05d}")


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_only_the_window_is_in_memory_and_later_timers_fire_when_it_moves() -> None:
    clock = StepClock(1_000_000)
    table = Table()
    for n in range(300):  # one every second for five minutes
        table.put(_timer(clock.now + 1000 * (n + 1), n))
    fired: list[Timer] = []
    svc = TimerService(clock, fired.append, table.load, window_ms=10_000, page=50)
    svc.reload()
    assert len(svc) == 10  # the next 10 s only
    svc.start()
    try:
        for _ in range(320):
            clock.now += 1000
            svc._wakeup.set()
            await _settle()
        assert [t.invocation_id for t in fired] == [f"inv_{n:05d}" for n in range(300)]
        assert len(svc) == 0
    finally:
        await svc.stop()


async def test_a_timer_added_beyond_the_horizon_is_read_later_and_one_within_fires() -> None:
    clock = StepClock(0)
    table = Table()
    fired: list[Timer] = []
    svc = TimerService(clock, fired.append, table.load, window_ms=10_000, page=50)
    svc.reload()
    svc.start()
    try:
        near, far = _timer(2_000, 1), _timer(60_000, 2)
        for t in (near, far):
            table.put(t)  # committed first, then announced, as the engine does
            svc.add(t)
        assert len(svc) == 1  # the far one stays in storage
        for _ in range(70):
            clock.now += 1000
            svc._wakeup.set()
            await _settle()
        assert fired == [near, far]
    finally:
        await svc.stop()


async def test_a_full_page_of_one_millisecond_is_taken_whole() -> None:
    clock = StepClock(0)
    table = Table()
    same = [_timer(5_000, n) for n in range(30)]
    later = [_timer(6_000, 100 + n) for n in range(5)]
    for t in same + later:
        table.put(t)
    fired: list[Timer] = []
    svc = TimerService(clock, fired.append, table.load, window_ms=10_000, page=10)
    svc.reload()
    assert len(svc) == 30  # the page was all one millisecond: no timer of it may be skipped
    svc.start()
    try:
        for _ in range(8):
            clock.now += 1000
            svc._wakeup.set()
            await _settle()
        assert sorted(t.invocation_id for t in fired) == sorted(t.invocation_id for t in same + later)
        assert len(set(fired)) == len(fired)
    finally:
        await svc.stop()
