"""The awaitables the context hands to user code: durable futures, call and send handles, promises."""

from __future__ import annotations

import asyncio
import typing
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, TypeVar

from pyrestate.sdk._vm import Failure, Value
from pyrestate.sdk.context import (
    AttemptFinishedEvent,
    DurablePromise,
    RestateDurableCallFuture,
    RestateDurableFuture,
    RestateDurableSleepFuture,
    SendHandle,
)
from pyrestate.sdk.exceptions import TerminalError
from pyrestate.sdk.serde import BytesSerde, Serde

if TYPE_CHECKING:
    from pyrestate.sdk._invocation.plumbing import ContextPlumbing


T = TypeVar("T")


class AttemptFinished(AttemptFinishedEvent):
    def __init__(self) -> None:
        self._event = asyncio.Event()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> None:
        await self._event.wait()

    def set(self) -> None:
        self._event.set()


class ServerDurableFuture(RestateDurableFuture[T]):
    def __init__(self, ctx: ContextPlumbing, handle: int, mapper: Callable[[Any], T]) -> None:
        self.context = ctx
        self.handle = handle
        self._mapper = mapper
        self._done = False
        self._value: Any = None
        self._error: BaseException | None = None

    def is_completed(self) -> bool:
        return self._done or self.context.vm.is_completed(self.handle)

    def _resolve(self) -> T:
        if not self._done:
            try:
                self._value = self._mapper(self.context.vm.take_result(self.handle))
            except TerminalError as e:
                self._error = e
            self._done = True
        if self._error is not None:
            raise self._error
        return typing.cast(T, self._value)

    async def _get(self) -> T:
        if not self._done:
            await self.context.await_handles([self.handle])
        return self._resolve()

    def __await__(self) -> Generator[Any, Any, T]:
        return self._get().__await__()


class ServerCallFuture(ServerDurableFuture[T], RestateDurableCallFuture[T]):
    def __init__(self, ctx: ContextPlumbing, handle: int, id_handle: int, mapper: Callable[[Any], T]) -> None:
        super().__init__(ctx, handle, mapper)
        self.id_handle = id_handle

    async def invocation_id(self) -> str:
        return await self.context.invocation_id_of(self.id_handle)

    async def cancel_invocation(self) -> None:
        self.context.cancel_invocation(await self.invocation_id())


class ServerSleepFuture(ServerDurableFuture[None], RestateDurableSleepFuture):
    pass


class ServerSendHandle(SendHandle):
    def __init__(self, ctx: ContextPlumbing, id_handle: int) -> None:
        self.context = ctx
        self.id_handle = id_handle

    async def invocation_id(self) -> str:
        return await self.context.invocation_id_of(self.id_handle)

    async def cancel_invocation(self) -> None:
        self.context.cancel_invocation(await self.invocation_id())


class ServerDurablePromise(DurablePromise[T]):
    def __init__(self, ctx: ContextPlumbing, name: str, serde: Serde[T]) -> None:
        super().__init__(name, serde)
        self.ctx = ctx

    def value(self) -> RestateDurableFuture[T]:
        handle = self.ctx.vm.sys_get_promise(self.name)
        return ServerDurableFuture(self.ctx, handle, self.ctx.mapper(self.serde))

    async def resolve(self, value: T) -> None:
        handle = self.ctx.vm.sys_complete_promise(self.name, Value(self.serde.serialize(value)))
        await ServerDurableFuture(self.ctx, handle, self.ctx.mapper(BytesSerde()))

    async def reject(self, message: str, code: int = 500) -> None:
        handle = self.ctx.vm.sys_complete_promise(self.name, Failure(code, message))
        await ServerDurableFuture(self.ctx, handle, self.ctx.mapper(BytesSerde()))

    async def peek(self) -> T | None:
        handle = self.ctx.vm.sys_peek_promise(self.name)
        return await ServerDurableFuture(self.ctx, handle, self.ctx.mapper(self.serde))

    def __await__(self) -> Generator[Any, Any, T]:
        return self.value().__await__()
