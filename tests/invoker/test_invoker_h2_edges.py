"""HTTP/2 edge cases hypercorn cannot produce, against a small h2 server on a real loopback socket:
a peer that never opens its receive window, and a graceful GOAWAY that lets older streams finish."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import h2.config
import h2.connection
import h2.events
import pytest

from pyrestate.server.invoker.transport import DeploymentClient, TransportError

pytestmark = pytest.mark.timeout(30)


class RawH2Peer:
    """Paths: /echo echoes DATA (acknowledging it), /hold answers the head but never opens its stream window,
    /goaway answers with GOAWAY(last_stream_id = this stream - 2) and keeps serving older streams (on the
    first connection only; later ones serve it like /echo), /goaway-always does so on every connection."""

    def __init__(self) -> None:
        self.requests: list[tuple[int, str]] = []
        self.connections = 0
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        self.connections += 1
        first = self.connections == 1
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        paths: dict[int, str] = {}
        while data := await reader.read(65536):
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    path = dict(event.headers)[b":path"].decode()
                    paths[event.stream_id] = path
                    self.requests.append((event.stream_id, path))
                    if path == "/goaway-always" or (path == "/goaway" and first):
                        conn.close_connection(last_stream_id=max(0, event.stream_id - 2))
                        # h2 would refuse to send anything after its own GOAWAY; older streams may finish.
                        conn.state_machine.state = h2.connection.ConnectionState.SERVER_OPEN
                    else:
                        conn.send_headers(event.stream_id, [(b":status", b"200")])
                elif isinstance(event, h2.events.DataReceived):
                    if paths.get(event.stream_id) == "/echo":
                        conn.send_data(event.stream_id, event.data)
                        conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    elif event.flow_controlled_length:
                        # Credit the connection only: that one stream stays blocked, the others flow.
                        conn.increment_flow_control_window(event.flow_controlled_length)
                elif isinstance(event, h2.events.StreamEnded) and paths.get(event.stream_id) == "/echo":
                    conn.end_stream(event.stream_id)
            writer.write(conn.data_to_send())
        writer.close()


@pytest.fixture
async def raw_peer() -> AsyncIterator[tuple[RawH2Peer, str]]:
    peer = RawH2Peer()
    url = await peer.start()
    yield peer, url
    await peer.stop()


async def echo_once(client: DeploymentClient, payload: bytes) -> bytes:
    stream = await client.open_stream("POST", "/echo", [])
    try:
        await stream.send(payload)
        await stream.end_request()
        out = bytearray()
        while (chunk := await stream.receive()) is not None:
            out += chunk
        return bytes(out)
    finally:
        await stream.aclose()


async def test_send_blocked_on_peer_window_is_cancellable(raw_peer: tuple[RawH2Peer, str]) -> None:
    _, url = raw_peer
    async with DeploymentClient(url) as client:
        held = await client.open_stream("POST", "/hold", [])
        assert (await held.response_head())[0] == 200
        # The peer never opens the stream window: past 64 KiB the send waits, and must stay cancellable.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(held.send(b"x" * 200_000), 0.3)
        await held.aclose()
        assert await echo_once(client, b"still fine") == b"still fine"
        assert client.connections_opened == 1


async def test_graceful_goaway_finishes_old_streams_and_replays_refused_ones(
    raw_peer: tuple[RawH2Peer, str],
) -> None:
    peer, url = raw_peer
    async with DeploymentClient(url) as client:
        old = await client.open_stream("POST", "/echo", [])
        await old.send(b"one")
        assert await old.receive() == b"one"
        # This stream is above the GOAWAY's last stream id: the peer never processed it, so the client
        # replays it (headers and body) on a fresh connection without the caller noticing.
        refused = await client.open_stream("POST", "/goaway", [])
        await refused.send(b"body")
        status, _ = await asyncio.wait_for(refused.response_head(), 5)
        assert status == 200
        assert [p for _, p in peer.requests].count("/goaway") == 2
        assert client.connections_opened == 2
        # The older stream keeps working on the draining connection.
        await old.send(b"two")
        assert await old.receive() == b"two"
        await old.end_request()
        assert await old.receive() is None
        await old.aclose()
        await refused.aclose()
        # New streams avoid the draining connection.
        assert await echo_once(client, b"three") == b"three"
        assert client.connections_opened == 2


async def test_refused_stream_is_not_replayed_twice(raw_peer: tuple[RawH2Peer, str]) -> None:
    peer, url = raw_peer
    async with DeploymentClient(url) as client:
        stream = await client.open_stream("POST", "/goaway-always", [])
        with pytest.raises(TransportError) as info:
            await asyncio.wait_for(stream.response_head(), 5)
        assert info.value.retryable
        assert "GOAWAY" in str(info.value)
        assert [p for _, p in peer.requests].count("/goaway-always") == 2
        assert peer.connections == 2
        await stream.aclose()
