"""The ASGI endpoint over real HTTP (hypercorn process on a free loopback port)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pyrestate.protocol import service_protocol_pb2 as pb
from pyrestate.protocol.framing import MessageType, decode_all, encode_message
from pyrestate.testing import ServiceApp

APPS = Path(__file__).resolve().parent / "apps"
MANIFEST = "application/vnd.restate.endpointmanifest.v{}+json"
V6 = "application/vnd.restate.invocation.v6"


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    app = ServiceApp(
        "interop_app:app", pythonpath=[APPS], log_dir=tmp_path_factory.mktemp("ep"), name="sdk-ep"
    )
    app.start()
    yield app.url
    app.stop()


def test_health(url: str) -> None:
    r = httpx.get(f"{url}/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    assert r.headers["x-restate-server"].startswith("pyrestate-sdk-python/")


def test_discover_http11_is_request_response(url: str) -> None:
    r = httpx.get(f"{url}/discover", headers={"accept": ", ".join(MANIFEST.format(v) for v in (1, 2, 3, 4))})
    assert r.status_code == 200
    assert r.headers["content-type"] == MANIFEST.format(4)
    body = r.json()
    assert body["protocolMode"] == "REQUEST_RESPONSE"
    assert (body["minProtocolVersion"], body["maxProtocolVersion"]) == (5, 7)
    names = {s["name"] for s in body["services"]}
    assert names == {"Greeter", "Counter", "Approval"}


def test_discover_h2_is_bidi(url: str) -> None:
    with httpx.Client(http1=False, http2=True) as client:
        r = client.get(f"{url}/discover", headers={"accept": MANIFEST.format(4)})
    assert r.http_version == "HTTP/2"
    assert r.json()["protocolMode"] == "BIDI_STREAM"


def test_discover_with_old_accept_and_prefix(url: str) -> None:
    r = httpx.get(f"{url}/some/prefix/discover", headers={"accept": MANIFEST.format(3)})
    assert r.status_code == 200 and r.headers["content-type"] == MANIFEST.format(3)
    assert httpx.get(f"{url}/discover", headers={"accept": MANIFEST.format(9)}).status_code == 415


def test_unknown_paths_are_404(url: str) -> None:
    assert httpx.post(f"{url}/invoke/Greeter/nope", headers={"content-type": V6}).status_code == 404
    assert httpx.post(f"{url}/invoke/Nope/greet", headers={"content-type": V6}).status_code == 404
    assert httpx.get(f"{url}/whatever").status_code == 404


def test_unsupported_protocol_version_is_415(url: str) -> None:
    r = httpx.post(
        f"{url}/invoke/Greeter/greet", headers={"content-type": "application/vnd.restate.invocation.v8"}
    )
    assert r.status_code == 415


def _start(known: int = 1, **kw: object) -> bytes:
    return encode_message(pb.StartMessage(id=bytes(24), debug_id="inv_1test", known_entries=known, **kw))  # type: ignore[arg-type]


def test_invoke_request_response(url: str) -> None:
    body = _start(partial_state=True) + encode_message(
        pb.InputCommandMessage(value=pb.Value(content=b'"bob"'))
    )
    r = httpx.post(f"{url}/prefix/invoke/Greeter/greet", content=body, headers={"content-type": V6})
    assert r.status_code == 200 and r.headers["content-type"] == V6
    frames = decode_all(r.content)
    assert [(f.type, f.message) for f in frames] == [
        (
            MessageType.OUTPUT,
            pb.OutputCommandMessage(value=pb.Value(content=json.dumps("hello bob").encode())),
        ),
        (MessageType.END, pb.EndMessage()),
    ]


def test_invoke_suspends_at_unresolved_await(url: str) -> None:
    body = _start(partial_state=True) + encode_message(pb.InputCommandMessage(value=pb.Value(content=b"100")))
    r = httpx.post(f"{url}/invoke/Greeter/sleepy", content=body, headers={"content-type": V6})
    frames = decode_all(r.content)
    assert [f.type for f in frames] == [MessageType.SLEEP, MessageType.SUSPENSION]
    assert frames[1].message == pb.SuspensionMessage(waiting_completions=[1], waiting_signals=[1])


def test_invoke_replay_then_output(url: str) -> None:
    body = (
        _start(known=3, partial_state=True)
        + encode_message(pb.InputCommandMessage(value=pb.Value(content=b"100")))
        + encode_message(pb.SleepCommandMessage(wake_up_time=1, result_completion_id=1))
        + encode_message(
            pb.NotificationMessage(completion_id=1, void=pb.Void()), MessageType.SLEEP_COMPLETION
        )
    )
    r = httpx.post(f"{url}/invoke/Greeter/sleepy", content=body, headers={"content-type": V6})
    frames = decode_all(r.content)
    assert [(f.type, f.message) for f in frames] == [
        (MessageType.OUTPUT, pb.OutputCommandMessage(value=pb.Value(content=b'"slept"'))),
        (MessageType.END, pb.EndMessage()),
    ]


def test_invoke_journal_mismatch_is_570(url: str) -> None:
    body = (
        _start(known=2, partial_state=True)
        + encode_message(pb.InputCommandMessage(value=pb.Value(content=b"100")))
        + encode_message(pb.RunCommandMessage(result_completion_id=1, name="other"))
    )
    r = httpx.post(f"{url}/invoke/Greeter/sleepy", content=body, headers={"content-type": V6})
    frames = decode_all(r.content)
    assert [f.type for f in frames] == [MessageType.ERROR]
    assert frames[0].message.code == 570  # type: ignore[attr-defined]


def test_invoke_terminal_error_with_input_parse_failure(url: str) -> None:
    body = _start(partial_state=True) + encode_message(
        pb.InputCommandMessage(value=pb.Value(content=b"{oops"))
    )
    r = httpx.post(f"{url}/invoke/Greeter/greet", content=body, headers={"content-type": V6})
    frames = decode_all(r.content)
    assert frames[0].type is MessageType.OUTPUT
    assert frames[0].message.failure.message.startswith("Unable to parse an input argument.")  # type: ignore[attr-defined]
