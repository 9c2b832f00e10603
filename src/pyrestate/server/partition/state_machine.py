"""The partition state machine: `apply(txn, command, ctx) -> actions`. Pure: it reads and writes only
through the transaction and reports everything the outside world must do as actions, which the processor
performs after the transaction committed."""

from __future__ import annotations

import contextlib
from typing import assert_never

from pyrestate.protocol import service_protocol_pb2 as pb
from pyrestate.protocol.errors import ProtocolError
from pyrestate.protocol.framing import MessageType, parse_payload
from pyrestate.protocol.ids import InvocationId, parse_awakeable_id
from pyrestate.server.core_api import (
    CommandOutcome,
    Conflict,
    Failure,
    InvocationCommand,
    NotFound,
    Outcome,
    ServiceType,
    Success,
)
from pyrestate.server.partition.context import ApplyContext, partition_of
from pyrestate.server.partition.model import (
    AbortAttempt,
    Action,
    AlreadyCompleted,
    AttemptEnded,
    AttemptFailed,
    Command,
    Deliver,
    ForwardNotification,
    GetResult,
    IngressResponse,
    InvocationRequest,
    InvocationResponse,
    Invoke,
    InvokerEffect,
    ManageInvocation,
    NotifySignal,
    PatchState,
    PinDeployment,
    ProposeRun,
    RegisterTimer,
    Reply,
    SdkCommand,
    SendToPartition,
    StartAttempt,
    Submitted,
    Suspend,
    TimerFired,
    WorkflowAlreadyInvoked,
)
from pyrestate.server.storage.api import Transaction
from pyrestate.server.storage.records import (
    InvocationStatus,
    JournalEntry,
    Promise,
    ResponseSink,
    Status,
    Target,
    Timer,
    TimerKind,
    Waiting,
)

CANCEL_SIGNAL = 1
WORKFLOW_ALREADY_INVOKED = Failure(409, "the workflow method was already invoked")
KILLED = Failure(409, "killed")
CANCELED = Failure(409, "canceled")
NOT_FOUND = Failure(404, "not found")


class _Apply:
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
        """Move to invoked with a new attempt epoch and ask the invoker for an attempt."""
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
        self.emit(IngressResponse(st.invocation_id, outcome))
        if st.status is Status.INBOXED and st.inbox_seq is not None and st.target.key is not None:
            self.txn.delete_inbox(st.target.service, st.target.key, st.inbox_seq)
        self.release_lock(st)
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
        if delay is None:
            if policy.on_max_attempts == "kill":
                self.emit(AbortAttempt(st.invocation_id))
                self.complete(st, Failure(code, message))
            else:
                self.emit(AbortAttempt(st.invocation_id))
                self.put(st.with_(status=Status.PAUSED, epoch=st.epoch + 1))
            return
        if delay_override is not None:
            delay = delay_override
        self.emit(AbortAttempt(st.invocation_id))
        self.start(st, delay)

    # ------------------------------------------------------------------ journal

    def append(self, st: InvocationStatus, ty: int, raw: bytes) -> InvocationStatus:
        self.txn.put_journal_entry(st.invocation_id, st.journal_length, JournalEntry(ty, raw))
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
        if st.status is Status.SUSPENDED and _wakes(st.waiting, message):
            return self.start(st.with_(retry_count=0))
        return self.put(st)


def _wakes(waiting: Waiting | None, message: pb.NotificationMessage) -> bool:
    if waiting is None:
        return True
    which = message.WhichOneof("id")
    return waiting.matches(
        message.completion_id if which == "completion_id" else None,
        message.signal_id if which == "signal_id" else None,
        message.signal_name if which == "signal_name" else None,
    )


