"""Properties of the pure input parsers under arbitrary input: every input is either accepted or refused
with the parser's own error (ProtocolError, IngressError with a 4xx, DurationError, IdDecodeError) —
never another exception, never a hang."""

from __future__ import annotations

import json
import time

import pytest
from fuzz_counts import count
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyrestate.protocol import pb
from pyrestate.protocol.errors import ProtocolError
from pyrestate.protocol.framing import (
    HEADER_SIZE,
    FrameDecoder,
    MessageType,
    encode_header,
    encode_message,
)
from pyrestate.server.core_api import HandlerSchema, ServiceType
from pyrestate.server.durations import (
    MAX_DURATION_NS,
    DurationError,
    parse_duration_ms,
    rfc3339_nanos,
)
from pyrestate.server.ingress import errors
from pyrestate.server.ingress.app import _query_from_body
from pyrestate.server.ingress.paths import Route, delay_from_query, parse_path
from pyrestate.server.query.handler import wants_json
from pyrestate.server.query.runner import QueryError, check_read_only, referenced_tables
from pyrestate.server.resource_ids import (
    IdDecodeError,
    check_awakeable_id,
    check_deployment_id,
    check_invocation_id,
)
from pyrestate.server.validation import InputValidationError, validate_input

pytestmark = pytest.mark.timeout(120)

FAST = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MEDIUM = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ------------------------------------------------------------------------------------------ frame decoder

_KNOWN = [int(t) for t in MessageType]


@st.composite
def frame_streams(draw: st.DrawFn) -> bytes:
    """Mostly well-formed headers (known types, plausible lengths) around random payloads, so the fuzz
    reaches the protobuf decoder and not only the header checks."""
    parts = []
    for _ in range(draw(st.integers(0, 4))):
        ty = draw(st.sampled_from(_KNOWN) | st.integers(0, 0xFFFF))
        payload = draw(st.binary(max_size=64))
        length = draw(st.just(len(payload)) | st.integers(0, 0xFFFF_FFFF))
        header = encode_header(ty, length, requested_ack=draw(st.booleans()))
        if draw(st.integers(0, 9)) == 0:  # reserved bits set
            header = bytes([header[0], header[1], header[2] | 0x01]) + header[3:]
        parts.append(header + payload)
    parts.append(draw(st.binary(max_size=16)))
    return b"".join(parts)


def _decode_chunked(data: bytes, cuts: list[int]) -> list[object]:
    decoder = FrameDecoder(max_message_size=1 << 20)
    frames: list[object] = []
    pos = 0
    for cut in [*sorted({c % (len(data) + 1) for c in cuts}), len(data)]:
        frames.extend(decoder.feed(data[pos:cut]))
        pos = cut
    decoder.close()
    return frames


@FAST
@given(data=st.binary(max_size=256) | frame_streams(), cuts=st.lists(st.integers(0, 1 << 16), max_size=6))
def test_frame_decoder_accepts_or_raises_protocol_error(data: bytes, cuts: list[int]) -> None:
    count("frame_decoder")
    try:
        frames = _decode_chunked(data, cuts)
    except ProtocolError as e:
        assert str(e)
        return
    # What decodes is independent of how the stream was cut.
    assert [f.raw for f in frames] == [f.raw for f in _decode_chunked(data, [])]  # type: ignore[attr-defined]


@MEDIUM
@given(
    messages=st.lists(st.text(max_size=40), min_size=1, max_size=8),
    cuts=st.lists(st.integers(0, 1 << 12), max_size=8),
)
def test_frame_decoder_round_trips_any_chunking(messages: list[str], cuts: list[int]) -> None:
    count("frame_decoder")
    data = b"".join(
        encode_message(pb.OutputCommandMessage(value=pb.Value(content=m.encode()))) for m in messages
    )
    frames = _decode_chunked(data, cuts)
    assert [f.message.value.content.decode() for f in frames] == messages  # type: ignore[attr-defined]


def test_frame_decoder_rejects_a_huge_length_before_its_payload_arrives() -> None:
    decoder = FrameDecoder(max_message_size=1024)
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        decoder.feed(encode_header(int(MessageType.OUTPUT), 0xFFFF_FFFF)[:HEADER_SIZE])
    with pytest.raises(ProtocolError):  # stays broken
        decoder.feed(b"")


# ------------------------------------------------------------------------------------------ ingress paths

_TYPES = {"Svc": ServiceType.SERVICE, "Obj": ServiceType.VIRTUAL_OBJECT, "Wf": ServiceType.WORKFLOW}
_SEGMENTS = st.sampled_from(
    [
        "restate",
        "invocation",
        "workflow",
        "awakeables",
        "a",
        "call",
        "send",
        "attach",
        "output",
        "lookup",
        "health",
        "scope",
        "resolve",
        "reject",
        "Svc",
        "Obj",
        "Wf",
        "Nope",
        "h",
        "",
        "%",
        "%FF",
        "%zz",
        "%E2%82",
        "inv_1abc",
        "sign_1x",
        "openapi",
    ]
) | st.text(max_size=8)


@FAST
@given(
    path=st.lists(_SEGMENTS, max_size=9).map(lambda s: "/" + "/".join(s)) | st.text(max_size=40),
)
def test_ingress_path_parses_or_answers_4xx(path: str) -> None:
    count("ingress_path")
    try:
        route: Route = parse_path(path, _TYPES.get)
    except errors.IngressError as e:
        assert e.status in (400, 404), e
        assert e.message
        return
    assert route is not None


# --------------------------------------------------------------------------------------- delay durations

