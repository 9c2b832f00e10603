"""A lean HTTP/1.1 front for the ingress and admin APIs: plain keep-alive requests with a `content-length`
body (what HTTP clients send to invoke handlers) are parsed by llhttp (`httptools`), handed to the ASGI app
directly, and the response leaves in one write. The HTTP/2 preface, an `upgrade` (h2c), `expect`, chunked
or large bodies, HEAD, HTTP/1.0 and absolute-form targets hand the connection over to hypercorn with the
request's bytes unconsumed, so every such case behaves exactly as under hypercorn.

Anything llhttp refuses in its strict mode (bare LF or CR line ends, obs-fold, duplicate or malformed
`content-length`, `transfer-encoding` with `content-length` or not ending in `chunked`, bytes that are not
HTTP such as a TLS hello) is answered 400 and the connection closed, as hyper does. A connection is closed
once its peer has sent EOF and every complete request before it is answered, after `header_timeout` without
a complete request head, after `idle_timeout` between requests, and beyond `max_connections` a connection is
refused with 503.

Per request this saves hypercorn's per-connection task group, h11 state machine and two writes, which were
a fifth of the server's CPU time per invocation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import httptools
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.asyncio.worker_context import WorkerContext
from hypercorn.config import Config as HypercornConfig
from hypercorn.events import Event, Updated

log = logging.getLogger("pyrestate.server.http")

ASGIApp = Callable[
    [dict[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]
]

DEFAULT_MAX_HEAD = 64 * 1024  # larger request heads are answered 431
_MAX_FAST_BODY = 1 << 20  # larger bodies are streamed by hypercorn
_HANDOFF_HEADERS = frozenset({b"transfer-encoding", b"upgrade", b"expect", b"http2-settings"})
_PAUSE_ABOVE = 1 << 20
_REFUSAL_LINGER = 1.0  # seconds a refused connection may take to read its 503 before it is cut
_STATUS_LINES: dict[int, bytes] = {}


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        # The standard reason phrase, as restate-server (hyper) sends it; none for codes without one (470).
        try:
            reason = HTTPStatus(status).phrase.encode("ascii")
        except ValueError:
            reason = b""
        line = _STATUS_LINES[status] = b"HTTP/1.1 %d %s\r\n" % (status, reason)
    return line


def _closing_answer(status: int, text: bytes = b"") -> bytes:
    return b"%scontent-length: %d\r\ndate: %s\r\nconnection: close\r\n\r\n%s" % (
        _status_line(status),
        len(text),
        _Date.get(),
        text,
    )


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


class FastHTTPServer:
    def __init__(
        self,
        app: ASGIApp,
        config: HypercornConfig,
        *,
        header_timeout: float = 30.0,
        idle_timeout: float = 3600.0,
        max_connections: int = 10_000,
        max_head_bytes: int = DEFAULT_MAX_HEAD,
        name: str = "ingress",
    ) -> None:
        self.app = app
        self.config = config
        self.header_timeout = header_timeout
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.max_head_bytes = max_head_bytes
        self.name = name
        self.open = 0  # connections held, including those handed over to hypercorn
        self.refused = 0  # refused since the last log line about it
        self._refusal_logged_at: float | None = None
        self.now = time.monotonic()  # coarse clock of the deadlines, advanced by the sweep
        self._hyper_app = ASGIWrapper(app)  # type: ignore[arg-type]
        self._context = WorkerContext(None)
        self._connections: set[_Connection] = set()
        self._handoffs: set[asyncio.Task[None]] = set()
        self._servers: list[asyncio.AbstractServer] = []
        self._sweeper: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        """Listen on the config's binds (sockets made by hypercorn's own rules)."""
        loop = asyncio.get_running_loop()
        sockets = self.config.create_sockets()
        if sockets.secure_sockets or sockets.quic_sockets:
            raise ValueError("the fast HTTP/1.1 front serves plain-text binds only")
        for sock in sockets.insecure_sockets:
            server = await loop.create_server(self._protocol, sock=sock, backlog=self.config.backlog)
            self._servers.append(server)
        self._sweeper = loop.call_later(1.0, self._sweep)

    def _protocol(self) -> asyncio.Protocol:
        if self.open >= self.max_connections:
            self.refused += 1
            now = time.monotonic()
            if self._refusal_logged_at is None or now - self._refusal_logged_at >= 60.0:
                self._refusal_logged_at = now
                log.warning(
                    "%s: %d connection(s) refused with 503: the limit of %d open connections is reached "
                    "(--max-connections)",
                    self.name,
                    self.refused,
                    self.max_connections,
                )
                self.refused = 0
            return _Refused()
        return _Connection(self)

    def _sweep(self) -> None:
        """Once a second: close the connections whose header or idle deadline has passed."""
        self.now = now = time.monotonic()
        for conn in [c for c in self._connections if c.deadline and c.deadline < now]:
            conn.timed_out()
        self._sweeper = asyncio.get_running_loop().call_later(1.0, self._sweep)

    def handoff(self, conn: _Connection, transport: asyncio.Transport, buffered: bytes) -> None:
        """Continue the connection under hypercorn: it reads `buffered` first, then the socket."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=2**16, loop=loop)
        protocol = _HandedOver(self, reader, loop=loop)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if buffered:
            reader.feed_data(buffered)
        if conn.eof:
            reader.feed_eof()
        if conn.paused:
            transport.resume_reading()
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        server = _HypercornConnection(self._hyper_app, loop, self.config, self._context, {}, reader, writer)
        task = loop.create_task(self._run_handed_over(server, transport))
        self._handoffs.add(task)
        task.add_done_callback(self._handoffs.discard)

    @staticmethod
    async def _run_handed_over(server: _HypercornConnection, transport: asyncio.Transport) -> None:
        try:
            await server.run()
        finally:
            transport.close()  # whatever ended hypercorn's handling, the socket goes with it

    async def shutdown(self, graceful_timeout: float) -> None:
        """Stop accepting, let requests in progress answer (up to `graceful_timeout`), close the rest."""
        if self._sweeper is not None:
            self._sweeper.cancel()
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


