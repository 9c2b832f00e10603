"""The one codec between protocol messages and outcomes: a value, a failure (code, message, metadata) or
nothing. Pure code.

Every message family spells its result differently (`value` as a `Value` or as raw bytes, `failure` or
`completion_failure`, a `void` case or none); the table below is the only place that knows, so the SDK VM,
the partition state machine, the invoker and the query layer read and write results the same way and a
failure's metadata survives every hop.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, NamedTuple, TypeVar

from google.protobuf.message import Message

from pyrestate.protocol import service_protocol_pb2 as pb

Metadata = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Failure:
    """A terminal failure. Metadata keeps the wire's order (and any repeated key)."""

    code: int
    message: str
    metadata: Metadata = ()


# A result as the codec sees it: the value's bytes, a failure, or None (void, or no result set).
Result = bytes | Failure | None


def metadata_of(mapping: Mapping[str, str] | None) -> Metadata:
    return tuple(mapping.items()) if mapping else ()


def metadata_dict(metadata: Metadata) -> dict[str, str] | None:
    """The mapping form user APIs take (None when empty); a repeated key keeps its last value."""
    return dict(metadata) if metadata else None


def failure_to_pb(f: Failure) -> pb.Failure:
    out = pb.Failure(code=f.code, message=f.message)
    for k, v in f.metadata:
        out.metadata.add(key=k, value=v)
    return out


def failure_from_pb(f: pb.Failure) -> Failure:
    return Failure(f.code, f.message, tuple((m.key, m.value) for m in f.metadata))


class _Fields(NamedTuple):
    oneof: str
    value: str
    failure: str | None  # None: the message cannot carry a failure
    value_is_message: bool  # `Value { content }` rather than raw bytes
    void: str | None  # the field that spells an explicit void, if the message has one


_FIELDS: Final[dict[type[Message], _Fields]] = {
    pb.OutputCommandMessage: _Fields("result", "value", "failure", True, None),
    pb.ProposeRunCompletionMessage: _Fields("result", "value", "failure", False, None),
    pb.SendSignalCommandMessage: _Fields("result", "value", "failure", True, "void"),
    pb.CompleteAwakeableCommandMessage: _Fields("result", "value", "failure", True, None),
    pb.CompletePromiseCommandMessage: _Fields(
        "completion", "completion_value", "completion_failure", True, None
    ),
    pb.NotificationMessage: _Fields("result", "value", "failure", True, "void"),
    pb.GetEagerStateCommandMessage: _Fields("result", "value", None, True, "void"),
}

ResultMessage = (
    pb.OutputCommandMessage
    | pb.ProposeRunCompletionMessage
    | pb.SendSignalCommandMessage
    | pb.CompleteAwakeableCommandMessage
    | pb.CompletePromiseCommandMessage
    | pb.NotificationMessage
    | pb.GetEagerStateCommandMessage
)
M = TypeVar(
    "M",
    pb.OutputCommandMessage,
    pb.ProposeRunCompletionMessage,
    pb.SendSignalCommandMessage,
    pb.CompleteAwakeableCommandMessage,
    pb.CompletePromiseCommandMessage,
    pb.NotificationMessage,
    pb.GetEagerStateCommandMessage,
)


def read_result(msg: ResultMessage) -> Result:
    """The value or failure a message carries; None for void or when neither is set (a notification
    carrying an invocation id or state keys reads as None: ask `WhichOneof` for those)."""
    f = _FIELDS[type(msg)]
    which = msg.WhichOneof(f.oneof)
    if which == f.value:
        v = getattr(msg, f.value)
        return bytes(v.content if f.value_is_message else v)
    if which is not None and which == f.failure:
        return failure_from_pb(getattr(msg, which))
    return None


def has_result(msg: ResultMessage) -> bool:
    """Whether a value, a failure or an explicit void is set (read_result cannot tell void from unset)."""
    f = _FIELDS[type(msg)]
    which = msg.WhichOneof(f.oneof)
    return which is not None and which in (f.value, f.failure, f.void)


def write_result(msg: M, result: Result) -> M:
    """Set the message's result; None writes an explicit void where the message has one."""
    f = _FIELDS[type(msg)]
    match result:
        case bytes():
            if f.value_is_message:
                getattr(msg, f.value).content = result
                getattr(msg, f.value).SetInParent()  # an empty value is still a value
            else:
                setattr(msg, f.value, result)
        case Failure():
            if f.failure is None:
                raise ValueError(f"{type(msg).__name__} cannot carry a failure")
            getattr(msg, f.failure).CopyFrom(failure_to_pb(result))
        case None:
            if f.void is not None:
                getattr(msg, f.void).SetInParent()
    return msg
