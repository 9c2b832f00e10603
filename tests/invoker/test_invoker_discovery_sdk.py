"""discover() and a real invocation round trip against the official Python SDK served by hypercorn."""

from __future__ import annotations

import asyncio

import pytest
from invoker_support import Peer, free_port

from pyrestate.protocol import service_protocol_pb2 as pb
from pyrestate.protocol.framing import FrameDecoder, MessageType, encode_message
from pyrestate.server.invoker.discovery_client import DiscoveryError, discover
from pyrestate.server.invoker.transport import DeploymentClient

pytestmark = pytest.mark.timeout(60)

V4 = "application/vnd.restate.endpointmanifest.v4+json"


@pytest.mark.parametrize(("use_http_11", "mode"), [(False, "BIDI_STREAM"), (True, "REQUEST_RESPONSE")])
async def test_discover_official_sdk(sdk_peer: Peer, use_http_11: bool, mode: str) -> None:
    result = await discover(
        sdk_peer.url, use_http_11=use_http_11, additional_headers={"x-restate-cluster-name": "t"}
    )
    assert result.status == 200
    assert result.content_type == V4
    assert result.manifest_version == 4
    # The SDK picks the protocol mode from the HTTP version the discovery request came over.
    assert result.manifest["protocolMode"] == mode
    services = {s["name"]: s for s in result.manifest["services"]}
    assert [h["name"] for h in services["Svc"]["handlers"]] == ["handler"]
    assert ("x-restate-server", "restate-sdk-python/1.3.0") in result.headers
    assert result.body.startswith(b"{")


@pytest.mark.parametrize("use_http_11", [False, True])
async def test_invocation_round_trip_with_official_sdk(sdk_peer: Peer, use_http_11: bool) -> None:
    content_type = "application/vnd.restate.invocation.v5"
    start = pb.StartMessage(id=b"\x01" * 16, debug_id="inv_test", known_entries=1)
    start_frame = encode_message(start)
    input_frame = encode_message(pb.InputCommandMessage(value=pb.Value(content=b'"world"')))
    async with DeploymentClient(sdk_peer.url, use_http_11=use_http_11) as client:
        stream = await client.open_stream(
            "POST",
            "/invoke/Svc/handler",
            [
                ("content-type", content_type),
                ("accept", content_type),
                ("x-restate-invocation-id", "inv_test"),
            ],
        )
        await stream.send(start_frame)
        await stream.send(input_frame)
        if use_http_11:
            await stream.end_request()  # request/response: the body goes out on end_request
        status, headers = await asyncio.wait_for(stream.response_head(), 10)
        assert status == 200
        assert ("content-type", content_type) in headers
        decoder = FrameDecoder()
        frames = []
        while not any(f.type is MessageType.END for f in frames):
            chunk = await asyncio.wait_for(stream.receive(), 10)
            assert chunk is not None, f"response ended early after {[f.type for f in frames]}"
            frames.extend(decoder.feed(chunk))
        if not use_http_11:
            # Bidi: the output came back while our request side was still open; close it as the server does.
            await stream.end_request()
        assert await asyncio.wait_for(stream.receive(), 10) is None
        await stream.aclose()
    assert [f.type for f in frames] == [MessageType.OUTPUT, MessageType.END]
    output = frames[0].message
    assert isinstance(output, pb.OutputCommandMessage)
    assert output.value.content == b'"hello world"'


async def test_discover_connection_refused() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(DiscoveryError, match="connection refused") as info:
        await discover(url, initial_backoff=0.01)
    assert info.value.status is None


@pytest.mark.parametrize(
    ("prefix", "pattern", "status"),
    [
        ("/bad-ct", "content-type 'text/plain'", 200),
        ("/no-ct", "without a content-type", 200),
        ("/bad-json", "invalid JSON", 200),
        ("/missing", "answered 404", 404),
        ("/always503", r"answered 503: down \(after 3 attempt", 503),
    ],
)
async def test_discover_errors(echo_peer: Peer, prefix: str, pattern: str, status: int) -> None:
    with pytest.raises(DiscoveryError, match=pattern) as info:
        await discover(echo_peer.url + prefix, attempts=3, initial_backoff=0.01)
    assert info.value.status == status


async def test_discover_retries_transient_statuses(echo_peer: Peer) -> None:
    # The peer answers 503 twice, then a valid manifest.
    result = await discover(echo_peer.url + "/flaky", use_http_11=True, attempts=3, initial_backoff=0.01)
    assert result.manifest == {"services": []}
    assert result.content_type == V4
