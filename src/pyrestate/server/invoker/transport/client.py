"""The client of one deployment: opens connections (TCP, TLS with ALPN), picks or opens an HTTP/2 connection
with room for a stream, pools idle HTTP/1.1 connections, and builds each request's headers."""

from __future__ import annotations

import asyncio
import contextlib
import ssl as ssl_module
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

import h2.exceptions

from pyrestate.server.invoker.identity import RequestSigner
from pyrestate.server.invoker.transport.h1 import _H1Connection, _H1InvocationStream
from pyrestate.server.invoker.transport.h2_connection import _H2Connection, _StreamState
from pyrestate.server.invoker.transport.h2_stream import _H2InvocationStream
from pyrestate.server.invoker.transport.stream import (
    _BAD_NAME,
    _HOP_BY_HOP,
    InvocationStream,
    TransportError,
    _encode,
    _h2_header,
)

_MAX_IDLE_H1 = 32


class DeploymentClient:
    """HTTP client for one deployment (`base_url`), shared by all invocation attempts to it."""

    def __init__(
        self,
        base_url: str,
        *,
        use_http_11: bool = False,
        additional_headers: Mapping[str, str] | None = None,
        connect_timeout: float = 10.0,
        signer: RequestSigner | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"deployment URL must be http:// or https:// with a host: {base_url!r}")
        self._tls = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._tls else 80)
        self._authority = parts.netloc.rsplit("@", 1)[-1]
        self._scheme = parts.scheme
        self._base_path = parts.path.rstrip("/")
        self._label = f"{parts.scheme}://{self._authority}"
        self.use_http_11 = use_http_11
        self._additional = [(k.lower(), v) for k, v in (additional_headers or {}).items()]
        self._signer = signer  # request identity: every request carries a JWT for its path
        for k, v in self._additional:
            if not k or any(c in k for c in _BAD_NAME) or any(c in v for c in "\r\n\0"):
                raise ValueError(f"invalid additional header {k!r}")
        self._connect_timeout = connect_timeout
        self._h2_conns: list[_H2Connection] = []
        self._h2_connect_lock = asyncio.Lock()
        self._h1_idle: list[_H1Connection] = []
        self._closed = False
        self.connections_opened = 0  # TCP connections made so far (tests, metrics)

    @property
    def base_url(self) -> str:
        return f"{self._label}{self._base_path}"

    def _full_path(self, path: str) -> str:
        return self._base_path + (path if path.startswith("/") else "/" + path)

    async def _open(self, alpn: list[str]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        ssl_ctx: ssl_module.SSLContext | None = None
        if self._tls:
            ssl_ctx = ssl_module.create_default_context()
            ssl_ctx.set_alpn_protocols(alpn)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    self._host, self._port, ssl=ssl_ctx, server_hostname=self._host if self._tls else None
                ),
                self._connect_timeout,
            )
        except TimeoutError:
            raise TransportError(
                f"connecting to {self._label} timed out after {self._connect_timeout}s"
            ) from None
        except ConnectionRefusedError:
            raise TransportError(f"connection refused by {self._label}") from None
        except ssl_module.SSLError as e:
            raise TransportError(f"TLS handshake with {self._label} failed: {e}") from None
        except OSError as e:
            raise TransportError(f"cannot connect to {self._label}: {e}") from None
        sock = writer.get_extra_info("socket")
        if sock is not None:
            import socket

            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connections_opened += 1
        negotiated = writer.get_extra_info("ssl_object").selected_alpn_protocol() if self._tls else None
        if self._tls and "h2" in alpn and negotiated != "h2":
            writer.close()
            raise TransportError(f"{self._label} did not negotiate HTTP/2 over TLS", retryable=False)
        return reader, writer

    def _check_open(self) -> None:
        if self._closed:
            raise TransportError("deployment client is closed", retryable=False)

    async def _h2_connection(self) -> _H2Connection:
        self._h2_conns = [c for c in self._h2_conns if not c.closed]
        for conn in self._h2_conns:
            if conn.usable:
                return conn
        async with self._h2_connect_lock:
            self._check_open()
            self._h2_conns = [c for c in self._h2_conns if not c.closed]
            for conn in self._h2_conns:
                if conn.usable:
                    return conn
            reader, writer = await self._open(["h2"])
            conn = _H2Connection(reader, writer, self._label)
            try:
                await asyncio.wait_for(conn.settings_received.wait(), self._connect_timeout)
            except TimeoutError:
                conn.abort(TransportError(f"{self._label} sent no HTTP/2 SETTINGS"))
                raise TransportError(
                    f"{self._label} did not answer the HTTP/2 preface within {self._connect_timeout}s"
                ) from None
            except BaseException:
                conn.abort(TransportError("connection attempt cancelled"))
                raise
            if conn.closed:
                raise TransportError(f"{self._label} closed the connection during the HTTP/2 preface")
            self._h2_conns.append(conn)
            return conn

    async def _start_h2_stream(
        self, headers: list[tuple[bytes, bytes]]
    ) -> tuple[_H2Connection, _StreamState]:
        for _ in range(8):
            self._check_open()
            conn = await self._h2_connection()
            try:
                state = conn.start_stream(headers)
            except (h2.exceptions.NoAvailableStreamIDError, h2.exceptions.TooManyStreamsError):
                continue  # marked full; the next round picks or opens another connection
            await conn.drain()
            return conn, state
        raise TransportError(f"could not open a stream to {self._label}")

    async def _h1_connect(self) -> _H1Connection:
        reader, writer = await self._open(["http/1.1"])
        return _H1Connection(reader, writer)

    async def _h1_acquire(self) -> _H1Connection:
        while self._h1_idle:
            conn = self._h1_idle.pop()
            if conn.idle_alive:
                conn.reused = True
                return conn
            conn.close()
        return await self._h1_connect()

    def _h1_release(self, conn: _H1Connection) -> None:
        if self._closed or len(self._h1_idle) >= _MAX_IDLE_H1 or not conn.idle_alive:
            conn.close()
        else:
            self._h1_idle.append(conn)

    async def open_stream(
        self, method: str, path: str, headers: Sequence[tuple[str, str]]
    ) -> InvocationStream:
        """Start a request: `path` is appended to the base URL's path. Headers go out before this returns
        (HTTP/2); the deployment's additional headers are added after the given ones."""
        self._check_open()
        full_path = self._full_path(path)
        merged = [(k.lower(), v) for k, v in headers] + self._additional
        if self._signer is not None:
            # The audience is the path relative to the registered URI, as the SDKs verify it.
            merged += self._signer.headers(path if path.startswith("/") else "/" + path)
        if self.use_http_11:
            h1_headers = [("host", self._authority)] + [(k, v) for k, v in merged if k not in _HOP_BY_HOP]
            h1 = await self._h1_acquire()
            return _H1InvocationStream(self, method.upper(), full_path, h1_headers, h1)
        h2_headers = [
            (b":method", _encode(method.upper())),
            (b":scheme", _encode(self._scheme)),
            (b":authority", _encode(self._authority)),
            (b":path", _encode(full_path)),
        ] + [_h2_header(k, v) for k, v in merged if k not in _HOP_BY_HOP]
        conn, state = await self._start_h2_stream(h2_headers)
        return _H2InvocationStream(self, h2_headers, conn, state)

    @property
    def open_connections(self) -> int:
        """Live HTTP/2 connections (for tests and metrics)."""
        return sum(1 for c in self._h2_conns if not c.closed)

    async def aclose(self) -> None:
        self._closed = True
        conns, self._h2_conns = self._h2_conns, []
        for conn in conns:
            await conn.aclose(TransportError("deployment client closed", retryable=False))
        idle, self._h1_idle = self._h1_idle, []
        for h1 in idle:
            h1.close()

    async def __aenter__(self) -> DeploymentClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
