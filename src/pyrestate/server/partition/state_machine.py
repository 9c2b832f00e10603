"""The partition state machine: `apply(txn, command, ctx) -> actions`. Pure: it reads and writes only
through the transaction and reports everything the outside world must do as actions, which the processor
performs after the transaction committed.

This module dispatches; what each command does lives with its family in `commands/`, and what every family
does to an invocation (start, complete, retry, notify, send through the outbox) in `lifecycle`."""

from __future__ import annotations

from typing import assert_never

from pyrestate.protocol import service_protocol_pb2 as pb
from pyrestate.protocol.errors import ErrorCode, ProtocolError
from pyrestate.protocol.framing import MessageType, parse_payload
from pyrestate.server.core_api import Failure
from pyrestate.server.partition.commands import (
    admin,
    awakeables_signals,
    calls,
    invocation,
    promises,
    state,
    timers,
)
from pyrestate.server.partition.context import ApplyContext
from pyrestate.server.partition.lifecycle import Apply, notification, wakes
from pyrestate.server.partition.model import (
    AbortAttempt,
    Action,
    AttemptEnded,
    AttemptFailed,
    Command,
    Deliver,
    GetResult,
    Ingest,
    InvocationResponse,
    Invoke,
    InvokerEffect,
    ManageInvocation,
    NotifySignal,
    PatchState,
    PinDeployment,
    ProposeRun,
    RestartAsNew,
    ReviewLimits,
    SdkCommand,
    Suspend,
    TimerFired,
)
from pyrestate.server.storage.api import Transaction
from pyrestate.server.storage.records import InvocationStatus, Status, Waiting


def apply(txn: Transaction, command: Command, ctx: ApplyContext) -> list[Action]:
    a = Apply(txn, ctx)
    _dispatch(a, command)
    return a.actions


def _dispatch(a: Apply, command: Command) -> None:
    match command:
        case Invoke():
            invocation.on_invoke(a, command)
        case Ingest():
            invocation.on_ingest(a, command)
        case InvokerEffect():
            _on_effect(a, command)
        case TimerFired(timer=timer):
            timers.on_timer(a, timer)
        case InvocationResponse():
            calls.on_response(a, command)
        case GetResult():
            invocation.on_get_result(a, command)
        case NotifySignal():
            awakeables_signals.on_signal(a, command)
        case ManageInvocation():
            admin.on_manage(a, command)
        case RestartAsNew():
            admin.on_restart_as_new(a, command)
        case PatchState():
            state.on_patch_state(a, command)
        case ReviewLimits():
            a.review_limits()
        case Deliver(seq=seq, inner=inner, remote=remote):
            if remote and not _first_delivery(a, seq):
                return
            a.txn.delete_outbox(a.ctx.partition, seq)
            _dispatch(a, inner)
        case _:
            assert_never(command)


def _first_delivery(a: Apply, seq: int) -> bool:
    """A sender resends until acknowledged, in its commit order: anything at or below the high-water mark
    of its source partition was applied before. The mark is written in the same commit as the message."""
    name = f"in_hwm_{seq & 0xFFFF}"
    counter = seq >> 16
    if counter <= (a.txn.get_fsm(a.ctx.partition, name) or 0):
        return False
    a.txn.put_fsm(a.ctx.partition, name, counter)
    return True


def _on_effect(a: Apply, cmd: InvokerEffect) -> None:
    st = a.txn.get_invocation_status(cmd.invocation_id)
    if st is None or st.epoch != cmd.epoch or st.status is not Status.INVOKED:
        return  # a stale attempt (retried, killed, paused, completed): drop its effects
    effect = cmd.effect
    match effect:
        case PinDeployment(deployment_id=dp, protocol_version=v):
            if st.deployment_id is None or st.protocol_version is None:
                a.put(st.with_(deployment_id=dp, protocol_version=v))
        case SdkCommand(ty=ty, raw=raw):
            _on_sdk_command(a, st, ty, raw)
        case ProposeRun(completion_id=cid, result=result):
            st = st.with_(retry_count=0, last_entry_at=a.ctx.now)
            a.notify(st, MessageType.RUN_COMPLETION, notification(completion_id=cid, outcome=result))
        case Suspend(waiting=waiting):
            _on_suspend(a, st, waiting)
        case AttemptFailed(
            code=code, message=message, next_retry_delay_ms=delay, terminal=terminal, pause=pause
        ):
            if terminal:
                a.emit(AbortAttempt(st.invocation_id))
                st = st.with_(last_failure=f"[{code}] {message}", last_failure_code=code)
                a.complete(st, Failure(code, message))
            elif pause:
                a.emit(AbortAttempt(st.invocation_id))
                failed = st.with_(
                    last_failure=f"[{code}] {message}",
                    last_failure_code=code,
                    retry_count=st.retry_count + 1,
                    total_attempts=st.total_attempts + 1,
                )
                a.put(failed.with_(status=Status.PAUSED, epoch=st.epoch + 1))
                a.release_slot(st)
            else:
                a.fail_attempt(st, code, message, delay)
        case AttemptEnded():
            outcome = (
                st.output
                if st.output is not None
                else Failure(ErrorCode.INTERNAL, "invocation ended without output")
            )
            a.complete(st, outcome)
        case _:
            assert_never(effect)


