"""What every family of commands does to an invocation: address commands to partitions through the
durable outbox, start, queue behind a key, complete, retry or pause an attempt, append to the journal and
notify. `Apply` holds one `apply` call's transaction, context and actions; it reads and writes only through
the transaction, so the state machine stays pure."""

from __future__ import annotations

import logging

from pyrestate.protocol import service_protocol_pb2 as pb
from pyrestate.protocol.framing import MessageType
from pyrestate.protocol.outcome import write_result
from pyrestate.server import logs
from pyrestate.server.core_api import Failure, Outcome, as_result
from pyrestate.server.flow_limits import fits
from pyrestate.server.partition.context import ApplyContext, partition_of
from pyrestate.server.partition.model import (
    AbortAttempt,
    Action,
    Command,
    ForwardNotification,
    IngressResponse,
    InvocationResponse,
    RegisterTimer,
    Reply,
    SendToPartition,
    StartAttempt,
)
from pyrestate.server.storage.api import Transaction
from pyrestate.server.storage.records import (
    InvocationStatus,
    JournalEntry,
    Status,
    Timer,
    TimerKind,
    Waiting,
)

# Lifecycle events an operator follows (failures, retries, pauses, kills, cancels), logged as they are
# decided; the log is informative only, storage stays the truth.
log = logging.getLogger("pyrestate.invocation")


def backing_off(st: InvocationStatus) -> bool:
    """A scoped invocation waiting out its retry delay without a slot (`Apply.back_off_without_slot`)."""
    return st.status is Status.PENDING and st.inbox_seq is None and st.next_retry_at is not None


