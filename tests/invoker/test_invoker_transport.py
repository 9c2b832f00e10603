"""DeploymentClient against real hypercorn peers (h2c with prior knowledge and HTTP/1.1)."""

from __future__ import annotations

import asyncio
import hashlib
import json

import pytest
from echo_app import blob
from invoker_support import Peer

from pyrestate.server.invoker.transport import DeploymentClient, InvocationStream, TransportError

pytestmark = pytest.mark.timeout(60)


async def read_exactly(stream: InvocationStream, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = await stream.receive()
        assert chunk is not None, f"response ended after {len(out)} of {n} bytes"
        out += chunk
    return bytes(out)


async def read_all(stream: InvocationStream) -> bytes:
    out = bytearray()
    while (chunk := await stream.receive()) is not None:
        out += chunk
    return bytes(out)


async def get_json(client: DeploymentClient, path: str) -> dict[str, object]:
    stream = await client.open_stream("GET", path, [])
    try:
        await stream.end_request()
        status, _ = await stream.response_head()
        assert status == 200
        result: dict[str, object] = json.loads(await read_all(stream))
        return result
    finally:
        await stream.aclose()


async def test_h2_bidi_interleaves_request_and_response(echo_peer: Peer) -> None:
    async with DeploymentClient(echo_peer.url) as client:
        stream = await client.open_stream("POST", "/echo", [("content-type", "application/octet-stream")])
        # The head comes before any request byte: nothing is buffered waiting for the request to end.
        status, headers = await asyncio.wait_for(stream.response_head(), 5)
        assert status == 200
        assert ("content-type", "application/octet-stream") in headers
        for i in range(5):
            message = f"message {i}".encode()
            await stream.send(message)
            # Each echo is read while the request body is still open.
            assert await asyncio.wait_for(read_exactly(stream, len(message)), 5) == message
        await stream.end_request()
        assert await stream.receive() is None
        await stream.aclose()
        await stream.aclose()  # idempotent


async def test_h2_headers_path_prefix_and_additional_headers(echo_peer: Peer) -> None:
    async with DeploymentClient(echo_peer.url + "/prefix/", additional_headers={"X-Extra": "yes"}) as client:
        result = await get_json(client, "/headers")
    assert result["path"] == "/prefix/headers"
    assert result["http_version"] == "2"
    assert ["x-extra", "yes"] in result["headers"]  # type: ignore[operator]


async def test_h2_many_concurrent_streams_share_one_connection(echo_peer: Peer) -> None:
    async with DeploymentClient(echo_peer.url) as client:

        async def one(i: int) -> bytes:
            stream = await client.open_stream("POST", "/echo", [])
            try:
                payload = f"stream {i} ".encode() * 100
                await stream.send(payload[:500])
                first = await read_exactly(stream, 500)
                await stream.send(payload[500:])
                await stream.end_request()
                return first + await read_all(stream)
            finally:
                await stream.aclose()

        # The peer allows 16 concurrent streams per connection.
        results = await asyncio.gather(*(one(i) for i in range(12)))
        assert results == [f"stream {i} ".encode() * 100 for i in range(12)]
        assert client.open_connections == 1
        assert client.connections_opened == 1


async def test_h2_full_connection_opens_another(echo_peer: Peer) -> None:
    async with DeploymentClient(echo_peer.url) as client:
        streams = [await client.open_stream("POST", "/echo", []) for _ in range(20)]
        for i, stream in enumerate(streams):
            await stream.send(b"%03d" % i)
        for i, stream in enumerate(streams):
            assert await read_exactly(stream, 3) == b"%03d" % i
        # 16 streams per connection on this peer: 20 open streams need two connections.
        assert client.connections_opened == 2
        for stream in streams:
            await stream.aclose()
        # Closed streams free the first connection again.
        result = await get_json(client, "/headers")
        assert result["path"] == "/headers"
        assert client.connections_opened == 2


async def test_h2_large_bodies_both_ways(echo_peer: Peer) -> None:
    size = 6 * 1024 * 1024
    data = blob(size)
    async with DeploymentClient(echo_peer.url) as client:
        # Upload: far beyond the peer's 64 KiB initial window, so sending must wait for WINDOW_UPDATEs.
        stream = await client.open_stream("POST", "/sink", [])
        await stream.send(data)
        await stream.end_request()
        status, _ = await stream.response_head()
        assert status == 200
        assert json.loads(await read_all(stream)) == {
            "length": size,
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        await stream.aclose()

        # Download: beyond our 1 MiB stream window, so consumed data must be acknowledged.
        stream = await client.open_stream("GET", f"/blob?n={size}", [])
        await stream.end_request()
        assert (await stream.response_head())[0] == 200
        assert await read_all(stream) == data
        await stream.aclose()

        # Both at once on one bidi stream: a writer task and a reader running concurrently.
        stream = await client.open_stream("POST", "/echo", [])

        async def write() -> None:
            for i in range(0, size, 300_000):
                await stream.send(data[i : i + 300_000])
            await stream.end_request()

        writer = asyncio.create_task(write())
        echoed = await read_all(stream)
        await writer
        assert echoed == data
        await stream.aclose()
        assert client.connections_opened == 1


async def test_cancelled_receive_leaves_the_connection_usable(echo_peer: Peer) -> None:
    async with DeploymentClient(echo_peer.url) as client:
        held = await client.open_stream("POST", "/hold", [])
        assert (await held.response_head())[0] == 200
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(held.receive(), 0.2)
        await held.aclose()
        with pytest.raises(TransportError):
            await held.receive()
        # Same connection, still healthy.
        result = await get_json(client, "/headers")
        assert result["path"] == "/headers"
        assert client.connections_opened == 1


async def test_h2_idle_close_by_peer_reconnects(short_lived_peer: Peer) -> None:
    async with DeploymentClient(short_lived_peer.url) as client:
        assert (await get_json(client, "/headers"))["path"] == "/headers"
        await asyncio.sleep(1.2)  # the peer closes idle connections after 0.5 s
        assert client.open_connections == 0
        assert (await get_json(client, "/headers"))["path"] == "/headers"
        assert client.connections_opened == 2


async def test_h2_goaway_after_max_requests(short_lived_peer: Peer) -> None:
    """hypercorn sends GOAWAY after its request limit; later requests go out on a fresh connection."""
    async with DeploymentClient(short_lived_peer.url) as client:
        ok = 0
        failures: list[TransportError] = []
        for _ in range(10):
            try:
                result = await asyncio.wait_for(get_json(client, "/headers"), 5)
                assert result["path"] == "/headers"
                ok += 1
            except TransportError as e:
                failures.append(e)
        # The stream that crosses the limit may be cut by the peer (it stops answering after its GOAWAY);
        # that must surface as a retryable error, and every later request must succeed on a new connection.
        assert all(e.retryable for e in failures)
        assert ok >= 7
        assert client.connections_opened >= 3


async def test_peer_killed_mid_stream_fails_stream_retryably(doomed_peer: Peer) -> None:
    async with DeploymentClient(doomed_peer.url) as client:
        stream = await client.open_stream("POST", "/echo", [])
        await stream.send(b"ping")
        assert await read_exactly(stream, 4) == b"ping"
        doomed_peer.kill()
        with pytest.raises(TransportError) as info:
            await asyncio.wait_for(stream.receive(), 5)
        assert info.value.retryable
        with pytest.raises(TransportError):
            await stream.send(b"more")
        await stream.aclose()
        # The deployment is gone: opening a new stream is a clear, retryable refusal.
        with pytest.raises(TransportError, match="refused") as refused:
            await client.open_stream("POST", "/echo", [])
        assert refused.value.retryable


async def test_connection_refused_is_a_retryable_transport_error() -> None:
    from invoker_support import free_port

    url = f"http://127.0.0.1:{free_port()}"
    for use_http_11 in (False, True):
        async with DeploymentClient(url, use_http_11=use_http_11) as client:
            with pytest.raises(TransportError, match="connection refused") as info:
                await client.open_stream("GET", "/discover", [])
            assert info.value.retryable


async def test_h1_request_response_and_connection_reuse(echo_peer: Peer) -> None:
    async with DeploymentClient(
        echo_peer.url + "/p", use_http_11=True, additional_headers={"x-a": "1"}
    ) as client:
        stream = await client.open_stream("POST", "/echo", [("content-type", "application/octet-stream")])
        await stream.send(b"hello ")
        await stream.send(b"world")
        await stream.end_request()
        status, _ = await stream.response_head()
        assert status == 200
        assert await read_all(stream) == b"hello world"
        await stream.aclose()

        result = await get_json(client, "/headers")
        assert result["http_version"] == "1.1"
        assert result["path"] == "/p/headers"
        assert ["x-a", "1"] in result["headers"]  # type: ignore[operator]
        assert client.connections_opened == 1  # the idle connection was reused

        size = 5 * 1024 * 1024
        stream = await client.open_stream("POST", "/sink", [])
        await stream.send(blob(size))
        await stream.end_request()
        assert json.loads(await read_all(stream))["length"] == size
        await stream.aclose()
        stream = await client.open_stream("GET", f"/blob?n={size}", [])
        await stream.end_request()
        assert await read_all(stream) == blob(size)
        await stream.aclose()


async def test_h1_request_body_is_chunked(echo_peer: Peer) -> None:
    async with DeploymentClient(echo_peer.url, use_http_11=True) as client:
        stream = await client.open_stream("POST", "/headers", [])
        await stream.send(b"x")
        await stream.end_request()
        result = json.loads(await read_all(stream))
        await stream.aclose()
    assert ["transfer-encoding", "chunked"] in result["headers"]


async def test_h1_stale_pooled_connection_is_replaced(short_lived_peer: Peer) -> None:
    async with DeploymentClient(short_lived_peer.url, use_http_11=True) as client:
        assert (await get_json(client, "/headers"))["path"] == "/headers"
        await asyncio.sleep(1.2)  # the peer drops the pooled connection
        assert (await get_json(client, "/headers"))["path"] == "/headers"
        assert client.connections_opened == 2


async def test_misuse_is_not_retryable(echo_peer: Peer) -> None:
    async with DeploymentClient(echo_peer.url) as client:
        stream = await client.open_stream("POST", "/echo", [])
        await stream.end_request()
        with pytest.raises(TransportError) as info:
            await stream.send(b"late")
        assert not info.value.retryable
        await stream.aclose()
    with pytest.raises(TransportError) as closed:
        await client.open_stream("POST", "/echo", [])
    assert not closed.value.retryable
    with pytest.raises(ValueError):
        DeploymentClient("ftp://example")
