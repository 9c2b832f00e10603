"""The partition processor: the only writer of its partition. It takes every command queued so far,
applies them in order on one transaction, commits (grouped with the other partitions' commits) and only
then performs the actions. Commands of one partition are therefore applied strictly in arrival order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from pyrestate.server.partition.context import ApplyContext
from pyrestate.server.partition.model import (
    Action,
    Command,
    Deliver,
    Invoke,
    ManageInvocation,
    NotifySignal,
    PatchState,
)
from pyrestate.server.partition.state_machine import apply
from pyrestate.server.storage.api import Storage

log = logging.getLogger(__name__)

MAX_BATCH = 512


def _reply_token(cmd: Command) -> int | None:
    match cmd:
        case (
            Invoke(reply_token=t)
            | NotifySignal(reply_token=t)
            | ManageInvocation(reply_token=t)
            | PatchState(reply_token=t)
        ):
            return t
        case Deliver(inner=inner):
            return _reply_token(inner)
        case _:
            return None


class PartitionProcessor:
    def __init__(
        self,
        partition: int,
        storage: Storage,
        context: Callable[[int], ApplyContext],
        perform: Callable[[Action], None],
        fail_reply: Callable[[int, BaseException], None],
    ) -> None:
        self.partition = partition
        self._storage = storage
        self._context = context
        self._perform = perform
        self._fail_reply = fail_reply
        self._queue: asyncio.Queue[Command] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.applied = 0

    def submit(self, command: Command) -> None:
        self._queue.put_nowait(command)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"partition-{self.partition}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._process(batch)

    async def _process(self, batch: list[Command]) -> None:
        txn = self._storage.begin()
        ctx = self._context(self.partition)
        actions: list[Action] = []
        for cmd in batch:
            savepoint = txn.savepoint()  # type: ignore[attr-defined]
            try:
                actions.extend(apply(txn, cmd, ctx))
            except Exception as e:
                log.exception("partition %d: applying %s failed", self.partition, type(cmd).__name__)
                txn.rollback_to(savepoint)  # type: ignore[attr-defined]
                token = _reply_token(cmd)
                if token is not None:
                    self._fail_reply(token, e)
        try:
            await self._storage.commit(txn)
        except Exception as e:
            log.exception("partition %d: commit failed; %d commands dropped", self.partition, len(batch))
            for cmd in batch:
                token = _reply_token(cmd)
                if token is not None:
                    self._fail_reply(token, e)
            return
        self.applied += len(batch)
        for action in actions:
            try:
                self._perform(action)
            except Exception:
                log.exception("partition %d: action %s failed", self.partition, type(action).__name__)