def _on_suspend(a: Apply, st: InvocationStatus, waiting: Waiting) -> None:
    if not (waiting.completions or waiting.signals or waiting.named_signals):
        a.fail_attempt(st, ErrorCode.PROTOCOL_VIOLATION, "suspension without anything to wait for", None)
        return
    # An awaited notification may already be stored (it raced with the SDK's decision to suspend).
    for entry in a.txn.get_journal(st.invocation_id):
        if MessageType(entry.ty).is_notification:
            msg = pb.NotificationMessage.FromString(entry.raw)
            if wakes(waiting, msg):
                a.start(st.with_(retry_count=0))
                return
    a.put(st.with_(status=Status.SUSPENDED, waiting=waiting, epoch=st.epoch + 1))
    a.release_slot(st)


def _on_sdk_command(a: Apply, st: InvocationStatus, ty: int, raw: bytes) -> None:
    try:
        mtype = MessageType(ty)
        msg = parse_payload(ty, raw)
    except (ValueError, ProtocolError) as e:
        a.fail_attempt(st, ErrorCode.PROTOCOL_VIOLATION, f"bad command: {e}", None)
        return
    if not mtype.is_command or mtype is MessageType.INPUT:
        a.fail_attempt(
            st, ErrorCode.PROTOCOL_VIOLATION, f"unexpected message {mtype.name} as a command", None
        )
        return
    key = st.target.key
    keyed = key is not None
    if (
        mtype in (MessageType.SET_STATE, MessageType.CLEAR_STATE, MessageType.CLEAR_ALL_STATE)
        and not st.target.exclusive
    ):
        a.fail_attempt(
            st, ErrorCode.PROTOCOL_VIOLATION, f"{mtype.name} is not allowed in a shared/unkeyed handler", None
        )
        return
    if (
        mtype
        in (
            MessageType.GET_LAZY_STATE,
            MessageType.GET_LAZY_STATE_KEYS,
            MessageType.GET_EAGER_STATE,
            MessageType.GET_EAGER_STATE_KEYS,
        )
        and not keyed
    ):
        a.fail_attempt(
            st, ErrorCode.PROTOCOL_VIOLATION, f"{mtype.name} is only allowed for keyed services", None
        )
        return
    if isinstance(msg, pb.CallCommandMessage | pb.OneWayCallCommandMessage):
        callee_svc = a.ctx.schema.lookup_service(msg.service_name)
        if callee_svc is None or msg.handler_name not in callee_svc.handlers:
            a.fail_attempt(
                st, ErrorCode.NOT_FOUND, f"call target {msg.service_name}/{msg.handler_name} not found", None
            )
            return
    st = a.append(st, ty, raw).with_(
        command_count=st.command_count + 1, retry_count=0, last_entry_at=a.ctx.now
    )
    match msg:
        case pb.OutputCommandMessage():
            invocation.on_output(a, st, msg)
        case (
            pb.SetStateCommandMessage()
            | pb.ClearStateCommandMessage()
            | pb.ClearAllStateCommandMessage()
            | pb.GetLazyStateCommandMessage()
            | pb.GetLazyStateKeysCommandMessage()
        ):
            state.on_state_command(a, st, msg)
        case pb.SleepCommandMessage():
            timers.on_sleep(a, st, msg)
        case pb.CallCommandMessage() | pb.OneWayCallCommandMessage():
            calls.on_call(a, st, msg)
        case (
            pb.GetPromiseCommandMessage()
            | pb.PeekPromiseCommandMessage()
            | pb.CompletePromiseCommandMessage()
        ):
            promises.on_promise(a, st, msg)
        case pb.SendSignalCommandMessage():
            awakeables_signals.on_send_signal(a, st, msg)
        case pb.CompleteAwakeableCommandMessage():
            awakeables_signals.on_complete_awakeable(a, st, msg)
        case pb.AttachInvocationCommandMessage() | pb.GetInvocationOutputCommandMessage():
            invocation.on_attach_or_get_output(a, st, msg)
        case _:
            # Run, GetEagerState(Keys): nothing to do besides recording.
            a.put(st)
