"""One invocation exchange over a shared HTTP/2 connection, replayed elsewhere if the peer never saw it."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from pyrestate.server.invoker.transport.h2_connection import _H2Connection, _StreamState
from pyrestate.server.invoker.transport.stream import InvocationStream, TransportError

if TYPE_CHECKING:
    from pyrestate.server.invoker.transport.client import DeploymentClient

# Request bytes kept per h2 stream until the response head arrives, to replay a stream the peer provably
# did not process (refused, or above a GOAWAY's last stream id) on a fresh connection.
_REPLAY_LIMIT = 1 << 20


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
