"""`ctx.run`: executing a side effect once and proposing its result (or failure) to the journal."""

# Defaults such as `options=RunOptions()` are part of the official API's signatures.
# ruff: noqa: B008

from __future__ import annotations

import asyncio
import contextvars
import copy
import functools
import inspect
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from pyrestate.protocol.errors import ErrorCode
from pyrestate.protocol.outcome import metadata_of
from pyrestate.sdk._invocation.futures import ServerDurableFuture
from pyrestate.sdk._invocation.plumbing import ContextPlumbing
from pyrestate.sdk._vm import Failure, RunRetryConfig, Value, VMError
from pyrestate.sdk.context import RestateDurableFuture, RunAction, RunOptions
from pyrestate.sdk.exceptions import RetryableError, SdkInternalBaseException, TerminalError
from pyrestate.sdk.serde import DefaultSerde, Serde
from pyrestate.sdk.service import extract_core_type

T = TypeVar("T")


def _ms(d: timedelta | None) -> int | None:
    return None if d is None else int(d.total_seconds() * 1000)


class SideEffects(ContextPlumbing):
    """`run` and `run_typed`: the action runs in a task once the VM asks for it (never on replay)."""

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


def _return_hint(action: Any) -> Any:
    try:
        ann = inspect.signature(action, eval_str=True).return_annotation
    except (TypeError, ValueError, NameError):
        return None
    return None if ann is inspect.Signature.empty else ann
