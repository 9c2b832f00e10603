"""Durable timers: the timer table is the truth, this service only keeps an in-memory heap of what to
fire next and hands due timers back to their partition (which deletes them when applied).

Only the timers due within a read-ahead window are in memory: the table holds a retention timer for every
completed invocation (a day's worth by default), far too many to keep as objects. Everything due up to
`horizon` is in the heap; later timers are read from storage as the window moves on, in pages."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections.abc import Callable
from typing import Protocol

from pyrestate.server import logs
from pyrestate.server.storage.records import Timer, TimerKind

# How far ahead timers are kept in memory, and how many are read per page.
WINDOW_MS = 60_000
PAGE = 10_000
# Sleeps and delayed calls firing this late were due while the server was down (or it was overloaded).
LATE_MS = 1_000

log = logging.getLogger(__name__)


class Clock(Protocol):
    def now_ms(self) -> int: ...


class WallClock:
    def now_ms(self) -> int:
        return int(time.time() * 1000)


# Committed timers with after < fire_at <= until, earliest first, at most `limit`.
LoadTimers = Callable[[int, int, int], list[Timer]]


class TimerService:
    def __init__(
        self,
        clock: Clock,
        fire: Callable[[Timer], None],
        load: LoadTimers,
        *,
        window_ms: int = WINDOW_MS,
        page: int = PAGE,
    ) -> None:
        self._clock = clock
        self._fire = fire
        self._load = load
        self._window_ms = window_ms
        self._page = page
        self._heap: list[tuple[int, str, Timer]] = []
        # Every stored timer due at or before this is in the heap (or was fired). -1: nothing loaded yet.
        self._horizon = -1
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def add(self, timer: Timer) -> None:
        """A timer was committed. One beyond the horizon stays in storage only: the read-ahead that moves
        the horizon past it reads committed rows, and this call comes after its commit, so it is either
        seen by that read or added here once the horizon has moved."""
        if timer.fire_at > self._horizon:
            return
        heap = self._heap
        # The loop sleeps until the earliest timer: only an earlier one needs to wake it.
        if not heap or timer.fire_at < heap[0][0] or timer.fire_at <= self._clock.now_ms():
            self._wakeup.set()
        heapq.heappush(heap, (timer.fire_at, timer.timer_id, timer))

    def reload(self) -> None:
        """Forget what is in memory and read ahead from storage again (after start or a failed commit). A
        timer in flight fires twice at worst; applying a fired timer is idempotent."""
        self._heap.clear()
        self._horizon = -1
        self._read_ahead()
        self._wakeup.set()

    def _read_ahead(self) -> None:
        until = self._clock.now_ms() + self._window_ms
        # Bounded in memory: with a page's worth queued, the rest waits until these are due (everything
        # in the heap is earlier than anything not read yet, so the order holds).
        while self._horizon < until and len(self._heap) < self._page:
            timers = self._load(self._horizon, until, self._page)
            if len(timers) < self._page:
                horizon = until
            else:
                # A full page: keep what is strictly before its last fire time (more timers may share
                # that millisecond), unless the whole page shares it; then take that millisecond whole.
                last = timers[-1].fire_at
                horizon = last - 1
                timers = [t for t in timers if t.fire_at <= horizon]
                if not timers:
                    timers = self._load(last - 1, last, 1 << 62)
                    horizon = last
            for t in timers:
                heapq.heappush(self._heap, (t.fire_at, t.timer_id, t))
            self._horizon = horizon

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
            if self._horizon < now + self._window_ms // 2:
                self._read_ahead()
            late: list[Timer] = []
            while self._heap and self._heap[0][0] <= now:
                _, _, timer = heapq.heappop(self._heap)
                if now - timer.fire_at >= LATE_MS and timer.kind in (TimerKind.SLEEP, TimerKind.INVOKE):
                    late.append(timer)
                self._fire(timer)
            if late:
                _log_late(late, now)
            # Wake for the earliest timer, and in time to read ahead before the horizon is reached.
            next_at = self._heap[0][0] if self._heap else None
            if len(self._heap) < self._page:
                ahead = self._horizon - self._window_ms // 2
                next_at = ahead if next_at is None else min(next_at, ahead)
            timeout = None if next_at is None else max(0, next_at - now) / 1000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)


def _log_late(late: list[Timer], now: int) -> None:
    worst = max(late, key=lambda t: now - t.fire_at)
    logs.event(
        log,
        logging.INFO,
        f"{len(late)} timer(s) fired late, up to {logs.duration(now - worst.fire_at)} after they were due "
        "(the server was stopped or busy)",
        late_timers=len(late),
        max_delay_ms=now - worst.fire_at,
        invocation_id=worst.invocation_id if len(late) == 1 else None,
    )
