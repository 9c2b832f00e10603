"""The invocation state machine's syscalls: each builds its command, passes it through the replay core's
gate (checked against the replayed journal, or emitted) and returns a handle to await its result."""

from __future__ import annotations

import contextlib
import hashlib
from typing import Any

from google.protobuf.message import Message as ProtoMessage

from pyrestate.protocol import service_protocol_pb2 as pb
from pyrestate.protocol.errors import ErrorCode
from pyrestate.protocol.framing import MessageType
from pyrestate.protocol.outcome import Failure, write_result
from pyrestate.sdk._vm.replay import MESSAGE_TYPE_OF, ReplayCore
from pyrestate.sdk._vm.results import (
    CANCEL_SIGNAL,
    Invocation,
    Result,
    RunRetryConfig,
    StateKeysResult,
    Value,
    VMError,
    VMState,
    Void,
    _Recorded,
    _RunInfo,
    _short,
)

__all__ = ["VM"]


class VM(ReplayCore):
    """One invocation attempt. Feed input bytes, drive with syscalls, take output bytes."""

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
            scope=start.scope if start.HasField("scope") else None,
            limit_key=start.limit_key if start.HasField("limit_key") else None,
            idempotency_key=start.idempotency_key if start.HasField("idempotency_key") else None,
        )

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
        scope: str | None = None,
        limit_key: str | None = None,
    ) -> tuple[int, int]:
        """Returns (invocation-id handle, result handle)."""
        self._check_scope(scope, limit_key)
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
        _scoped(msg, scope, limit_key)
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
        scope: str | None = None,
        limit_key: str | None = None,
    ) -> int:
        self._check_scope(scope, limit_key)
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
        _scoped(msg, scope, limit_key)
        for k, v in headers or []:
            msg.headers.add(key=k, value=v)
        self._command(msg, compare="no_invoke_time")
        return self._new_handle(("c", id_cid))

    def _check_scope(self, scope: str | None, limit_key: str | None) -> None:
        """Scopes travel in V7 commands only: older versions fail the attempt with 573 (retryable), as the
        official SDK does, so the call goes out once the server speaks V7."""
        if scope is not None or limit_key is not None:
            self._require_version(7, "scope")

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

    # -- end of the invocation

    def sys_write_output(self, result: Value | Failure) -> None:
        self._command(write_result(pb.OutputCommandMessage(), self._wire(result)), compare="exact")


def _awakeable_id(raw_id: bytes, index: int) -> str:
    try:
        from pyrestate.protocol.ids import InvocationId, awakeable_id

        return awakeable_id(InvocationId.from_bytes(raw_id), index)
    except ImportError:  # pragma: no cover - shared id helpers not present
        import base64

        raw = raw_id + index.to_bytes(4, "big")
        return "sign_1" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()



def _scoped(
    msg: pb.CallCommandMessage | pb.OneWayCallCommandMessage, scope: str | None, limit_key: str | None
) -> None:
    if scope is not None:
        msg.scope = scope
    if limit_key is not None:
        msg.limit_key = limit_key
