"""Operator commands on one invocation: cancel, kill (with the calls it waits for), purge, pause, resume,
restart as new."""

from __future__ import annotations

import logging
from typing import assert_never

from pyrestate.protocol import service_protocol_pb2 as pb
from pyrestate.protocol.errors import ErrorCode
from pyrestate.protocol.framing import MessageType, parse_payload
from pyrestate.protocol.ids import InvocationId
from pyrestate.protocol.outcome import read_result
from pyrestate.server import logs
from pyrestate.server.core_api import (
    BadRequest,
    CommandOutcome,
    Conflict,
    Failure,
    InvocationCommand,
    NotFound,
    Refused,
    as_outcome,
)
from pyrestate.server.partition.context import partition_of
from pyrestate.server.partition.lifecycle import Apply, backing_off, log, notification
from pyrestate.server.partition.model import AbortAttempt, ManageInvocation, RestartAsNew, Restarted
from pyrestate.server.storage.records import InvocationStatus, JournalEntry, Status, Timer, TimerKind

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


def _not_started(st: InvocationStatus) -> bool:
    """Scheduled, inboxed behind a key, or waiting for a slot of its scope without having run."""
    if st.status is Status.PENDING:
        return st.running_at is None
    return st.status in (Status.SCHEDULED, Status.INBOXED)


def cancel(a: Apply, st: InvocationStatus) -> bool:
    """Deliver signal 1; an invocation that has not started yet completes at once (True). The SDK
    propagates the cancellation to the calls it is waiting for."""
    if st.status in (Status.INBOXED, Status.SCHEDULED) or (
        st.status is Status.PENDING and st.running_at is None
    ):
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
            elif backing_off(st):
                _event("Invocation paused", st)
                a.put(st.with_(status=Status.PAUSED, next_retry_at=None))
                a.reply(token, CommandOutcome.ACCEPTED)
            elif st.status is Status.INVOKED:
                _event("Invocation paused", st)
                a.emit(AbortAttempt(st.invocation_id))
                a.put(st.with_(status=Status.PAUSED, epoch=st.epoch + 1))
                a.release_slot(st)
                a.reply(token, CommandOutcome.ACCEPTED)
            else:
                a.reply(token, Conflict(f"The invocation '{st.invocation_id}' is not running."))
        case InvocationCommand.RESUME:
            if cmd.deployment_id is not None and st.status is Status.INVOKED:
                a.reply(
                    token,
                    Conflict(
                        f"The invocation '{st.invocation_id}' is still running or the deployment id is not "
                        "pinned yet, deployment id cannot be changed."
                    ),
                )
                return
            if cmd.deployment_id is not None and st.status in (Status.PAUSED, Status.SUSPENDED):
                # Re-pinned; the protocol version is negotiated again with the new deployment.
                st = st.with_(deployment_id=cmd.deployment_id, protocol_version=None)
            if st.status in (Status.PAUSED, Status.SUSPENDED):
                _event("Invocation resumed", st)
                a.start(st.with_(retry_count=0))
                a.reply(token, CommandOutcome.DONE)
            elif backing_off(st):
                _event("Invocation retried now", st)
                a.start(st.with_(next_retry_at=None))  # takes a slot, or queues for one
                a.reply(token, CommandOutcome.DONE)
            elif st.status is Status.INVOKED:
                if st.next_retry_at is not None and st.next_retry_at > a.ctx.now:
                    # Backing off: Restate's resume is "retry now", a new attempt without the wait.
                    _event("Invocation retried now", st)
                    a.emit(AbortAttempt(st.invocation_id))
                    a.start(st)
                a.reply(token, CommandOutcome.DONE)
            else:
                a.reply(token, Conflict(f"The invocation '{st.invocation_id}' cannot be resumed."))
        case _:
            assert_never(cmd.command)


# The fields through which a command names the notifications that complete it.
_COMPLETION_FIELDS = ("result_completion_id", "invocation_id_notification_idx")


