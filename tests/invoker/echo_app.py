"""ASGI peer for the transport tests, served by hypercorn in a child process.

Routes: POST /echo (response head first, then each request chunk echoed as it arrives), POST /sink (reads the
whole body, answers its length and sha256), GET /blob?n=N (N deterministic bytes), GET /headers (the request
path and headers as JSON), POST /hold (answers the head, never reads nor ends), and /discover variants used
by the discovery-client tests.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

MANIFEST_V4 = "application/vnd.restate.endpointmanifest.v4+json"
_flaky_count = 0


def blob(n: int) -> bytes:
    pattern = bytes(range(251))  # prime length: chunk boundaries never line up with the pattern
    return (pattern * (n // len(pattern) + 1))[:n]


async def _respond(send: Any, status: int, body: bytes, content_type: str | None = "text/plain") -> None:
    headers = [(b"content-type", content_type.encode())] if content_type else []
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_all(receive: Any) -> bytes:
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return bytes(body)
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return bytes(body)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global _flaky_count
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    if path.endswith("/echo"):
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/octet-stream")],
            }
        )
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            if message.get("body"):
                await send({"type": "http.response.body", "body": message["body"], "more_body": True})
            if not message.get("more_body", False):
                break
        await send({"type": "http.response.body", "body": b""})
    elif path.endswith("/sink"):
        body = await _read_all(receive)
        result = {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}
        await _respond(send, 200, json.dumps(result).encode(), "application/json")
    elif path.endswith("/blob"):
        n = int(scope["query_string"].decode().split("=", 1)[1])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        data = blob(n)
        step = 256 * 1024
        for i in range(0, n, step):
            await send({"type": "http.response.body", "body": data[i : i + step], "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path.endswith("/headers"):
        await _read_all(receive)
        result = {
            "path": path,
            "http_version": scope["http_version"],
            "headers": [[k.decode(), v.decode()] for k, v in scope["headers"]],
        }
        await _respond(send, 200, json.dumps(result).encode(), "application/json")
    elif path.endswith("/hold"):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(3600)
    elif path == "/bad-ct/discover":
        await _respond(send, 200, b"{}", "text/plain")
    elif path == "/no-ct/discover":
        await _respond(send, 200, b"{}", None)
    elif path == "/bad-json/discover":
        await _respond(send, 200, b"{not json", MANIFEST_V4)
    elif path == "/missing/discover":
        await _respond(send, 404, b"no such thing")
    elif path == "/flaky/discover":
        _flaky_count += 1
        if _flaky_count % 3 != 0:  # two failures, then a success
            await _respond(send, 503, b"try later")
        else:
            await _respond(send, 200, b'{"services": []}', MANIFEST_V4)
    elif path == "/always503/discover":
        await _respond(send, 503, b"down")
    else:
        await _respond(send, 404, b"not found")
