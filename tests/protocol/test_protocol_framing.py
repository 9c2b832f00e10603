"""Framing and message codec: captured traffic round-trips byte for byte; broken streams fail fast."""

from __future__ import annotations

import json
import struct

import pytest
from google.protobuf.message import Message as ProtoMessage
from google.protobuf.unknown_fields import UnknownFieldSet
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from protocol_captures import Stream

from pyrestate.protocol import (
    HEADER_SIZE,
    MESSAGE_CLASSES,
    Frame,
    FrameDecoder,
    InvocationId,
    MessageType,
    ProtocolError,
    decode_all,
    decode_header,
    encode_header,
    encode_message,
    encode_raw,
    parse_awakeable_id,
    parse_payload,
    pb,
    type_of,
)

pytestmark = pytest.mark.timeout(60)


def reencode(frames: list[Frame]) -> bytes:
    return b"".join(encode_message(f.message, f.type, requested_ack=f.requested_ack) for f in frames)


def unknown_field_count(msg: ProtoMessage) -> int:
    n = len(UnknownFieldSet(msg))
    for fd, value in msg.ListFields():
        if fd.message_type is not None:
            for sub in value if fd.is_repeated else [value]:
                n += unknown_field_count(sub)
    return n


# ---- captured traffic


def test_captures_cover_many_message_types(all_streams: list[Stream]) -> None:
    seen = {f.type for s in all_streams for f in decode_all(s.data)}
    # The captures exercise most of the protocol; if they shrink, this test should notice.
    assert len(all_streams) >= 150
    assert {
        MessageType.START,
        MessageType.INPUT,
        MessageType.OUTPUT,
        MessageType.END,
        MessageType.SUSPENSION,
        MessageType.ERROR,
        MessageType.PROPOSE_RUN_COMPLETION,
        MessageType.CALL,
        MessageType.ONE_WAY_CALL,
        MessageType.CALL_INVOCATION_ID_COMPLETION,
        MessageType.SIGNAL,
        MessageType.GET_PROMISE_COMPLETION,
        MessageType.COMPLETE_PROMISE_COMPLETION,
    } <= seen


def test_every_captured_frame_reencodes_byte_identical(all_streams: list[Stream]) -> None:
    total = 0
    for stream in all_streams:
        frames = decode_all(stream.data)
        assert reencode(frames) == stream.data, stream.label
        for f in frames:
            # Frame.raw is the exact payload and also what re-serialisation gives.
            assert f.message.SerializeToString() == f.raw, stream.label
            assert encode_raw(f.type, f.raw, requested_ack=f.requested_ack) == encode_message(
                f.message, f.type, requested_ack=f.requested_ack
            )
        total += len(frames)
    assert total > 400


def test_captured_messages_have_no_unknown_fields(all_streams: list[Stream]) -> None:
    # Unknown fields would mean a wrong field number or type in our .proto.
    for stream in all_streams:
        for f in decode_all(stream.data):
            assert unknown_field_count(f.message) == 0, (stream.label, f.type, f.message)


def test_captured_streams_start_correctly(all_streams: list[Stream]) -> None:
    for stream in all_streams:
        frames = decode_all(stream.data)
        if stream.direction == "request":
            assert frames[0].type is MessageType.START, stream.label
            start = frames[0].message
            assert isinstance(start, pb.StartMessage)
            assert start.known_entries >= 1
            assert frames[1].type is MessageType.INPUT
        else:
            # Every SDK response ends with exactly one of End / Suspension / Error.
            assert frames, stream.label
            assert frames[-1].type in (MessageType.END, MessageType.SUSPENSION, MessageType.ERROR)
            assert (
                sum(f.type in (MessageType.END, MessageType.SUSPENSION, MessageType.ERROR) for f in frames)
                == 1
            )


def test_start_ids_and_random_seeds_match_restate(all_streams: list[Stream]) -> None:
    starts = [
        f.message
        for s in all_streams
        if s.direction == "request"
        for f in decode_all(s.data)
        if f.type is MessageType.START
    ]
    assert len(starts) > 50
    for start in starts:
        assert isinstance(start, pb.StartMessage)
        inv = InvocationId.from_bytes(start.id)
        assert str(inv) == start.debug_id
        assert InvocationId.parse(start.debug_id).to_bytes() == start.id
        assert inv.random_seed() == start.random_seed


