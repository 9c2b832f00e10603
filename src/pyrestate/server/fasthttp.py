"""A lean HTTP/1.1 front for the ingress: plain keep-alive requests with a `content-length` body (what
HTTP clients send to invoke handlers) are parsed here and handed to the ASGI app directly, and the response
leaves in one write. Anything else on a connection — the HTTP/2 preface, an `upgrade` (h2c), `expect`,
chunked or large bodies, HEAD, HTTP/1.0, anything malformed — hands the connection over to hypercorn
before its first byte is interpreted, so every such case behaves exactly as under hypercorn.

Per request this saves hypercorn's per-connection task group, h11 state machine and two writes, which were
a fifth of the server's CPU time per invocation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from typing import Any
from urllib.parse import unquote

from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.asyncio.worker_context import WorkerContext
from hypercorn.config import Config as HypercornConfig

log = logging.getLogger("pyrestate.server.http")

ASGIApp = Callable[
    [dict[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]
]

_MAX_HEAD = 64 * 1024  # larger request heads go to hypercorn (which answers 431 / 400)
_MAX_FAST_BODY = 1 << 20  # larger bodies are streamed by hypercorn
_HANDOFF_HEADERS = frozenset({b"transfer-encoding", b"upgrade", b"expect", b"http2-settings"})
_PAUSE_ABOVE = 1 << 20
_STATUS_LINES: dict[int, bytes] = {}


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        line = _STATUS_LINES[status] = b"HTTP/1.1 %d \r\n" % status  # no reason phrase, as h11
    return line


class _Date:
    """The `date` header, formatted once per second."""

    second = -1
    value = b""

    @classmethod
    def get(cls) -> bytes:
        now = int(time.time())
        if now != cls.second:
            cls.second = now
            cls.value = formatdate(now, usegmt=True).encode("ascii")
        return cls.value


class _Handoff(Exception):
    """This connection continues under hypercorn."""


class FastHTTPServer:
    def __init__(self, app: ASGIApp, config: HypercornConfig) -> None:
        self.app = app
        self.config = config
        self._hyper_app = ASGIWrapper(app)  # type: ignore[arg-type]
        self._context = WorkerContext(None)
        self._connections: set[_Connection] = set()
        self._handoffs: set[asyncio.Task[None]] = set()
        self._servers: list[asyncio.AbstractServer] = []

    async def start(self) -> None:
        """Listen on the config's binds (sockets made by hypercorn's own rules)."""
        loop = asyncio.get_running_loop()
        sockets = self.config.create_sockets()
        if sockets.secure_sockets or sockets.quic_sockets:
            raise ValueError("the fast HTTP/1.1 front serves plain-text binds only")
        for sock in sockets.insecure_sockets:
            server = await loop.create_server(
                lambda: _Connection(self), sock=sock, backlog=self.config.backlog
            )
            self._servers.append(server)

    def handoff(self, conn: _Connection, transport: asyncio.Transport, buffered: bytes) -> None:
        """Continue the connection under hypercorn: it reads `buffered` first, then the socket."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=2**16, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if buffered:
            reader.feed_data(buffered)
        if conn.eof:
            reader.feed_eof()
        if conn.paused:
            transport.resume_reading()
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        server = TCPServer(self._hyper_app, loop, self.config, self._context, {}, reader, writer)
        task = loop.create_task(server.run())
        self._handoffs.add(task)
        task.add_done_callback(self._handoffs.discard)

    async def shutdown(self, graceful_timeout: float) -> None:
        """Stop accepting, let requests in progress answer (up to `graceful_timeout`), close the rest."""
        for server in self._servers:
            server.close()
        for conn in list(self._connections):
            conn.close_when_idle()
        await self._context.terminated.set()
        pending = [c.done for c in self._connections if not c.done.done()]
        waiters: list[Any] = [*pending, *self._handoffs]
        if waiters:
            await asyncio.wait(waiters, timeout=graceful_timeout)
        for conn in list(self._connections):
            conn.abort()
        for task in list(self._handoffs):
            task.cancel()
        if self._handoffs:
            await asyncio.wait(list(self._handoffs), timeout=1.0)
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)


