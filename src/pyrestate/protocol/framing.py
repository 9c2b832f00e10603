"""Message framing of the Restate service protocol: an 8-byte header, then a protobuf payload.

Header layout (big-endian u64): bits 63..48 message type, bit 47 REQUESTED_ACK, bits 46..32 reserved
(zero), bits 31..0 payload length. Pure code: bytes in, messages out, no IO.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from google.protobuf.message import DecodeError
from google.protobuf.message import Message as ProtoMessage

from pyrestate.protocol import service_protocol_pb2 as pb
from pyrestate.protocol.errors import MessageTooLarge, ProtocolError

HEADER_SIZE = 8
REQUESTED_ACK_FLAG = 0x8000_0000_0000
_RESERVED_MASK = 0x7FFF_0000_0000
_HEADER = struct.Struct(">Q")

#: Default ceiling on one message's payload; a larger length is treated as a protocol error rather than
#: buffered, so a garbage header can never make us allocate gigabytes.
DEFAULT_MAX_MESSAGE_SIZE = 32 * 1024 * 1024


class MessageType(enum.IntEnum):
    START = 0x0000
    SUSPENSION = 0x0001
    ERROR = 0x0002
    END = 0x0003
    COMMAND_ACK = 0x0004
    PROPOSE_RUN_COMPLETION = 0x0005
    AWAITING_ON = 0x0006
    PROPOSE_RUN_COMPLETION_ACK = 0x0007

    INPUT = 0x0400
    OUTPUT = 0x0401
    GET_LAZY_STATE = 0x0402
    SET_STATE = 0x0403
    CLEAR_STATE = 0x0404
    CLEAR_ALL_STATE = 0x0405
    GET_LAZY_STATE_KEYS = 0x0406
    GET_EAGER_STATE = 0x0407
    GET_EAGER_STATE_KEYS = 0x0408
    GET_PROMISE = 0x0409
    PEEK_PROMISE = 0x040A
    COMPLETE_PROMISE = 0x040B
    SLEEP = 0x040C
    CALL = 0x040D
    ONE_WAY_CALL = 0x040E
    SEND_SIGNAL = 0x0410
    RUN = 0x0411
    ATTACH_INVOCATION = 0x0412
    GET_INVOCATION_OUTPUT = 0x0413
    COMPLETE_AWAKEABLE = 0x0414

    GET_LAZY_STATE_COMPLETION = 0x8002
    GET_LAZY_STATE_KEYS_COMPLETION = 0x8006
    GET_PROMISE_COMPLETION = 0x8009
    PEEK_PROMISE_COMPLETION = 0x800A
    COMPLETE_PROMISE_COMPLETION = 0x800B
    SLEEP_COMPLETION = 0x800C
    CALL_COMPLETION = 0x800D
    CALL_INVOCATION_ID_COMPLETION = 0x800E
    RUN_COMPLETION = 0x8011
    ATTACH_INVOCATION_COMPLETION = 0x8012
    GET_INVOCATION_OUTPUT_COMPLETION = 0x8013
    SIGNAL = 0xFBFF

    @property
    def is_command(self) -> bool:
        return 0x0400 <= self.value < 0x8000

    @property
    def is_notification(self) -> bool:
        return 0x8000 <= self.value < 0xFC00

    @property
    def is_control(self) -> bool:
        return self.value < 0x0400


_NOTIFICATIONS = [t for t in MessageType if t.is_notification]

MESSAGE_CLASSES: dict[MessageType, type[ProtoMessage]] = {
    MessageType.START: pb.StartMessage,
    MessageType.SUSPENSION: pb.SuspensionMessage,
    MessageType.ERROR: pb.ErrorMessage,
    MessageType.END: pb.EndMessage,
    MessageType.COMMAND_ACK: pb.CommandAckMessage,
    MessageType.PROPOSE_RUN_COMPLETION: pb.ProposeRunCompletionMessage,
    MessageType.AWAITING_ON: pb.AwaitingOnMessage,
    MessageType.PROPOSE_RUN_COMPLETION_ACK: pb.ProposeRunCompletionAckMessage,
    MessageType.INPUT: pb.InputCommandMessage,
    MessageType.OUTPUT: pb.OutputCommandMessage,
    MessageType.GET_LAZY_STATE: pb.GetLazyStateCommandMessage,
    MessageType.SET_STATE: pb.SetStateCommandMessage,
    MessageType.CLEAR_STATE: pb.ClearStateCommandMessage,
    MessageType.CLEAR_ALL_STATE: pb.ClearAllStateCommandMessage,
    MessageType.GET_LAZY_STATE_KEYS: pb.GetLazyStateKeysCommandMessage,
    MessageType.GET_EAGER_STATE: pb.GetEagerStateCommandMessage,
    MessageType.GET_EAGER_STATE_KEYS: pb.GetEagerStateKeysCommandMessage,
    MessageType.GET_PROMISE: pb.GetPromiseCommandMessage,
    MessageType.PEEK_PROMISE: pb.PeekPromiseCommandMessage,
    MessageType.COMPLETE_PROMISE: pb.CompletePromiseCommandMessage,
    MessageType.SLEEP: pb.SleepCommandMessage,
    MessageType.CALL: pb.CallCommandMessage,
    MessageType.ONE_WAY_CALL: pb.OneWayCallCommandMessage,
    MessageType.SEND_SIGNAL: pb.SendSignalCommandMessage,
    MessageType.RUN: pb.RunCommandMessage,
    MessageType.ATTACH_INVOCATION: pb.AttachInvocationCommandMessage,
    MessageType.GET_INVOCATION_OUTPUT: pb.GetInvocationOutputCommandMessage,
    MessageType.COMPLETE_AWAKEABLE: pb.CompleteAwakeableCommandMessage,
    **{t: pb.NotificationMessage for t in _NOTIFICATIONS},
}

_KNOWN_TYPES = frozenset(int(t) for t in MessageType)

_TYPE_OF_CLASS: dict[type[ProtoMessage], MessageType] = {
    cls: t for t, cls in MESSAGE_CLASSES.items() if cls is not pb.NotificationMessage
}


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded protocol message. `raw` is the payload exactly as received (for byte-exact storage)."""

    type: MessageType
    message: ProtoMessage
    requested_ack: bool = False
    raw: bytes = b""