def test_captured_awakeable_ids_name_their_invocation(all_streams: list[Stream]) -> None:
    found = 0
    by_rid: dict[tuple[str, int], bytes] = {}
    for s in all_streams:
        if s.direction == "request":
            start = decode_all(s.data)[0].message
            assert isinstance(start, pb.StartMessage)
            by_rid[(s.source, s.rid)] = start.id
    for s in all_streams:
        if s.direction != "response":
            continue
        for f in decode_all(s.data):
            if f.type is MessageType.SET_STATE:
                assert isinstance(f.message, pb.SetStateCommandMessage)
                text = f.message.value.content.decode()
                if '"sign_1' in text:
                    inv, idx = parse_awakeable_id(json.loads(text))
                    assert inv.to_bytes() == by_rid[(s.source, s.rid)]
                    assert idx == 17  # first user signal index
                    found += 1
    assert found >= 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_chunking_gives_the_same_frames(all_streams: list[Stream], data: st.DataObject) -> None:
    stream = data.draw(st.sampled_from([s for s in all_streams if len(s.data) > 0]))
    raw = stream.data
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=12)))
    pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    decoder = FrameDecoder()
    frames: list[Frame] = []
    for piece in pieces:
        frames += decoder.feed(piece)
    decoder.close()
    assert decoder.pending_bytes == 0
    assert [(f.type, f.raw, f.requested_ack) for f in frames] == [
        (f.type, f.raw, f.requested_ack) for f in decode_all(raw)
    ]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_byte_by_byte_feeding(all_streams: list[Stream], data: st.DataObject) -> None:
    stream = data.draw(st.sampled_from([s for s in all_streams if len(s.data) > 0]))
    decoder = FrameDecoder()
    frames = [f for i in range(len(stream.data)) for f in decoder.feed(stream.data[i : i + 1])]
    decoder.close()
    assert reencode(frames) == stream.data


# ---- header


def test_header_layout() -> None:
    assert encode_header(0x0400, 5) == bytes.fromhex("0400000000000005")
    assert encode_header(0x0005, 0x01020304, requested_ack=True) == bytes.fromhex("0005800001020304")
    assert decode_header(bytes.fromhex("0005800001020304")) == (0x0005, True, 0x01020304)
    assert decode_header(bytes.fromhex("fbff000000000000")) == (0xFBFF, False, 0)


def test_requested_ack_round_trip() -> None:
    msg = pb.ProposeRunCompletionMessage(result_completion_id=3, value=b"x")
    data = encode_message(msg, requested_ack=True)
    (frame,) = decode_all(data)
    assert frame.requested_ack is True
    assert frame.type is MessageType.PROPOSE_RUN_COMPLETION
    assert frame.message == msg


def test_header_rejects_out_of_range_values() -> None:
    with pytest.raises(ValueError):
        encode_header(0x10000, 0)
    with pytest.raises(ValueError):
        encode_header(0x0400, 1 << 32)


def test_every_message_type_has_a_class_and_sane_range() -> None:
    for t in MessageType:
        assert t in MESSAGE_CLASSES
        assert [t.is_control, t.is_command, t.is_notification].count(True) == 1, t
    assert MessageType.SIGNAL.is_notification
    assert MessageType(0x8000 | (MessageType.CALL & 0x3FF)) is MessageType.CALL_COMPLETION


def test_type_of_and_notifications_need_explicit_type() -> None:
    assert type_of(pb.EndMessage()) is MessageType.END
    assert type_of(pb.CallCommandMessage()) is MessageType.CALL
    with pytest.raises(ValueError, match="explicit"):
        encode_message(pb.NotificationMessage(completion_id=1))
    data = encode_message(
        pb.NotificationMessage(completion_id=1, void=pb.Void()), MessageType.SLEEP_COMPLETION
    )
    (frame,) = decode_all(data)
    assert frame.type is MessageType.SLEEP_COMPLETION
    assert frame.message.WhichOneof("result") == "void"  # type: ignore[attr-defined]


KEYS = pb.StateKeys(keys=[b"a"])


def test_every_type_round_trips_empty_and_populated() -> None:
    samples: list[tuple[MessageType, ProtoMessage]] = [
        (MessageType.START, pb.StartMessage(id=b"\x01" * 24, debug_id="inv_1x", known_entries=2, scope="s")),
        (MessageType.SUSPENSION, pb.SuspensionMessage(waiting_completions=[1, 2], waiting_signals=[1])),
        (
            MessageType.SUSPENSION,
            pb.SuspensionMessage(
                awaiting_on=pb.Future(
                    waiting_completions=[3],
                    nested_futures=[pb.Future(waiting_named_signals=["a"], combinator_type=pb.ALL_COMPLETED)],
                )
            ),
        ),
        (MessageType.ERROR, pb.ErrorMessage(code=500, related_command_type=0x0411, behavior=pb.PAUSE)),
        (MessageType.COMMAND_ACK, pb.CommandAckMessage(command_index=4)),
        (MessageType.AWAITING_ON, pb.AwaitingOnMessage(awaiting_on=pb.Future(), executing_side_effects=True)),
        (MessageType.PROPOSE_RUN_COMPLETION_ACK, pb.ProposeRunCompletionAckMessage(completion_id=9)),
        (
            MessageType.GET_EAGER_STATE_KEYS,
            pb.GetEagerStateKeysCommandMessage(value=pb.StateKeys(keys=[b"a"])),
        ),
        (
            MessageType.SEND_SIGNAL,
            pb.SendSignalCommandMessage(target_invocation_id="inv_1", idx=1, void=pb.Void()),
        ),
        (
            MessageType.ATTACH_INVOCATION,
            pb.AttachInvocationCommandMessage(
                workflow_target=pb.WorkflowTarget(workflow_name="Wf", workflow_key="k"),
                result_completion_id=1,
            ),
        ),
        (
            MessageType.GET_LAZY_STATE_KEYS_COMPLETION,
            pb.NotificationMessage(completion_id=2, state_keys=pb.StateKeys(keys=[b"x", b"y"])),
        ),
        (MessageType.SIGNAL, pb.NotificationMessage(signal_name="go", value=pb.Value(content=b"1"))),
    ]
    for t in MessageType:
        samples.append((t, MESSAGE_CLASSES[t]()))
    data = b"".join(encode_message(m, t) for t, m in samples)
    frames = decode_all(data)
    assert [(f.type, f.message) for f in frames] == samples
    assert reencode(frames) == data