class _Connection(asyncio.Protocol):
    def __init__(self, server: FastHTTPServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.busy = False  # a request is being answered
        self.closing = False
        self.eof = False
        self.paused = False
        self.client: tuple[str, int] | None = None
        self.local: tuple[str, int] | None = None
        self.disconnected: asyncio.Event | None = None
        self.task: asyncio.Task[None] | None = None  # the answer in progress
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not subclasses
        self.server._connections.add(self)
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        self.client = (peer[0], peer[1]) if isinstance(peer, tuple) else None
        self.local = (sock[0], sock[1]) if isinstance(sock, tuple) else None
        sock_obj = transport.get_extra_info("socket")
        if sock_obj is not None:
            import socket

            with contextlib.suppress(OSError):
                sock_obj.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.busy:
            if len(self.buffer) > _PAUSE_ABOVE and self.transport is not None and not self.paused:
                self.paused = True
                self.transport.pause_reading()
            return
        self._next()

    def eof_received(self) -> bool | None:
        self.eof = True
        if not self.busy and not self.buffer:
            self._finish()
            return False
        return True  # keep the write side open for the answer in progress

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        if self.disconnected is not None:
            self.disconnected.set()
        self._finish()

    # -- request handling

    def _finish(self) -> None:
        self.server._connections.discard(self)
        if not self.done.done():
            self.done.set_result(None)

    def close_when_idle(self) -> None:
        self.closing = True
        if not self.busy and self.transport is not None:
            self.transport.close()
            self._finish()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        self._finish()

    def _handoff(self) -> None:
        transport = self.transport
        assert transport is not None
        self.server._connections.discard(self)
        buffered = bytes(self.buffer)
        self.buffer.clear()
        self.transport = None
        if not self.done.done():
            self.done.set_result(None)
        self.server.handoff(self, transport, buffered)

    def _next(self) -> None:
        """Start answering the next complete request in the buffer, if there is one."""
        if self.closing or self.transport is None:
            return
        buf = self.buffer
        if not buf:
            if self.eof:
                self.transport.close()
                self._finish()
            return
        if len(buf) < 3 and b"PRI".startswith(bytes(buf)):
            return  # the HTTP/2 preface or a POST: wait for more
        if buf.startswith(b"PRI"):
            self._handoff()
            return
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > _MAX_HEAD or self.eof:
                self._handoff()
            return
        try:
            scope, length, keep_alive = self._parse(bytes(buf[:end]))
        except _Handoff:
            self._handoff()
            return
        body_end = end + 4 + length
        if len(buf) < body_end:
            if self.eof:
                self._handoff()
            return
        body = bytes(buf[end + 4 : body_end])
        del buf[:body_end]
        self.busy = True
        self.task = asyncio.get_running_loop().create_task(self._answer(scope, body, keep_alive))

    def _parse(self, head: bytes) -> tuple[dict[str, Any], int, bool]:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or parts[2] != b"HTTP/1.1":
            raise _Handoff
        method, target = parts[0], parts[1]
        if method == b"HEAD" or not method.isalpha() or not target.startswith(b"/"):
            raise _Handoff
        headers: list[tuple[bytes, bytes]] = []
        length = 0
        keep_alive = True
        has_host = False
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip() or b" " in name or b"\t" in name:
                raise _Handoff  # obs-fold, bad names: hypercorn answers those
            name = name.lower()
            value = value.strip(b" \t")
            if name in _HANDOFF_HEADERS:
                raise _Handoff
            if name == b"content-length":
                if not value.isdigit() or length:
                    raise _Handoff
                length = int(value)
                if length > _MAX_FAST_BODY:
                    raise _Handoff
            elif name == b"connection":
                tokens = {t.strip().lower() for t in value.split(b",")}
                if b"close" in tokens:
                    keep_alive = False
                if b"upgrade" in tokens:
                    raise _Handoff
            elif name == b"host":
                has_host = True
            headers.append((name, value))
        if not has_host:
            raise _Handoff  # h11 answers 400
        path, _, query = target.partition(b"?")
        try:
            decoded = unquote(path.decode("ascii"))
        except UnicodeDecodeError:
            raise _Handoff from None
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.1"},
            "http_version": "1.1",
            "method": method.decode("ascii"),
            "scheme": "http",
            "path": decoded,
            "raw_path": path,
            "query_string": query,
            "root_path": "",
            "headers": headers,
            "client": self.client,
            "server": self.local,
            "state": {},
            "extensions": {},
        }
        return scope, length, keep_alive

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
        out = [_status_line(status)]
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
        out.append(b"date: %s\r\n" % _Date.get())
        if not keep_alive:
            out.append(b"connection: close\r\n")
            self.closing = True
        out.append(b"\r\n")
        out.append(body)
        transport.write(b"".join(out))
