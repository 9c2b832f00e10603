"""Coverage-guided fuzz targets (atheris / libFuzzer) for pyrestate's input parsers and HTTP apps.

    python fuzz/fuzz_targets.py TARGET [libFuzzer flags]     e.g. -max_total_time=600 -artifact_prefix=/tmp/

Targets: frame_decoder, ingress_path, duration, json_body, ingress_app, admin_app, http_front (see
TARGETS). Each one accepts an input or refuses it with the parser's own error; any other exception is a
finding: libFuzzer stops, writes the input as `crash-…` and exits non-zero. `ingress_app` / `admin_app`
drive the real ASGI apps over a real engine (SQLite in a temporary directory) and, after every input, check
that an object state written at start-up still reads back unchanged. `http_front` sends the input, in
pieces, over a loopback connection to the HTTP/1.1 front (`server/fasthttp/`, the one both API ports use)
and checks that the server closes the connection after the client's EOF, holds no connection afterwards,
answers only with HTTP/1.1 status lines, and hands its app no request that h11 would frame differently.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import atheris
import h11

with atheris.instrument_imports(include=["pyrestate"]):
    from pyrestate.protocol.errors import ProtocolError
    from pyrestate.protocol.framing import FrameDecoder
    from pyrestate.server.admin.app import AdminApp
    from pyrestate.server.app import hypercorn_config
    from pyrestate.server.config import ServerConfig
    from pyrestate.server.core_api import ServiceType
    from pyrestate.server.durations import DurationError, parse_duration_ms
    from pyrestate.server.engine.core import EngineCore
    from pyrestate.server.fasthttp import FastHTTPServer
    from pyrestate.server.ingress import errors
    from pyrestate.server.ingress.app import IngressApp, _query_from_body
    from pyrestate.server.ingress.paths import delay_from_query, parse_path

_TYPES = {"Svc": ServiceType.SERVICE, "Obj": ServiceType.VIRTUAL_OBJECT, "Wf": ServiceType.WORKFLOW}


def frame_decoder(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    decoder = FrameDecoder(max_message_size=1 << 16)
    try:
        while fdp.remaining_bytes():
            decoder.feed(fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 64)))
        decoder.close()
    except ProtocolError:
        pass


def ingress_path(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    try:
        parse_path(fdp.ConsumeUnicodeNoSurrogates(200), _TYPES.get)
    except errors.IngressError as e:
        if e.status not in (400, 404):
            raise


def duration(data: bytes) -> None:
    text = atheris.FuzzedDataProvider(data).ConsumeUnicodeNoSurrogates(200)
    with contextlib.suppress(DurationError):
        parse_duration_ms(text)
    try:
        delay_from_query("delay=" + text)
    except errors.IngressError as e:
        if e.status != 400:
            raise


def json_body(data: bytes) -> None:
    try:
        _query_from_body(data)
    except errors.IngressError as e:
        if e.status != 400:
            raise


# ------------------------------------------------------------------------------------------ the HTTP apps


class _Apps:
    """A started engine and both apps on one event loop kept for the whole run."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.tmp = tempfile.mkdtemp(prefix="pyrestate-fuzz-")
        self.core = EngineCore(ServerConfig(data_dir=Path(self.tmp), partitions=2))
        self.loop.run_until_complete(self.core.start())
        self.ingress = IngressApp(self.core, max_body_bytes=1 << 16)
        self.admin = AdminApp(self.core)
        # Known state that no input may change: the admin API writes it, the engine reads it back.
        self.loop.run_until_complete(self._known_state())

    async def _known_state(self) -> None:
        from pyrestate.server.core_api import (
            DeploymentRegistration,
            HandlerSchema,
            HandlerType,
            ServiceSchema,
        )

        svc = ServiceSchema(
            name="Known",
            ty=ServiceType.VIRTUAL_OBJECT,
            handlers={"h": HandlerSchema(name="h", ty=HandlerType.EXCLUSIVE)},
            deployment_id="",
            revision=0,
        )
        await self.core.register_deployment(
            DeploymentRegistration(
                uri="http://127.0.0.1:9/",
                use_http_11=False,
                additional_headers={},
                protocol_mode="BIDI_STREAM",
                min_protocol_version=5,
                max_protocol_version=6,
                sdk_version=None,
                services=(svc,),
                force=True,
                dry_run=False,
                breaking=False,
            )
        )
        await self.core.set_state("Known", "k", {"v": b"42"})

    def check_known_state(self) -> None:
        got = self.core.storage.reader().get_all_state("Known", "k")
        if got != [(b"v", b"42")]:
            raise AssertionError(f"known state changed: {got!r}")

    async def request(
        self, app: Callable[..., Any], method: str, path: bytes, query: bytes, headers: list[Any], body: bytes
    ) -> tuple[int, bytes]:
        scope = {
            "type": "http",
            "http_version": "1.1",
            "method": method,
            "path": path.decode("latin-1"),
            "raw_path": path,
            "query_string": query,
            "headers": headers,
        }
        sent: list[dict[str, Any]] = []
        chunks = [body[i : i + 4096] for i in range(0, len(body), 4096)] or [b""]

        async def receive() -> dict[str, Any]:
            if chunks:
                chunk = chunks.pop(0)
                return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        # Calls wait for their invocation, which cannot run here (nothing listens at the deployment).
        try:
            await asyncio.wait_for(app(scope, receive, send), 0.5)
        except TimeoutError:
            return 0, b""
        status = sent[0]["status"]
        return status, b"".join(m.get("body", b"") for m in sent[1:])


