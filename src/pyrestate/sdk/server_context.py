"""The context implementation: bridges user coroutines to the pure state machine and the HTTP stream."""

# Defaults such as `serde=DefaultSerde()` are part of the official API's signatures.
# ruff: noqa: B008

from __future__ import annotations

import asyncio
import contextvars
import copy
import functools
import inspect
import re
import time
import traceback
import typing
from collections.abc import Awaitable, Callable, Coroutine, Generator
from datetime import timedelta
from random import Random
from typing import Any, Literal, TypeVar
from uuid import UUID

from pyrestate.protocol.errors import ErrorCode
from pyrestate.protocol.outcome import metadata_dict, metadata_of
from pyrestate.sdk._vm import (
    VM,
    AnyCompleted,
    CancelSignalReceived,
    ExecuteRun,
    Failure,
    Invocation,
    InvocationIdResult,
    RunRetryConfig,
    StateKeysResult,
    Value,
    VMError,
    Void,
    WaitExternal,
)
from pyrestate.sdk.context import (
    AttemptFinishedEvent,
    DurablePromise,
    HandlerType,
    Request,
    RestateDurableCallFuture,
    RestateDurableFuture,
    RestateDurableSleepFuture,
    RunAction,
    RunOptions,
    ScopedContext,
    SendHandle,
    WorkflowContext,
    WorkflowSharedContext,
)
from pyrestate.sdk.exceptions import (
    RetryableError,
    SdkInternalBaseException,
    SdkInternalException,
    SuspendedException,
    TerminalError,
)
from pyrestate.sdk.serde import BytesSerde, DefaultSerde, Serde
from pyrestate.sdk.service import Handler, extract_core_type, handler_from_callable

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741

Send = Callable[[dict[str, Any]], Awaitable[None]]


def _ms(d: timedelta | None) -> int | None:
    return None if d is None else int(d.total_seconds() * 1000)


class _AttemptFinished(AttemptFinishedEvent):
    def __init__(self) -> None:
        self._event = asyncio.Event()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> None:
        await self._event.wait()

    def set(self) -> None:
        self._event.set()


class ServerDurableFuture(RestateDurableFuture[T]):
    def __init__(self, ctx: InvocationContext, handle: int, mapper: Callable[[Any], T]) -> None:
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
    def __init__(
        self, ctx: InvocationContext, handle: int, id_handle: int, mapper: Callable[[Any], T]
    ) -> None:
        super().__init__(ctx, handle, mapper)
        self.id_handle = id_handle

    async def invocation_id(self) -> str:
        return await self.context.invocation_id_of(self.id_handle)

    async def cancel_invocation(self) -> None:
        self.context.cancel_invocation(await self.invocation_id())


class ServerSleepFuture(ServerDurableFuture[None], RestateDurableSleepFuture):
    pass


class ServerSendHandle(SendHandle):
    def __init__(self, ctx: InvocationContext, id_handle: int) -> None:
        self.context = ctx
        self.id_handle = id_handle

    async def invocation_id(self) -> str:
        return await self.context.invocation_id_of(self.id_handle)

    async def cancel_invocation(self) -> None:
        self.context.cancel_invocation(await self.invocation_id())


class ServerDurablePromise(DurablePromise[T]):
    def __init__(self, ctx: InvocationContext, name: str, serde: Serde[T]) -> None:
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


