"""OpenTelemetry traces of a real server, collected by a test-local OTLP/HTTP receiver.

An ingress request with a `traceparent` calls TraceCaller/run, which calls TraceCallee/hello, sends to it
and sleeps. The spans must form Restate's tree, in the request's trace:

    <client span>
    └─ ingress TraceCaller/run
       └─ invocation-start TraceCaller/run
          ├─ invocation-attempt TraceCaller/run        (= the traceparent the SDK got)
          │  └─ invocation-start TraceCallee/hello
          │     ├─ invocation-attempt TraceCallee/hello (= the traceparent the callee got)
          │     └─ invocation-end TraceCallee/hello
          └─ invocation-end TraceCaller/run

and the send is the root of a trace of its own, linked to the caller's attempt. The same checks run against
the official restate-server: they describe what it emits.
"""

from __future__ import annotations

import httpx
import pytest
from otlp_receiver import GrpcOtlpReceiver, OtlpReceiver, Span
from tracing_app import app

from pyrestate.testing import eventually, local_restate
from pyrestate.testing.runtime import RuntimeConfig, RuntimeKind, find_restate_server

CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"
TRACEPARENT = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"


def _official_available() -> bool:
    try:
        find_restate_server()
    except FileNotFoundError:
        return False
    return True


RUNTIMES = [
    "pyrestate",
    pytest.param(
        "official",
        marks=pytest.mark.skipif(not _official_available(), reason="official restate-server not installed"),
    ),
]


def _config(kind: RuntimeKind, rx: OtlpReceiver) -> RuntimeConfig:
    var = "RESTATE_TRACING_ENDPOINT" if kind == "official" else "PYRESTATE_TRACING_ENDPOINT"
    return RuntimeConfig(extra_env={var: f"otlp+{rx.url}"})


def _one(spans: list[Span], name: str, **where: str) -> Span:
    found = [s for s in spans if s.name == name and all(getattr(s, k) == v for k, v in where.items())]
    assert len(found) == 1, (name, where, [(s.name, s.trace_id, s.parent_id) for s in spans])
    return found[0]


def _span_of(traceparent: str) -> tuple[str, str]:
    _, trace_id, span_id, _ = traceparent.split("-")
    return trace_id, span_id