_APPS: _Apps | None = None
_ADMIN_WORDS = [
    b"deployments",
    b"services",
    b"Known",
    b"state",
    b"handlers",
    b"invocations",
    b"query",
    b"version",
    b"health",
    b"openapi",
    b"v2",
    b"v9",
    b"cancel",
    b"kill",
    b"purge",
    b"resume",
    b"k",
    b"h",
]
_INGRESS_WORDS = [
    b"restate",
    b"Known",
    b"k",
    b"h",
    b"send",
    b"invocation",
    b"workflow",
    b"awakeables",
    b"call",
    b"attach",
    b"output",
    b"lookup",
    b"health",
    b"resolve",
    b"reject",
    b"%FF",
    b"%",
    b"inv_1",
    b"sign_1",
]


def _path(fdp: Any, words: list[bytes]) -> bytes:
    parts = []
    for _ in range(fdp.ConsumeIntInRange(0, 7)):
        if fdp.ConsumeBool():
            parts.append(fdp.PickValueInList(words))
        else:
            parts.append(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 12)).replace(b"/", b"").replace(b"?", b""))
    return b"/" + b"/".join(parts)


def _http_target(which: str) -> Callable[[bytes], None]:
    def target(data: bytes) -> None:
        global _APPS
        if _APPS is None:
            _APPS = _Apps()
        apps = _APPS
        fdp = atheris.FuzzedDataProvider(data)
        method = fdp.PickValueInList(["GET", "POST", "PATCH", "DELETE", "PUT", "OPTIONS"])
        path = _path(fdp, _ADMIN_WORDS if which == "admin" else _INGRESS_WORDS)
        query = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 30))
        headers = []
        for _ in range(fdp.ConsumeIntInRange(0, 4)):
            name = fdp.PickValueInList(
                [b"content-type", b"idempotency-key", b"accept", b"content-length", b"origin", b"x-a"]
            )
            headers.append((name, fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 30))))
        if fdp.ConsumeBool():
            headers.append((b"content-type", b"application/json"))
        body = fdp.ConsumeBytes(fdp.remaining_bytes())
        if which == "admin" and path.rstrip(b"/").endswith(b"deployments") and method == "POST":
            return  # registration would dial out
        app = apps.admin if which == "admin" else apps.ingress
        status, answer = apps.loop.run_until_complete(apps.request(app, method, path, query, headers, body))
        if status >= 500 and status not in (501, 503) and b"Datafusion error" not in answer:
            raise AssertionError(f"{method} {path!r}?{query!r} -> {status} {answer[:300]!r}")
        if status >= 400 and answer and answer.startswith(b"{"):
            message = json.loads(answer).get("message")
            if not isinstance(message, str) or not message:
                raise AssertionError(f"error without a message: {answer[:300]!r}")
        apps.check_known_state()

    return target


