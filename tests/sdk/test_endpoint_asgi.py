"""The ASGI endpoint driven in-process through the ASGI interface: replay-aware logging, request identity
verification (requests signed here with freshly generated Ed25519 keys) and V5 failure metadata."""

from __future__ import annotations

import base64
import json
import logging
import time
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import pyrestate.sdk as restate
from pyrestate.protocol import service_protocol_pb2 as pb
from pyrestate.protocol.framing import MessageType, decode_all, encode_message
from pyrestate.sdk.identity import (
    IdentityKeyError,
    IdentityVerificationError,
    IdentityVerifier,
    b58decode,
    b58encode,
    identity_key_of,
    normalise_path,
)

RAW_ID = bytes.fromhex("9ce9d775bb749ca5c68fcf0e11bb10a69feedd71870fdf64")
DEBUG_ID = "inv_1edxKhxhwJ7634laE2cVU0XE4EPOfEpJGe"
V5 = "application/vnd.restate.invocation.v5"
V6 = "application/vnd.restate.invocation.v6"

log = restate.getLogger("pyrestate.tests.replay")

svc = restate.Service("Logs")


@svc.handler()
async def chatty(ctx: restate.Context) -> str:
    log.info("before sleep")
    await ctx.sleep(timedelta(milliseconds=5))
    log.info("after sleep")
    return "done"


@svc.handler(name="failWithMetadata")
async def fail_with_metadata(ctx: restate.Context) -> str:
    raise restate.TerminalError("bad", 422, {"reason": "x"})


async def asgi(app: Any, path: str, headers: dict[str, str], body: bytes = b"", method: str = "POST") -> Any:
    """One request through the ASGI app; returns (status, response headers, body)."""
    sent: list[dict[str, Any]] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "path": path,
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    data = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, data


def journal(*messages: Any, known: int) -> bytes:
    start = pb.StartMessage(id=RAW_ID, debug_id=DEBUG_ID, known_entries=known, random_seed=1)
    return encode_message(start) + b"".join(
        encode_message(*m) if isinstance(m, tuple) else encode_message(m) for m in messages
    )


INPUT = pb.InputCommandMessage(value=pb.Value(content=b""))


# ---- logging


async def test_logs_are_suppressed_while_replaying(caplog: pytest.LogCaptureFixture) -> None:
    app = restate.app([svc])
    caplog.set_level(logging.INFO, logger="pyrestate.tests.replay")
    # First attempt: nothing replayed, the handler logs and then suspends on the sleep.
    status, _, body = await asgi(app, "/invoke/Logs/chatty", {"content-type": V6}, journal(INPUT, known=1))
    assert status == 200
    assert [t for t, _ in [(f.type, f.message) for f in decode_all(body)]] == [
        MessageType.SLEEP,
        MessageType.SUSPENSION,
    ]
    assert [r.getMessage() for r in caplog.records] == ["before sleep"]
    caplog.clear()
    # Second attempt replays Input + Sleep + its completion: "before sleep" is a replayed log line.
    sleep = pb.SleepCommandMessage(wake_up_time=1, result_completion_id=1)
    done = (pb.NotificationMessage(completion_id=1, void=pb.Void()), MessageType.SLEEP_COMPLETION)
    status, _, body = await asgi(
        app, "/invoke/Logs/chatty", {"content-type": V6}, journal(INPUT, sleep, done, known=3)
    )
    assert status == 200
    assert [f.type for f in decode_all(body)] == [MessageType.OUTPUT, MessageType.END]
    assert [r.getMessage() for r in caplog.records] == ["after sleep"]


def test_get_logger_attaches_the_filter_once() -> None:
    logger = restate.getLogger("pyrestate.tests.once")
    restate.getLogger("pyrestate.tests.once")
    assert sum(isinstance(f, restate.RestateLoggingFilter) for f in logger.filters) == 1
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "outside a handler", None, None)
    assert restate.RestateLoggingFilter().filter(record)


# ---- failure metadata and protocol versions


@pytest.mark.parametrize(("content_type", "expected"), [(V6, "output"), (V5, "error")])
async def test_failure_metadata_needs_v6(content_type: str, expected: str) -> None:
    app = restate.app([svc])
    status, headers, body = await asgi(
        app, "/invoke/Logs/failWithMetadata", {"content-type": content_type}, journal(INPUT, known=1)
    )
    assert status == 200 and headers["content-type"] == content_type
    frames = decode_all(body)
    if expected == "output":
        assert frames[0].type is MessageType.OUTPUT
        assert [(m.key, m.value) for m in frames[0].message.failure.metadata] == [("reason", "x")]
    else:
        assert [f.type for f in frames] == [MessageType.ERROR]
        assert frames[0].message.code == 573