class _HypercornConnection(TCPServer):
    """hypercorn's connection, ended once the peer's EOF is read and the requests before it are answered.

    hypercorn itself keeps a connection whose peer has sent EOF until its keep-alive timer runs out (its
    task group waits for that timer), which holds the descriptor for the whole idle timeout.
    """

    async def _read_data(self) -> None:
        await super()._read_data()
        await self.idle_task.stop()

    async def protocol_send(self, event: Event) -> None:
        if isinstance(event, Updated) and event.idle and self.reader.at_eof():
            return  # no keep-alive timer for a connection that can bring nothing more
        await super().protocol_send(event)


class _HandedOver(asyncio.StreamReaderProtocol):
    """hypercorn's side of a handed-over connection; it still counts towards the connection limit."""

    def __init__(
        self, server: FastHTTPServer, reader: asyncio.StreamReader, loop: asyncio.AbstractEventLoop
    ) -> None:
        super().__init__(reader, loop=loop)
        self._server: FastHTTPServer | None = server

    def connection_lost(self, exc: Exception | None) -> None:
        if self._server is not None:
            self._server.open -= 1
            self._server = None
        super().connection_lost(exc)


class _Refused(asyncio.Protocol):
    """A connection over the limit: a 503, then closed once the peer has read it (or after a second)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        writer: asyncio.Transport = transport  # type: ignore[assignment]  # uvloop's are not subclasses
        writer.write(_closing_answer(503, b"too many open connections\n"))
        with contextlib.suppress(OSError, RuntimeError, NotImplementedError):
            writer.write_eof()
        # closing at once would reset the connection if the request was unread, destroying the answer
        self._timer = asyncio.get_running_loop().call_later(_REFUSAL_LINGER, writer.abort)

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool | None:
        return False  # the peer is done: close

    def connection_lost(self, exc: Exception | None) -> None:
        self._timer.cancel()


class _Connection(asyncio.Protocol):
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
        server._connections.add(self)
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
            if len(self.buffer) > _PAUSE_ABOVE and self.transport is not None and not self.paused:
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
        self.server._connections.discard(self)
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
            asyncio.get_running_loop().call_later(_REFUSAL_LINGER, transport.abort)
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
        self._close(_closing_answer(408) if self.buffer else b"")

    def _handoff(self) -> None:
        transport = self.transport
        assert transport is not None
        self.server._connections.discard(self)
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
                    self._close(_closing_answer(400))  # llhttp saw no end of the head where it must be
                elif len(buf) > self.server.max_head_bytes:
                    self._close(_closing_answer(431))
                elif self.eof:
                    self._close()  # a partial head, then EOF
                return
            if self._needs_hypercorn():
                self._handoff()
                return
        length = self._content_length()
        if length is None:
            self._close(_closing_answer(400))
            return
        if length > _MAX_FAST_BODY:
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
            self._close(_closing_answer(400))
            return
        body = b"".join(self.body_parts) if len(self.body_parts) != 1 else self.body_parts[0]
        del buf[:body_end]
        self.fed = 0
        self.head_done = False
        self.deadline = 0.0
        try:
            scope, keep_alive = self._scope()
        except ValueError:
            self._close(_closing_answer(400))
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
            self._close(_closing_answer(400))
            return False
        return True

    def _needs_hypercorn(self) -> bool:
        if self.parser.get_http_version() != "1.1" or self.parser.get_method() == b"HEAD":
            return True
        if not self.url.startswith(b"/"):
            return True  # absolute-form or `*`
        for name, value in self.headers:
            if name in _HANDOFF_HEADERS:
                return True
            if name == b"connection" and b"upgrade" in value.lower():
                return True
        return False

    def _content_length(self) -> int | None:
        """The body's length (llhttp has checked the header: one, all digits); None without a host."""
        length = 0
        has_host = False
        for name, value in self.headers:
            if name == b"content-length":
                length = int(value)
            elif name == b"host":
                has_host = True
        return length if has_host else None  # HTTP/1.1 requires `host` (as h11 does)

    def _scope(self) -> tuple[dict[str, Any], bool]:
        keep_alive = True
        for name, value in self.headers:
            if name == b"connection" and b"close" in {t.strip() for t in value.lower().split(b",")}:
                keep_alive = False
        path, _, query = self.url.partition(b"?")
        path = path.partition(b"#")[0]
        decoded = unquote(path.decode("ascii"))  # llhttp admits only visible ASCII in a target
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.1"},
            "http_version": "1.1",
            "method": self.parser.get_method().decode("ascii"),
            "scheme": "http",
            "path": decoded,
            "raw_path": path,
            "query_string": query.partition(b"#")[0],
            "root_path": "",
            "headers": self.headers,
            "client": self.client,
            "server": self.local,
            "state": {},
            "extensions": {},
        }
        return scope, keep_alive

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
