"""The partition processors: the only writers of their partitions. One command loop serves a group of
partitions (all of them, in one server process): it takes every command queued so far, applies each on one
shared transaction with its own partition's context, commits once and only then performs the actions.
Commands of one partition are therefore applied strictly in arrival order, and a burst of commands spread
over many partitions costs one commit (one fsync) instead of one per partition."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable

from pyrestate.server import metrics
from pyrestate.server.partition.context import ApplyContext
from pyrestate.server.partition.model import (
    Action,
    Command,
    Deliver,
    Ingest,
    Invoke,
    ManageInvocation,
    NotifySignal,
    PatchState,
    RestartAsNew,
)
from pyrestate.server.partition.state_machine import apply
from pyrestate.server.storage.api import Storage

log = logging.getLogger(__name__)

MAX_BATCH = 1024
COMMIT_FAILURE_BACKOFF_S = 0.2


def _reply_token(cmd: Command) -> int | None:
    match cmd:
        case (
            Invoke(reply_token=t)
            | Ingest(reply_token=t)
            | NotifySignal(reply_token=t)
            | ManageInvocation(reply_token=t)
            | PatchState(reply_token=t)
            | RestartAsNew(reply_token=t)
        ):
            return t
        case Deliver(inner=inner):
            return _reply_token(inner)
        case _:
            return None


class CommandLoop:
    """Applies the commands of any number of partitions in batches, one commit per batch."""

    def __init__(
        self,
        storage: Storage,
        context: Callable[[int], ApplyContext],
        perform: Callable[[Action], None],
        fail_reply: Callable[[int, BaseException], None],
        on_commit_failure: Callable[[], None] | None = None,
        *,
        on_committed: Callable[[list[tuple[int, Command]]], None] | None = None,
    ) -> None:
        self._storage = storage
        # Told of every command of a committed batch that applied without error (acknowledges remote
        # deliveries to their sender).
        self._on_committed = on_committed
        self._context = context
        self._perform = perform
        self._fail_reply = fail_reply
        self._on_commit_failure = on_commit_failure
        self._queue: deque[tuple[int, Command]] = deque()
        self._wakeup: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._users = 0
        self.applied = 0
        self.batches = 0

    def submit(self, partition: int, command: Command) -> None:
        self._queue.append((partition, command))
        w = self._wakeup
        if w is not None and not w.done():
            w.set_result(None)

    def start(self) -> None:
        self._users += 1
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="partition-processor")

    async def stop(self) -> None:
        self._users -= 1
        if self._users > 0 or self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        queue = self._queue
        while True:
            if not queue:
                self._wakeup = loop.create_future()
                await self._wakeup
                self._wakeup = None
            n = min(len(queue), MAX_BATCH)
            batch = [queue.popleft() for _ in range(n)]
            await self._process(batch)

    async def _process(self, batch: list[tuple[int, Command]]) -> None:
        txn = self._storage.begin()
        contexts: dict[int, ApplyContext] = {}
        actions: list[Action] = []
        failed: set[int] = set()  # ids of the commands rolled back
        for partition, cmd in batch:
            ctx = contexts.get(partition)
            if ctx is None:
                ctx = contexts[partition] = self._context(partition)
            savepoint = txn.savepoint()
            try:
                actions.extend(apply(txn, cmd, ctx))
            except Exception as e:
                log.exception("partition %d: applying %s failed", partition, type(cmd).__name__)
                txn.rollback_to(savepoint)
                failed.add(id(cmd))
                token = _reply_token(cmd)
                if token is not None:
                    self._fail_reply(token, e)
        started = time.perf_counter()
        try:
            await self._storage.commit(txn)
        except Exception as e:
            metrics.commit_failures.inc()
            # Memory is now ahead of storage: queued commands may build on the dropped ones (an attempt's
            # next journal entry would land at the wrong index). Drop everything queued as well, refuse the
            # requests among them, and let the owner rebuild its in-memory view from storage, exactly as
            # after a crash. Commands without a requester are all re-derivable from storage.
            dropped = batch + list(self._queue)
            self._queue.clear()
            log.exception("commit failed; %d commands dropped, recovering from storage", len(dropped))
            for _, cmd in dropped:
                token = _reply_token(cmd)
                if token is not None:
                    self._fail_reply(token, e)
            if self._on_commit_failure is not None:
                self._on_commit_failure()
            await asyncio.sleep(COMMIT_FAILURE_BACKOFF_S)  # storage is failing: do not spin on it
            return
        metrics.commit_latency.observe(time.perf_counter() - started)
        metrics.commit_batch.observe(len(batch))
        self.applied += len(batch)
        self.batches += 1
        if self._on_committed is not None:
            self._on_committed([pc for pc in batch if id(pc[1]) not in failed] if failed else batch)
        for action in actions:
            try:
                self._perform(action)
            except Exception:
                log.exception("action %s failed", type(action).__name__)


class PartitionProcessor:
    """One partition's handle on a command loop (its own loop unless one is shared)."""

    def __init__(
        self,
        partition: int,
        storage: Storage,
        context: Callable[[int], ApplyContext],
        perform: Callable[[Action], None],
        fail_reply: Callable[[int, BaseException], None],
        loop: CommandLoop | None = None,
    ) -> None:
        self.partition = partition
        self.loop = loop or CommandLoop(storage, context, perform, fail_reply)

    def submit(self, command: Command) -> None:
        self.loop.submit(self.partition, command)

    def start(self) -> None:
        self.loop.start()

    async def stop(self) -> None:
        await self.loop.stop()
