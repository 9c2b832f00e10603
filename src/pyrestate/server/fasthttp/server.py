"""The fast front's listener: accepting and counting connections, refusing them beyond the limit, the
deadline sweep, hand-over to hypercorn and graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.asyncio.worker_context import WorkerContext
from hypercorn.config import Config as HypercornConfig
from hypercorn.events import Event, Updated

from pyrestate.server.fasthttp.connection import Connection
from pyrestate.server.fasthttp.http1 import DEFAULT_MAX_HEAD, REFUSAL_LINGER, closing_answer

log = logging.getLogger("pyrestate.server.http")

ASGIApp = Callable[
    [dict[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]
]


class FastHTTPServer:
    """The fast HTTP/1.1 front on the config's plain-text binds (what it serves itself: see the package)."""

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
        self.connections: set[Connection] = set()
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
        return Connection(self)

    def _sweep(self) -> None:
        """Once a second: close the connections whose header or idle deadline has passed."""
        self.now = now = time.monotonic()
        for conn in [c for c in self.connections if c.deadline and c.deadline < now]:
            conn.timed_out()
        self._sweeper = asyncio.get_running_loop().call_later(1.0, self._sweep)

    def handoff(self, conn: Connection, transport: asyncio.Transport, buffered: bytes) -> None:
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
        for conn in list(self.connections):
            conn.close_when_idle()
        await self._context.terminated.set()
        pending = [c.done for c in self.connections if not c.done.done()]
        waiters: list[Any] = [*pending, *self._handoffs]
        if waiters:
            await asyncio.wait(waiters, timeout=graceful_timeout)
        for conn in list(self.connections):
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
        writer.write(closing_answer(503, b"too many open connections\n"))
        with contextlib.suppress(OSError, RuntimeError, NotImplementedError):
            writer.write_eof()
        # closing at once would reset the connection if the request was unread, destroying the answer
        self._timer = asyncio.get_running_loop().call_later(REFUSAL_LINGER, writer.abort)

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool | None:
        return False  # the peer is done: close

    def connection_lost(self, exc: Exception | None) -> None:
        self._timer.cancel()