class InvocationContext(WorkflowContext, WorkflowSharedContext):
    """One implementation serves every handler kind (the runtime rejects commands a kind may not use)."""

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
        self.attempt_finished = _AttemptFinished()

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

    # -- request / determinism helpers

    def request(self) -> Request:
        return Request(
            id=self.invocation.invocation_id,
            headers=dict(self.invocation.headers),
            attempt_headers=self.attempt_headers,
            body=self.invocation.input,
            attempt_finished_event=self.attempt_finished,
            scope=self.invocation.scope,
            limit_key=self.invocation.limit_key,
            idempotency_key=self.invocation.idempotency_key,
        )

    def scope(self, scope: str) -> ScopedContext:
        return ServerScopedContext(self, scope)

    def key(self) -> str:
        return self.invocation.key

    def random(self) -> Random:
        return self._random

    def uuid(self) -> UUID:
        return UUID(int=self._random.getrandbits(128), version=4)

    def time(self) -> RestateDurableFuture[float]:
        return self.run_typed("timestamp", time.time)

    # -- state

    def get(
        self,
        name: str,
        serde: Serde[T] = DefaultSerde(),
        type_hint: type[T] | None = None,
        entry_name: str | None = None,
    ) -> RestateDurableFuture[T | None]:
        if isinstance(serde, DefaultSerde):
            serde = serde.with_maybe_type(type_hint)
        handle = self.vm.sys_state_get(name, entry_name or "")
        return ServerDurableFuture(self, handle, self.mapper(serde))

    def state_keys(self, entry_name: str | None = None) -> Awaitable[list[str]]:
        handle = self.vm.sys_state_get_keys(entry_name or "")
        return ServerDurableFuture(self, handle, self.mapper(DefaultSerde()))

    def set(
        self, name: str, value: T, serde: Serde[T] = DefaultSerde(), entry_name: str | None = None
    ) -> None:
        self.vm.sys_state_set(name, serde.serialize(value), entry_name or "")

    def clear(self, name: str, entry_name: str | None = None) -> None:
        self.vm.sys_state_clear(name, entry_name or "")

    def clear_all(self, entry_name: str | None = None) -> None:
        self.vm.sys_state_clear_all(entry_name or "")

    # -- run

    def _schedule_run(
        self,
        name: str,
        action: Callable[[], Any],
        serde: Serde[T],
        config: RunRetryConfig,
    ) -> RestateDurableFuture[T]:
        handle, replayed = self.vm.sys_run(name)
        if not replayed:
            self._run_closures[handle] = lambda: self._execute_run(handle, action, serde, config)
        return ServerDurableFuture(self, handle, self.mapper(serde))

    async def _execute_run(
        self, handle: int, action: Callable[[], Any], serde: Serde[T], config: RunRetryConfig
    ) -> None:
        started = time.monotonic()
        # A proposal the state machine refuses (VMError) has already closed it with an ErrorMessage.
        try:
            try:
                if inspect.iscoroutinefunction(action):
                    result = await action()
                else:
                    loop = asyncio.get_running_loop()
                    call = functools.partial(contextvars.copy_context().run, action)
                    result = await loop.run_in_executor(None, call)
                    if inspect.isawaitable(result):
                        result = await result
                value = serde.serialize(result)
            except TerminalError as t:
                self.vm.propose_run_completion(
                    handle, Failure(t.status_code, t.message, metadata_of(t.metadata))
                )
            except RetryableError as r:
                self.vm.propose_run_completion_transient(
                    handle,
                    Failure(r.status_code, r.message),
                    "".join(traceback.format_exception(r)),
                    int((time.monotonic() - started) * 1000),
                    config,
                    delay_override_ms=_ms(r.retry_after),
                )
            except (asyncio.CancelledError, SdkInternalBaseException):
                raise
            except Exception as e:
                self.vm.propose_run_completion_transient(
                    handle,
                    Failure(ErrorCode.INTERNAL, repr(e)),
                    "".join(traceback.format_exception(e)),
                    int((time.monotonic() - started) * 1000),
                    config,
                )
            else:
                self.vm.propose_run_completion(handle, Value(value))
        except VMError:
            pass
        await self.flush()
        self.notify()

    def run(
        self,
        name: str,
        action: RunAction[T],
        serde: Serde[T] = DefaultSerde(),
        max_attempts: int | None = None,
        max_retry_duration: timedelta | None = None,
        type_hint: type[T] | None = None,
        args: tuple[Any, ...] | None = None,
    ) -> RestateDurableFuture[T]:
        if isinstance(serde, DefaultSerde):
            if type_hint is None:
                type_hint = _return_hint(action)
            serde = serde.with_maybe_type(type_hint)
        func = functools.partial(action, *args) if args is not None else action
        config = RunRetryConfig(max_attempts=max_attempts, max_duration_ms=_ms(max_retry_duration))
        return self._schedule_run(name, func, serde, config)

    def run_typed(
        self,
        name: str,
        action: Callable[..., Any],
        options: RunOptions[T] = RunOptions(),
        /,
        *args: Any,
        **kwargs: Any,
    ) -> RestateDurableFuture[T]:
        serde = options.serde
        if isinstance(serde, DefaultSerde):
            hint = options.type_hint if options.type_hint is not None else _return_hint(action)
            _, core = extract_core_type(hint)
            serde = serde.with_maybe_type(core)
        options = copy.copy(options)
        max_duration = (
            options.max_duration if options.max_duration is not None else options.max_retry_duration
        )
        config = RunRetryConfig(
            max_attempts=options.max_attempts,
            max_duration_ms=_ms(max_duration),
            initial_interval_ms=_ms(options.initial_retry_interval),
            max_interval_ms=_ms(options.max_retry_interval),
            interval_factor=options.retry_interval_factor,
        )
        func = functools.partial(action, *args, **kwargs)
        return self._schedule_run(name, func, serde, config)

    # -- timers

    def sleep(self, delta: timedelta, name: str | None = None) -> RestateDurableSleepFuture:
        wake_up = int(time.time() * 1000) + int(delta.total_seconds() * 1000)
        handle = self.vm.sys_sleep(wake_up, name or "")
        return ServerSleepFuture(self, handle, lambda _r: None)

    # -- calls

    def _call(
        self,
        service: str,
        handler: str,
        parameter: bytes,
        key: str | None,
        idempotency_key: str | None,
        headers: dict[str, str] | None,
        serde: Serde[T],
        scope: str | None = None,
        limit_key: str | None = None,
    ) -> ServerCallFuture[T]:
        _check_scope(scope, limit_key)
        id_handle, handle = self.vm.sys_call(
            service,
            handler,
            parameter,
            key,
            idempotency_key,
            list((headers or {}).items()),
            scope=scope,
            limit_key=limit_key,
        )
        self._call_id_handles.append(id_handle)
        return ServerCallFuture(self, handle, id_handle, self.mapper(serde))

    def _send_cmd(
        self,
        service: str,
        handler: str,
        parameter: bytes,
        key: str | None,
        send_delay: timedelta | None,
        idempotency_key: str | None,
        headers: dict[str, str] | None,
        scope: str | None = None,
        limit_key: str | None = None,
    ) -> SendHandle:
        _check_scope(scope, limit_key)
        invoke_time = 0
        if send_delay is not None and send_delay.total_seconds() > 0:
            invoke_time = int(time.time() * 1000) + int(send_delay.total_seconds() * 1000)
        id_handle = self.vm.sys_send(
            service,
            handler,
            parameter,
            key,
            invoke_time,
            idempotency_key,
            list((headers or {}).items()),
            scope=scope,
            limit_key=limit_key,
        )
        return ServerSendHandle(self, id_handle)

    @staticmethod
    def _target(tpe: Any) -> Handler[Any, Any]:
        return handler_from_callable(tpe)

    def service_call(
        self,
        tpe: HandlerType[I, O],
        arg: I,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> RestateDurableCallFuture[O]:
        h = self._target(tpe)
        param = h.handler_io.input_serde.serialize(arg)
        return self._call(
            h.service_tag.name, h.name, param, None, idempotency_key, headers, h.handler_io.output_serde
        )

    def service_send(
        self,
        tpe: HandlerType[I, O],
        arg: I,
        send_delay: timedelta | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> SendHandle:
        h = self._target(tpe)
        param = h.handler_io.input_serde.serialize(arg)
        return self._send_cmd(h.service_tag.name, h.name, param, None, send_delay, idempotency_key, headers)

    def object_call(
        self,
        tpe: HandlerType[I, O],
        key: str,
        arg: I,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> RestateDurableCallFuture[O]:
        h = self._target(tpe)
        param = h.handler_io.input_serde.serialize(arg)
        return self._call(
            h.service_tag.name, h.name, param, key, idempotency_key, headers, h.handler_io.output_serde
        )

    def object_send(
        self,
        tpe: HandlerType[I, O],
        key: str,
        arg: I,
        send_delay: timedelta | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> SendHandle:
        h = self._target(tpe)
        param = h.handler_io.input_serde.serialize(arg)
        return self._send_cmd(h.service_tag.name, h.name, param, key, send_delay, idempotency_key, headers)

    workflow_call = object_call
    workflow_send = object_send

    def generic_call(
        self,
        service: str,
        handler: str,
        arg: bytes,
        key: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
        scope: str | None = None,
        limit_key: str | None = None,
    ) -> RestateDurableCallFuture[bytes]:
        serde = BytesSerde()
        return self._call(service, handler, arg, key, idempotency_key, headers, serde, scope, limit_key)

    def generic_send(
        self,
        service: str,
        handler: str,
        arg: bytes,
        key: str | None = None,
        send_delay: timedelta | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
        scope: str | None = None,
        limit_key: str | None = None,
    ) -> SendHandle:
        return self._send_cmd(
            service, handler, arg, key, send_delay, idempotency_key, headers, scope, limit_key
        )

    # -- awakeables, signals, invocations

    def awakeable(
        self, serde: Serde[T] = DefaultSerde(), type_hint: type[T] | None = None
    ) -> tuple[str, RestateDurableFuture[T]]:
        if isinstance(serde, DefaultSerde):
            serde = serde.with_maybe_type(type_hint)
        name, handle = self.vm.sys_awakeable()
        return name, ServerDurableFuture(self, handle, self.mapper(serde))

    def resolve_awakeable(self, name: str, value: I, serde: Serde[I] = DefaultSerde()) -> None:
        self.vm.sys_complete_awakeable(name, Value(serde.serialize(value)))

    def reject_awakeable(self, name: str, failure_message: str, failure_code: int = 500) -> None:
        self.vm.sys_complete_awakeable(name, Failure(failure_code, failure_message))

    def signal(
        self, name: str, serde: Serde[T] = DefaultSerde(), type_hint: type[T] | None = None
    ) -> RestateDurableFuture[T]:
        if isinstance(serde, DefaultSerde):
            serde = serde.with_maybe_type(type_hint)
        return ServerDurableFuture(self, self.vm.sys_signal(name), self.mapper(serde))

    def resolve_signal(
        self, invocation_id: str, name: str, value: I, serde: Serde[I] = DefaultSerde()
    ) -> None:
        self.vm.sys_send_signal(invocation_id, name, Value(serde.serialize(value)))

    def reject_signal(
        self, invocation_id: str, name: str, failure_message: str, failure_code: int = 500
    ) -> None:
        self.vm.sys_send_signal(invocation_id, name, Failure(failure_code, failure_message))

    def cancel_invocation(self, invocation_id: str) -> None:
        self.vm.sys_cancel_invocation(invocation_id)

    def attach_invocation(
        self, invocation_id: str, serde: Serde[T] = DefaultSerde(), type_hint: type[T] | None = None
    ) -> RestateDurableFuture[T]:
        if isinstance(serde, DefaultSerde):
            serde = serde.with_maybe_type(type_hint)
        handle = self.vm.sys_attach_invocation(invocation_id)
        return ServerDurableFuture(self, handle, self.mapper(serde))

    # -- workflow

    def promise(
        self, name: str, serde: Serde[T] = DefaultSerde(), type_hint: type[T] | None = None
    ) -> DurablePromise[T]:
        if isinstance(serde, DefaultSerde):
            serde = serde.with_maybe_type(type_hint)
        return ServerDurablePromise(self, name, serde)


_SCOPE_PART = re.compile(r"[a-zA-Z0-9_.-]{1,36}")


def _check_scope(scope: str | None, limit_key: str | None) -> None:
    """A scope, and each of the one or two `/`-separated levels of a limit key: 1-36 of [a-zA-Z0-9_.-]."""
    if scope is None:
        if limit_key is not None:
            raise TerminalError("a limit key needs a scope", ErrorCode.BAD_REQUEST)
        return
    levels = [] if limit_key is None else limit_key.split("/")
    if len(levels) > 2 or not all(_SCOPE_PART.fullmatch(p) for p in (scope, *levels)):
        raise TerminalError(
            f"invalid scope {scope!r} or limit key {limit_key!r}: 1 to 36 characters of [a-zA-Z0-9_.-], "
            "a limit key with one or two levels separated by '/'",
            ErrorCode.BAD_REQUEST,
        )


class ServerScopedContext(ScopedContext):
    """What `ctx.scope(s)` returns: the context's calls and sends, with the scope filled in."""

    def __init__(self, context: InvocationContext, scope: str) -> None:
        self._context = context
        self._scope = scope

    def _call(
        self, tpe: Any, key: str | None, arg: Any, limit_key: str | None, ikey: str | None, headers: Any
    ) -> Any:
        h = handler_from_callable(tpe)
        param = h.handler_io.input_serde.serialize(arg)
        return self._context._call(
            h.service_tag.name, h.name, param, key, ikey, headers, h.handler_io.output_serde, self._scope,
            limit_key,
        )

    def _send(
        self,
        tpe: Any,
        key: str | None,
        arg: Any,
        delay: timedelta | None,
        limit_key: str | None,
        ikey: str | None,
        headers: Any,
    ) -> SendHandle:
        h = handler_from_callable(tpe)
        param = h.handler_io.input_serde.serialize(arg)
        return self._context._send_cmd(
            h.service_tag.name, h.name, param, key, delay, ikey, headers, self._scope, limit_key
        )

    def service_call(
        self,
        tpe: HandlerType[I, O],
        arg: I,
        limit_key: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> RestateDurableCallFuture[O]:
        return typing.cast(
            RestateDurableCallFuture[O], self._call(tpe, None, arg, limit_key, idempotency_key, headers)
        )

    def service_send(
        self,
        tpe: HandlerType[I, O],
        arg: I,
        send_delay: timedelta | None = None,
        limit_key: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> SendHandle:
        return self._send(tpe, None, arg, send_delay, limit_key, idempotency_key, headers)

    def object_call(
        self,
        tpe: HandlerType[I, O],
        key: str,
        arg: I,
        limit_key: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> RestateDurableCallFuture[O]:
        return typing.cast(
            RestateDurableCallFuture[O], self._call(tpe, key, arg, limit_key, idempotency_key, headers)
        )

    def object_send(
        self,
        tpe: HandlerType[I, O],
        key: str,
        arg: I,
        send_delay: timedelta | None = None,
        limit_key: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> SendHandle:
        return self._send(tpe, key, arg, send_delay, limit_key, idempotency_key, headers)

    workflow_call = object_call
    workflow_send = object_send


def _return_hint(action: Any) -> Any:
    try:
        ann = inspect.signature(action, eval_str=True).return_annotation
    except (TypeError, ValueError, NameError):
        return None
    return None if ann is inspect.Signature.empty else ann


_ = Void  # re-exported for users that introspect results
