"""One connection of the fast HTTP/1.1 front: llhttp's callbacks, the asyncio protocol, the deadlines, and
answering each complete request through the ASGI app (or handing the connection over to hypercorn)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import TYPE_CHECKING, Any

import httptools

from pyrestate.server.fasthttp.http1 import (
    MAX_FAST_BODY,
    PAUSE_ABOVE,
    REFUSAL_LINGER,
    Date,
    asgi_scope,
    closing_answer,
    content_length,
    needs_hypercorn,
    status_line,
)

if TYPE_CHECKING:
    from pyrestate.server.fasthttp.server import FastHTTPServer


log = logging.getLogger("pyrestate.server.http")


class Connection(asyncio.Protocol):
    """One connection on the fast path: requests parsed as they arrive, answered one at a time, in order."""

    def __init__(self, server: FastHTTPServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()  # bytes from the start of the request being read on
        self.fed = 0  # how much of `buffer` llhttp has parsed
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.body_parts: list[bytes] = []
        self.message_done = False
        self.busy = False  # a request is being answered
        self.closing = False
        self.lingering = False  # answered and half-closed, discarding input until the peer closes
        self.eof = False
        self.paused = False
        self.counted = False
        self.deadline = 0.0  # when to give up waiting for the peer (0: not waiting)
        self.client: tuple[str, int] | None = None
        self.local: tuple[str, int] | None = None
        self.disconnected: asyncio.Event | None = None
        self.task: asyncio.Task[None] | None = None  # the answer in progress
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # -- llhttp callbacks

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.head_done = False
        self.body_parts = []
        self.message_done = False

    def on_url(self, url: bytes) -> None:
        self.url += url  # may arrive in pieces

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value.rstrip(b" \t")))

    def on_headers_complete(self) -> None:
        self.head_done = True

    def on_body(self, body: bytes) -> None:
        self.body_parts.append(body)

    def on_message_complete(self) -> None:
        self.message_done = True

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not subclasses
        server = self.server
        server.connections.add(self)
        server.open += 1
        self.counted = True
        self.deadline = server.now + server.header_timeout  # the first request head starts now
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        self.client = (peer[0], peer[1]) if isinstance(peer, tuple) else None
        self.local = (sock[0], sock[1]) if isinstance(sock, tuple) else None
        sock_obj = transport.get_extra_info("socket")
        if sock_obj is not None:
            with contextlib.suppress(OSError):
                sock_obj.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return
        if not self.buffer and not self.busy and not self.fed:
            self.deadline = self.server.now + self.server.header_timeout  # a new request head begins
        self.buffer += data
        if self.busy:
            if len(self.buffer) > PAUSE_ABOVE and self.transport is not None and not self.paused:
                self.paused = True
                self.transport.pause_reading()
            return
        self._next()

    def eof_received(self) -> bool | None:
        self.eof = True
        if self.lingering:
            return False  # the peer has read our answer and is done: close
        if self.busy:
            return True  # keep the write side open for the answer in progress; `_next` follows it
        self._next()
        return True  # `_next` has closed the transport unless a hand-over now owns it

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        if self.disconnected is not None:
            self.disconnected.set()
        self._finish()

    # -- request handling

    def _finish(self) -> None:
        self.deadline = 0.0
        self.server.connections.discard(self)
        if self.counted:
            self.counted = False
            self.server.open -= 1
        if not self.done.done():
            self.done.set_result(None)

    def _close(self, answer: bytes = b"") -> None:
        transport = self.transport
        if transport is not None and answer and not self.eof and not transport.is_closing():
            # The peer may still be sending what we refused: closing now would reset the connection and
            # destroy the answer before it is read. Half-close, discard what arrives, cut after a moment.
            transport.write(answer)
            with contextlib.suppress(OSError, RuntimeError, NotImplementedError):
                transport.write_eof()
            self.closing = True
            self.lingering = True
            self.deadline = 0.0
            asyncio.get_running_loop().call_later(REFUSAL_LINGER, transport.abort)
            return  # counted until `connection_lost`
        if transport is not None:
            if answer and not transport.is_closing():
                transport.write(answer)
            transport.close()
        self.closing = True
        self._finish()

    def close_when_idle(self) -> None:
        self.closing = True
        if not self.busy:
            self._close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        self._finish()

    def timed_out(self) -> None:
        """The header or idle deadline passed: 408 if a request had begun, else just close."""
        if self.busy:
            return
        self._close(closing_answer(408) if self.buffer else b"")

    def _handoff(self) -> None:
        transport = self.transport
        assert transport is not None
        self.server.connections.discard(self)
        self.counted = False  # the count moves to the hand-over's protocol
        self.deadline = 0.0
        buffered = bytes(self.buffer)
        self.buffer.clear()
        self.transport = None
        if not self.done.done():
            self.done.set_result(None)
        self.server.handoff(self, transport, buffered)

    def _next(self) -> None:
        """Parse what has arrived; start answering the next complete request in the buffer, if any."""
        if self.closing or self.transport is None:
            return
        buf = self.buffer
        if not buf:
            if self.eof:
                self._close()
            else:
                self.deadline = self.server.now + self.server.idle_timeout
            return
        if not self.fed:
            if len(buf) < 3 and b"PRI".startswith(buf):
                if self.eof:
                    self._close()
                return  # the HTTP/2 preface or a POST: wait for more
            if buf.startswith(b"PRI"):
                self._handoff()
                return
        if not self.head_done:
            # In llhttp's strict mode a head ends at the first blank line: feed up to there, no further.
            end = buf.find(b"\r\n\r\n", max(0, self.fed - 3))
            stop = len(buf) if end < 0 else end + 4
            if not self._feed(stop):
                return
            if not self.head_done:
                if not self.deadline:
                    self.deadline = self.server.now + self.server.header_timeout
                if end >= 0:
                    self._close(closing_answer(400))  # llhttp saw no end of the head where it must be
                elif len(buf) > self.server.max_head_bytes:
                    self._close(closing_answer(431))
                elif self.eof:
                    self._close()  # a partial head, then EOF
                return
            if needs_hypercorn(self.parser, self.url, self.headers):
                self._handoff()
                return
        length = content_length(self.headers)
        if length is None:
            self._close(closing_answer(400))
            return
        if length > MAX_FAST_BODY:
            self._handoff()
            return
        body_end = self.fed + length
        if len(buf) < body_end:
            if self.eof:
                self._close()  # a body shorter than its content-length, then EOF
            elif not self.deadline:
                self.deadline = self.server.now + self.server.header_timeout
            return
        if length and not self._feed(body_end):
            return
        if not self.message_done:
            self._close(closing_answer(400))
            return
        body = b"".join(self.body_parts) if len(self.body_parts) != 1 else self.body_parts[0]
        del buf[:body_end]
        self.fed = 0
        self.head_done = False
        self.deadline = 0.0
        try:
            scope, keep_alive = asgi_scope(self.parser, self.url, self.headers, self.client, self.local)
        except ValueError:
            self._close(closing_answer(400))
            return
        self.busy = True
        self.task = asyncio.get_running_loop().create_task(self._answer(scope, body, keep_alive))

    def _feed(self, stop: int) -> bool:
        """Parse `buffer[fed:stop]`; False (the connection closed) if llhttp refuses it."""
        start, self.fed = self.fed, stop
        try:
            with memoryview(self.buffer) as view:  # released before the buffer is resized
                self.parser.feed_data(view[start:stop])
        except httptools.HttpParserUpgrade:
            pass  # an upgrade request without a body: `_needs_hypercorn` hands it over
        except httptools.HttpParserError:
            self._close(closing_answer(400))
            return False
        return True

    async def _answer(self, scope: dict[str, Any], body: bytes, keep_alive: bool) -> None:
        sent_body = False
        started: tuple[int, list[tuple[bytes, bytes]]] | None = None
        chunks: list[bytes] = []
        done = False

        async def receive() -> dict[str, Any]:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": body, "more_body": False}
            if self.disconnected is None:
                self.disconnected = asyncio.Event()
                if self.transport is None or self.transport.is_closing():
                    self.disconnected.set()
            await self.disconnected.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal started, done
            if done:
                return
            kind = message["type"]
            if kind == "http.response.start":
                started = (int(message["status"]), list(message.get("headers", ())))
            elif kind == "http.response.body" and started is not None:
                part = message.get("body", b"")
                if part:
                    chunks.append(bytes(part))
                if not message.get("more_body", False):
                    done = True
                    self._respond(started[0], started[1], b"".join(chunks), keep_alive)

        try:
            await self.server.app(scope, receive, send)
        except Exception:
            log.exception("ingress request failed")
        if not done:
            if started is None:
                self._respond(500, [], b"", False)
            else:
                self._respond(started[0], started[1], b"".join(chunks), False)
        self.busy = False
        self.disconnected = None
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        if self.closing and self.transport is not None:
            self.transport.close()
            self._finish()
            return
        self._next()

    def _respond(
        self, status: int, headers: list[tuple[bytes, bytes]], body: bytes, keep_alive: bool
    ) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        out = [status_line(status)]
        has_length = False
        for name, value in headers:
            lowered = name.lower()
            if lowered == b"content-length":
                has_length = True
            elif lowered == b"connection":
                if value.lower() == b"close":
                    keep_alive = False  # the app wants this connection ended (e.g. a body left unread)
                continue
            out.append(b"%s: %s\r\n" % (name, value))
        if not has_length:
            out.append(b"content-length: %d\r\n" % len(body))
        out.append(b"date: %s\r\n" % Date.get())
        if not keep_alive:
            out.append(b"connection: close\r\n")
            self.closing = True
        out.append(b"\r\n")
        out.append(body)
        transport.write(b"".join(out))
