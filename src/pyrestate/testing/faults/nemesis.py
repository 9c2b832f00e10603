"""A seeded nemesis: crashes, graceful stops and pauses of real processes at random moments.

Each fault acts on one `Target` (a server or a service process), picked with the seeded RNG, and the target is
brought back before the next fault: a kill -9 (the whole process group) or a graceful stop is followed by a
start on the same ports and data dir, a SIGSTOP by a SIGCONT. `heal()` leaves every target running.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pyrestate.testing.process import ManagedProcess, ProcessError

Fault = Literal["kill", "term", "pause"]
FAULTS: tuple[Fault, ...] = ("kill", "term", "pause")


@dataclass
class Target:
    """A process the nemesis may hit. `graceful` is the signal of a polite stop (SIGINT for hypercorn
    serving the official SDK, whose SIGTERM hook keeps it alive)."""

    name: str
    process: ManagedProcess
    graceful: signal.Signals = signal.SIGTERM
    faults: Sequence[Fault] = FAULTS


@dataclass
class FaultEvent:
    at: float  # seconds since the nemesis started
    target: str
    fault: Fault
    outage: float  # seconds the target did not serve


@dataclass
class Nemesis:
    """Runs faults on a background thread between `start()` and `stop()`.

    `interval` bounds the quiet time between two faults, `pause` the length of a SIGSTOP.
    """

    targets: Sequence[Target]
    seed: int
    interval: tuple[float, float] = (1.5, 4.0)
    pause: tuple[float, float] = (0.3, 2.5)
    restart_attempts: int = 5
    events: list[FaultEvent] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = time.monotonic()
        self._lock = threading.Lock()  # one fault at a time, heal() waits for the current one

    @property
    def crashes(self) -> int:
        return len(self.events)

    def summary(self) -> str:
        counts = Counter(f"{e.target}:{e.fault}" for e in self.events)
        return ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "none"

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="nemesis", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop injecting faults and bring every target back (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=120)
            self._thread = None
        self.heal()

    def heal(self) -> None:
        with self._lock:
            for t in self.targets:
                pid = t.process.pid
                if pid is not None and t.process.is_running():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGCONT)
                else:
                    self._start(t)

    def _loop(self) -> None:
        while not self._stop.wait(self._rng.uniform(*self.interval)):
            target = self._rng.choice(self.targets)
            fault = self._rng.choice(list(target.faults))
            pause_for = self._rng.uniform(*self.pause)
            with self._lock:
                if self._stop.is_set():
                    return
                try:
                    self.inject(target, fault, pause_for)
                except Exception as e:  # recorded, and the test fails on it after healing
                    self.errors.append(f"{target.name}:{fault}: {e!r}")

    def inject(self, target: Target, fault: Fault, pause_for: float = 1.0) -> None:
        began = time.monotonic()
        proc = target.process
        if fault == "pause":
            pid = proc.pid
            if pid is None or not proc.is_running():
                return
            os.kill(pid, signal.SIGSTOP)
            try:
                time.sleep(pause_for)
            finally:
                os.kill(pid, signal.SIGCONT)
        elif fault == "kill":
            proc.kill()
            self._start(target)
        else:
            proc.stop(sig=target.graceful, timeout=10.0)
            self._start(target)
        self.events.append(FaultEvent(began - self._t0, target.name, fault, time.monotonic() - began))

    def _start(self, target: Target) -> None:
        last: Exception | None = None
        for attempt in range(self.restart_attempts):
            try:
                target.process.start()
                return
            except ProcessError as e:  # e.g. the port is still held by the dying process
                last = e
                time.sleep(0.5 * (attempt + 1))
        raise ProcessError(f"{target.name} did not come back after {self.restart_attempts} starts: {last}")


def run_with_nemesis(nemesis: Nemesis, workload: Callable[[], None]) -> None:
    """Run `workload` while the nemesis injects faults; always heal afterwards."""
    nemesis.start()
    try:
        workload()
    finally:
        nemesis.stop()