def encode_header(message_type: int, length: int, *, requested_ack: bool = False) -> bytes:
    if not 0 <= message_type <= 0xFFFF:
        raise ValueError(f"message type out of range: {message_type}")
    if not 0 <= length <= 0xFFFF_FFFF:
        raise ValueError(f"payload length out of range: {length}")
    value = (message_type << 48) | length
    if requested_ack:
        value |= REQUESTED_ACK_FLAG
    return _HEADER.pack(value)


def decode_header(header: bytes) -> tuple[int, bool, int]:
    """Return (message type, requested_ack, payload length) of an 8-byte header."""
    (value,) = _HEADER.unpack(header)
    if value & _RESERVED_MASK:
        raise ProtocolError(f"reserved header bits set: {value:#018x}")
    return value >> 48, bool(value & REQUESTED_ACK_FLAG), value & 0xFFFF_FFFF


def type_of(message: ProtoMessage) -> MessageType:
    """Wire type of a message instance. Notifications share one class: pass their type explicitly."""
    try:
        return _TYPE_OF_CLASS[type(message)]
    except KeyError:
        raise ValueError(f"{type(message).__name__} needs an explicit message type") from None


def encode_raw(message_type: int, payload: bytes, *, requested_ack: bool = False) -> bytes:
    return encode_header(message_type, len(payload), requested_ack=requested_ack) + payload


def encode_message(
    message: ProtoMessage, message_type: MessageType | None = None, *, requested_ack: bool = False
) -> bytes:
    """Encode one framed message. `message_type` is required for notifications."""
    mtype = message_type if message_type is not None else type_of(message)
    return encode_raw(mtype, message.SerializeToString(), requested_ack=requested_ack)


def parse_payload(message_type: int, payload: bytes) -> ProtoMessage:
    try:
        mtype = MessageType(message_type)
    except ValueError:
        raise ProtocolError(f"unknown message type {message_type:#06x}") from None
    msg = MESSAGE_CLASSES[mtype]()
    try:
        msg.ParseFromString(payload)
    except DecodeError as e:
        raise ProtocolError(f"cannot decode {mtype.name} payload ({len(payload)} bytes): {e}") from None
    return msg


class FrameDecoder:
    """Incremental decoder: feed any chunking of the byte stream, get whole frames out.

    After a protocol error the decoder stays broken: the stream cannot be resynchronised.
    """

    def __init__(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self._buffer = bytearray()
        self._max = max_message_size
        self._error: ProtocolError | None = None
        self._closed = False

    def feed(self, data: bytes) -> list[Frame]:
        if self._error is not None:
            raise self._error
        if self._closed:
            raise ProtocolError("data fed after the end of the stream")
        self._buffer += data
        frames: list[Frame] = []
        buf = self._buffer
        pos = 0  # consumed prefix; trimmed once at the end so many small frames stay linear
        try:
            while len(buf) - pos >= HEADER_SIZE:
                mtype, ack, length = decode_header(bytes(buf[pos : pos + HEADER_SIZE]))
                # Judge the header before waiting for the payload: a bad header must fail now, not after
                # the peer has sent (or failed to send) up to 4 GiB.
                if mtype not in _KNOWN_TYPES:
                    raise ProtocolError(f"unknown message type {mtype:#06x}")
                if length > self._max:
                    raise MessageTooLarge(MessageType(mtype).name, length, self._max)
                end = pos + HEADER_SIZE + length
                if len(buf) < end:
                    break
                payload = bytes(buf[pos + HEADER_SIZE : end])
                pos = end
                message = parse_payload(mtype, payload)
                frames.append(Frame(MessageType(mtype), message, ack, payload))
        except ProtocolError as e:
            self._error = e
            raise
        finally:
            del buf[:pos]
        return frames

    @property
    def pending_bytes(self) -> int:
        return len(self._buffer)

    def close(self) -> None:
        """Declare end of stream: leftover bytes are a truncated message."""
        self._closed = True
        if self._buffer and self._error is None:
            left = len(self._buffer)
            self._error = ProtocolError(f"stream ended inside a message ({left} bytes left over)")
            raise self._error


def decode_all(data: bytes, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> list[Frame]:
    decoder = FrameDecoder(max_message_size)
    frames = decoder.feed(data)
    decoder.close()
    return frames