def _journal_prefix(journal: list[JournalEntry], from_index: int) -> list[JournalEntry] | None:
    """Entries 0..from_index, then the notifications (appended later) completing the prefix's commands;
    None when the prefix is beyond the journal or has a command whose completion never came."""
    if from_index >= len(journal):
        return None
    prefix = journal[: from_index + 1]
    expected: set[int] = set()
    for entry in prefix:
        if MessageType(entry.ty).is_command and entry.ty != MessageType.INPUT:
            msg = parse_payload(entry.ty, entry.raw)
            expected.update(getattr(msg, f) for f in _COMPLETION_FIELDS if f in msg.DESCRIPTOR.fields_by_name)
    expected.discard(0)  # proto3: an unset id reads 0, and completion ids start at 1

    def completion_id(entry: JournalEntry) -> int | None:
        if not MessageType(entry.ty).is_notification:
            return None
        n = pb.NotificationMessage.FromString(entry.raw)
        return n.completion_id if n.WhichOneof("id") == "completion_id" else None

    expected -= {completion_id(e) for e in prefix}
    later = [e for e in journal[from_index + 1 :] if completion_id(e) in expected]
    if len(later) < len(expected):
        return None
    return [*prefix, *later]


def on_restart_as_new(a: Apply, cmd: RestartAsNew) -> None:
    """Restate's restart-as-new: only of a completed invocation whose journal was retained; the new one
    gets no idempotency key and no caller, and shows `restarted_from` in the introspection."""
    st = a.txn.get_invocation_status(cmd.invocation_id)
    token, iid = cmd.reply_token, cmd.invocation_id
    if st is None:
        a.reply(token, NotFound(f"The requested invocation '{iid}' does not exist"))
        return
    if st.target.workflow_run:
        a.reply(
            token,
            Refused(
                422,
                f"Restarting the invocation '{iid}' is not supported. Restarting workflows is not supported, "
                "and restarting invocations created using the old service protocol.",
            ),
        )
        return
    if st.status in (Status.SCHEDULED, Status.INBOXED) or (
        st.status is Status.PENDING and st.running_at is None
    ):
        a.reply(
            token, Refused(425, f"The invocation '{iid}' cannot be restarted because it's not running yet.")
        )
        return
    if st.status is not Status.COMPLETED:
        a.reply(token, Conflict(f"The invocation '{iid}' is still running."))
        return
    journal = a.txn.get_journal(iid)
    if not journal or journal[0].ty != MessageType.INPUT:
        a.reply(
            token,
            Refused(
                410,
                f"The invocation '{iid}' cannot be restarted because the input is not available. This "
                "indicates that the journal was already purged, or not retained at all.",
            ),
        )
        return
    entries = _journal_prefix(journal, cmd.from_index)
    if entries is None:
        a.reply(
            token,
            BadRequest(
                f"The prefix of the journal '{iid}' up to 'from' (included) contains some Commands without "
                "respective Completions."
            ),
        )
        return
    new_id = cmd.new_invocation_id
    copies_progress = cmd.from_index > 0
    deployment_id, protocol_version = None, None
    if copies_progress:  # the copied commands replay on the pinned deployment unless told otherwise
        deployment_id = st.deployment_id if cmd.deployment_id in (None, "keep") else cmd.deployment_id
        protocol_version = st.protocol_version if deployment_id == st.deployment_id else None
    new = InvocationStatus(
        invocation_id=new_id,
        status=Status.SCHEDULED,
        target=st.target,
        created_at=a.ctx.now,
        modified_at=a.ctx.now,
        invoked_by="restart_as_new",
        invoked_by_id=iid,
        random_seed=InvocationId.parse(new_id).v5_random_seed(),
        completion_retention_ms=a.ctx.completion_retention(st.target, False),
        deployment_id=deployment_id,
        protocol_version=protocol_version,
        journal_length=len(entries),
        command_count=sum(1 for e in entries if MessageType(e.ty).is_command),
    )
    for index, entry in enumerate(entries):  # copies keep their original append time, as Restate's do
        a.txn.put_journal_entry(new_id, index, entry)
        if entry.ty == MessageType.OUTPUT:  # replayed, never sent again: the copy is the result
            written = read_result(pb.OutputCommandMessage.FromString(entry.raw))
            new = new.with_(output=as_outcome(b"" if written is None else written))
    _event("Invocation restarted as new", st)
    a.enqueue_or_start(new)
    a.reply(token, Restarted(new_id))