@pytest.mark.parametrize("kind", RUNTIMES)
def test_span_tree_of_a_call_a_send_and_a_sleep(kind: RuntimeKind) -> None:
    with OtlpReceiver() as rx:
        with local_restate(app, runtime=kind, config=_config(kind, rx)) as env:
            r = httpx.post(
                f"{env.ingress_url}/TraceCaller/run",
                json="bob",
                headers={"traceparent": TRACEPARENT},
                timeout=30,
            )
            assert r.status_code == 200, r.text
            seen = r.json()
            caller_id = r.headers["x-restate-id"]
            r = httpx.post(f"{env.ingress_url}/TraceCallee/refuse", json=None, timeout=30)
            assert r.status_code == 409
            refused_id = r.headers["x-restate-id"]

            def all_ended() -> None:  # exports are batched (restate-server: every few seconds)
                ends = [s.name for s in rx.snapshot() if s.name.startswith("invocation-end")]
                assert sorted(ends) == [
                    "invocation-end TraceCallee/hello",
                    "invocation-end TraceCallee/hello",
                    "invocation-end TraceCallee/refuse",
                    "invocation-end TraceCaller/run",
                ], ends

            eventually(all_ended, timeout=30)
        spans = rx.snapshot()

    assert {s.service_name for s in spans} == {"Restate"}
    assert {s.kind for s in spans} == {"internal"}

    # The caller, under the client's span.
    in_trace = [s for s in spans if s.trace_id == CLIENT_TRACE]
    ingress = _one(in_trace, "ingress TraceCaller/run")
    assert ingress.parent_id == CLIENT_SPAN
    assert ingress.attributes["client.socket.address"] == "127.0.0.1"
    assert isinstance(ingress.attributes["client.socket.port"], int)
    start = _one(in_trace, "invocation-start TraceCaller/run")
    assert start.parent_id == ingress.span_id
    attempt = _one(in_trace, "invocation-attempt TraceCaller/run")
    assert attempt.parent_id == start.span_id
    assert _span_of(seen["caller"]) == (CLIENT_TRACE, attempt.span_id)  # the SDK's spans join the trace
    end = _one(in_trace, "invocation-end TraceCaller/run")
    assert end.parent_id == start.span_id
    for s in (ingress, start, attempt, end):
        assert s.attributes["rpc.service"] == "TraceCaller"
        assert s.attributes["rpc.method"] == "run"
        assert s.attributes["restate.invocation.id"] == caller_id
        assert s.attributes["restate.invocation.target"] == "TraceCaller/run"
    assert attempt.attributes["rpc.system"] == "restate"
    assert str(attempt.attributes["restate.deployment.id"]).startswith("dp_")
    assert attempt.attributes["restate.deployment.service_protocol_version"] >= 5
    assert attempt.status_code == 1  # OK
    commands = [
        a["restate.journal.command.type"]
        for name, a in attempt.events
        if name == "restate.invocation.lifecycle.new_command"
    ]
    assert commands == ["Command/Call", "Command/OneWayCall", "Command/Sleep", "Command/Output"]
    assert end.attributes["restate.invocation.result"] == "success"
    assert end.status_code == 1

    # The call, under the caller's attempt.
    callee_start = _one(in_trace, "invocation-start TraceCallee/hello")
    assert callee_start.parent_id == attempt.span_id
    callee_attempt = _one(in_trace, "invocation-attempt TraceCallee/hello")
    assert callee_attempt.parent_id == callee_start.span_id
    assert _span_of(seen["callee"]) == (CLIENT_TRACE, callee_attempt.span_id)
    callee_end = _one(in_trace, "invocation-end TraceCallee/hello")
    assert callee_end.parent_id == callee_start.span_id
    assert len(in_trace) == 7

    # The send: a trace of its own, linked to the attempt that sent it.
    sent_start = _one(
        spans, "invocation-start TraceCallee/hello", parent_id="", links=[(CLIENT_TRACE, attempt.span_id)]
    )
    assert sent_start.trace_id != CLIENT_TRACE
    sent = [s for s in spans if s.trace_id == sent_start.trace_id]
    assert sorted(s.name for s in sent) == [
        "invocation-attempt TraceCallee/hello",
        "invocation-end TraceCallee/hello",
        "invocation-start TraceCallee/hello",
    ]
    assert all(s.parent_id == sent_start.span_id for s in sent if s is not sent_start)

    # Without a traceparent the ingress span starts a trace; a terminal failure ends it in error.
    failed_end = _one(spans, "invocation-end TraceCallee/refuse")
    refused = [s for s in spans if s.trace_id == failed_end.trace_id]
    assert _one(refused, "ingress TraceCallee/refuse").parent_id == ""
    assert failed_end.attributes["restate.invocation.id"] == refused_id
    assert failed_end.attributes["restate.invocation.result"] == "failure"
    assert failed_end.attributes["restate.invocation.error.code"] == "409 Aborted"
    assert failed_end.attributes["error.message"] == "refused"
    assert failed_end.status_code == 2  # ERROR


def test_otlp_over_grpc() -> None:
    with GrpcOtlpReceiver() as rx:
        config = RuntimeConfig(extra_env={"PYRESTATE_TRACING_ENDPOINT": rx.grpc_url})
        with local_restate(app, config=config) as env:
            url = f"{env.ingress_url}/TraceCallee/hello"
            r = httpx.post(url, json="g", headers={"traceparent": TRACEPARENT}, timeout=30)
            assert r.status_code == 200, r.text
        spans = rx.snapshot()
    names = sorted(s.name for s in spans if s.trace_id == CLIENT_TRACE)
    assert names == [
        "ingress TraceCallee/hello",
        "invocation-attempt TraceCallee/hello",
        "invocation-end TraceCallee/hello",
        "invocation-start TraceCallee/hello",
    ]


def test_no_traceparent_is_invented_with_tracing_off() -> None:
    with local_restate(app) as env:
        r = httpx.post(
            f"{env.ingress_url}/TraceCaller/run", json="ann", headers={"traceparent": TRACEPARENT}, timeout=30
        )
        assert r.status_code == 200, r.text
        assert r.json() == {"callee": "", "caller": ""}