class _Front:
    """The HTTP/1.1 front on a free loopback port, with an app that records what it is handed."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.seen: list[tuple[bytes, bytes]] = []
        with contextlib.closing(socket.socket()) as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = FastHTTPServer(self.app, hypercorn_config(f"127.0.0.1:{self.port}"), header_timeout=2.0)
        self.loop.run_until_complete(self.server.start())

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.seen.append((scope["method"].encode(), body))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-a", b"1")]})
        await send({"type": "http.response.body", "body": b"ok"})

    async def exchange(self, chunks: list[bytes]) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            for chunk in chunks:
                writer.write(chunk)
                await writer.drain()
            writer.write_eof()
            try:
                return await asyncio.wait_for(reader.read(), 3.0)
            except TimeoutError:
                raise AssertionError(f"connection left open after EOF: {chunks!r}") from None
        except ConnectionResetError:
            return b""
        finally:
            writer.close()

    async def settled(self) -> None:
        for _ in range(200):
            if self.server.open == 0:
                return
            await asyncio.sleep(0.005)
        raise AssertionError(f"{self.server.open} connection(s) held after the client closed")


_FRONT: _Front | None = None
_PREFIXES = [
    b"",
    b"POST /Svc/h HTTP/1.1\r\nhost: a\r\n",
    b"GET /restate/health HTTP/1.1\r\nhost: a\r\n\r\n",
    b"POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\n\r\nabc",
]


def _h11_requests(data: bytes) -> list[tuple[bytes, bytes]] | None:
    """The requests h11 frames from `data` before it stops; None if it refuses some of it."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    conn.receive_data(b"")
    found: list[tuple[bytes, bytes]] = []
    method, body = b"", b""
    try:
        while True:
            event = conn.next_event()
            if isinstance(event, h11.Request):
                method, body = event.method, b""
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                found.append((method, body))
                conn.send(h11.Response(status_code=200, headers=[("content-length", "0")]))
                conn.send(h11.EndOfMessage())
                conn.start_next_cycle()
            else:
                return found
    except h11.RemoteProtocolError:
        return None
    except h11.LocalProtocolError:
        return found  # h11 would close here (HTTP/1.0, `connection: close`)


def http_front(data: bytes) -> None:
    global _FRONT
    if _FRONT is None:
        _FRONT = _Front()
    front = _FRONT
    fdp = atheris.FuzzedDataProvider(data)
    payload = fdp.PickValueInList(_PREFIXES) + fdp.ConsumeBytes(fdp.remaining_bytes())
    cuts = sorted({len(payload) * i // 4 for i in range(1, 4)} | {min(len(payload), 1)})
    chunks = [payload[a:b] for a, b in zip([0, *cuts], [*cuts, len(payload)], strict=True) if b > a]
    front.seen.clear()
    answer = front.loop.run_until_complete(front.exchange(chunks))
    front.loop.run_until_complete(front.settled())
    if answer and not answer.startswith(b"HTTP/1.1 "):
        raise AssertionError(f"not an HTTP/1.1 answer: {answer[:200]!r}")
    reference = _h11_requests(payload)
    if reference is not None and front.seen != reference[: len(front.seen)]:
        raise AssertionError(f"framed differently from h11: {front.seen!r} vs {reference!r}")


TARGETS: dict[str, Callable[[bytes], None]] = {
    "frame_decoder": frame_decoder,
    "ingress_path": ingress_path,
    "duration": duration,
    "json_body": json_body,
    "ingress_app": _http_target("ingress"),
    "admin_app": _http_target("admin"),
    "http_front": http_front,
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(TARGETS)}}} [libFuzzer flags]")
    target = TARGETS[sys.argv[1]]
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
