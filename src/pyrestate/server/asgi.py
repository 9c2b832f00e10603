"""Small ASGI plumbing shared by the ingress and admin apps: reading a bounded body, sending a response."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[str, str]]


class BodyTooLarge(Exception):
    pass


class ClientDisconnected(Exception):
    pass


def request_headers(scope: Scope) -> Headers:
    """(lower-case name, value) in request order; HTTP/2 pseudo headers are not included."""
    return [
        (name.decode("latin-1").lower(), value.decode("latin-1"))
        for name, value in scope.get("headers", ())
        if not name.startswith(b":")
    ]


def header(headers: Headers, name: str) -> str | None:
    for n, v in headers:
        if n == name:
            return v
    return None


def raw_path(scope: Scope) -> str:
    raw = scope.get("raw_path")
    if raw:
        path = bytes(raw).decode("latin-1")
        return path.split("?", 1)[0]  # some servers leave the query in raw_path
    return str(scope.get("path", "/"))


async def read_body(receive: Receive, headers: Headers, limit: int) -> bytes:
    """The whole request body; BodyTooLarge as soon as it (or its announced length) exceeds `limit`."""
    announced = header(headers, "content-length")
    # isascii: str.isdigit() also accepts digits such as "²" that int() refuses.
    if announced is not None and announced.isascii() and announced.isdigit() and int(announced) > limit:
        raise BodyTooLarge()
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected()
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge()
            chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class TrackedReceive:
    """A `receive` that remembers whether the request body was read to its end.

    hypercorn closes a keep-alive HTTP/1.1 connection whose request body the app left unread, without
    saying so in the response: a pooled client then fails its next request on a dead connection. An app
    that answers early (404, 405, a bad path) drains the rest of a small body first, via `drain`.
    """

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.complete = False

    async def __call__(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.disconnect" or not message.get("more_body", False):
            self.complete = True
        return message

    async def drain(self, limit: int, timeout: float = 1.0) -> None:
        """Read and drop what is left of the body: at most `limit` bytes, for at most `timeout` seconds
        (a client that announced a body and never sends it must not hold the answer back)."""
        size = 0
        try:
            async with asyncio.timeout(timeout):
                while not self.complete and size <= limit:
                    size += len((await self()).get("body", b""))
        except TimeoutError:
            pass


async def send_response(send: Send, status: int, headers: Headers, body: bytes = b"") -> None:
    raw = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers]
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def lifespan(receive: Receive, send: Send) -> None:
    """Acknowledge startup/shutdown; process wiring (app.py) owns the engine's lifecycle."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
