"""Span contexts stored with invocations (pure functions the state machine calls); the endpoint option."""

from __future__ import annotations

import pytest

from pyrestate.server import tracing
from pyrestate.server.config import ConfigError, from_values

TRACE = "0af7651916cd43dd8448eb211c80319c"


def test_traceparent_parsing() -> None:
    assert tracing.parse_traceparent(f"00-{TRACE}-b7ad6b7169203331-01") == (TRACE, "b7ad6b7169203331", "01")
    assert tracing.parse_traceparent(f" 00-{TRACE.upper()}-B7AD6B7169203331-00 ") == (
        TRACE,
        "b7ad6b7169203331",
        "00",
    )
    # a later version may append fields; version 00 may not
    assert tracing.parse_traceparent(f"01-{TRACE}-b7ad6b7169203331-01-extra") is not None
    for bad in (
        None,
        "",
        f"00-{TRACE}-b7ad6b7169203331-01-extra",
        f"ff-{TRACE}-b7ad6b7169203331-01",
        f"00-{'0' * 32}-b7ad6b7169203331-01",
        f"00-{TRACE}-{'0' * 16}-01",
        f"00-{TRACE}-b7ad6b716920333-01",
        f"00-{TRACE[:-1]}x-b7ad6b7169203331-01",
    ):
        assert tracing.parse_traceparent(bad) is None, bad


def test_ingress_context_continues_the_request_trace() -> None:
    ctx = tracing.ingress_context(f"00-{TRACE}-b7ad6b7169203331-01")
    assert ctx.parent_id == "b7ad6b7169203331"
    assert ctx.trace.startswith(f"{TRACE}-")
    assert ctx.trace.endswith(f"-01/{ctx.span_id}")  # the invocation span is a child of the ingress span
    fresh = tracing.ingress_context(None)
    assert fresh.parent_id is None and not fresh.trace.startswith(TRACE)
    assert len(fresh.trace) == 32 + 1 + 16 + 1 + 2 + 1 + 16


def test_callee_contexts_are_derived_not_drawn() -> None:
    caller = tracing.ingress_context(f"00-{TRACE}-b7ad6b7169203331-01").trace
    call = tracing.callee_trace(caller, "inv_caller", 3, "inv_callee", one_way=False)
    assert call == tracing.callee_trace(caller, "inv_caller", 3, "inv_callee", one_way=False)
    attempt = tracing.attempt_span_id("inv_caller", 3)
    assert call == f"{TRACE}-{tracing.invocation_span_id('inv_callee')}-01/{attempt}"
    assert tracing.attempt_traceparent(caller, "inv_caller", 3) == f"00-{TRACE}-{attempt}-01"
    assert tracing.attempt_span_id("inv_caller", 4) != attempt

    send = tracing.callee_trace(caller, "inv_caller", 3, "inv_sent", one_way=True)
    new_trace = send[:32]
    assert new_trace != TRACE and send[33:49] == new_trace[16:]
    assert send.endswith(f"~{TRACE}-{attempt}")


def test_error_codes_are_named_as_restate_names_them() -> None:
    assert tracing.error_code_text(409) == "409 Aborted"
    assert tracing.error_code_text(500) == "500 Internal"
    assert tracing.error_code_text(418) == "418"


def test_tracing_endpoint_option() -> None:
    assert from_values({}).tracing_endpoint is None
    http = "otlp+http://127.0.0.1:4318/v1/traces"
    assert from_values({"tracing_endpoint": http}).tracing_endpoint == http
    assert (
        from_values({"tracing_endpoint": "http://127.0.0.1:4317"}).tracing_endpoint == "http://127.0.0.1:4317"
    )
    with pytest.raises(ConfigError, match=r"--tracing-endpoint.*otlp\+http"):
        from_values({"tracing_endpoint": "zipkin://127.0.0.1:9411"})
