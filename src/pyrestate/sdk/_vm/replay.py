"""The replay core of the invocation state machine: WaitingStart -> Replaying -> Processing -> Closed (h11
style, no IO). Frames in, frames out; every command passes one gate that checks it against the replayed
journal or emits it; results are keyed by completion id or signal and reached through handles; awaiting
them either completes, asks to run a closure, waits for input, or suspends."""

from __future__ import annotations

import contextlib
from collections import deque
from typing import Any, Literal

from google.protobuf.message import Message as ProtoMessage

from pyrestate.protocol import service_protocol_pb2 as pb
from pyrestate.protocol.errors import ErrorCode, ProtocolError
from pyrestate.protocol.framing import FrameDecoder, MessageType, encode_message
from pyrestate.protocol.outcome import Failure
from pyrestate.sdk._vm.results import (
    CANCEL_SIGNAL,
    FIRST_USER_SIGNAL,
    MAX_VERSION,
    MIN_VERSION,
    AnyCompleted,
    CancelSignalReceived,
    ExecuteRun,
    Key,
    Progress,
    Result,
    Suspended,
    Value,
    VMError,
    VMState,
    Void,
    WaitExternal,
    _notification_key,
    _notification_result,
    _Recorded,
    _RunInfo,
    _short,
)


class ReplayCore:
    """One invocation attempt's input, output, journal gate, results and progress; `VM` adds the syscalls."""

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
        comps = sorted({int(k[1]) for k in waiting if k[0] == "c"})
        sigs = sorted({int(k[1]) for k in waiting if k[0] == "s"}, reverse=True)
        if not self._cancel_delivered and CANCEL_SIGNAL not in sigs:
            sigs.append(CANCEL_SIGNAL)
        names = sorted({str(k[1]) for k in waiting if k[0] == "n"})
        if self.version >= 7:
            # V7 names what is awaited as a future tree. This VM resumes on any awaited result and decides
            # again after the replay, so one FIRST_COMPLETED node over all of them says exactly that; it is
            # announced (AwaitingOn) before the suspension, as the official SDK does.
            future = pb.Future(
                waiting_completions=comps,
                waiting_signals=sigs,
                waiting_named_signals=names,
                combinator_type=pb.FIRST_COMPLETED,
            )
            self._emit(pb.AwaitingOnMessage(awaiting_on=future))
            self._emit(pb.SuspensionMessage(awaiting_on=future))
        else:
            msg = pb.SuspensionMessage()
            msg.waiting_completions.extend(comps)
            msg.waiting_signals.extend(sigs)
            msg.waiting_named_signals.extend(names)
            self._emit(msg)
        self.state = VMState.CLOSED

    def pending_runs(self) -> bool:
        return any(r.executing for r in self._runs.values())

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
