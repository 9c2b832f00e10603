"""HTTP client used by the invoker to talk to service deployments.

HTTP/2 (cleartext with prior knowledge, or TLS with ALPN) is driven by the `h2` state machine over asyncio
streams, because Restate's bidi mode needs a client that keeps writing the request body while it reads the
response; generic clients send the whole body first. One connection per deployment carries many streams;
a new one is opened when the current one is closing (GOAWAY), closed, or full.

HTTP/1.1 (`use_http_11`) is plain request/response over `h11`: the request body is collected until
`end_request()`, sent with chunked transfer encoding, then the response body is streamed.

All h2 state changes happen synchronously between awaits, so cancelling any await (a caller's timeout)
never leaves the shared connection half-updated; at worst the one stream is left incomplete and the caller
resets it with `aclose()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl as ssl_module
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import h11
import hpack

from pyrestate.server.invoker.identity import RequestSigner

__all__ = ["DeploymentClient", "InvocationStream", "TransportError"]

_READ_SIZE = 65536
# Receive windows: per stream and for the whole connection. Data is acknowledged when the caller consumes
# it, so a stream nobody reads can hold at most one stream window of the connection window.
_STREAM_WINDOW = 1 << 20
_CONNECTION_WINDOW = 16 << 20
# Request bytes kept per h2 stream until the response head arrives, to replay a stream the peer provably
# did not process (refused, or above a GOAWAY's last stream id) on a fresh connection.
_REPLAY_LIMIT = 1 << 20
_MAX_IDLE_H1 = 32
# Connection-specific headers are forbidden in HTTP/2 (RFC 9113 §8.2.2); h1 framing is ours to choose.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "te",
        "host",
        "content-length",
    }
)


_BAD_NAME = frozenset(" \t\r\n\0:")


class TransportError(Exception):
    """The exchange with the deployment failed below the HTTP semantics level.

    `retryable` is True for conditions a later attempt may not hit (refused/reset connections, GOAWAY,
    protocol errors); False for local misuse or a closed client.
    """

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class _Unprocessed(TransportError):
    """The peer did not process the stream (REFUSED_STREAM, above GOAWAY last id): safe to replay."""


def _encode(value: str) -> bytes:
    return value.encode("utf-8")


# Values unique to one request: kept out of the HPACK dynamic table, where they would only evict the
# repeated headers (content type, path, key) and lengthen every table search.
_UNIQUE_HEADERS = frozenset({"x-restate-invocation-id", "x-restate-jwt-v1"})


def _h2_header(name: str, value: str) -> tuple[bytes, bytes]:
    if name in _UNIQUE_HEADERS:
        return hpack.NeverIndexedHeaderTuple(_encode(name), _encode(value))
    return (_encode(name), _encode(value))


def _decode(value: bytes) -> str:
    return value.decode("utf-8", errors="replace")


def _error_name(code: object) -> str:
    return code.name if isinstance(code, h2.errors.ErrorCodes) else str(code)


class InvocationStream:
    """One HTTP exchange with a deployment: a request body going out, a response body coming in."""

    async def response_head(self) -> tuple[int, list[tuple[str, str]]]:
        """Wait for the response status and headers."""
        raise NotImplementedError

    async def send(self, data: bytes) -> None:
        """Send request body bytes (HTTP/2: immediately; HTTP/1.1: buffered until `end_request`)."""
        raise NotImplementedError

    async def end_request(self) -> None:
        """Half-close the request side."""
        raise NotImplementedError

    async def receive(self) -> bytes | None:
        """Next response body chunk; None once the response ended cleanly."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Reset or abandon the exchange if still open. Idempotent."""
        raise NotImplementedError

    async def __aenter__(self) -> InvocationStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


# --------------------------------------------------------------------------------------------------- HTTP/2


class _StreamState:
    """What the connection's reader task learned about one stream."""

    __slots__ = (
        "changed",
        "chunks",
        "ended",
        "error",
        "head",
        "local_ended",
        "maybe_unprocessed",
        "stream_id",
        "window",
    )

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id
        self.head: tuple[int, list[tuple[str, str]]] | None = None
        self.chunks: deque[tuple[bytes, int]] = deque()  # (data, flow-controlled length)
        self.ended = False  # response END_STREAM seen
        self.local_ended = False  # request END_STREAM sent
        self.error: TransportError | None = None
        # Connection lost before the peer said anything after this stream was opened: it most likely never
        # saw the stream (e.g. an idle-timeout close racing with our HEADERS).
        self.maybe_unprocessed = True
        self.changed = asyncio.Event()  # head/data/end/error arrived
        self.window = asyncio.Event()  # send window may have opened, or an error arrived

    def wake(self) -> None:
        self.changed.set()
        self.window.set()

    def fail(self, error: TransportError) -> None:
        if self.error is None:
            self.error = error
        self.wake()

    @property
    def replayable_failure(self) -> bool:
        return (
            self.head is None
            and not self.chunks
            and not self.ended
            and (isinstance(self.error, _Unprocessed) or (self.error is not None and self.maybe_unprocessed))
        )


