"""HTTP/1.1 over `h11`: the request body is collected until `end_request()`, sent with chunked transfer
encoding, then the response body is streamed. Idle connections are pooled by the client."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING

import h11

from pyrestate.server.invoker.transport.stream import _READ_SIZE, InvocationStream, TransportError, _decode

if TYPE_CHECKING:
    from pyrestate.server.invoker.transport.client import DeploymentClient


class _H1Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(our_role=h11.CLIENT)
        self.reused = False

    @property
    def idle_alive(self) -> bool:
        return not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        self.writer.close()


class _H1InvocationStream(InvocationStream):
    def __init__(
        self,
        client: DeploymentClient,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        conn: _H1Connection,
    ) -> None:
        self._client = client
        self._method = method
        self._target = target
        self._headers = headers
        self._conn: _H1Connection | None = conn
        self._body: list[bytes] = []
        self._request_sent = asyncio.Event()
        self._request_ended = False
        self._head: tuple[int, list[tuple[str, str]]] | None = None
        self._chunks: deque[bytes] = deque()
        self._ended = False
        self._error: TransportError | None = None
        self._got_bytes = False
        self._closed = False
        self._read_lock = asyncio.Lock()

    async def send(self, data: bytes) -> None:
        if self._request_ended:
            raise TransportError("send() after end_request()", retryable=False)
        if self._closed:
            raise TransportError("send() on a closed stream", retryable=False)
        if data:
            self._body.append(bytes(data))

    async def end_request(self) -> None:
        if self._request_ended:
            return
        self._request_ended = True
        try:
            await self._write_request()
        except TransportError as e:
            self._error = e
            self._request_sent.set()
            raise
        self._request_sent.set()

    async def _write_request(self) -> None:
        conn = self._conn
        if conn is None:
            raise TransportError("stream closed", retryable=False)
        body = b"".join(self._body)
        headers = list(self._headers)
        if body or self._method not in ("GET", "HEAD"):
            headers.append(("transfer-encoding", "chunked"))
        try:
            out = conn.h11.send(h11.Request(method=self._method, target=self._target, headers=headers))
            if body:
                out += conn.h11.send(h11.Data(data=body))
            out += conn.h11.send(h11.EndOfMessage())
        except h11.LocalProtocolError as e:
            raise TransportError(f"invalid HTTP/1.1 request: {e}", retryable=False) from e
        try:
            conn.writer.write(out)
            await conn.writer.drain()
        except (ConnectionError, OSError) as e:
            # A pooled connection the peer closed while idle: the bytes went nowhere, safe to resend.
            if conn.reused and await self._reconnect_and_resend():
                return
            raise TransportError(f"connection to {self._client._label} lost while writing: {e}") from e

    async def _reconnect_and_resend(self) -> bool:
        if self._conn is None or not self._conn.reused:
            return False
        self._conn.close()
        self._conn = await self._client._h1_connect()
        await self._write_request()
        return True

    async def _pump(self) -> None:
        """Read until at least one event changed the response state."""
        await self._request_sent.wait()
        if self._error is not None:
            raise self._error
        conn = self._conn
        if conn is None:
            raise TransportError("stream closed", retryable=False)
        while True:
            try:
                event = conn.h11.next_event()
            except h11.RemoteProtocolError as e:
                self._fail(TransportError(f"HTTP/1.1 protocol error from {self._client._label}: {e}"))
                return
            if event is h11.NEED_DATA:
                try:
                    data = await conn.reader.read(_READ_SIZE)
                except (ConnectionError, OSError) as e:
                    if await self._retry_stale():
                        return
                    self._fail(TransportError(f"connection to {self._client._label} lost: {e}"))
                    return
                if not data and not self._got_bytes and await self._retry_stale():
                    return
                self._got_bytes = self._got_bytes or bool(data)
                conn.h11.receive_data(data)
                continue
            if isinstance(event, h11.Response):
                self._head = (
                    event.status_code,
                    [(_decode(bytes(n)), _decode(bytes(v))) for n, v in event.headers],
                )
                return
            if isinstance(event, h11.Data):
                if event.data:
                    self._chunks.append(bytes(event.data))
                    return
                continue
            if isinstance(event, h11.EndOfMessage):
                self._ended = True
                return
            if isinstance(event, h11.ConnectionClosed):
                self._fail(TransportError(f"{self._client._label} closed the connection mid-response"))
                return
            # InformationalResponse and the like: keep reading.

    async def _retry_stale(self) -> bool:
        if self._got_bytes or self._conn is None or not self._conn.reused:
            return False
        try:
            return await self._reconnect_and_resend()
        except TransportError as e:
            self._fail(e)
            return True

    def _fail(self, error: TransportError) -> None:
        self._error = error
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def response_head(self) -> tuple[int, list[tuple[str, str]]]:
        async with self._read_lock:
            while self._head is None:
                if self._error is not None:
                    raise self._error
                await self._pump()
            return self._head

    async def receive(self) -> bytes | None:
        async with self._read_lock:
            while True:
                if self._head is not None and self._chunks:
                    return self._chunks.popleft()
                if self._ended:
                    return None
                if self._error is not None:
                    raise self._error
                await self._pump()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._ended and self._error is None and conn.h11.our_state is h11.DONE:
            try:
                conn.h11.start_next_cycle()
            except h11.LocalProtocolError:
                conn.close()
            else:
                self._client._h1_release(conn)
        else:
            conn.close()


# ------------------------------------------------------------------------------------------------- client
