"""The invocation state machine: WaitingStart -> Replaying -> Processing -> Closed (h11 style, no IO)."""

from __future__ import annotations

import contextlib
import enum
import hashlib
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

from google.protobuf.message import Message as ProtoMessage

from pyrestate.protocol import service_protocol_pb2 as pb
from pyrestate.protocol.errors import ErrorCode, ProtocolError
from pyrestate.protocol.framing import FrameDecoder, MessageType, encode_message
from pyrestate.protocol.outcome import Failure, read_result, write_result
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


class VM:
    """One invocation attempt. Feed input bytes, drive with syscalls, take output bytes."""

    def __init__(self, version: int, *, disable_payload_checks: bool = False) -> None:
        if not MIN_VERSION <= version <= MAX_VERSION:
            raise ValueError(f"unsupported protocol version {version}")
        self.version = version
        self.state = VMState.WAITING_START
        self._decoder = FrameDecoder()
        self._out: list[bytes] = []
        self._payload_checks = not disable_payload_checks

        self._start: pb.StartMessage | None = None
        self._known_entries = 0
        self._received_entries = 0
        self._input_closed = False
        self._replay_commands: deque[_Recorded] = deque()
        self._replay_notification_keys: set[Key] = set()
        self._input_cmd: pb.InputCommandMessage | None = None

        self._queue: deque[tuple[Key, Result]] = deque()
        self._results: dict[Key, Result] = {}
        self._handles: dict[int, Key] = {}
        self._next_handle = 1
        self._next_completion = 1
        self._next_signal = FIRST_USER_SIGNAL
        self._next_local = 1
        self._command_index = 0  # index of the last command (Input = 0)
        self._runs: dict[int, _RunInfo] = {}  # by handle
        self._cancel_delivered = False

        self._state: dict[str, bytes] = {}
        self._partial_state = True

    # -- input

    def feed(self, data: bytes) -> None:
        if self.state is VMState.CLOSED or not data:
            return
        try:
            frames = self._decoder.feed(data)
        except ProtocolError as e:
            self._fail(ErrorCode.PROTOCOL_VIOLATION, str(e))
            return
        for frame in frames:
            self._on_message(frame.type, frame.message)

    def notify_input_closed(self) -> None:
        self._input_closed = True
        if self.state is VMState.WAITING_START or (
            self.state is VMState.REPLAYING and self._received_entries < self._known_entries
        ):
            self._fail(ErrorCode.PROTOCOL_VIOLATION, "input closed before the replayed journal was received")

    @property
    def input_closed(self) -> bool:
        return self._input_closed

    def is_ready_to_execute(self) -> bool:
        return self._start is not None and self._received_entries >= self._known_entries

    def _on_message(self, mtype: MessageType, message: ProtoMessage) -> None:
        if self.state is VMState.CLOSED:
            return
        if self._start is None:
            if mtype is not MessageType.START:
                self._fail(ErrorCode.PROTOCOL_VIOLATION, f"expected StartMessage, got {mtype.name}")
                return
            assert isinstance(message, pb.StartMessage)
            if message.known_entries == 0:
                self._fail(ErrorCode.PROTOCOL_VIOLATION, "known_entries is 0")
                return
            self._start = message
            self._known_entries = message.known_entries
            self._state = {e.key.decode(): e.value for e in message.state_map}
            self._partial_state = message.partial_state
            self.state = VMState.REPLAYING
            return
        replaying = self._received_entries < self._known_entries
        if mtype.is_notification:
            assert isinstance(message, pb.NotificationMessage)
            key = _notification_key(message)
            self._queue.append((key, _notification_result(message)))
            if replaying:
                self._replay_notification_keys.add(key)
                self._received_entries += 1
            return
        if mtype.is_command:
            if not replaying:
                self._fail(ErrorCode.PROTOCOL_VIOLATION, f"unexpected command {mtype.name} after replay")
                return
            self._received_entries += 1
            if mtype is MessageType.INPUT:
                assert isinstance(message, pb.InputCommandMessage)
                self._input_cmd = message
            else:
                self._replay_commands.append(_Recorded(mtype, message))
            return
        if mtype is MessageType.COMMAND_ACK or mtype is MessageType.PROPOSE_RUN_COMPLETION_ACK:
            return
        self._fail(ErrorCode.PROTOCOL_VIOLATION, f"unexpected message {mtype.name}")

    # -- output

    def take_output(self) -> bytes:
        out = b"".join(self._out)
        self._out.clear()
        return out

    def _emit(self, message: ProtoMessage, mtype: MessageType | None = None) -> None:
        self._out.append(encode_message(message, mtype))

    def _fail(self, code: int, message: str, **related: Any) -> None:
        if self.state is not VMState.CLOSED:
            err = pb.ErrorMessage(code=int(code), message=message, **related)
            self._emit(err)
            self.state = VMState.CLOSED
        raise VMError(int(code), message)

    def _require_version(self, minimum: int, feature: str) -> None:
        """Fail with 573 (unsupported feature) when the negotiated version is older than `minimum`."""
        if self.version < minimum:
            self._fail(
                ErrorCode.UNSUPPORTED_FEATURE,
                f"Feature '{feature}' is not supported by the negotiated protocol version 'V{self.version}', "
                f"the minimum required version is 'V{minimum}'",
            )

    def _wire(self, result: Value | Failure | Void) -> bytes | Failure | None:
        """A result as the codec writes it; failure metadata needs V6."""
        if isinstance(result, Failure) and result.metadata:
            self._require_version(6, "terminal error metadata")
        return result.content if isinstance(result, Value) else None if isinstance(result, Void) else result

    # -- invocation input

    def sys_input(self) -> Invocation:
        if self._start is None or not self.is_ready_to_execute():
            raise VMError(ErrorCode.PROTOCOL_VIOLATION, "input requested before the journal was received")
        if self._input_cmd is None:
            self._fail(ErrorCode.PROTOCOL_VIOLATION, "the replayed journal does not start with an Input")
        assert self._input_cmd is not None
        start = self._start
        if self.version >= 6:
            seed = start.random_seed
        else:
            seed = int.from_bytes(hashlib.sha256(start.id).digest()[:8], "big")
        self._maybe_processing()
        return Invocation(
            invocation_id=start.debug_id,
            raw_id=start.id,
            key=start.key,
            headers=[(h.key, h.value) for h in self._input_cmd.headers],
            input=self._input_cmd.value.content,
            random_seed=seed,
            retry_count=start.retry_count_since_last_stored_entry,
            duration_since_last_stored_entry_ms=start.duration_since_last_stored_entry,
        )

    def _maybe_processing(self) -> None:
        if self.state is VMState.REPLAYING and not self._replay_commands:
            self.state = VMState.PROCESSING

    # -- the command gate: replay check or emit

    def _command(
        self, message: ProtoMessage, *, compare: str = "exact", alt: MessageType | None = None
    ) -> _Recorded | None:
        """Replaying: pop and check the next recorded command (returned); processing: emit it."""
        if self.state is VMState.CLOSED:
            raise VMError(ErrorCode.PROTOCOL_VIOLATION, "state machine is closed")
        mtype = MESSAGE_TYPE_OF[type(message)]
        self._command_index += 1
        if self.state is VMState.REPLAYING and self._replay_commands:
            recorded = self._replay_commands.popleft()
            ok = recorded.type is mtype or recorded.type is alt
            if ok and recorded.type is mtype:
                ok = self._matches(mtype, recorded.message, message, compare)
            if not ok:
                name = getattr(recorded.message, "name", "") or getattr(recorded.message, "entry_name", "")
                self._fail(
                    ErrorCode.JOURNAL_MISMATCH,
                    "Journal mismatch: replayed journal has "
                    f"{_short(recorded.message, recorded.type)} at command index {self._command_index}, "
                    f"but the handler code now produced {_short(message, mtype)}",
                    related_command_index=self._command_index,
                    related_command_name=name,
                    related_command_type=int(recorded.type),
                )
            self._maybe_processing()
            return recorded
        self.state = VMState.PROCESSING
        self._emit(message)
        return None

    def _matches(
        self, mtype: MessageType, recorded: ProtoMessage, actual: ProtoMessage, compare: str
    ) -> bool:
        if compare == "name":
            return getattr(recorded, "name", "") == getattr(actual, "name", "")
        if compare == "key":
            return getattr(recorded, "key", None) == getattr(actual, "key", None)
        r = type(recorded)()
        r.CopyFrom(recorded)
        a = type(actual)()
        a.CopyFrom(actual)
        if compare == "no_invoke_time":
            r.ClearField("invoke_time")
            a.ClearField("invoke_time")
        if not self._payload_checks:
            for fname in ("parameter",):
                if fname in r.DESCRIPTOR.fields_by_name:
                    r.ClearField(fname)
                    a.ClearField(fname)
        return r.SerializeToString(deterministic=True) == a.SerializeToString(deterministic=True)

    # -- handles

    def _new_handle(self, key: Key) -> int:
        h = self._next_handle
        self._next_handle += 1
        self._handles[h] = key
        return h

    def _completion(self) -> int:
        c = self._next_completion
        self._next_completion += 1
        return c

    def _local_result(self, result: Result) -> int:
        key: Key = ("e", self._next_local)
        self._next_local += 1
        self._results[key] = result
        return self._new_handle(key)

    def is_completed(self, handle: int) -> bool:
        return self._handles[handle] in self._results

    def take_result(self, handle: int) -> Result:
        return self._results[self._handles[handle]]

    # -- state

    def sys_state_get(self, key: str, name: str = "") -> int:
        cid = self._completion()
        kb = key.encode()
        if self.state is VMState.REPLAYING and self._replay_commands:
            probe = pb.GetEagerStateCommandMessage(key=kb, name=name)
            recorded = self._command(probe, compare="key", alt=MessageType.GET_LAZY_STATE)
            assert recorded is not None
            if recorded.type is MessageType.GET_LAZY_STATE:
                assert isinstance(recorded.message, pb.GetLazyStateCommandMessage)
                if recorded.message.key != kb or recorded.message.result_completion_id != cid:
                    self._mismatch_after(
                        recorded, pb.GetLazyStateCommandMessage(key=kb, result_completion_id=cid)
                    )
                return self._new_handle(("c", cid))
            assert isinstance(recorded.message, pb.GetEagerStateCommandMessage)
            eager = recorded.message
            res: Result = Value(eager.value.content) if eager.WhichOneof("result") == "value" else Void()
            return self._local_result(res)
        if key in self._state or not self._partial_state:
            msg = pb.GetEagerStateCommandMessage(key=kb, name=name)
            if key in self._state:
                msg.value.content = self._state[key]
                res = Value(self._state[key])
            else:
                msg.void.SetInParent()
                res = Void()
            self._command(msg)
            return self._local_result(res)
        self._command(pb.GetLazyStateCommandMessage(key=kb, result_completion_id=cid, name=name))
        return self._new_handle(("c", cid))

    def _mismatch_after(self, recorded: _Recorded, actual: ProtoMessage) -> None:
        self._fail(
            ErrorCode.JOURNAL_MISMATCH,
            "Journal mismatch: replayed journal has "
            f"{_short(recorded.message, recorded.type)} at command index "
            f"{self._command_index}, but the handler code now produced "
            f"{_short(actual, MESSAGE_TYPE_OF[type(actual)])}",
            related_command_index=self._command_index,
            related_command_name=getattr(recorded.message, "name", ""),
            related_command_type=int(recorded.type),
        )

    def sys_state_get_keys(self, name: str = "") -> int:
        cid = self._completion()
        if self.state is VMState.REPLAYING and self._replay_commands:
            probe = pb.GetEagerStateKeysCommandMessage(name=name)
            recorded = self._command(probe, compare="name", alt=MessageType.GET_LAZY_STATE_KEYS)
            assert recorded is not None
            if recorded.type is MessageType.GET_LAZY_STATE_KEYS:
                return self._new_handle(("c", cid))
            assert isinstance(recorded.message, pb.GetEagerStateKeysCommandMessage)
            return self._local_result(
                StateKeysResult(sorted(k.decode() for k in recorded.message.value.keys))
            )
        if not self._partial_state:
            keys = sorted(self._state)
            msg = pb.GetEagerStateKeysCommandMessage(name=name)
            msg.value.keys.extend(k.encode() for k in keys)
            self._command(msg)
            return self._local_result(StateKeysResult(keys))
        self._command(pb.GetLazyStateKeysCommandMessage(result_completion_id=cid, name=name))
        return self._new_handle(("c", cid))

    def sys_state_set(self, key: str, value: bytes, name: str = "") -> None:
        msg = pb.SetStateCommandMessage(key=key.encode(), name=name)
        msg.value.content = value
        self._command(msg, compare="exact" if self._payload_checks else "key")
        self._state[key] = value

    def sys_state_clear(self, key: str, name: str = "") -> None:
        self._command(pb.ClearStateCommandMessage(key=key.encode(), name=name))
        self._state.pop(key, None)

    def sys_state_clear_all(self, name: str = "") -> None:
        self._command(pb.ClearAllStateCommandMessage(name=name))
        self._state.clear()
        self._partial_state = False

    # -- timers, calls, signals

    def sys_sleep(self, wake_up_time_ms: int, name: str = "") -> int:
        cid = self._completion()
        self._command(
            pb.SleepCommandMessage(wake_up_time=wake_up_time_ms, result_completion_id=cid, name=name),
            compare="name",
        )
        return self._new_handle(("c", cid))

    def sys_call(
        self,
        service: str,
        handler: str,
        parameter: bytes,
        key: str | None = None,
        idempotency_key: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        name: str = "",
    ) -> tuple[int, int]:
        """Returns (invocation-id handle, result handle)."""
        id_cid = self._completion()
        res_cid = self._completion()
        msg = pb.CallCommandMessage(
            service_name=service,
            handler_name=handler,
            parameter=parameter,
            key=key or "",
            invocation_id_notification_idx=id_cid,
            result_completion_id=res_cid,
            name=name,
        )
        if idempotency_key:
            msg.idempotency_key = idempotency_key
        for k, v in headers or []:
            msg.headers.add(key=k, value=v)
        self._command(msg)
        return self._new_handle(("c", id_cid)), self._new_handle(("c", res_cid))

    def sys_send(
        self,
        service: str,
        handler: str,
        parameter: bytes,
        key: str | None = None,
        invoke_time_ms: int = 0,
        idempotency_key: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        name: str = "",
    ) -> int:
        id_cid = self._completion()
        msg = pb.OneWayCallCommandMessage(
            service_name=service,
            handler_name=handler,
            parameter=parameter,
            invoke_time=invoke_time_ms,
            key=key or "",
            invocation_id_notification_idx=id_cid,
            name=name,
        )
        if idempotency_key:
            msg.idempotency_key = idempotency_key
        for k, v in headers or []:
            msg.headers.add(key=k, value=v)
        self._command(msg, compare="no_invoke_time")
        return self._new_handle(("c", id_cid))

    def sys_awakeable(self) -> tuple[str, int]:
        """No command: an awakeable is a signal index plus an id the outside world can address."""
        if self._start is None:
            raise VMError(ErrorCode.PROTOCOL_VIOLATION, "no start message")
        idx = self._next_signal
        self._next_signal += 1
        return _awakeable_id(self._start.id, idx), self._new_handle(("s", idx))

    def sys_complete_awakeable(self, awakeable_id: str, result: Value | Failure, name: str = "") -> None:
        msg = pb.CompleteAwakeableCommandMessage(awakeable_id=awakeable_id, name=name)
        self._command(write_result(msg, self._wire(result)))

    def sys_signal(self, name: str) -> int:
        return self._new_handle(("n", name))

    def sys_send_signal(
        self, target_invocation_id: str, signal: int | str, result: Value | Failure | Void, name: str = ""
    ) -> None:
        msg = pb.SendSignalCommandMessage(target_invocation_id=target_invocation_id, entry_name=name)
        if isinstance(signal, int):
            msg.idx = signal
        else:
            msg.name = signal
        self._command(write_result(msg, self._wire(result)))

    def sys_cancel_invocation(self, target_invocation_id: str) -> None:
        self.sys_send_signal(target_invocation_id, CANCEL_SIGNAL, Void())

    def sys_attach_invocation(self, invocation_id: str, name: str = "") -> int:
        cid = self._completion()
        self._command(
            pb.AttachInvocationCommandMessage(
                invocation_id=invocation_id, result_completion_id=cid, name=name
            )
        )
        return self._new_handle(("c", cid))

    def sys_get_invocation_output(self, invocation_id: str, name: str = "") -> int:
        cid = self._completion()
        self._command(
            pb.GetInvocationOutputCommandMessage(
                invocation_id=invocation_id, result_completion_id=cid, name=name
            )
        )
        return self._new_handle(("c", cid))

    # -- workflow promises

    def sys_get_promise(self, key: str, name: str = "") -> int:
        cid = self._completion()
        self._command(pb.GetPromiseCommandMessage(key=key, result_completion_id=cid, name=name))
        return self._new_handle(("c", cid))

    def sys_peek_promise(self, key: str, name: str = "") -> int:
        cid = self._completion()
        self._command(pb.PeekPromiseCommandMessage(key=key, result_completion_id=cid, name=name))
        return self._new_handle(("c", cid))

    def sys_complete_promise(self, key: str, result: Value | Failure, name: str = "") -> int:
        cid = self._completion()
        msg = pb.CompletePromiseCommandMessage(key=key, result_completion_id=cid, name=name)
        self._command(write_result(msg, self._wire(result)))
        return self._new_handle(("c", cid))

    # -- ctx.run

    def sys_run(self, name: str = "") -> tuple[int, bool]:
        """Returns (handle, replayed). Run the closure only if not replayed, once the handle is awaited."""
        cid = self._completion()
        recorded = self._command(pb.RunCommandMessage(result_completion_id=cid, name=name))
        handle = self._new_handle(("c", cid))
        completed = ("c", cid) in self._replay_notification_keys or ("c", cid) in self._results
        if recorded is None or not completed:
            self._runs[handle] = _RunInfo(cid, name, self._command_index)
        return handle, completed

    def propose_run_completion(self, handle: int, result: Value | Failure) -> None:
        run = self._runs[handle]
        run.executing = False
        run.proposed = True
        if self.state is VMState.CLOSED:
            return
        msg = pb.ProposeRunCompletionMessage(result_completion_id=run.completion_id)
        self._emit(write_result(msg, self._wire(result)))

    def propose_run_completion_transient(
        self,
        handle: int,
        failure: Failure,
        stacktrace: str,
        attempt_duration_ms: int,
        config: RunRetryConfig,
        delay_override_ms: int | None = None,
    ) -> None:
        """A retryable run failure: either end the attempt with a retry delay, or give up (terminal)."""
        run = self._runs[handle]
        start = self._start
        assert start is not None
        attempt = start.retry_count_since_last_stored_entry + 1
        elapsed = start.duration_since_last_stored_entry + attempt_duration_ms
        exhausted = (config.max_attempts is not None and attempt >= config.max_attempts) or (
            config.max_duration_ms is not None and elapsed >= config.max_duration_ms
        )
        if exhausted:
            self.propose_run_completion(handle, failure)
            return
        run.executing = False
        delay: int | None = delay_override_ms
        if delay is None and not config.is_default:
            initial = config.initial_interval_ms if config.initial_interval_ms is not None else 50
            factor = config.interval_factor if config.interval_factor is not None else 2.0
            max_interval = config.max_interval_ms if config.max_interval_ms is not None else 10_000
            delay = int(min(initial * factor ** (attempt - 1), max_interval))
        related: dict[str, Any] = {
            "related_command_index": run.command_index,
            "related_command_name": run.name,
            "related_command_type": int(MessageType.RUN),
            "stacktrace": stacktrace,
        }
        if delay is not None:
            related["next_retry_delay"] = delay
        with contextlib.suppress(VMError):
            self._fail(failure.code, failure.message, **related)

    # -- awaiting

    def do_progress(self, handles: list[int], mode: Literal["any", "all"] = "any") -> Progress:
        if self.state is VMState.CLOSED:
            return Suspended()
        keys = [self._handles[h] for h in handles]
        while True:
            done = [k for k in keys if k in self._results]
            if (mode == "any" and done) or (mode == "all" and len(done) == len(keys)) or not keys:
                return AnyCompleted()
            if not self._cancel_delivered and ("s", CANCEL_SIGNAL) in self._results:
                self._cancel_delivered = True
                return CancelSignalReceived()
            if self._queue:
                key, result = self._queue.popleft()
                self._results.setdefault(key, result)
                continue
            for h in handles:
                run = self._runs.get(h)
                if (
                    run is not None
                    and not run.executing
                    and not run.proposed
                    and self._handles[h] not in self._results
                ):
                    run.executing = True
                    return ExecuteRun(h)
            if any(r.executing for r in self._runs.values()):
                return WaitExternal()
            if self.state is VMState.REPLAYING and self._replay_commands:
                nxt = self._replay_commands[0]
                self._fail(
                    ErrorCode.JOURNAL_MISMATCH,
                    "awaiting a result that the replayed journal does not contain, while commands "
                    f"remain to be replayed (next recorded: {_short(nxt.message, nxt.type)})",
                )
            if not self._input_closed:
                return WaitExternal()
            self._suspend([k for k in keys if k not in self._results])
            return Suspended()

    def _suspend(self, waiting: list[Key]) -> None:
        msg = pb.SuspensionMessage()
        comps = sorted({int(k[1]) for k in waiting if k[0] == "c"})
        sigs = sorted({int(k[1]) for k in waiting if k[0] == "s"}, reverse=True)
        if not self._cancel_delivered and CANCEL_SIGNAL not in sigs:
            sigs.append(CANCEL_SIGNAL)
        msg.waiting_completions.extend(comps)
        msg.waiting_signals.extend(sigs)
        msg.waiting_named_signals.extend(sorted({str(k[1]) for k in waiting if k[0] == "n"}))
        self._emit(msg)
        self.state = VMState.CLOSED

    def pending_runs(self) -> bool:
        return any(r.executing for r in self._runs.values())

    # -- end of the invocation

    def sys_write_output(self, result: Value | Failure) -> None:
        self._command(write_result(pb.OutputCommandMessage(), self._wire(result)), compare="exact")

    def sys_end(self) -> None:
        if self.state is VMState.CLOSED:
            return
        self._emit(pb.EndMessage())
        self.state = VMState.CLOSED

    def notify_error(
        self,
        message: str,
        stacktrace: str = "",
        code: int = ErrorCode.INTERNAL,
        next_retry_delay_ms: int | None = None,
    ) -> None:
        if self.state is VMState.CLOSED:
            return
        extra: dict[str, Any] = {"stacktrace": stacktrace}
        if next_retry_delay_ms is not None:
            extra["next_retry_delay"] = next_retry_delay_ms
        with contextlib.suppress(VMError):
            self._fail(code, message, **extra)

    @property
    def closed(self) -> bool:
        return self.state is VMState.CLOSED

    @property
    def is_replaying(self) -> bool:
        return self.state is VMState.REPLAYING


