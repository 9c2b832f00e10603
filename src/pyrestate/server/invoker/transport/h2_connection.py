"""One HTTP/2 connection to a deployment: the `h2` state machine, its reader task, flow control and GOAWAY.

All h2 state changes happen synchronously between awaits, so cancelling any await never leaves the shared
connection half-updated.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from pyrestate.server.invoker.transport.stream import (
    _READ_SIZE,
    TransportError,
    _decode,
    _error_name,
    _Unprocessed,
)

# Receive windows: per stream and for the whole connection. Data is acknowledged when the caller consumes
# it, so a stream nobody reads can hold at most one stream window of the connection window.
_STREAM_WINDOW = 1 << 20
_CONNECTION_WINDOW = 16 << 20


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
