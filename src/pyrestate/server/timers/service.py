"""Durable timers: the timer table is the truth, this service only keeps an in-memory heap of what to
fire next and hands due timers back to their partition (which deletes them when applied)."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
from collections.abc import Callable
from typing import Protocol

from pyrestate.server.storage.records import Timer


class Clock(Protocol):
    def now_ms(self) -> int: ...


class WallClock:
    def now_ms(self) -> int:
        return int(time.time() * 1000)


class TimerService:
    def __init__(self, clock: Clock, fire: Callable[[Timer], None]) -> None:
        self._clock = clock
        self._fire = fire
        self._heap: list[tuple[int, str, Timer]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def add(self, timer: Timer) -> None:
        heap = self._heap
        # The loop sleeps until the earliest timer: only an earlier one needs to wake it (most timers
        # added are retention timers, due long after what is already queued).
        if not heap or timer.fire_at < heap[0][0] or timer.fire_at <= self._clock.now_ms():
            self._wakeup.set()
        heapq.heappush(heap, (timer.fire_at, timer.timer_id, timer))

    def __len__(self) -> int:
        return len(self._heap)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="timers")

    async def stop(self) -> None:
        # A flag rather than only cancel(): on Python 3.11 wait_for can swallow a cancellation that races
        # with the awaited event being set.
        self._stopping = True
        self._wakeup.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while not self._stopping:
            self._wakeup.clear()
            now = self._clock.now_ms()
            while self._heap and self._heap[0][0] <= now:
                _, _, timer = heapq.heappop(self._heap)
                self._fire(timer)
            timeout = (self._heap[0][0] - now) / 1000 if self._heap else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)