@pytest.mark.parametrize("content_type", ["application/vnd.restate.invocation.v8", "application/json", ""])
async def test_unsupported_invocation_versions_get_415(content_type: str) -> None:
    status, _, _ = await asgi(restate.app([svc]), "/invoke/Logs/chatty", {"content-type": content_type})
    assert status == 415


# ---- request identity


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(key: Ed25519PrivateKey, aud: Any, *, now: float | None = None, **overrides: Any) -> str:
    t = int(time.time() if now is None else now)
    claims: dict[str, Any] = {"aud": aud, "exp": t + 60, "iat": t, "nbf": t - 60}
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    header = {"typ": "JWT", "alg": "EdDSA", "kid": identity_key_of(key.public_key())}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{_b64(key.sign(signing_input.encode()))}"


def signed(token: str) -> dict[str, str]:
    return {"x-restate-signature-scheme": "v1", "x-restate-jwt-v1": token}


def test_base58_round_trip() -> None:
    for raw in (b"", b"\x00", b"\x00\x00\x01\x02", bytes(range(32)), b"\xff" * 32):
        assert b58decode(b58encode(raw)) == raw
    assert b58encode(b"hello world") == "StV1DL6CwTryKyV"  # the widely published test vector


def test_malformed_keys_fail_at_start_up() -> None:
    for bad in ("abc", "publickeyv1_0OIl", "publickeyv1_" + b58encode(b"short")):
        with pytest.raises(IdentityKeyError):
            IdentityVerifier([bad])
    with pytest.raises(ValueError):
        restate.app([svc], identity_keys=["not-a-key"])


def test_normalise_path() -> None:
    cases = {
        "/invoke/a/b": "/invoke/a/b",
        "/foo/bar/invoke/a/b": "/invoke/a/b",
        "/foo/discover": "/discover",
        "/invoke/a": "/invoke/a",
        "/foo": "/foo",
        "": "",
    }
    for path, expected in cases.items():
        assert normalise_path(path) == expected


def test_verifier_claims() -> None:
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    v = IdentityVerifier([identity_key_of(other.public_key()), identity_key_of(key.public_key())])
    path = "/prefix/invoke/Logs/chatty"
    v.verify(signed(sign(key, "/invoke/Logs/chatty")), path)  # the second configured key matches
    v.verify(signed(sign(key, ["/x", "/invoke/Logs/chatty"])), path)  # aud may be a list
    rejected = [
        {},  # no scheme header
        {"x-restate-signature-scheme": "unsigned"},
        {"x-restate-signature-scheme": "v2", "x-restate-jwt-v1": sign(key, "/invoke/Logs/chatty")},
        {"x-restate-signature-scheme": "v1"},  # no token
        signed(sign(key, "/invoke/Logs/other")),  # wrong audience
        signed(sign(key, "/invoke/Logs/chatty", exp=int(time.time()) - 1)),  # expired
        signed(sign(key, "/invoke/Logs/chatty", nbf=int(time.time()) + 30)),  # not yet valid
        signed(sign(key, "/invoke/Logs/chatty", iat=None)),  # iat is required
        signed(sign(Ed25519PrivateKey.generate(), "/invoke/Logs/chatty")),  # unknown key
        signed("not.a.jwt"),
        signed(sign(key, "/invoke/Logs/chatty")[:-4] + "AAAA"),  # tampered signature
    ]
    for headers in rejected:
        with pytest.raises(IdentityVerificationError):
            v.verify(headers, path)
    IdentityVerifier([]).verify({}, path)  # no keys: everything passes


async def test_endpoint_answers_401_without_a_valid_signature() -> None:
    key = Ed25519PrivateKey.generate()
    app = restate.app([svc], identity_keys=[identity_key_of(key.public_key())])
    accept = {"accept": "application/vnd.restate.endpointmanifest.v4+json"}
    assert (await asgi(app, "/discover", accept, method="GET"))[0] == 401
    assert (await asgi(app, "/health", {}, method="GET"))[0] == 200  # health stays open
    ok = await asgi(app, "/deploy/discover", accept | signed(sign(key, "/discover")), method="GET")
    assert ok[0] == 200 and json.loads(ok[2])["services"][0]["name"] == "Logs"
    wrong_aud = signed(sign(key, "/invoke/Logs/other"))
    status, _, _ = await asgi(
        app, "/invoke/Logs/chatty", {"content-type": V6} | wrong_aud, journal(INPUT, known=1)
    )
    assert status == 401
    good = signed(sign(key, "/invoke/Logs/chatty"))
    status, _, body = await asgi(
        app, "/invoke/Logs/chatty", {"content-type": V6} | good, journal(INPUT, known=1)
    )
    assert status == 200 and decode_all(body)[0].type is MessageType.SLEEP