# ---- broken streams: a clear ProtocolError, quickly, never a hang or another exception


@pytest.mark.timeout(5)
def test_truncated_stream_fails_on_close() -> None:
    data = encode_message(pb.OutputCommandMessage(value=pb.Value(content=b"hello")))
    for cut in range(1, len(data)):
        decoder = FrameDecoder()
        assert decoder.feed(data[:cut]) == []
        with pytest.raises(ProtocolError, match="left over"):
            decoder.close()
    decoder = FrameDecoder()
    decoder.feed(data)
    decoder.close()  # a clean end is fine


@pytest.mark.timeout(5)
def test_oversized_length_fails_from_the_header_alone() -> None:
    decoder = FrameDecoder(max_message_size=1024)
    with pytest.raises(ProtocolError, match="exceeds"):
        decoder.feed(encode_header(MessageType.OUTPUT, 1025))
    with pytest.raises(ProtocolError, match="exceeds"):
        decode_all(encode_header(MessageType.OUTPUT, 0xFFFF_FFFF))


@pytest.mark.timeout(5)
@pytest.mark.parametrize("mtype", [0x0008, 0x03FF, 0x040F, 0x0415, 0x8001, 0x8014, 0xFC00, 0xFFFF])
def test_unknown_type_fails_from_the_header_alone(mtype: int) -> None:
    decoder = FrameDecoder()
    with pytest.raises(ProtocolError, match="unknown message type"):
        decoder.feed(encode_header(mtype, 100))  # payload never arrives: must not wait for it
    with pytest.raises(ProtocolError):
        parse_payload(mtype, b"")


@pytest.mark.timeout(5)
@pytest.mark.parametrize("bit", range(32, 47))
def test_reserved_bits_fail(bit: int) -> None:
    header = struct.pack(">Q", (MessageType.END << 48) | (1 << bit))
    with pytest.raises(ProtocolError, match="reserved"):
        decode_all(header)


@pytest.mark.timeout(5)
@pytest.mark.parametrize(
    ("mtype", "payload"),
    [
        (MessageType.START, b"\xff\xff\xff"),  # truncated varint tag
        (MessageType.START, b"\x12\x01\xff"),  # debug_id is not UTF-8
        (MessageType.OUTPUT, b"\x72\x10ab"),  # length-delimited field longer than the payload
        (MessageType.END, b"\x0f"),  # invalid wire type
        (MessageType.SLEEP_COMPLETION, b"\x08"),  # varint missing
    ],
)
def test_garbage_payload_fails(mtype: MessageType, payload: bytes) -> None:
    with pytest.raises(ProtocolError, match=mtype.name):
        decode_all(encode_raw(mtype, payload))


@pytest.mark.timeout(5)
def test_decoder_stays_broken_and_rejects_data_after_close() -> None:
    decoder = FrameDecoder()
    with pytest.raises(ProtocolError):
        decoder.feed(encode_header(0x0999, 0))
    with pytest.raises(ProtocolError):
        decoder.feed(encode_message(pb.EndMessage()))
    closed = FrameDecoder()
    closed.close()
    with pytest.raises(ProtocolError, match="after the end"):
        closed.feed(b"\x00")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.lists(st.integers(0, 200), max_size=5))
def test_arbitrary_bytes_never_crash_the_decoder(data: bytes, cuts: list[int]) -> None:
    decoder = FrameDecoder(max_message_size=4096)
    points = sorted(c for c in cuts if c <= len(data))
    try:
        for a, b in zip([0, *points], [*points, len(data)], strict=True):
            decoder.feed(data[a:b])
        decoder.close()
    except ProtocolError:
        pass


def test_header_size() -> None:
    assert HEADER_SIZE == 8
