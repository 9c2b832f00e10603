"""The context implementation: bridges user coroutines to the pure state machine and the HTTP stream."""

# Defaults such as `serde=DefaultSerde()` are part of the official API's signatures.
# ruff: noqa: B008

from __future__ import annotations

import time
from collections.abc import Awaitable
from datetime import timedelta
from random import Random
from typing import TypeVar
from uuid import UUID

from pyrestate.sdk._invocation.calls import Calls, ServerScopedContext
from pyrestate.sdk._invocation.futures import ServerDurableFuture, ServerDurablePromise, ServerSleepFuture
from pyrestate.sdk._invocation.run import SideEffects
from pyrestate.sdk._vm import Failure, Value, Void
from pyrestate.sdk.context import (
    DurablePromise,
    Request,
    RestateDurableFuture,
    RestateDurableSleepFuture,
    ScopedContext,
    WorkflowContext,
    WorkflowSharedContext,
)
from pyrestate.sdk.serde import DefaultSerde, Serde

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741


class InvocationContext(SideEffects, Calls, WorkflowContext, WorkflowSharedContext):
    """One implementation serves every handler kind (the runtime rejects commands a kind may not use)."""

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

    # -- timers

    def sleep(self, delta: timedelta, name: str | None = None) -> RestateDurableSleepFuture:
        wake_up = int(time.time() * 1000) + int(delta.total_seconds() * 1000)
        handle = self.vm.sys_sleep(wake_up, name or "")
        return ServerSleepFuture(self, handle, lambda _r: None)

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


_ = Void  # re-exported for users that introspect results
