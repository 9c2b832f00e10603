"""ASGI endpoint: /discover, /invoke/{service}/{handler}, /health (path prefix parsed from the right)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import traceback
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AsyncExitStack
from typing import Any, Literal

from pyrestate.protocol.identity import IdentityVerificationError, IdentityVerifier
from pyrestate.protocol.manifest import ManifestError
from pyrestate.protocol.outcome import metadata_of
from pyrestate.protocol.versions import (
    choose_discovery_version,
    discovery_content_type,
    invocation_content_type,
    parse_invocation_content_type,
)
from pyrestate.sdk._vm import VM, Failure, Value, VMError
from pyrestate.sdk._vm.results import MAX_VERSION, MIN_VERSION
from pyrestate.sdk.discovery import compute_manifest_json
from pyrestate.sdk.exceptions import RetryableError, SdkInternalBaseException, TerminalError
from pyrestate.sdk.logging import current_vm
from pyrestate.sdk.server_context import InvocationContext
from pyrestate.sdk.service import AnyService, Handler

logger = logging.getLogger("pyrestate.sdk")

SDK_VERSION = "0.1.0"
SERVER_HEADER = (b"x-restate-server", f"pyrestate-sdk-python/{SDK_VERSION}".encode())

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Endpoint:
    """A set of services served by one ASGI app."""

    def __init__(self) -> None:
        self.services: dict[str, AnyService] = {}
        self.protocol: Literal["bidi", "request_response"] | None = None
        self.identity_keys: list[str] = []

    def bind(self, *services: AnyService) -> Endpoint:
        for service in services:
            if service.name in self.services:
                raise ValueError(f"service {service.name} is already bound")
            self.services[service.name] = service
        return self

    def streaming_protocol(self) -> Endpoint:
        self.protocol = "bidi"
        return self

    def request_response_protocol(self) -> Endpoint:
        self.protocol = "request_response"
        return self

    def identity_key(self, identity_key: str) -> Endpoint:
        self.identity_keys.append(identity_key)
        return self

    def app(self) -> ASGIApp:
        return asgi_app(self)


def app(
    services: Iterable[AnyService],
    protocol: Literal["bidi", "request_response"] | None = None,
    identity_keys: list[str] | None = None,
    journal_value_codec: Any = None,
) -> ASGIApp:
    """An ASGI application hosting the given services."""
    if journal_value_codec is not None:
        raise NotImplementedError("journal value codecs are not supported by this SDK")
    endpoint = Endpoint()
    if protocol == "bidi":
        endpoint.streaming_protocol()
    elif protocol == "request_response":
        endpoint.request_response_protocol()
    endpoint.bind(*services)
    for key in identity_keys or []:
        endpoint.identity_key(key)
    return endpoint.app()


def parse_path(path: str) -> tuple[str, str | None, str | None]:
    fragments = path.rsplit("/", 4)
    if len(fragments) >= 3 and fragments[-3] == "invoke":
        return "invocation", fragments[-2], fragments[-1]
    if fragments[-1] == "health":
        return "health", None, None
    if fragments[-1] == "discover":
        return "discover", None, None
    return "unknown", None, None


def _headers(scope: Scope) -> list[tuple[str, str]]:
    return [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope.get("headers", [])]


async def _respond(send: Send, status: int, body: bytes = b"", content_type: str | None = None) -> None:
    headers = [SERVER_HEADER]
    if content_type:
        headers.insert(0, (b"content-type", content_type.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def asgi_app(endpoint: Endpoint) -> ASGIApp:
    # Parsed now so that a malformed key fails at start-up, not on the first request.
    verifier = IdentityVerifier(endpoint.identity_keys)

    async def application(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            raise NotImplementedError(f"unknown scope type {scope['type']}")
        kind, service_name, handler_name = parse_path(scope["path"])
        if kind == "health":
            await _respond(send, 200, b'{"status":"ok"}', "application/json")
            return
        headers = _headers(scope)
        try:
            verifier.verify(dict(headers), scope["path"])
        except IdentityVerificationError as e:
            logger.warning("rejected request to %s: %s", scope["path"], e)
            await _respond(send, 401)
            return
        if kind == "discover":
            await _discover(scope, headers, send, endpoint)
            return
        if kind == "unknown":
            await _respond(send, 404)
            return
        service = endpoint.services.get(service_name or "")
        handler = service.handlers.get(handler_name or "") if service else None
        if handler is None:
            await _respond(send, 404)
            return
        await _invoke(handler, headers, receive, send)

    return application


async def _discover(scope: Scope, headers: list[tuple[str, str]], send: Send, endpoint: Endpoint) -> None:
    accept = next((v for k, v in headers if k == "accept"), None)
    version = choose_discovery_version(accept)
    if version is None:
        await _respond(send, 415, f"Unsupported discovery version {accept}".encode(), "text/plain")
        return
    if endpoint.protocol is not None:
        mode: Literal["BIDI_STREAM", "REQUEST_RESPONSE"] = (
            "BIDI_STREAM" if endpoint.protocol == "bidi" else "REQUEST_RESPONSE"
        )
    else:
        mode = "REQUEST_RESPONSE" if scope.get("http_version") == "1.1" else "BIDI_STREAM"
    try:
        body = compute_manifest_json(endpoint.services.values(), version, mode)
    except ManifestError as e:
        await _respond(send, 500, f"Error when computing discovery {e}".encode(), "text/plain")
        return
    await _respond(send, 200, body, discovery_content_type(version))


def _invocation_version(content_type: str | None) -> int | None:
    """The protocol version of an invocation request if this SDK speaks it (else the answer is 415)."""
    if not content_type:
        return None
    try:
        version = int(parse_invocation_content_type(content_type))
    except ValueError:
        return None
    return version if MIN_VERSION <= version <= MAX_VERSION else None


async def _invoke(
    handler: Handler[Any, Any], headers: list[tuple[str, str]], receive: Receive, send: Send
) -> None:
    content_type = next((v for k, v in headers if k == "content-type"), None)
    version = _invocation_version(content_type)
    if version is None:
        await _respond(
            send, 415, f"Unsupported service protocol version {content_type}".encode(), "text/plain"
        )
        return
    # Response head first, like the official SDK: the runtime may wait for it before streaming the journal.
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", invocation_content_type(version).encode()),
                SERVER_HEADER,
            ],
        }
    )
    vm = VM(version)
    current_vm.set(vm)
    input_done = asyncio.Event()

    async def read_one() -> bool:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            if not vm.input_closed:
                with contextlib.suppress(VMError):
                    vm.notify_input_closed()
            input_done.set()
            return False
        try:
            vm.feed(msg.get("body", b""))
            if not msg.get("more_body", False):
                vm.notify_input_closed()
        except VMError:
            pass
        if not msg.get("more_body", False):
            input_done.set()
            return False
        return True

    try:
        while not vm.is_ready_to_execute() and not vm.closed:
            if not await read_one():
                break
    except VMError:
        pass
    if vm.closed or not vm.is_ready_to_execute():
        await _finish(vm, send, input_done, None)
        return

    invocation = vm.sys_input()
    ctx = InvocationContext(vm, handler, invocation, dict(headers), send)

    async def reader() -> None:
        while not input_done.is_set():
            if not await read_one():
                break
            ctx.notify()
        ctx.notify()

    reader_task = asyncio.ensure_future(reader()) if not input_done.is_set() else None
    try:
        await _run_handler(ctx, handler)
        await ctx.flush()
    finally:
        ctx.on_attempt_finished()
    await _finish(vm, send, input_done, reader_task)


async def _finish(
    vm: VM, send: Send, input_done: asyncio.Event, reader_task: asyncio.Future[None] | None
) -> None:
    data = vm.take_output()
    if data:
        await send({"type": "http.response.body", "body": data, "more_body": True})
    # The runtime closes its side after End/Suspension/Error; wait for it so the stream ends cleanly.
    if reader_task is not None:
        try:
            await asyncio.wait_for(asyncio.shield(reader_task), timeout=30)
        except (TimeoutError, asyncio.CancelledError):
            reader_task.cancel()
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _run_handler(ctx: InvocationContext, handler: Handler[Any, Any]) -> None:
    vm = ctx.vm
    io = handler.handler_io
    try:
        try:
            async with AsyncExitStack() as stack:
                for manager in handler.context_managers or []:
                    await stack.enter_async_context(manager())
                if handler.arity == 2:
                    try:
                        arg = io.input_serde.deserialize(ctx.invocation.input)
                    except Exception as e:
                        raise TerminalError(f"Unable to parse an input argument. {e}") from e
                    result = handler.fn(ctx, arg)
                else:
                    result = handler.fn(ctx)
                if inspect.isawaitable(result):
                    result = await result
            out = io.output_serde.serialize(result)
            vm.sys_write_output(Value(bytes(out)))
            vm.sys_end()
        except TerminalError as t:
            vm.sys_write_output(Failure(t.status_code, t.message, metadata_of(t.metadata)))
            vm.sys_end()
        except RetryableError as r:
            delay = None if r.retry_after is None else int(r.retry_after.total_seconds() * 1000)
            vm.notify_error(r.message, "".join(traceback.format_exception(r)), r.status_code, delay)
        except (SdkInternalBaseException, VMError):
            pass
        except asyncio.CancelledError:
            raise
        except Exception as e:
            cause: BaseException | None = e
            while cause is not None and not isinstance(cause, TerminalError | SdkInternalBaseException):
                cause = cause.__cause__
            if isinstance(cause, TerminalError):
                vm.sys_write_output(Failure(cause.status_code, cause.message, metadata_of(cause.metadata)))
                vm.sys_end()
            elif cause is None:
                logger.warning("handler %s raised %r", handler.name, e)
                vm.notify_error(repr(e), "".join(traceback.format_exception(e)))
    except VMError:
        pass
