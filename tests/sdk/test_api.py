"""Public API, serde and manifest: compared with the official SDK where both can express the same thing."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from types import ModuleType
from typing import Any

import pytest
import restate as official

import pyrestate.sdk as ours
from pyrestate.protocol.versions import choose_discovery_version
from pyrestate.sdk.discovery import compute_manifest


def test_submodule_paths_match() -> None:
    from pyrestate.sdk.exceptions import RetryableError, TerminalError  # noqa: F401
    from pyrestate.sdk.serde import BytesSerde, DefaultSerde, JsonSerde, Serde  # noqa: F401

    assert ours.TerminalError is TerminalError


@dataclasses.dataclass
class Point:
    x: int
    y: int


def build(sdk: ModuleType) -> list[Any]:
    svc = sdk.Service(
        "Greeter", description="greets", metadata={"team": "a"}, inactivity_timeout=timedelta(seconds=5)
    )

    @svc.handler()
    async def greet(ctx: Any, name: str) -> str:
        return name

    @svc.handler(name="noInput")
    async def no_input(ctx: Any) -> int:
        return 1

    @svc.handler()
    async def untyped(ctx, x):  # type: ignore[no-untyped-def]
        return x

    @svc.handler()
    async def nothing(ctx: Any, xs: list[str]) -> None:
        return None

    @svc.handler(
        accept="*/*",
        content_type="application/octet-stream",
        input_serde=sdk.serde.BytesSerde(),
        output_serde=sdk.serde.BytesSerde(),
    )
    async def raw(ctx: Any, data: bytes) -> bytes:
        return data

    @svc.handler()
    async def maybe(ctx: Any, x: dict[str, int]) -> float | None:
        return None

    @svc.handler(
        invocation_retry_policy=sdk.InvocationRetryPolicy(
            initial_interval=timedelta(milliseconds=100), max_attempts=3, on_max_attempts="kill"
        )
    )
    async def retried(ctx: Any, b: bool) -> bool:
        return b

    obj = sdk.VirtualObject("Counter", enable_lazy_state=True)

    @obj.handler()
    async def add(ctx: Any, delta: int) -> int:
        return delta

    @obj.handler(kind="shared", ingress_private=True)
    async def get(ctx: Any) -> int:
        return 0

    wf = sdk.Workflow("Wf", journal_retention=timedelta(days=1))

    @wf.main(workflow_retention=timedelta(hours=1))
    async def run(ctx: Any, p: Point) -> Point:
        return p

    @wf.handler()
    async def signal(ctx: Any, v: str) -> str:
        return v

    return [svc, obj, wf]


def official_manifest(version: int, mode: str) -> dict[str, Any]:
    from restate.discovery import compute_discovery_json
    from restate.endpoint import Endpoint

    ep = Endpoint()
    for s in build(official):
        ep.bind(s)
    return json.loads(compute_discovery_json(ep, version, mode))  # type: ignore[arg-type]


def test_manifest_equals_official() -> None:
    expected = official_manifest(4, "bidi")
    ours_m = compute_manifest(build(ours), 4, "BIDI_STREAM")
    assert expected["maxProtocolVersion"] == 7
    assert json.loads(json.dumps(ours_m)) == expected


def test_v4_only_options_refused_for_v3_like_official() -> None:
    with pytest.raises(ValueError):
        official_manifest(3, "bidi")
    with pytest.raises(ValueError, match="retryPolicy"):
        compute_manifest(build(ours), 3, "BIDI_STREAM")


def test_manifest_request_response_mode() -> None:
    assert compute_manifest(build(ours), 4, "REQUEST_RESPONSE")["protocolMode"] == "REQUEST_RESPONSE"


def test_manifest_version_negotiation() -> None:
    ct = "application/vnd.restate.endpointmanifest.v{}+json"
    assert choose_discovery_version(", ".join(ct.format(v) for v in (1, 2, 3, 4))) == 4
    assert choose_discovery_version(ct.format(3)) == 3
    assert choose_discovery_version(ct.format(1)) == 1
    assert choose_discovery_version(ct.format(9)) is None
    assert choose_discovery_version(None) == 2


def test_duplicate_handler_rejected() -> None:
    svc = ours.Service("S")

    @svc.handler()
    async def h(ctx: Any) -> None: ...

    with pytest.raises(ValueError):
        svc.handler(name="h")(h)


@pytest.mark.parametrize("sdk", [official, ours], ids=["official", "ours"])
def test_serde_behaviour_same_as_official(sdk: ModuleType) -> None:
    d = sdk.serde.DefaultSerde()
    assert d.serialize(None) == b""
    assert d.deserialize(b"") is None
    assert d.serialize({"a": [1, 2]}) == b'{"a": [1, 2]}'
    assert sdk.serde.BytesSerde().serialize(None) == b""
    assert sdk.serde.JsonSerde().deserialize(b"[1]") == [1]


def test_dataclass_serde_round_trip() -> None:
    s = ours.DefaultSerde(Point)
    buf = s.serialize(Point(1, 2))
    assert json.loads(buf) == {"x": 1, "y": 2}
    assert s.deserialize(buf) == Point(1, 2)


def test_handler_picks_dataclass_serde_from_hints() -> None:
    svc = ours.Service("P")

    @svc.handler()
    async def h(ctx: Any, p: Point) -> Point:
        return p

    handler = svc.handlers["h"]
    assert handler.handler_io.input_serde.deserialize(b'{"x": 3, "y": 4}') == Point(3, 4)


def test_terminal_error_fields() -> None:
    e = ours.TerminalError("bad", status_code=422, metadata={"k": "v"})
    assert (e.message, e.status_code, e.metadata) == ("bad", 422, {"k": "v"})
    assert ours.TerminalError("x").status_code == 500
    assert ours.is_internal_exception(ours.SdkInternalBaseException("x"))
    assert not isinstance(ours.SdkInternalBaseException("x"), Exception)


def test_run_options_defaults_match_official() -> None:
    a, b = ours.RunOptions(), official.RunOptions()
    for f in (
        "type_hint",
        "max_attempts",
        "max_duration",
        "initial_retry_interval",
        "max_retry_interval",
        "retry_interval_factor",
    ):
        assert getattr(a, f) == getattr(b, f)
