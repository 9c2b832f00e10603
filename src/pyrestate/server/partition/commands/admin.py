"""Operator commands on one invocation: cancel, kill (with the calls it waits for), purge, pause, resume."""

from __future__ import annotations

import logging
from typing import assert_never

from pyrestate.protocol import service_protocol_pb2 as pb
from pyrestate.protocol.errors import ErrorCode
from pyrestate.protocol.framing import MessageType
from pyrestate.server import logs
from pyrestate.server.core_api import CommandOutcome, Conflict, Failure, InvocationCommand, NotFound
from pyrestate.server.partition.context import partition_of
from pyrestate.server.partition.lifecycle import Apply, log, notification
from pyrestate.server.partition.model import AbortAttempt, ManageInvocation
from pyrestate.server.storage.records import InvocationStatus, Status, Timer, TimerKind

CANCEL_SIGNAL = 1
KILLED = Failure(ErrorCode.CONFLICT, "killed")
CANCELED = Failure(ErrorCode.CONFLICT, "canceled")


def _pending_calls(a: Apply, st: InvocationStatus) -> list[str]:
    """Invocation ids of the calls (not one-way sends) in the journal whose result has not arrived."""
    awaiting: dict[int, int] = {}  # invocation-id notification index -> result completion id
    callee_ids: dict[int, str] = {}
    completed: set[int] = set()
    for entry in a.txn.get_journal(st.invocation_id):
        if entry.ty == MessageType.CALL:
            call = pb.CallCommandMessage.FromString(entry.raw)
            awaiting[call.invocation_id_notification_idx] = call.result_completion_id
        elif entry.ty == MessageType.CALL_INVOCATION_ID_COMPLETION:
            n = pb.NotificationMessage.FromString(entry.raw)
            callee_ids[n.completion_id] = n.invocation_id
        elif MessageType(entry.ty).is_notification:
            n = pb.NotificationMessage.FromString(entry.raw)
            if n.WhichOneof("id") == "completion_id":
                completed.add(n.completion_id)
    return [
        callee_ids[idx] for idx, result in awaiting.items() if result not in completed and idx in callee_ids
    ]


def _kill(a: Apply, st: InvocationStatus) -> None:
    """Kill an invocation and, depth first, the calls it still waits for (Restate's kill of the call tree).
    Children on this partition die in this very transaction, so an inboxed child never gets to start when
    its parent releases the key. The others, and a child whose creation is still in the outbox, are told
    through the outbox, which delivers the kill after the creation (FIFO per partition pair)."""
    a.emit(AbortAttempt(st.invocation_id))
    if st.alive:
        for child in _pending_calls(a, st):
            child_st = None
            if partition_of(child, a.ctx.num_partitions) == a.ctx.partition:
                child_st = a.txn.get_invocation_status(child)
            if child_st is None:
                a.send_to_invocation(child, ManageInvocation(child, InvocationCommand.KILL))
            elif child_st.status is not Status.COMPLETED:
                _kill(a, child_st)
    current = a.txn.get_invocation_status(st.invocation_id)
    if current is not None and current.status is not Status.COMPLETED:
        _event("Invocation killed", current)
        a.complete(current, KILLED)


def _event(message: str, st: InvocationStatus) -> None:
    logs.event(log, logging.INFO, message, invocation_id=st.invocation_id, target=st.target.display())


def cancel(a: Apply, st: InvocationStatus) -> bool:
    """Deliver signal 1; an invocation that has not started yet completes at once (True). The SDK
    propagates the cancellation to the calls it is waiting for."""
    if st.status in (Status.INBOXED, Status.SCHEDULED):
        # As Restate does: whoever waits gets 409 canceled, then nothing of the invocation is kept (no
        # status, no idempotency entry), so attach/output answer 404 and the same key may be used again.
        if st.status is Status.SCHEDULED and st.execution_time is not None:
            due = Timer(st.execution_time, TimerKind.INVOKE, st.invocation_id, 0, a.ctx.partition)
            a.txn.delete_timer(due)
        a.complete(st.with_(completion_retention_ms=0), CANCELED)
        return True
    st = a.notify(st, MessageType.SIGNAL, notification(signal_id=CANCEL_SIGNAL))
    if st.status is Status.PAUSED:
        a.start(st.with_(retry_count=0))
    return False


def on_manage(a: Apply, cmd: ManageInvocation) -> None:
    st = a.txn.get_invocation_status(cmd.invocation_id)
    token = cmd.reply_token
    if st is None:
        a.reply(token, NotFound(f"The requested invocation '{cmd.invocation_id}' does not exist"))
        return
    completed = st.status is Status.COMPLETED
    match cmd.command:
        case InvocationCommand.CANCEL | InvocationCommand.KILL if completed:
            a.reply(token, Conflict(f"The invocation '{st.invocation_id}' was already completed."))
        case InvocationCommand.CANCEL:
            _event("Invocation cancel requested", st)
            done = cancel(a, st)
            a.reply(token, CommandOutcome.DONE if done else CommandOutcome.ACCEPTED)
        case InvocationCommand.KILL:
            _kill(a, st)
            a.reply(token, CommandOutcome.DONE)
        case InvocationCommand.PURGE | InvocationCommand.PURGE_JOURNAL if not completed:
            a.reply(token, Conflict(f"The invocation '{st.invocation_id}' is not yet completed."))
        case InvocationCommand.PURGE:
            a.txn.delete_invocation_status(st.invocation_id)
            a.txn.delete_journal(st.invocation_id)
            a.reply(token, CommandOutcome.DONE)
        case InvocationCommand.PURGE_JOURNAL:
            a.txn.delete_journal(st.invocation_id)
            a.reply(token, CommandOutcome.DONE)
        case InvocationCommand.PAUSE:
            if st.status is Status.PAUSED:
                a.reply(token, CommandOutcome.DONE)
            elif st.status is Status.INVOKED:
                _event("Invocation paused", st)
                a.emit(AbortAttempt(st.invocation_id))
                a.put(st.with_(status=Status.PAUSED, epoch=st.epoch + 1))
                a.reply(token, CommandOutcome.ACCEPTED)
            else:
                a.reply(token, Conflict(f"The invocation '{st.invocation_id}' is not running."))
        case InvocationCommand.RESUME:
            if cmd.deployment_id is not None and st.status in (Status.PAUSED, Status.SUSPENDED):
                # Re-pinned; the protocol version is negotiated again with the new deployment.
                st = st.with_(deployment_id=cmd.deployment_id, protocol_version=None)
            if st.status in (Status.PAUSED, Status.SUSPENDED):
                _event("Invocation resumed", st)
                a.start(st.with_(retry_count=0))
                a.reply(token, CommandOutcome.DONE)
            elif st.status is Status.INVOKED:
                a.reply(token, CommandOutcome.DONE)
            else:
                a.reply(token, Conflict(f"The invocation '{st.invocation_id}' cannot be resumed."))
        case _:
            assert_never(cmd.command)