class _ClientH2(h2.connection.H2Connection):
    """h2 treats a received GOAWAY as the end of the connection and rejects every later frame, even in the
    same read. RFC 9113 §6.8 lets streams up to last_stream_id finish, so stay open after it; we never start
    a new stream on a connection that got a GOAWAY."""

    def _receive_goaway_frame(self, frame: Any) -> Any:
        result = super()._receive_goaway_frame(frame)
        self.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN
        return result


class _H2Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, label: str) -> None:
        self._reader = reader
        self._writer = writer
        self.label = label
        # Header validation costs more than the rest of opening a stream; what we send is built by us
        # (names lower-case, values checked in DeploymentClient), and we read only :status and content-type.
        config = h2.config.H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
            validate_inbound_headers=False,
        )
        self._h2 = _ClientH2(config=config)
        self._h2.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: _STREAM_WINDOW,
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 0,  # we accept no pushed streams
            },
        )
        self._h2.initiate_connection()
        self._h2.increment_flow_control_window(_CONNECTION_WINDOW - 65535)
        self.streams: dict[int, _StreamState] = {}
        self.closed = False
        self.goaway = False
        self.full = False  # stream ids exhausted or the peer refused to open more
        # The peer's first SETTINGS carries its stream limit; streams opened before it could exceed it.
        self.settings_received = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._flush_scheduled = False
        self._flush_now()
        self._reader_task = self._loop.create_task(self._read_loop())

    # -- state the client looks at when picking a connection

    @property
    def usable(self) -> bool:
        if self.closed or self.goaway or self.full:
            return False
        limit = self._h2.remote_settings.max_concurrent_streams
        return self._h2.open_outbound_streams < limit

    # -- stream operations (synchronous state changes + write into the transport buffer)

    def start_stream(self, headers: list[tuple[bytes, bytes]]) -> _StreamState:
        try:
            stream_id = self._h2.get_next_available_stream_id()
            self._h2.send_headers(stream_id, headers, end_stream=False)
        except h2.exceptions.NoAvailableStreamIDError:
            self.full = True
            raise
        except h2.exceptions.TooManyStreamsError:
            self.full = True
            raise
        except h2.exceptions.ProtocolError as e:
            self.abort(TransportError(f"HTTP/2 error opening stream on {self.label}: {e}"))
            raise self._dead_error() from e
        state = _StreamState(stream_id)
        self.streams[stream_id] = state
        self._flush()
        return state

    async def send_data(self, state: _StreamState, data: bytes) -> None:
        view = memoryview(data)
        offset = 0
        while offset < len(view):
            if state.error is not None:
                raise state.error
            if self.closed:
                raise self._dead_error()
            try:
                window = min(
                    self._h2.local_flow_control_window(state.stream_id), self._h2.max_outbound_frame_size
                )
            except h2.exceptions.StreamClosedError:
                raise TransportError(f"stream {state.stream_id} closed by the peer") from None
            if window <= 0:
                state.window.clear()
                await state.window.wait()
                continue
            chunk = view[offset : offset + window]
            try:
                self._h2.send_data(state.stream_id, bytes(chunk))
            except h2.exceptions.StreamClosedError:
                raise TransportError(f"stream {state.stream_id} closed by the peer") from None
            except h2.exceptions.ProtocolError as e:
                raise TransportError(f"HTTP/2 error sending on stream {state.stream_id}: {e}") from e
            offset += len(chunk)
            self._flush()
            await self.drain()

    def end_stream(self, state: _StreamState) -> None:
        if state.error is not None:
            raise state.error
        if self.closed:
            raise self._dead_error()
        try:
            self._h2.end_stream(state.stream_id)
        except h2.exceptions.StreamClosedError:
            raise TransportError(f"stream {state.stream_id} closed by the peer") from None
        except h2.exceptions.ProtocolError as e:
            raise TransportError(f"HTTP/2 error ending stream {state.stream_id}: {e}") from e
        state.local_ended = True
        self._forget_if_done(state)
        self._flush()

    def ack(self, state: _StreamState, size: int) -> None:
        if size and not self.closed:
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self._h2.acknowledge_received_data(size, state.stream_id)
                self._flush()

    def release(self, state: _StreamState) -> None:
        """Caller is done with the stream: reset it if still open, hand back unread flow-control credit."""
        unread = sum(size for _, size in state.chunks)
        state.chunks.clear()
        if not self.closed:
            if not (state.ended and state.local_ended) and state.error is None:
                with contextlib.suppress(h2.exceptions.ProtocolError):
                    self._h2.reset_stream(state.stream_id, h2.errors.ErrorCodes.CANCEL)
            self.ack(state, unread)
            self._flush()
        if state.error is None:
            state.error = TransportError("stream closed locally", retryable=False)
        self.streams.pop(state.stream_id, None)
        self._maybe_close_drained()

    async def drain(self) -> None:
        try:
            await self._writer.drain()
        except (ConnectionError, OSError) as e:
            self.abort(TransportError(f"connection to {self.label} lost while writing: {e}"))
            raise self._dead_error() from e

    # -- connection lifecycle

    def _dead_error(self) -> TransportError:
        return TransportError(f"connection to {self.label} is closed")

    def _flush(self) -> None:
        """Write what h2 queued, once per event-loop iteration: the frames of every stream touched in this
        iteration (headers, data, acknowledgements, resets) go out in one send."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self._flush_scheduled = False
        data = self._h2.data_to_send()
        if data and not self.closed and not self._writer.is_closing():
            self._writer.write(data)

    def _forget_if_done(self, state: _StreamState) -> None:
        if state.ended and state.local_ended:
            self.streams.pop(state.stream_id, None)
            self._maybe_close_drained()

    def _maybe_close_drained(self) -> None:
        # After GOAWAY nothing new goes on this connection: close it once the last stream is done.
        if (
            self.goaway
            and not self.closed
            and not any(s.error is None and not s.ended for s in self.streams.values())
        ):
            self.abort(TransportError(f"connection to {self.label} closed after GOAWAY"))

    def abort(self, error: TransportError) -> None:
        if self.closed:
            return
        self.closed = True
        self.settings_received.set()
        for state in list(self.streams.values()):
            if not state.ended:
                state.fail(error)
            else:
                state.wake()
        self.streams.clear()
        self._writer.close()
        if self._reader_task is not asyncio.current_task():
            self._reader_task.cancel()

    async def aclose(self, error: TransportError) -> None:
        if not self.closed:
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self._h2.close_connection()
                self._flush_now()
        self.abort(error)
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader_task
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()

    async def _read_loop(self) -> None:
        error = TransportError(f"connection to {self.label} closed by the peer")
        try:
            while True:
                data = await self._reader.read(_READ_SIZE)
                if not data:
                    break
                try:
                    events = self._h2.receive_data(data)
                except h2.exceptions.ProtocolError as e:
                    self._flush_now()  # h2 queued a GOAWAY for the peer
                    error = TransportError(f"HTTP/2 protocol error from {self.label}: {e}")
                    break
                for state in self.streams.values():
                    state.maybe_unprocessed = False
                for event in events:
                    self._handle(event)
                self._flush()
        except (ConnectionError, OSError) as e:
            error = TransportError(f"connection to {self.label} lost: {e}")
        finally:
            self.abort(error)

    def _handle(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.ResponseReceived):
            state = self.streams.get(event.stream_id)
            if state is not None:
                status = 0
                headers: list[tuple[str, str]] = []
                for name, value in event.headers:
                    if name == b":status":
                        status = int(value)
                    elif not name.startswith(b":"):
                        headers.append((_decode(name), _decode(value)))
                state.head = (status, headers)
                state.wake()
        elif isinstance(event, h2.events.DataReceived):
            state = self.streams.get(event.stream_id)
            if state is None:
                self.ack_unknown(event)
            elif event.data:
                state.chunks.append((event.data, event.flow_controlled_length))
                state.wake()
            elif event.flow_controlled_length:
                self.ack(state, event.flow_controlled_length)
        elif isinstance(event, h2.events.StreamEnded):
            state = self.streams.get(event.stream_id)
            if state is not None:
                state.ended = True
                state.wake()
                self._forget_if_done(state)
        elif isinstance(event, h2.events.StreamReset):
            state = self.streams.pop(event.stream_id, None)
            if state is not None:
                code = event.error_code
                if code == h2.errors.ErrorCodes.REFUSED_STREAM:
                    state.fail(_Unprocessed(f"stream {event.stream_id} refused by {self.label}"))
                else:
                    reason = _error_name(code)
                    state.fail(TransportError(f"stream {event.stream_id} reset by {self.label} ({reason})"))
                self._maybe_close_drained()
        elif isinstance(event, h2.events.WindowUpdated):
            targets = self.streams.values() if event.stream_id == 0 else [self.streams.get(event.stream_id)]
            for state in targets:
                if state is not None:
                    state.window.set()
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self.settings_received.set()
            for state in self.streams.values():
                state.window.set()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._on_goaway(event)

    def ack_unknown(self, event: h2.events.DataReceived) -> None:
        if event.flow_controlled_length and event.stream_id:
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self._h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)

    def _on_goaway(self, event: h2.events.ConnectionTerminated) -> None:
        self.goaway = True
        last = event.last_stream_id if event.last_stream_id is not None else 0
        code = _error_name(event.error_code)
        for stream_id, state in list(self.streams.items()):
            if stream_id > last:
                self.streams.pop(stream_id)
                reason = f"stream {stream_id} not processed: {self.label} sent GOAWAY ({code})"
                state.fail(_Unprocessed(reason))
        self._maybe_close_drained()


class _H2InvocationStream(InvocationStream):
    def __init__(
        self,
        client: DeploymentClient,
        headers: list[tuple[bytes, bytes]],
        conn: _H2Connection,
        state: _StreamState,
    ) -> None:
        self._client = client
        self._headers = headers
        self._conn = conn
        self._state = state
        self._replay: list[bytes] | None = []
        self._replay_size = 0
        self._replayed = False
        self._request_ended = False
        self._closed = False
        self._send_lock = asyncio.Lock()

    @property
    def stream_id(self) -> int:
        return self._state.stream_id

    def _stop_buffering_if_processed(self) -> None:
        if self._replay is not None and (self._state.head is not None or self._state.chunks):
            self._replay = None

    async def _recover(self, failed: _StreamState) -> bool:
        """Replay the request on a fresh stream if the peer provably (or almost surely) never saw it."""
        async with self._send_lock:
            if self._state is not failed:
                return True  # another task already replayed
            if self._replayed or self._replay is None or self._closed or not failed.replayable_failure:
                return False
            self._replayed = True
            conn, state = await self._client._start_h2_stream(self._headers)
            self._conn, self._state = conn, state
            for chunk in self._replay:
                await conn.send_data(state, chunk)
            if self._request_ended:
                conn.end_stream(state)
            return True

    async def response_head(self) -> tuple[int, list[tuple[str, str]]]:
        while True:
            state = self._state
            if state.head is not None:
                self._stop_buffering_if_processed()
                return state.head
            if state.error is not None:
                if await self._recover(state):
                    continue
                raise state.error
            if state.ended:
                raise TransportError(f"stream {state.stream_id} ended without a response head")
            state.changed.clear()
            await state.changed.wait()

    async def receive(self) -> bytes | None:
        while True:
            state = self._state
            if state.chunks:
                self._stop_buffering_if_processed()
                data, size = state.chunks.popleft()
                self._conn.ack(state, size)
                return data
            if state.ended:
                return None
            if state.error is not None:
                if await self._recover(state):
                    continue
                raise state.error
            state.changed.clear()
            await state.changed.wait()

    async def send(self, data: bytes) -> None:
        if self._request_ended:
            raise TransportError("send() after end_request()", retryable=False)
        if self._closed:
            raise TransportError("send() on a closed stream", retryable=False)
        if not data:
            return
        async with self._send_lock:
            self._stop_buffering_if_processed()
            if self._replay is not None:
                if self._replay_size + len(data) <= _REPLAY_LIMIT:
                    self._replay.append(bytes(data))
                    self._replay_size += len(data)
                else:
                    self._replay = None
            state = self._state
            if state.ended:
                # The peer finished its response: it wants no more input (RFC 9113 §8.1), drop it.
                return
            try:
                await self._conn.send_data(state, data)
            except TransportError:
                if state.ended:
                    return
                if not self._can_replay(state):
                    raise
            else:
                return
        # The data is in the replay buffer: a replay sends it again.
        if not await self._recover(state):
            raise state.error or TransportError("stream failed")

    def _can_replay(self, state: _StreamState) -> bool:
        return (
            state.error is not None
            and state.replayable_failure
            and self._replay is not None
            and not self._replayed
        )

    async def end_request(self) -> None:
        if self._request_ended:
            return
        self._request_ended = True
        async with self._send_lock:
            state = self._state
            if state.ended or state.local_ended:
                return
            try:
                self._conn.end_stream(state)
            except TransportError:
                if state.ended:
                    return
                if not self._can_replay(state):
                    raise
            else:
                with contextlib.suppress(TransportError):
                    await self._conn.drain()
                return
        if not await self._recover(state):
            raise state.error or TransportError("stream failed")

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._replay = None
        self._conn.release(self._state)


# ------------------------------------------------------------------------------------------------ HTTP/1.1


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
