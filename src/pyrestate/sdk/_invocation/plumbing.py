"""What every family of context calls stands on: the VM, the output stream, waiting for progress."""

from __future__ import annotations

import asyncio
import typing
from collections.abc import Awaitable, Callable, Coroutine
from random import Random
from typing import Any, Literal, TypeVar

from pyrestate.protocol.errors import ErrorCode
from pyrestate.protocol.outcome import metadata_dict
from pyrestate.sdk._invocation.futures import AttemptFinished
from pyrestate.sdk._vm import (
    VM,
    AnyCompleted,
    CancelSignalReceived,
    ExecuteRun,
    Failure,
    Invocation,
    InvocationIdResult,
    StateKeysResult,
    Value,
    VMError,
    WaitExternal,
)
from pyrestate.sdk.exceptions import SdkInternalException, SuspendedException, TerminalError
from pyrestate.sdk.serde import Serde
from pyrestate.sdk.service import Handler

T = TypeVar("T")

Send = Callable[[dict[str, Any]], Awaitable[None]]


class ContextPlumbing:
    """The state of one attempt's context and the loop that turns awaiting a handle into VM progress."""

    def __init__(
        self,
        vm: VM,
        handler: Handler[Any, Any],
        invocation: Invocation,
        attempt_headers: dict[str, str],
        send: Send,
    ) -> None:
        self.vm = vm
        self.handler = handler
        self.invocation = invocation
        self.attempt_headers = attempt_headers
        self._send = send
        self._send_lock = asyncio.Lock()
        self._waiters: list[asyncio.Future[None]] = []
        self._run_closures: dict[int, Callable[[], Coroutine[Any, Any, None]]] = {}
        self._tasks: set[asyncio.Future[Any]] = set()
        self._call_id_handles: list[int] = []
        self._random = Random(invocation.random_seed)
        self.attempt_finished = AttemptFinished()

    # -- plumbing

    async def flush(self) -> None:
        async with self._send_lock:
            data = self.vm.take_output()
            if data:
                await self._send({"type": "http.response.body", "body": data, "more_body": True})

    def notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    def mapper(self, serde: Serde[T]) -> Callable[[Any], T]:
        def convert(res: Any) -> T:
            if isinstance(res, Value):
                return typing.cast(T, serde.deserialize(res.content))
            if isinstance(res, Failure):
                raise TerminalError(res.message, res.code, metadata_dict(res.metadata))
            if isinstance(res, InvocationIdResult):
                return typing.cast(T, res.invocation_id)
            if isinstance(res, StateKeysResult):
                return typing.cast(T, res.keys)
            return typing.cast(T, None)

        return convert

    async def await_handles(self, handles: list[int], mode: Literal["any", "all"] = "any") -> None:
        loop = asyncio.get_running_loop()
        while True:
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                progress = self.vm.do_progress(handles, mode)
            except VMError:
                await self.flush()
                raise SdkInternalException() from None
            await self.flush()
            if isinstance(progress, AnyCompleted):
                self.notify()
                return
            if isinstance(progress, ExecuteRun):
                self._start_run(progress.handle)
                continue
            if isinstance(progress, WaitExternal):
                await waiter
                continue
            if isinstance(progress, CancelSignalReceived):
                await self._cancel_children()
                raise TerminalError("cancelled", ErrorCode.CONFLICT)
            raise SuspendedException()

    async def _cancel_children(self) -> None:
        for h in list(self._call_id_handles):
            inv_id = await self.invocation_id_of(h)
            self.vm.sys_cancel_invocation(inv_id)
        await self.flush()

    async def invocation_id_of(self, id_handle: int) -> str:
        await self.await_handles([id_handle])
        res = self.vm.take_result(id_handle)
        if isinstance(res, InvocationIdResult):
            return res.invocation_id
        if isinstance(res, Failure):
            raise TerminalError(res.message, res.code, metadata_dict(res.metadata))
        raise TerminalError("no invocation id received for the call", ErrorCode.INTERNAL)

    def _start_run(self, handle: int) -> None:
        factory = self._run_closures.pop(handle, None)
        if factory is None:
            return
        task = asyncio.ensure_future(factory())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def on_attempt_finished(self) -> None:
        self.attempt_finished.set()
        for t in list(self._tasks):
            t.cancel()

    def cancel_invocation(self, invocation_id: str) -> None:
        self.vm.sys_cancel_invocation(invocation_id)
