"""The VM's vocabulary: protocol versions, the results and progress answers it hands to the context, its
states and errors, the records it keeps of commands and runs, and reading notifications into results."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from google.protobuf.message import Message as ProtoMessage

from pyrestate.protocol import service_protocol_pb2 as pb
from pyrestate.protocol.errors import ProtocolError
from pyrestate.protocol.framing import MessageType
from pyrestate.protocol.outcome import Failure, read_result
from pyrestate.protocol.versions import MIN_SERVICE_PROTOCOL_VERSION, SDK_MAX_VERSION

MIN_VERSION = MIN_SERVICE_PROTOCOL_VERSION
MAX_VERSION = SDK_MAX_VERSION

CANCEL_SIGNAL = 1
FIRST_USER_SIGNAL = 17


# ---------------------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True, slots=True)
class Value:
    content: bytes


@dataclass(frozen=True, slots=True)
class Void:
    pass


@dataclass(frozen=True, slots=True)
class InvocationIdResult:
    invocation_id: str


@dataclass(frozen=True, slots=True)
class StateKeysResult:
    keys: list[str]


Result = Value | Failure | Void | InvocationIdResult | StateKeysResult

# Where a result comes from: ("c", completion id), ("s", signal index), ("n", signal name), ("e", local id).
Key = tuple[str, int | str]


# ---------------------------------------------------------------------------------------------------------
# progress answers


@dataclass(frozen=True, slots=True)
class AnyCompleted:
    """At least one awaited handle (ANY) or all of them (ALL) completed."""


AllCompleted = AnyCompleted


@dataclass(frozen=True, slots=True)
class ExecuteRun:
    handle: int


@dataclass(frozen=True, slots=True)
class WaitExternal:
    """Nothing to do until more input arrives or an executing run proposes its result."""


@dataclass(frozen=True, slots=True)
class Suspended:
    pass


@dataclass(frozen=True, slots=True)
class CancelSignalReceived:
    pass


Progress = AnyCompleted | ExecuteRun | WaitExternal | Suspended | CancelSignalReceived


class VMState(enum.Enum):
    WAITING_START = "WaitingStart"
    REPLAYING = "Replaying"
    PROCESSING = "Processing"
    CLOSED = "Closed"


class VMError(Exception):
    """The attempt cannot continue; an ErrorMessage (or nothing, when already closed) was emitted."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(slots=True)
class Invocation:
    invocation_id: str
    raw_id: bytes
    key: str
    headers: list[tuple[str, str]]
    input: bytes
    random_seed: int
    retry_count: int
    duration_since_last_stored_entry_ms: int
    # V7: what the invocation was submitted with
    scope: str | None = None
    limit_key: str | None = None
    idempotency_key: str | None = None


@dataclass(slots=True)
class RunRetryConfig:
    max_attempts: int | None = None
    max_duration_ms: int | None = None
    initial_interval_ms: int | None = None
    max_interval_ms: int | None = None
    interval_factor: float | None = None

    @property
    def is_default(self) -> bool:
        return all(
            v is None
            for v in (
                self.max_attempts,
                self.max_duration_ms,
                self.initial_interval_ms,
                self.max_interval_ms,
                self.interval_factor,
            )
        )


@dataclass(slots=True)
class _Recorded:
    type: MessageType
    message: ProtoMessage


@dataclass(slots=True)
class _RunInfo:
    completion_id: int
    name: str
    command_index: int
    executing: bool = False
    proposed: bool = False


# ---------------------------------------------------------------------------------------------------------
# helpers


def _notification_key(n: pb.NotificationMessage) -> Key:
    which = n.WhichOneof("id")
    if which == "completion_id":
        return ("c", n.completion_id)
    if which == "signal_id":
        return ("s", n.signal_id)
    if which == "signal_name":
        return ("n", n.signal_name)
    raise ProtocolError("notification without id")


def _notification_result(n: pb.NotificationMessage) -> Result:
    which = n.WhichOneof("result")
    if which == "invocation_id":
        return InvocationIdResult(n.invocation_id)
    if which == "state_keys":
        return StateKeysResult(sorted(k.decode() for k in n.state_keys.keys))
    return _result(read_result(n))


def _result(r: bytes | Failure | None) -> Value | Failure | Void:
    return Value(r) if isinstance(r, bytes) else Void() if r is None else r


def _short(message: ProtoMessage, mtype: MessageType) -> str:
    text = " ".join(str(message).split())
    if len(text) > 200:
        text = text[:200] + "…"
    return f"{mtype.name}{{{text}}}"