MESSAGE_TYPE_OF: dict[type[ProtoMessage], MessageType] = {
    pb.GetEagerStateCommandMessage: MessageType.GET_EAGER_STATE,
    pb.GetLazyStateCommandMessage: MessageType.GET_LAZY_STATE,
    pb.GetEagerStateKeysCommandMessage: MessageType.GET_EAGER_STATE_KEYS,
    pb.GetLazyStateKeysCommandMessage: MessageType.GET_LAZY_STATE_KEYS,
    pb.SetStateCommandMessage: MessageType.SET_STATE,
    pb.ClearStateCommandMessage: MessageType.CLEAR_STATE,
    pb.ClearAllStateCommandMessage: MessageType.CLEAR_ALL_STATE,
    pb.SleepCommandMessage: MessageType.SLEEP,
    pb.CallCommandMessage: MessageType.CALL,
    pb.OneWayCallCommandMessage: MessageType.ONE_WAY_CALL,
    pb.SendSignalCommandMessage: MessageType.SEND_SIGNAL,
    pb.RunCommandMessage: MessageType.RUN,
    pb.AttachInvocationCommandMessage: MessageType.ATTACH_INVOCATION,
    pb.GetInvocationOutputCommandMessage: MessageType.GET_INVOCATION_OUTPUT,
    pb.CompleteAwakeableCommandMessage: MessageType.COMPLETE_AWAKEABLE,
    pb.GetPromiseCommandMessage: MessageType.GET_PROMISE,
    pb.PeekPromiseCommandMessage: MessageType.PEEK_PROMISE,
    pb.CompletePromiseCommandMessage: MessageType.COMPLETE_PROMISE,
    pb.OutputCommandMessage: MessageType.OUTPUT,
}


def _awakeable_id(raw_id: bytes, index: int) -> str:
    try:
        from pyrestate.protocol.ids import InvocationId, awakeable_id

        return awakeable_id(InvocationId.from_bytes(raw_id), index)
    except ImportError:  # pragma: no cover - shared id helpers not present
        import base64

        raw = raw_id + index.to_bytes(4, "big")
        return "sign_1" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


__all__ = [
    "CANCEL_SIGNAL",
    "VM",
    "AllCompleted",
    "AnyCompleted",
    "CancelSignalReceived",
    "ExecuteRun",
    "Failure",
    "Invocation",
    "InvocationIdResult",
    "Progress",
    "RunRetryConfig",
    "StateKeysResult",
    "Suspended",
    "VMError",
    "VMState",
    "Value",
    "Void",
    "WaitExternal",
]