_UNITS = st.sampled_from(
    ["ms", "s", "sec", "m", "min", "h", "d", "w", "weeks", "us", "ns", "y", "mo", "x", ""]
)
_FRIENDLY = st.lists(st.tuples(st.integers(0, 10**40), st.booleans(), _UNITS), min_size=1, max_size=4).map(
    lambda parts: " ".join(f"{n}{'.5' if frac else ''}{u}" for n, frac, u in parts)
)
_ISO = st.tuples(*[st.integers(0, 10**30)] * 4).map(lambda t: f"P{t[0]}DT{t[1]}H{t[2]}M{t[3]}S")
_DURATIONS = (
    _FRIENDLY | _ISO | st.text(max_size=30) | st.sampled_from(["1" * 5000 + "s", "P" + "9" * 5000 + "D"])
)


@FAST
@given(text=_DURATIONS, sign=st.sampled_from(["", "-", "+", " "]))
def test_duration_parses_within_bounds_or_raises_duration_error(text: str, sign: str) -> None:
    count("duration")
    try:
        ms = parse_duration_ms(sign + text)
    except DurationError as e:
        assert str(e)
        return
    assert abs(ms) * 1_000_000 <= MAX_DURATION_NS
    # Any accepted delay can be turned into an execution time the ingress can print.
    rfc3339_nanos(int(time.time() * 1000) + abs(ms))


@FAST
@given(query=st.text(max_size=60) | _DURATIONS.map(lambda d: "delay=" + d))
def test_delay_query_parses_or_answers_400(query: str) -> None:
    count("duration")
    try:
        ms = delay_from_query(query)
    except errors.IngressError as e:
        assert e.status == 400 and e.message.startswith("bad delay query parameter"), e
        return
    assert ms is None or 0 <= ms <= MAX_DURATION_NS // 1_000_000


def test_regression_overlong_duration_is_a_duration_error() -> None:
    """Bug: a duration with more than 4300 digits raised a bare ValueError from int(), which the ingress
    turned into a 500 and the admin API into an internal error."""
    for text in ("1" * 5000 + "s", "P" + "9" * 5000 + "D"):
        with pytest.raises(DurationError):
            parse_duration_ms(text)
    assert parse_duration_ms("1." + "1" * 5000 + "s") == 1111  # fraction digits past ns are ignored
    assert parse_duration_ms("0" * 5000 + "2s") == 2000
    with pytest.raises(errors.IngressError) as info:
        delay_from_query("delay=" + "1" * 5000 + "s")
    assert info.value.status == 400


def test_regression_astronomic_delay_is_refused() -> None:
    """Bug: `?delay=99999…w` was accepted; the execution time then overflowed the timestamp formatter and
    SQLite's 64-bit integers after the send had been stored."""
    with pytest.raises(DurationError, match="too large"):
        parse_duration_ms("9" * 30 + "w")
    with pytest.raises(errors.IngressError) as info:
        delay_from_query("delay=" + "9" * 30 + "w")
    assert info.value.status == 400


# -------------------------------------------------------------------------- headers, ids and JSON bodies

_HANDLER = HandlerSchema(
    name="h", ty=None, input_content_type="application/json", input_json_schema={}, input_required=True
)
_OPT = HandlerSchema(name="h", ty=None, input_content_type="text/*", input_required=False)
_NONE = HandlerSchema(name="h", ty=None, input_content_type=None)


@FAST
@given(content_type=st.none() | st.text(max_size=40), body=st.binary(max_size=16))
def test_input_validation_accepts_or_raises_its_error(content_type: str | None, body: bytes) -> None:
    count("headers")
    for handler in (_HANDLER, _OPT, _NONE):
        try:
            validate_input(handler, content_type, body)
        except InputValidationError as e:
            assert str(e)


@FAST
@given(text=st.text(max_size=60) | st.from_regex(r"(inv|dp|sign|prom)_1[0-9A-Za-z_-]{0,50}", fullmatch=True))
def test_resource_ids_validate_or_raise_decode_error(text: str) -> None:
    count("ids")
    for check in (check_invocation_id, check_deployment_id, check_awakeable_id):
        try:
            assert check(text) == text
        except IdDecodeError as e:
            assert e.reason


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)
_TARGET_BODIES = st.fixed_dictionaries(
    {"target": st.sampled_from(["invocation", "workflow", "idempotentInvocation", "x"]) | _JSON_VALUES},
    optional={
        k: st.text(max_size=10) | _JSON_VALUES
        for k in (
            "invocationId",
            "workflowName",
            "workflowKey",
            "service",
            "handler",
            "idempotencyKey",
            "key",
        )
    },
).map(lambda d: json.dumps(d).encode())


@FAST
@given(body=st.binary(max_size=64) | _JSON_VALUES.map(lambda v: json.dumps(v).encode()) | _TARGET_BODIES)
def test_target_in_body_parses_or_answers_400(body: bytes) -> None:
    count("json_body")
    try:
        _query_from_body(body)
    except errors.IngressError as e:
        assert e.status == 400 and e.message.startswith("bad request body"), e


def test_regression_deeply_nested_json_body_is_a_400() -> None:
    """Bug: json.loads raises RecursionError (not ValueError) on deep nesting: the ingress answered 500."""
    with pytest.raises(errors.IngressError) as info:
        _query_from_body(b"[" * 200_000)
    assert info.value.status == 400


# ------------------------------------------------------------------------------------------- query parsing


@MEDIUM
@given(sql=st.text(max_size=80) | st.sampled_from(["/*", "--", "'", "''", "select * from sys_invocation"]))
def test_query_text_checks_never_crash(sql: str) -> None:
    count("query")
    referenced_tables(sql)
    try:
        check_read_only(sql)
    except QueryError as e:
        assert e.status == 400


@FAST
@given(accept=st.none() | st.text(max_size=40))
def test_accept_header_never_crashes(accept: str | None) -> None:
    count("headers")
    assert wants_json(accept) in (True, False)
