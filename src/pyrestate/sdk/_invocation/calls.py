"""Calls and one-way sends to other handlers, plain or within a scope (`ctx.scope(s)`)."""

from __future__ import annotations

import re
import time
import typing
from datetime import timedelta
from typing import Any, TypeVar

from pyrestate.protocol.errors import ErrorCode
from pyrestate.sdk._invocation.futures import ServerCallFuture, ServerSendHandle
from pyrestate.sdk._invocation.plumbing import ContextPlumbing
from pyrestate.sdk.context import HandlerType, RestateDurableCallFuture, ScopedContext, SendHandle
from pyrestate.sdk.exceptions import TerminalError
from pyrestate.sdk.serde import BytesSerde, Serde
from pyrestate.sdk.service import Handler, handler_from_callable

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741


class Calls(ContextPlumbing):
    """Typed calls and sends by handler reference, and the generic ones by service and handler name."""

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

    def __init__(self, context: Calls, scope: str) -> None:
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
