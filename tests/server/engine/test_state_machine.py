"""Table-driven tests of the pure partition state machine on the in-memory store."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from pyrestate.protocol import service_protocol_pb2 as pb
from pyrestate.protocol.framing import MessageType
from pyrestate.protocol.ids import InvocationId, awakeable_id, partition_key_for_key
from pyrestate.server.core_api import (
    CommandOutcome,
    Failure,
    HandlerSchema,
    HandlerType,
    InvocationCommand,
    ServiceSchema,
    ServiceType,
    Success,
)
from pyrestate.server.partition.context import DAY_MS, ApplyContext, Policies, partition_of, partition_of_key
from pyrestate.server.partition.model import (
    AbortAttempt,
    AlreadyCompleted,
    AttemptEnded,
    AttemptFailed,
    Command,
    Deliver,
    ForwardNotification,
    IngressResponse,
    InvocationRequest,
    Invoke,
    InvokerEffect,
    ManageInvocation,
    NotifySignal,
    RegisterTimer,
    Reply,
    SdkCommand,
    SendToPartition,
    StartAttempt,
    Submitted,
    Suspend,
    TimerFired,
    WorkflowAlreadyInvoked,
    command_from_json,
)
from pyrestate.server.partition.retry import RetryPolicy
from pyrestate.server.partition.state_machine import apply
from pyrestate.server.storage.memory import MemoryStorage
from pyrestate.server.storage.records import Status, Target, Timer, TimerKind, Waiting

NOW = 1_000_000
COUNTER = ServiceSchema(
    "Counter",
    ServiceType.VIRTUAL_OBJECT,
    {"add": HandlerSchema("add", HandlerType.EXCLUSIVE), "get": HandlerSchema("get", HandlerType.SHARED)},
    "dp_1",
    1,
)
WF = ServiceSchema("Wf", ServiceType.WORKFLOW, {"run": HandlerSchema("run", HandlerType.WORKFLOW)}, "dp_1", 1)


class _Schema:
    def lookup_service(self, name: str) -> ServiceSchema | None:
        return {"Counter": COUNTER, "Wf": WF}.get(name)


RETRY = RetryPolicy(max_attempts=2)


def _ctx(now: int = NOW, retry: RetryPolicy | None = None) -> ApplyContext:
    return ApplyContext(0, 1, now, _Schema(), Policies(retry=retry or RETRY))


ADD = Target("Counter", "add", "k", ServiceType.VIRTUAL_OBJECT, HandlerType.EXCLUSIVE)
RUN = Target("Wf", "run", "w", ServiceType.WORKFLOW, HandlerType.WORKFLOW)
A = str(InvocationId.for_idempotent_request("Counter", "add", "a", "k"))
B = str(InvocationId.for_idempotent_request("Counter", "add", "b", "k"))
W = str(InvocationId.for_workflow_run("Wf", "w"))


RETENTION = 1000  # completion retention of the invocations `invoke` submits (ms)


def invoke(iid: str, target: Target = ADD, token: int = 1, retention: int = RETENTION) -> Invoke:
    return Invoke(
        InvocationRequest(iid, target, b"1", idempotency_key="a", completion_retention_ms=retention), token
    )


def output(value: bytes) -> SdkCommand:
    m = pb.OutputCommandMessage()
    m.value.content = value
    return SdkCommand(MessageType.OUTPUT, m.SerializeToString())


def sleep_cmd(wake: int, cid: int = 1) -> SdkCommand:
    return SdkCommand(
        MessageType.SLEEP,
        pb.SleepCommandMessage(wake_up_time=wake, result_completion_id=cid).SerializeToString(),
    )


@dataclass
class Case:
    name: str
    setup: list[Command]
    command: Command
    expect: list[object]  # the actions, in order
    # invocation id -> its status afterwards (None: no status stored)
    check: dict[str, Status | None] = field(default_factory=dict)


def _run(storage: MemoryStorage, cmd: Command, now: int = NOW) -> list[object]:
    txn = storage.begin()
    actions = apply(txn, cmd, _ctx(now))
    storage.commit_now(txn)
    return list(actions)


def cleanup(iid: str) -> RegisterTimer:
    """The timer that drops a completed invocation of `invoke` once its retention is over."""
    return RegisterTimer(Timer(NOW + RETENTION, TimerKind.CLEANUP, iid))


CASES = [
    Case(
        "new exclusive invocation starts and takes the lock",
        [],
        invoke(A),
        [StartAttempt(A, 1), Reply(1, Submitted(A, False))],
        {A: Status.INVOKED},
    ),
    Case(
        "second exclusive on a locked key is inboxed",
        [invoke(A)],
        invoke(B, token=2),
        [Reply(2, Submitted(B, False))],
        {B: Status.INBOXED},
    ),
    Case(
        "end completes, answers waiters and starts the inbox head",
        [invoke(A), invoke(B, token=2), InvokerEffect(A, 1, output(b"5"))],
        InvokerEffect(A, 1, AttemptEnded()),
        [IngressResponse(A, Success(b"5")), StartAttempt(B, 1), cleanup(A)],
        {A: Status.COMPLETED, B: Status.INVOKED},
    ),
    Case("stale epoch is dropped", [invoke(A)], InvokerEffect(A, 7, AttemptEnded()), [], {A: Status.INVOKED}),
    Case(
        "sleep registers a durable timer",
        [invoke(A)],
        InvokerEffect(A, 1, sleep_cmd(NOW + 50)),
        [RegisterTimer(Timer(NOW + 50, TimerKind.SLEEP, A, 1))],
        {A: Status.INVOKED},
    ),
    Case(
        "failure is retried with back-off",
        [invoke(A)],
        InvokerEffect(A, 1, AttemptFailed(500, "boom")),
        [AbortAttempt(A), StartAttempt(A, 2, RETRY.delay_ms(1))],
        {A: Status.INVOKED},
    ),
    Case(
        "a terminal attempt failure (a limit exceeded) completes at once, whatever the retry policy",
        [invoke(A)],
        InvokerEffect(A, 1, AttemptFailed(500, "message size limit exceeded", terminal=True)),
        [AbortAttempt(A), IngressResponse(A, Failure(500, "message size limit exceeded")), cleanup(A)],
        {A: Status.COMPLETED},
    ),
    Case(
        "exhausted retries pause",
        [invoke(A), InvokerEffect(A, 1, AttemptFailed(500, "boom"))],
        InvokerEffect(A, 2, AttemptFailed(500, "boom")),
        [AbortAttempt(A)],
        {A: Status.PAUSED},
    ),
    Case(
        "suspension with nothing stored suspends",
        [invoke(A), InvokerEffect(A, 1, sleep_cmd(NOW + 50))],
        InvokerEffect(A, 1, Suspend(Waiting((1,), (1,)))),
        [],
        {A: Status.SUSPENDED},
    ),
    Case(
        "cancel of an inboxed invocation answers its waiters and drops it",
        [invoke(A), invoke(B, token=2)],
        ManageInvocation(B, InvocationCommand.CANCEL, 3),
        [IngressResponse(B, Failure(409, "canceled")), Reply(3, CommandOutcome.DONE)],
        {A: Status.INVOKED, B: None},
    ),
    Case(
        "kill aborts and completes",
        [invoke(A)],
        ManageInvocation(A, InvocationCommand.KILL, 3),
        [
            AbortAttempt(A),
            IngressResponse(A, Failure(409, "killed")),
            cleanup(A),
            Reply(3, CommandOutcome.DONE),
        ],
        {A: Status.COMPLETED},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_command_to_actions(case: Case) -> None:
    storage = MemoryStorage()
    for cmd in case.setup:
        _run(storage, cmd)
    actions = _run(storage, case.command)
    assert actions == case.expect
    r = storage.reader()
    for iid, status in case.check.items():
        st = r.get_invocation_status(iid)
        assert (st.status if st is not None else None) is status, (iid, st)


def test_timer_fire_resumes_suspended_invocation_once() -> None:
    storage = MemoryStorage()
    _run(storage, invoke(A))
    _run(storage, InvokerEffect(A, 1, sleep_cmd(NOW + 50)))
    _run(storage, InvokerEffect(A, 1, Suspend(Waiting((1,), (1,)))))
    timer = Timer(NOW + 50, TimerKind.SLEEP, A, 1, 0)
    actions = _run(storage, TimerFired(timer), NOW + 50)
    assert actions == [StartAttempt(A, 3, 0)]
    journal = storage.reader().get_journal(A)
    assert [e.ty for e in journal] == [MessageType.INPUT, MessageType.SLEEP, MessageType.SLEEP_COMPLETION]
    assert _run(storage, TimerFired(timer), NOW + 60) == []  # the same timer again: already applied


def test_notification_is_forwarded_to_a_running_attempt() -> None:
    storage = MemoryStorage()
    _run(storage, invoke(A))
    _run(storage, InvokerEffect(A, 1, sleep_cmd(NOW + 50)))
    actions = _run(storage, TimerFired(Timer(NOW + 50, TimerKind.SLEEP, A, 1, 0)), NOW + 50)
    assert len(actions) == 1 and isinstance(actions[0], ForwardNotification)
    assert actions[0].index == 2 and actions[0].ty == MessageType.SLEEP_COMPLETION


def test_suspension_resumes_immediately_when_awaited_completion_is_stored() -> None:
    storage = MemoryStorage()
    _run(storage, invoke(A))
    _run(storage, InvokerEffect(A, 1, sleep_cmd(NOW + 50)))
    _run(storage, TimerFired(Timer(NOW + 50, TimerKind.SLEEP, A, 1, 0)), NOW + 50)
    actions = _run(storage, InvokerEffect(A, 1, Suspend(Waiting((1,), (1,)))))
    assert actions == [StartAttempt(A, 2, 0)]


def test_idempotent_duplicate_and_workflow_rerun() -> None:
    storage = MemoryStorage()
    _run(storage, invoke(A))
    assert _run(storage, invoke(A, token=5)) == [Reply(5, Submitted(A, True, None))]
    _run(storage, InvokerEffect(A, 1, output(b"5")))
    _run(storage, InvokerEffect(A, 1, AttemptEnded()))
    [reply] = _run(storage, invoke(A, token=6))
    assert isinstance(reply, Reply) and isinstance(reply.value, AlreadyCompleted)
    assert reply.value.outcome == Success(b"5") and reply.value.expires_at == NOW + 1000
    _run(storage, invoke(W, RUN, token=7))
    assert _run(storage, invoke(W, RUN, token=8)) == [Reply(8, WorkflowAlreadyInvoked(W))]


def test_admin_commands_on_completed_invocations() -> None:
    storage = MemoryStorage()
    _run(storage, invoke(A))
    _run(storage, ManageInvocation(A, InvocationCommand.KILL, 1))
    st = storage.reader().get_invocation_status(A)
    assert st is not None and st.output == Failure(409, "killed")
    [reply] = _run(storage, ManageInvocation(A, InvocationCommand.CANCEL, 2))
    assert type(reply.value).__name__ == "Conflict"  # type: ignore[union-attr]
    assert _run(storage, ManageInvocation(A, InvocationCommand.PURGE, 3)) == [Reply(3, CommandOutcome.DONE)]
    assert storage.reader().get_invocation_status(A) is None


@pytest.mark.parametrize("delayed", [False, True], ids=["inboxed", "scheduled"])
def test_cancel_before_start_keeps_nothing(delayed: bool) -> None:
    """As Restate: the canceled invocation answers 409 to whoever waits, then no status, inbox entry or
    timer of it is left, so the same idempotency key starts a new invocation."""
    storage = MemoryStorage()
    _run(storage, invoke(A))
    at = NOW + 500 if delayed else None
    req = InvocationRequest(
        B, ADD, b"1", idempotency_key="b", completion_retention_ms=1000, execution_time=at
    )
    _run(storage, Invoke(req, 2))
    st = storage.reader().get_invocation_status(B)
    assert st is not None and st.status is (Status.SCHEDULED if delayed else Status.INBOXED)
    actions = _run(storage, ManageInvocation(B, InvocationCommand.CANCEL, 3))
    assert actions == [IngressResponse(B, Failure(409, "canceled")), Reply(3, CommandOutcome.DONE)]
    r = storage.reader()
    assert r.get_invocation_status(B) is None
    assert r.peek_inbox("Counter", "k") is None
    assert not r.has_timer(Timer(NOW + 500, TimerKind.INVOKE, B, 0, 0))
    again = _run(storage, Invoke(req, 4))  # the key is free again: a new submission, not a duplicate
    assert again[-1] == Reply(4, Submitted(B, False, req.execution_time))


def test_retry_policy_schedule() -> None:
    p = RetryPolicy()
    assert [p.delay_ms(n) for n in range(1, 10)] == [500, 1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000]
    assert p.delay_ms(70) is None and p.delay_ms(69) == 60000


# ------------------------------------------------------------------------------------------------ call trees


def _deliver_all(storage: MemoryStorage, cmd: Command, now: int = NOW) -> list[object]:
    """Apply a command and, like the processor, every outbox message it (transitively) produced."""
    queue: list[Command] = [cmd]
    seen: list[object] = []
    while queue:
        actions = _run(storage, queue.pop(0), now)
        seen.extend(actions)
        queue.extend(Deliver(x.seq, x.command) for x in actions if isinstance(x, SendToPartition))
    return seen


def call_cmd(key: str, result_cid: int, id_cid: int) -> SdkCommand:
    m = pb.CallCommandMessage(
        service_name="Counter",
        handler_name="add",
        key=key,
        parameter=b"1",
        invocation_id_notification_idx=id_cid,
        result_completion_id=result_cid,
    )
    return SdkCommand(MessageType.CALL, m.SerializeToString())


def _callee(storage: MemoryStorage, caller: str) -> str:
    for e in storage.reader().get_journal(caller):
        if e.ty == MessageType.CALL_INVOCATION_ID_COMPLETION:
            return pb.NotificationMessage.FromString(e.raw).invocation_id
    raise AssertionError("no call in the journal")


def test_kill_takes_down_the_call_tree_and_unlocks_keys() -> None:
    storage = MemoryStorage()
    _deliver_all(storage, invoke(A))
    _deliver_all(storage, InvokerEffect(A, 1, call_cmd("k2", 2, 1)))
    child = _callee(storage, A)
    r = storage.reader()
    child_st = r.get_invocation_status(child)
    assert child_st is not None and child_st.status is Status.INVOKED
    assert child_st.completion_retention_ms == DAY_MS  # kept for the journal retention (attach/output)
    # The child calls its own key: the grandchild waits in the inbox behind it (a deadlock on purpose).
    _deliver_all(storage, InvokerEffect(child, child_st.epoch, call_cmd("k2", 2, 1)))
    grandchild = _callee(storage, child)
    assert storage.reader().get_invocation_status(grandchild).status is Status.INBOXED  # type: ignore[union-attr]

    actions = _deliver_all(storage, ManageInvocation(A, InvocationCommand.KILL, 9))
    assert Reply(9, CommandOutcome.DONE) in actions
    assert not any(isinstance(x, StartAttempt) for x in actions)  # the inboxed grandchild never starts
    r = storage.reader()
    for iid in (A, child, grandchild):
        st = r.get_invocation_status(iid)
        assert st is not None and st.status is Status.COMPLETED and st.output == Failure(409, "killed"), iid
    assert r.get_lock("Counter", "k2") is None and r.get_lock("Counter", "k") is None
    assert r.list_inbox("Counter", "k2") == []


def test_kill_reaches_children_on_other_partitions_through_the_outbox() -> None:
    """Four partitions, one store (as in one server process): the parent's kill reaches a child on another
    partition only as an outbox row, which is delivered there and kills the child."""
    parts = 4
    storage = MemoryStorage()

    def run(partition: int, cmd: Command) -> list[object]:
        txn = storage.begin()
        actions = apply(txn, cmd, ApplyContext(partition, parts, NOW, _Schema(), Policies()))
        storage.commit_now(txn)
        return list(actions)

    def deliver(actions: list[object]) -> list[object]:
        out: list[object] = []
        for x in actions:
            if isinstance(x, SendToPartition):
                [(seq, raw)] = [r for r in storage.reader().list_outbox(x.partition) if r[0] == x.seq]
                assert command_from_json(raw) == x.command  # what is stored is what was sent
                out += run(x.partition, Deliver(seq, command_from_json(raw)))
        return out

    home = partition_of(A, parts)
    keys = (f"k{i}" for i in range(100))
    child_key = next(k for k in keys if partition_of_key(partition_key_for_key(k), parts) != home)
    deliver(run(home, invoke(A)))
    deliver(run(home, InvokerEffect(A, 1, call_cmd(child_key, 2, 1))))
    child = _callee(storage, A)
    there = partition_of(child, parts)
    assert there != home
    assert storage.reader().get_invocation_status(child).status is Status.INVOKED  # type: ignore[union-attr]

    actions = run(home, ManageInvocation(A, InvocationCommand.KILL, 9))
    kills = [x for x in actions if isinstance(x, SendToPartition)]
    assert [(k.partition, k.command) for k in kills] == [
        (there, ManageInvocation(child, InvocationCommand.KILL))
    ]
    assert storage.reader().get_invocation_status(child).status is Status.INVOKED  # type: ignore[union-attr]
    deliver(actions)
    st = storage.reader().get_invocation_status(child)
    assert st is not None and st.status is Status.COMPLETED and st.output == Failure(409, "killed")
    assert storage.reader().list_outbox(there) == []  # delivered rows are gone


def test_cancel_of_a_paused_invocation_resumes_it_with_the_signal() -> None:
    storage = MemoryStorage()
    _run(storage, invoke(A))
    _run(storage, ManageInvocation(A, InvocationCommand.PAUSE, 2))
    actions = _run(storage, ManageInvocation(A, InvocationCommand.CANCEL, 3))
    assert [type(x) for x in actions] == [StartAttempt, Reply]
    assert actions[-1] == Reply(3, CommandOutcome.ACCEPTED)
    journal = storage.reader().get_journal(A)
    assert journal[-1].ty == MessageType.SIGNAL
    assert pb.NotificationMessage.FromString(journal[-1].raw).signal_id == 1


def test_completion_retention_follows_compute_retention() -> None:
    ctx = _ctx()
    assert ctx.completion_retention(ADD, True) == DAY_MS
    assert ctx.completion_retention(ADD, False) == DAY_MS  # journal retention
    no_journal = ApplyContext(0, 1, NOW, _Schema(), Policies(journal_retention_ms=0))
    assert no_journal.completion_retention(ADD, False) == 0
    assert no_journal.completion_retention(RUN, False) == DAY_MS


def _notifications(storage: MemoryStorage, iid: str, ty: MessageType) -> list[pb.NotificationMessage]:
    return [pb.NotificationMessage.FromString(e.raw) for e in storage.reader().get_journal(iid) if e.ty == ty]


def test_attach_and_get_output_from_a_handler() -> None:
    storage = MemoryStorage()
    _deliver_all(storage, invoke(A))
    _deliver_all(storage, invoke(W, RUN, token=2))
    wf = pb.WorkflowTarget(workflow_name="Wf", workflow_key="w")
    attach = pb.AttachInvocationCommandMessage(workflow_target=wf, result_completion_id=1)
    peek = pb.GetInvocationOutputCommandMessage(invocation_id=W, result_completion_id=2)
    _deliver_all(
        storage, InvokerEffect(A, 1, SdkCommand(MessageType.ATTACH_INVOCATION, attach.SerializeToString()))
    )
    _deliver_all(
        storage, InvokerEffect(A, 1, SdkCommand(MessageType.GET_INVOCATION_OUTPUT, peek.SerializeToString()))
    )
    [not_ready] = _notifications(storage, A, MessageType.GET_INVOCATION_OUTPUT_COMPLETION)
    assert not_ready.completion_id == 2 and not_ready.WhichOneof("result") == "void"
    assert _notifications(storage, A, MessageType.ATTACH_INVOCATION_COMPLETION) == []  # still waiting

    _deliver_all(storage, InvokerEffect(W, 1, output(b'"done"')))
    _deliver_all(storage, InvokerEffect(W, 1, AttemptEnded()))
    [attached] = _notifications(storage, A, MessageType.ATTACH_INVOCATION_COMPLETION)
    assert attached.completion_id == 1 and attached.value.content == b'"done"'

    peek_again = pb.GetInvocationOutputCommandMessage(invocation_id=W, result_completion_id=3)
    unknown = pb.AttachInvocationCommandMessage(
        idempotent_request_target=pb.IdempotentRequestTarget(
            service_name="Counter", service_key="k", handler_name="add", idempotency_key="nope"
        ),
        result_completion_id=4,
    )
    for ty, m in ((MessageType.GET_INVOCATION_OUTPUT, peek_again), (MessageType.ATTACH_INVOCATION, unknown)):
        _deliver_all(storage, InvokerEffect(A, 1, SdkCommand(ty, m.SerializeToString())))
    outputs = _notifications(storage, A, MessageType.GET_INVOCATION_OUTPUT_COMPLETION)
    assert outputs[-1].completion_id == 3 and outputs[-1].value.content == b'"done"'
    missing = _notifications(storage, A, MessageType.ATTACH_INVOCATION_COMPLETION)[-1]
    assert missing.completion_id == 4
    assert (missing.failure.code, missing.failure.message) == (404, "not found")


def test_named_signal_kept_until_awaited() -> None:
    """A signal that arrives before the handler awaits it is stored; suspending on it resumes at once."""
    storage = MemoryStorage()
    _run(storage, invoke(A))
    _run(storage, InvokerEffect(A, 1, sleep_cmd(NOW + 50)))
    _run(storage, InvokerEffect(A, 1, Suspend(Waiting((1,)))))
    assert _run(storage, NotifySignal(A, None, "go", Success(b"1"))) == []  # not awaited: kept, no resume
    assert _run(storage, NotifySignal(A, 17, None, Success(b"2"))) == []
    [sig] = _notifications(storage, A, MessageType.SIGNAL)[:1]
    assert sig.signal_name == "go"
    assert _run(storage, ManageInvocation(A, InvocationCommand.RESUME, 4)) == [
        StartAttempt(A, 3, 0),
        Reply(4, CommandOutcome.DONE),
    ]
    actions = _run(storage, InvokerEffect(A, 3, Suspend(Waiting((), (), ("go",)))))
    assert actions == [StartAttempt(A, 4, 0)]


def test_journal_expires_before_the_retained_completion() -> None:
    storage = MemoryStorage()
    ctx = ApplyContext(0, 1, NOW, _Schema(), Policies(journal_retention_ms=100))

    def run(cmd: Command, now: int = NOW) -> list[object]:
        txn = storage.begin()
        actions = apply(txn, cmd, ApplyContext(0, 1, now, ctx.schema, ctx.policies))
        storage.commit_now(txn)
        return list(actions)

    run(invoke(A, retention=1000))
    run(InvokerEffect(A, 1, output(b"5")))
    timers = [x.timer for x in run(InvokerEffect(A, 1, AttemptEnded())) if isinstance(x, RegisterTimer)]
    assert [(t.kind, t.fire_at) for t in timers] == [
        (TimerKind.CLEANUP, NOW + 1000),
        (TimerKind.JOURNAL_CLEANUP, NOW + 100),
    ]
    run(TimerFired(timers[1]), NOW + 100)
    r = storage.reader()
    assert r.get_journal(A) == [] and r.get_invocation_status(A) is not None  # output still answerable
    run(TimerFired(timers[0]), NOW + 1000)
    assert storage.reader().get_invocation_status(A) is None


def test_kill_reaches_a_child_whose_creation_is_still_in_the_outbox() -> None:
    storage = MemoryStorage()
    _run(storage, invoke(A))
    pending = [
        x for x in _run(storage, InvokerEffect(A, 1, call_cmd("k2", 2, 1))) if isinstance(x, SendToPartition)
    ]
    child = _callee(storage, A)
    assert storage.reader().get_invocation_status(child) is None  # the Invoke has not been delivered yet
    actions = _run(storage, ManageInvocation(A, InvocationCommand.KILL, 9))
    pending += [x for x in actions if isinstance(x, SendToPartition)]
    for msg in pending:  # delivered in outbox order: the creation, then the kill
        _deliver_all(storage, Deliver(msg.seq, msg.command))
    st = storage.reader().get_invocation_status(child)
    assert st is not None and st.output == Failure(409, "killed")
    assert storage.reader().get_lock("Counter", "k2") is None


# ------------------------------------------------------------------------------------------------ failures

MD = (("reason", "out of stock"), ("sku", "42"))


def _failure(code: int = 422) -> pb.Failure:
    f = pb.Failure(code=code, message="rejected")
    for k, v in MD:
        f.metadata.add(key=k, value=v)
    return f


def test_complete_promise_keeps_the_failure_metadata() -> None:
    storage = MemoryStorage()
    _deliver_all(storage, invoke(W, RUN))
    get = pb.GetPromiseCommandMessage(key="p", result_completion_id=1)
    _deliver_all(storage, InvokerEffect(W, 1, SdkCommand(MessageType.GET_PROMISE, get.SerializeToString())))
    done = pb.CompletePromiseCommandMessage(key="p", result_completion_id=2, completion_failure=_failure())
    _deliver_all(
        storage, InvokerEffect(W, 1, SdkCommand(MessageType.COMPLETE_PROMISE, done.SerializeToString()))
    )
    promise = storage.reader().get_promise("Wf", "w", "p")
    assert promise is not None and promise.result == Failure(422, "rejected", MD)
    [got] = _notifications(storage, W, MessageType.GET_PROMISE_COMPLETION)
    assert got.completion_id == 1 and got.failure == _failure()


def test_complete_awakeable_and_send_signal_keep_the_failure_metadata() -> None:
    storage = MemoryStorage()
    _deliver_all(storage, invoke(A))
    awk = pb.CompleteAwakeableCommandMessage(awakeable_id=awakeable_id(InvocationId.parse(A), 17))
    awk.failure.CopyFrom(_failure(500))
    sig = pb.SendSignalCommandMessage(target_invocation_id=A, name="go", failure=_failure(409))
    for ty, m in ((MessageType.COMPLETE_AWAKEABLE, awk), (MessageType.SEND_SIGNAL, sig)):
        _deliver_all(storage, InvokerEffect(A, 1, SdkCommand(ty, m.SerializeToString())))
    by_awakeable, by_name = _notifications(storage, A, MessageType.SIGNAL)
    assert by_awakeable.signal_id == 17 and by_awakeable.failure == _failure(500)
    assert by_name.signal_name == "go" and by_name.failure == _failure(409)


def test_an_empty_value_completes_an_awakeable_with_a_value() -> None:
    storage = MemoryStorage()
    _deliver_all(storage, invoke(A))
    awk = pb.CompleteAwakeableCommandMessage(awakeable_id=awakeable_id(InvocationId.parse(A), 17))
    awk.value.SetInParent()
    _deliver_all(
        storage, InvokerEffect(A, 1, SdkCommand(MessageType.COMPLETE_AWAKEABLE, awk.SerializeToString()))
    )
    [n] = _notifications(storage, A, MessageType.SIGNAL)
    assert n.WhichOneof("result") == "value" and n.value.content == b""