def _notification(
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
    match outcome:
        case Success(value=v):
            m.value.content = v
        case Failure(code=c, message=msg, metadata=md):
            m.failure.code = c
            m.failure.message = msg
            for mk, mv in md:
                m.failure.metadata.add(key=mk, value=mv)
        case None:
            if value is not None:
                m.value.content = value
            elif invocation_id is not None:
                m.invocation_id = invocation_id
            elif state_keys is not None:
                m.state_keys.keys.extend(state_keys)
            else:
                m.void.SetInParent()
    return m


def _outcome_of(msg: pb.OutputCommandMessage | pb.ProposeRunCompletionMessage) -> Outcome:
    if isinstance(msg, pb.ProposeRunCompletionMessage):
        if msg.WhichOneof("result") == "failure":
            f = msg.failure
            return Failure(f.code, f.message, tuple((x.key, x.value) for x in f.metadata))
        return Success(msg.value)
    if msg.WhichOneof("result") == "failure":
        f = msg.failure
        return Failure(f.code, f.message, tuple((x.key, x.value) for x in f.metadata))
    return Success(msg.value.content)


# ================================================================================================ apply


def apply(txn: Transaction, command: Command, ctx: ApplyContext) -> list[Action]:
    a = _Apply(txn, ctx)
    _dispatch(a, command)
    return a.actions


def _dispatch(a: _Apply, command: Command) -> None:
    match command:
        case Invoke():
            _on_invoke(a, command)
        case InvokerEffect():
            _on_effect(a, command)
        case TimerFired(timer=timer):
            _on_timer(a, timer)
        case InvocationResponse():
            _on_response(a, command)
        case GetResult():
            _on_get_result(a, command)
        case NotifySignal():
            _on_signal(a, command)
        case ManageInvocation():
            _on_manage(a, command)
        case PatchState(service=svc, key=key, state=state, reply_token=token):
            a.txn.delete_all_state(svc, key)
            for k, v in state:
                a.txn.put_state(svc, key, k, v)
            a.reply(token, None)
        case Deliver(seq=seq, inner=inner, remote=remote):
            if remote and not _first_delivery(a, seq):
                return
            a.txn.delete_outbox(a.ctx.partition, seq)
            _dispatch(a, inner)
        case _:
            assert_never(command)


def _first_delivery(a: _Apply, seq: int) -> bool:
    """A sender resends until acknowledged, in its commit order: anything at or below the high-water mark
    of its source partition was applied before. The mark is written in the same commit as the message."""
    name = f"in_hwm_{seq & 0xFFFF}"
    counter = seq >> 16
    if counter <= (a.txn.get_fsm(a.ctx.partition, name) or 0):
        return False
    a.txn.put_fsm(a.ctx.partition, name, counter)
    return True


# ------------------------------------------------------------------------------------------------ invoke


def _on_invoke(a: _Apply, cmd: Invoke) -> None:
    req = cmd.request
    existing = a.txn.get_invocation_status(req.invocation_id)
    if existing is not None:
        _on_duplicate(a, existing, req, cmd.reply_token)
        return
    input_cmd = pb.InputCommandMessage()
    for k, v in req.headers:
        input_cmd.headers.add(key=k, value=v)
    input_cmd.value.content = req.body
    st = InvocationStatus(
        invocation_id=req.invocation_id,
        status=Status.SCHEDULED,
        target=req.target,
        created_at=a.ctx.now,
        modified_at=a.ctx.now,
        idempotency_key=req.idempotency_key,
        invoked_by=req.invoked_by,
        invoked_by_id=req.invoked_by_id,
        sinks=(req.sink,) if req.sink is not None else (),
        execution_time=req.execution_time,
        random_seed=InvocationId.parse(req.invocation_id).v5_random_seed(),
        completion_retention_ms=req.completion_retention_ms,
        command_count=1,
    )
    st = a.append(st, MessageType.INPUT, input_cmd.SerializeToString())
    if req.execution_time is not None and req.execution_time > a.ctx.now:
        a.put(st)
        a.register_timer(Timer(req.execution_time, TimerKind.INVOKE, st.invocation_id, 0, a.ctx.partition))
    else:
        a.enqueue_or_start(st)
    a.reply(cmd.reply_token, Submitted(req.invocation_id, False, req.execution_time))


def _on_duplicate(a: _Apply, st: InvocationStatus, req: InvocationRequest, token: int | None) -> None:
    if st.target.workflow_run:
        if req.sink is not None and req.sink.invocation_id is not None:
            a.send_to_invocation(
                req.sink.invocation_id,
                InvocationResponse(req.sink.invocation_id, req.sink.completion_id, WORKFLOW_ALREADY_INVOKED),
            )
        a.reply(token, WorkflowAlreadyInvoked(st.invocation_id))
        return
    if st.status is Status.COMPLETED:
        assert st.output is not None
        if req.sink is not None and req.sink.invocation_id is not None:
            a.send_to_invocation(
                req.sink.invocation_id,
                InvocationResponse(req.sink.invocation_id, req.sink.completion_id, st.output),
            )
        a.reply(token, AlreadyCompleted(st.invocation_id, st.output, st.expires_at))
        return
    if req.sink is not None:
        a.put(st.with_(sinks=(*st.sinks, req.sink)))
    a.reply(token, Submitted(st.invocation_id, True, st.execution_time))


# ------------------------------------------------------------------------------------------------ effects


def _on_effect(a: _Apply, cmd: InvokerEffect) -> None:
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
            a.notify(st, MessageType.RUN_COMPLETION, _notification(completion_id=cid, outcome=result))
        case Suspend(waiting=waiting):
            _on_suspend(a, st, waiting)
        case AttemptFailed(code=code, message=message, next_retry_delay_ms=delay):
            a.fail_attempt(st, code, message, delay)
        case AttemptEnded():
            outcome = st.output if st.output is not None else Failure(500, "invocation ended without output")
            a.complete(st, outcome)
        case _:
            assert_never(effect)


def _on_suspend(a: _Apply, st: InvocationStatus, waiting: Waiting) -> None:
    if not (waiting.completions or waiting.signals or waiting.named_signals):
        a.fail_attempt(st, 571, "suspension without anything to wait for", None)
        return
    # An awaited notification may already be stored (it raced with the SDK's decision to suspend).
    for entry in a.txn.get_journal(st.invocation_id):
        if MessageType(entry.ty).is_notification:
            msg = pb.NotificationMessage.FromString(entry.raw)
            if _wakes(waiting, msg):
                a.start(st.with_(retry_count=0))
                return
    a.put(st.with_(status=Status.SUSPENDED, waiting=waiting, epoch=st.epoch + 1))


def _on_sdk_command(a: _Apply, st: InvocationStatus, ty: int, raw: bytes) -> None:
    try:
        mtype = MessageType(ty)
        msg = parse_payload(ty, raw)
    except (ValueError, ProtocolError) as e:
        a.fail_attempt(st, 571, f"bad command: {e}", None)
        return
    if not mtype.is_command or mtype is MessageType.INPUT:
        a.fail_attempt(st, 571, f"unexpected message {mtype.name} as a command", None)
        return
    key = st.target.key
    keyed = key is not None
    if (
        mtype in (MessageType.SET_STATE, MessageType.CLEAR_STATE, MessageType.CLEAR_ALL_STATE)
        and not st.target.exclusive
    ):
        a.fail_attempt(st, 571, f"{mtype.name} is not allowed in a shared/unkeyed handler", None)
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
        a.fail_attempt(st, 571, f"{mtype.name} is only allowed for keyed services", None)
        return
    if isinstance(msg, pb.CallCommandMessage | pb.OneWayCallCommandMessage):
        callee_svc = a.ctx.schema.lookup_service(msg.service_name)
        if callee_svc is None or msg.handler_name not in callee_svc.handlers:
            a.fail_attempt(st, 404, f"call target {msg.service_name}/{msg.handler_name} not found", None)
            return
    st = a.append(st, ty, raw).with_(
        command_count=st.command_count + 1, retry_count=0, last_entry_at=a.ctx.now
    )
    svc = st.target.service
    match msg:
        case pb.OutputCommandMessage():
            a.put(st.with_(output=_outcome_of(msg)))
        case pb.SetStateCommandMessage():
            assert key is not None
            a.txn.put_state(svc, key, msg.key, msg.value.content)
            a.put(st)
        case pb.ClearStateCommandMessage():
            assert key is not None
            a.txn.delete_state(svc, key, msg.key)
            a.put(st)
        case pb.ClearAllStateCommandMessage():
            assert key is not None
            a.txn.delete_all_state(svc, key)
            a.put(st)
        case pb.GetLazyStateCommandMessage():
            assert key is not None
            value = a.txn.get_state(svc, key, msg.key)
            a.notify(
                st,
                MessageType.GET_LAZY_STATE_COMPLETION,
                _notification(completion_id=msg.result_completion_id, value=value),
            )
        case pb.GetLazyStateKeysCommandMessage():
            assert key is not None
            keys = [k for k, _ in a.txn.get_all_state(svc, key)]
            a.notify(
                st,
                MessageType.GET_LAZY_STATE_KEYS_COMPLETION,
                _notification(completion_id=msg.result_completion_id, state_keys=keys),
            )
        case pb.SleepCommandMessage():
            a.put(st)
            a.register_timer(
                Timer(
                    msg.wake_up_time,
                    TimerKind.SLEEP,
                    st.invocation_id,
                    msg.result_completion_id,
                    a.ctx.partition,
                )
            )
        case pb.CallCommandMessage() | pb.OneWayCallCommandMessage():
            _on_call(a, st, msg)
        case (
            pb.GetPromiseCommandMessage()
            | pb.PeekPromiseCommandMessage()
            | pb.CompletePromiseCommandMessage()
        ):
            _on_promise(a, st, msg)
        case pb.SendSignalCommandMessage():
            a.put(st)
            which = msg.WhichOneof("result")
            result: Outcome | None = None
            if which == "value":
                result = Success(msg.value.content)
            elif which == "failure":
                result = Failure(msg.failure.code, msg.failure.message)
            target = msg.target_invocation_id
            sid = msg.idx if msg.WhichOneof("signal_id") == "idx" else None
            name = msg.name if msg.WhichOneof("signal_id") == "name" else None
            with contextlib.suppress(ValueError):  # an unparsable target id: nothing to deliver to
                a.send_to_invocation(target, NotifySignal(target, sid, name, result))
        case pb.CompleteAwakeableCommandMessage():
            a.put(st)
            try:
                target_id, idx = parse_awakeable_id(msg.awakeable_id)
            except ValueError:
                return
            res: Outcome = (
                Success(msg.value.content)
                if msg.WhichOneof("result") == "value"
                else Failure(msg.failure.code, msg.failure.message)
            )
            a.send_to_invocation(str(target_id), NotifySignal(str(target_id), idx, None, res))
        case pb.AttachInvocationCommandMessage() | pb.GetInvocationOutputCommandMessage():
            wait = isinstance(msg, pb.AttachInvocationCommandMessage)
            reply_ty = (
                MessageType.ATTACH_INVOCATION_COMPLETION
                if wait
                else MessageType.GET_INVOCATION_OUTPUT_COMPLETION
            )
            whose = _result_target(msg)
            if whose is None:
                a.notify(
                    st, reply_ty, _notification(completion_id=msg.result_completion_id, outcome=NOT_FOUND)
                )
                return
            a.put(st)
            a.send_to_invocation(whose, GetResult(whose, st.invocation_id, msg.result_completion_id, wait))
        case _:
            # Run, GetEagerState(Keys): nothing to do besides recording.
            a.put(st)


def _result_target(
    msg: pb.AttachInvocationCommandMessage | pb.GetInvocationOutputCommandMessage,
) -> str | None:
    """The invocation id an attach / get-output names; None when it cannot name one."""
    try:
        match msg.WhichOneof("target"):
            case "invocation_id":
                return str(InvocationId.parse(msg.invocation_id))
            case "idempotent_request_target":
                t = msg.idempotent_request_target
                key = t.service_key if t.HasField("service_key") else None
                return str(
                    InvocationId.for_idempotent_request(
                        t.service_name, t.handler_name, t.idempotency_key, key
                    )
                )
            case "workflow_target":
                w = msg.workflow_target
                return str(InvocationId.for_workflow_run(w.workflow_name, w.workflow_key))
    except ValueError:
        return None
    return None


def _on_get_result(a: _Apply, cmd: GetResult) -> None:
    ty = (
        MessageType.ATTACH_INVOCATION_COMPLETION if cmd.wait else MessageType.GET_INVOCATION_OUTPUT_COMPLETION
    )
    st = a.txn.get_invocation_status(cmd.invocation_id)
    answer: Outcome | None
    if st is None:
        answer = NOT_FOUND
    elif st.status is Status.COMPLETED:
        answer = st.output
    elif cmd.wait:
        a.put(st.with_(sinks=(*st.sinks, ResponseSink(cmd.caller, cmd.completion_id, int(ty)))))
        return
    else:
        answer = None  # not completed yet: void
    a.send_to_invocation(cmd.caller, InvocationResponse(cmd.caller, cmd.completion_id, answer, int(ty)))


def _on_call(
    a: _Apply, st: InvocationStatus, msg: pb.CallCommandMessage | pb.OneWayCallCommandMessage
) -> None:
    svc = a.ctx.schema.lookup_service(msg.service_name)
    handler = svc.handlers.get(msg.handler_name) if svc is not None else None
    assert svc is not None and handler is not None  # checked before the command was appended
    keyed = svc.ty is not ServiceType.SERVICE
    key = msg.key if keyed else None
    ikey = msg.idempotency_key if msg.HasField("idempotency_key") and msg.idempotency_key else None
    hty = handler.ty.value if handler.ty is not None else None
    target = Target(svc.name, handler.name, key, svc.ty.value, hty)
    callee = a.ctx.new_invocation_id(svc.name, handler.name, key, ikey, target.workflow_run)
    one_way = isinstance(msg, pb.OneWayCallCommandMessage)
    headers = tuple((h.key, h.value) for h in msg.headers)
    request = InvocationRequest(
        invocation_id=callee,
        target=target,
        body=msg.parameter,
        headers=headers,
        idempotency_key=ikey,
        sink=None if one_way else ResponseSink(st.invocation_id, msg.result_completion_id),  # type: ignore[union-attr]
        execution_time=msg.invoke_time if one_way and msg.invoke_time > a.ctx.now else None,  # type: ignore[union-attr]
        invoked_by="service",
        invoked_by_id=st.invocation_id,
        completion_retention_ms=a.ctx.completion_retention(target, ikey is not None),
    )
    a.send_to_invocation(callee, Invoke(request))
    a.notify(
        st,
        MessageType.CALL_INVOCATION_ID_COMPLETION,
        _notification(completion_id=msg.invocation_id_notification_idx, invocation_id=callee),
    )


def _on_promise(
    a: _Apply,
    st: InvocationStatus,
    msg: pb.GetPromiseCommandMessage | pb.PeekPromiseCommandMessage | pb.CompletePromiseCommandMessage,
) -> None:
    key = st.target.key
    if st.target.service_ty != ServiceType.WORKFLOW.value or key is None:
        a.fail_attempt(st, 571, "promises are only available in workflows", None)
        return
    svc = st.target.service
    promise = a.txn.get_promise(svc, key, msg.key) or Promise()
    cid = msg.result_completion_id
    match msg:
        case pb.GetPromiseCommandMessage():
            if promise.completed:
                a.notify(
                    st,
                    MessageType.GET_PROMISE_COMPLETION,
                    _notification(completion_id=cid, outcome=promise.result),
                )
            else:
                a.txn.put_promise(
                    svc,
                    key,
                    msg.key,
                    Promise(False, None, (*promise.listeners, ResponseSink(st.invocation_id, cid))),
                )
                a.put(st)
        case pb.PeekPromiseCommandMessage():
            a.notify(
                st,
                MessageType.PEEK_PROMISE_COMPLETION,
                _notification(completion_id=cid, outcome=promise.result if promise.completed else None),
            )
        case pb.CompletePromiseCommandMessage():
            if promise.completed:
                a.notify(
                    st,
                    MessageType.COMPLETE_PROMISE_COMPLETION,
                    _notification(completion_id=cid, outcome=Failure(409, "promise was already completed")),
                )
                return
            result: Outcome = (
                Success(msg.completion_value.content)
                if msg.WhichOneof("completion") == "completion_value"
                else Failure(msg.completion_failure.code, msg.completion_failure.message)
            )
            a.txn.put_promise(svc, key, msg.key, Promise(True, result, ()))
            st = a.notify(st, MessageType.COMPLETE_PROMISE_COMPLETION, _notification(completion_id=cid))
            for listener in promise.listeners:
                assert listener.invocation_id is not None
                a.send_to_invocation(
                    listener.invocation_id,
                    InvocationResponse(
                        listener.invocation_id,
                        listener.completion_id,
                        result,
                        MessageType.GET_PROMISE_COMPLETION,
                    ),
                )


# ------------------------------------------------------------------------------------------------ timers


def _on_timer(a: _Apply, timer: Timer) -> None:
    if not a.txn.has_timer(timer):
        return  # already fired and applied (or removed)
    a.txn.delete_timer(timer)
    st = a.txn.get_invocation_status(timer.invocation_id)
    if st is None:
        return
    match timer.kind:
        case TimerKind.SLEEP:
            if st.alive:
                a.notify(st, MessageType.SLEEP_COMPLETION, _notification(completion_id=timer.completion_id))
        case TimerKind.INVOKE:
            if st.status is Status.SCHEDULED:
                a.enqueue_or_start(st)
        case TimerKind.JOURNAL_CLEANUP:
            if st.status is Status.COMPLETED:
                a.txn.delete_journal(st.invocation_id)
        case TimerKind.CLEANUP:
            if st.status is Status.COMPLETED:
                a.txn.delete_invocation_status(st.invocation_id)
                a.txn.delete_journal(st.invocation_id)
                if st.target.workflow_run and st.target.key is not None:
                    a.txn.delete_all_state(st.target.service, st.target.key)
                    a.txn.delete_promises(st.target.service, st.target.key)
        case _:
            assert_never(timer.kind)


# ------------------------------------------------------------------------------------------------ responses


def _on_response(a: _Apply, cmd: InvocationResponse) -> None:
    st = a.txn.get_invocation_status(cmd.invocation_id)
    if st is None or not st.alive:
        return
    a.notify(st, cmd.notification_ty, _notification(completion_id=cmd.completion_id, outcome=cmd.outcome))


def _on_signal(a: _Apply, cmd: NotifySignal) -> None:
    st = a.txn.get_invocation_status(cmd.invocation_id)
    if st is None:
        a.reply(cmd.reply_token, None)
        return
    if cmd.signal_id == CANCEL_SIGNAL and st.status is not Status.COMPLETED:
        _cancel(a, st)
    elif st.alive:
        a.notify(
            st,
            MessageType.SIGNAL,
            _notification(signal_id=cmd.signal_id, signal_name=cmd.signal_name, outcome=cmd.result),
        )
    a.reply(cmd.reply_token, None)


def _pending_calls(a: _Apply, st: InvocationStatus) -> list[str]:
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


def _kill(a: _Apply, st: InvocationStatus) -> None:
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
        a.complete(current, KILLED)


def _cancel(a: _Apply, st: InvocationStatus) -> bool:
    """Deliver signal 1; an invocation that has not started yet completes at once (True). The SDK
    propagates the cancellation to the calls it is waiting for."""
    if st.status in (Status.INBOXED, Status.SCHEDULED):
        a.complete(st, CANCELED)
        return True
    st = a.notify(st, MessageType.SIGNAL, _notification(signal_id=CANCEL_SIGNAL))
    if st.status is Status.PAUSED:
        a.start(st.with_(retry_count=0))
    return False


def _on_manage(a: _Apply, cmd: ManageInvocation) -> None:
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
            done = _cancel(a, st)
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
                a.start(st.with_(retry_count=0))
                a.reply(token, CommandOutcome.DONE)
            elif st.status is Status.INVOKED:
                a.reply(token, CommandOutcome.DONE)
            else:
                a.reply(token, Conflict(f"The invocation '{st.invocation_id}' cannot be resumed."))
        case _:
            assert_never(cmd.command)