class Apply:
    """State of one `apply` call: the transaction, the context and the actions collected so far."""

    def __init__(self, txn: Transaction, ctx: ApplyContext) -> None:
        self.txn = txn
        self.ctx = ctx
        self.actions: list[Action] = []

    # ------------------------------------------------------------------ plumbing

    def emit(self, action: Action) -> None:
        self.actions.append(action)

    def reply(self, token: int | None, value: object) -> None:
        if token is not None:
            self.emit(Reply(token, value))

    def send(self, partition: int, command: Command) -> None:
        """Durably address a command to a partition (possibly this one), delivered after commit."""
        me = self.ctx.partition
        counter = (self.txn.get_fsm(me, "outbox_seq") or 0) + 1
        self.txn.put_fsm(me, "outbox_seq", counter)
        seq = (counter << 16) | me
        from pyrestate.server.partition.model import command_to_json

        self.txn.put_outbox(partition, seq, command_to_json(command))
        self.emit(SendToPartition(partition, seq, command))

    def send_to_invocation(self, invocation_id: str, command: Command) -> None:
        self.send(partition_of(invocation_id, self.ctx.num_partitions), command)

    def put(self, st: InvocationStatus) -> InvocationStatus:
        st = st.with_(modified_at=self.ctx.now)
        self.txn.put_invocation_status(st)
        return st

    def register_timer(self, timer: Timer) -> None:
        self.txn.put_timer(timer)
        self.emit(RegisterTimer(timer))

    # ------------------------------------------------------------------ lifecycle

    def start(self, st: InvocationStatus, delay_ms: int = 0) -> InvocationStatus:
        """Move to invoked with a new attempt epoch and ask the invoker for an attempt; a scoped invocation
        first takes a slot of its scope's concurrency limits, or waits for one (pending)."""
        if not self.take_slot(st):
            return self.wait_for_slot(st)
        if st.target.exclusive:
            assert st.target.key is not None
            self.txn.put_lock(st.target.service, st.target.key, st.invocation_id)
        st = self.put(
            st.with_(
                status=Status.INVOKED,
                epoch=st.epoch + 1,
                waiting=None,
                inbox_seq=None,
                running_at=st.running_at or self.ctx.now,
                next_retry_at=self.ctx.now + delay_ms if delay_ms else None,
            )
        )
        self.emit(StartAttempt(st.invocation_id, st.epoch, delay_ms))
        return st

    def enqueue_or_start(self, st: InvocationStatus) -> InvocationStatus:
        t = st.target
        if t.exclusive:
            assert t.key is not None
            holder = self.txn.get_lock(t.service, t.key)
            if holder is not None and holder != st.invocation_id:
                seq = (self.txn.get_fsm(self.ctx.partition, "inbox_seq") or 0) + 1
                self.txn.put_fsm(self.ctx.partition, "inbox_seq", seq)
                self.txn.push_inbox(t.service, t.key, seq, st.invocation_id)
                return self.put(st.with_(status=Status.INBOXED, inbox_seq=seq))
        return self.start(st)

    # ------------------------------------------------------------------ flow control

    def take_slot(self, st: InvocationStatus) -> bool:
        """Whether `st` may run: flow control is off, it is not scoped, it holds a slot already, or every
        limited level of its scope and limit key has room (then it takes a slot)."""
        scope = st.target.scope
        book = self.ctx.limits
        if scope is None or book is None:
            return True
        if self.txn.has_limit_slot(scope, st.invocation_id):
            return True
        running = [lk for _, lk in self.txn.list_limit_slots(scope)]
        if not fits(book, scope, st.target.limit_key, running):
            return False
        self.txn.put_limit_slot(scope, st.invocation_id, st.target.limit_key)
        return True

    def holds_slot(self, st: InvocationStatus) -> bool:
        scope = st.target.scope
        return scope is not None and self.txn.has_limit_slot(scope, st.invocation_id)

    def back_off_without_slot(self, st: InvocationStatus, delay_ms: int) -> None:
        """As Restate's limiter does: a failed attempt gives its slot up for the back-off (others of the
        scope may run meanwhile) and queues for one again when its retry timer fires (`TimerKind.RETRY`)."""
        self.release_slot(st)
        due = self.ctx.now + delay_ms
        self.put(
            st.with_(
                status=Status.PENDING, epoch=st.epoch + 1, inbox_seq=None, waiting=None, next_retry_at=due
            )
        )
        self.register_timer(Timer(due, TimerKind.RETRY, st.invocation_id, 0, self.ctx.partition))

    def wait_for_slot(self, st: InvocationStatus) -> InvocationStatus:
        scope = st.target.scope
        assert scope is not None
        seq = (self.txn.get_fsm(self.ctx.partition, "limit_seq") or 0) + 1
        self.txn.put_fsm(self.ctx.partition, "limit_seq", seq)
        self.txn.push_limit_queue(scope, seq, st.invocation_id)
        return self.put(st.with_(status=Status.PENDING, inbox_seq=seq, waiting=None))

    def release_slot(self, st: InvocationStatus) -> None:
        """`st` stops running (ends, suspends, pauses): its slot goes to the invocations waiting for one."""
        scope = st.target.scope
        if scope is None:
            return
        if st.status is Status.PENDING and st.inbox_seq is not None:
            self.txn.delete_limit_queue(scope, st.inbox_seq)
        if self.txn.has_limit_slot(scope, st.invocation_id):
            self.txn.delete_limit_slot(scope, st.invocation_id)
            self.admit_waiting(scope)

    def admit_waiting(self, scope: str) -> None:
        """Start the waiting invocations of `scope` that fit, in arrival order; one that does not fit (its
        limit key is full) does not hold back the others."""
        for seq, iid in self.txn.list_limit_queue(scope):
            book = self.ctx.limits
            running = [lk for _, lk in self.txn.list_limit_slots(scope)]
            if book is not None and not fits(book, scope, None, running):
                return  # the scope itself is full: nobody else fits
            st = self.txn.get_invocation_status(iid)
            if st is None or st.status is not Status.PENDING or st.inbox_seq != seq:
                self.txn.delete_limit_queue(scope, seq)
                continue
            if book is not None and not fits(book, scope, st.target.limit_key, running):
                continue
            self.txn.delete_limit_queue(scope, seq)
            st = st.with_(inbox_seq=None)
            if st.running_at is None:
                self.enqueue_or_start(st)  # first run: an object's key lock may be held by another
            else:
                self.start(st)

    def review_limits(self) -> None:
        """The rule book changed (or the server started): start whatever fits now."""
        for scope in self.txn.limit_queue_scopes():
            self.admit_waiting(scope)

    def release_lock(self, st: InvocationStatus) -> None:
        t = st.target
        if not t.exclusive:
            return
        assert t.key is not None
        if self.txn.get_lock(t.service, t.key) != st.invocation_id:
            return
        while (head := self.txn.peek_inbox(t.service, t.key)) is not None:
            seq, next_id = head
            self.txn.delete_inbox(t.service, t.key, seq)
            nxt = self.txn.get_invocation_status(next_id)
            if nxt is not None and nxt.status is Status.INBOXED:
                self.start(nxt)
                return
        self.txn.delete_lock(t.service, t.key)

    def complete(self, st: InvocationStatus, outcome: Outcome) -> None:
        for sink in st.sinks:
            if sink.invocation_id is not None:
                self.send_to_invocation(
                    sink.invocation_id,
                    InvocationResponse(sink.invocation_id, sink.completion_id, outcome, sink.notification_ty),
                )
        self.emit(IngressResponse(st.invocation_id, outcome, st if st.trace is not None else None))
        if st.status is Status.INBOXED and st.inbox_seq is not None and st.target.key is not None:
            self.txn.delete_inbox(st.target.service, st.target.key, st.inbox_seq)
        self.release_lock(st)
        self.release_slot(st)
        retention = st.completion_retention_ms
        if retention > 0:
            expires = self.ctx.now + retention
            self.put(
                st.with_(
                    status=Status.COMPLETED,
                    output=outcome,
                    completed_at=self.ctx.now,
                    expires_at=expires,
                    waiting=None,
                    sinks=(),
                    epoch=st.epoch + 1,
                )
            )
            self.register_timer(Timer(expires, TimerKind.CLEANUP, st.invocation_id, 0, self.ctx.partition))
            journal_retention = self.ctx.journal_retention(st.target)
            if journal_retention <= 0:
                self.txn.delete_journal(st.invocation_id)
            elif journal_retention < retention:
                self.register_timer(
                    Timer(
                        self.ctx.now + journal_retention,
                        TimerKind.JOURNAL_CLEANUP,
                        st.invocation_id,
                        0,
                        self.ctx.partition,
                    )
                )
        else:
            self.txn.delete_invocation_status(st.invocation_id)
            self.txn.delete_journal(st.invocation_id)

    def fail_attempt(self, st: InvocationStatus, code: int, message: str, delay_override: int | None) -> None:
        retries = st.retry_count + 1
        st = st.with_(
            retry_count=retries,
            total_attempts=st.total_attempts + 1,
            last_failure=f"[{code}] {message}",
            last_failure_code=code,
        )
        policy = self.ctx.retry_policy(st.target)
        delay = policy.delay_ms(retries)
        error, stacktrace = logs.split_error(message)
        fields = {
            "invocation_id": st.invocation_id,
            "target": st.target.display(),
            "attempt": retries,
            "deployment_id": st.deployment_id,
            "error": f"[{code}] {error}",
            "stacktrace": stacktrace,
        }
        if delay is None:
            if policy.on_max_attempts == "kill":
                logs.event(
                    log, logging.WARNING, "Invocation failed after its last attempt, killing it", **fields
                )
                self.emit(AbortAttempt(st.invocation_id))
                self.complete(st, Failure(code, message))
            else:
                logs.event(
                    log, logging.WARNING, "Invocation failed after its last attempt, pausing it", **fields
                )
                self.emit(AbortAttempt(st.invocation_id))
                self.put(st.with_(status=Status.PAUSED, epoch=st.epoch + 1))
                self.release_slot(st)
            return
        if delay_override is not None:
            delay = delay_override
        logs.event(
            log,
            logging.WARNING,
            f"Invocation error, retrying in {logs.duration(delay)}",
            **fields,
            retry_in=logs.duration(delay),
        )
        self.emit(AbortAttempt(st.invocation_id))
        if delay > 0 and self.holds_slot(st):
            self.back_off_without_slot(st, delay)
        else:
            self.start(st, delay)

    # ------------------------------------------------------------------ journal

    def append(self, st: InvocationStatus, ty: int, raw: bytes) -> InvocationStatus:
        self.txn.put_journal_entry(st.invocation_id, st.journal_length, JournalEntry(ty, raw, self.ctx.now))
        return st.with_(journal_length=st.journal_length + 1)

    def notify(
        self,
        st: InvocationStatus,
        ty: MessageType | int,
        message: pb.NotificationMessage,
    ) -> InvocationStatus:
        """Append a notification, forward it to a running attempt, resume a suspended invocation."""
        raw = message.SerializeToString()
        index = st.journal_length
        st = self.append(st, int(ty), raw)
        if st.status is Status.INVOKED:
            st = self.put(st)
            self.emit(ForwardNotification(st.invocation_id, st.epoch, index, int(ty), raw))
            return st
        if st.status is Status.SUSPENDED and wakes(st.waiting, message):
            return self.start(st.with_(retry_count=0))
        return self.put(st)


def wakes(waiting: Waiting | None, message: pb.NotificationMessage) -> bool:
    if waiting is None:
        return True
    which = message.WhichOneof("id")
    return waiting.matches(
        message.completion_id if which == "completion_id" else None,
        message.signal_id if which == "signal_id" else None,
        message.signal_name if which == "signal_name" else None,
    )


def notification(
    *,
    completion_id: int | None = None,
    signal_id: int | None = None,
    signal_name: str | None = None,
    outcome: Outcome | None = None,
    value: bytes | None = None,
    invocation_id: str | None = None,
    state_keys: list[bytes] | None = None,
) -> pb.NotificationMessage:
    m = pb.NotificationMessage()
    if completion_id is not None:
        m.completion_id = completion_id
    elif signal_id is not None:
        m.signal_id = signal_id
    elif signal_name is not None:
        m.signal_name = signal_name
    if outcome is not None:
        write_result(m, as_result(outcome))
    elif value is not None:
        write_result(m, value)
    elif invocation_id is not None:
        m.invocation_id = invocation_id
    elif state_keys is not None:
        m.state_keys.keys.extend(state_keys)
    else:
        write_result(m, None)
    return m


# ================================================================================================ apply
