"""Table-driven tests of the pure partition state machine on the in-memory store."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from pyrestate.protocol import service_protocol_pb2 as pb
from pyrestate.protocol.framing import MessageType
from pyrestate.protocol.ids import InvocationId
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
from pyrestate.server.invoker.retry import RetryPolicy
from pyrestate.server.partition.context import ApplyContext, Policies
from pyrestate.server.partition.model import (
    AbortAttempt,
    AlreadyCompleted,
    AttemptEnded,
    AttemptFailed,
    Command,
    ForwardNotification,
    IngressResponse,
    InvocationRequest,
    Invoke,
    InvokerEffect,
    ManageInvocation,
    RegisterTimer,
    Reply,
    SdkCommand,
    StartAttempt,
    Submitted,
    Suspend,
    TimerFired,
    WorkflowAlreadyInvoked,
)
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


def _ctx(now: int = NOW, retry: RetryPolicy | None = None) -> ApplyContext:
    return ApplyContext(0, 1, now, _Schema(), Policies(retry=retry or RetryPolicy(max_attempts=2)))


ADD = Target("Counter", "add", "k", "VirtualObject", "Exclusive")
RUN = Target("Wf", "run", "w", "Workflow", "Workflow")
A = str(InvocationId.for_idempotent_request("Counter", "add", "a", "k"))
B = str(InvocationId.for_idempotent_request("Counter", "add", "b", "k"))
W = str(InvocationId.for_workflow_run("Wf", "w"))


def invoke(iid: str, target: Target = ADD, token: int = 1, retention: int = 1000) -> Invoke:
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
    expect: list[type]  # action types, in order
    check: dict[str, object] = field(default_factory=dict)  # invocation id -> expected status


def _run(storage: MemoryStorage, cmd: Command, now: int = NOW) -> list[object]:
    txn = storage.begin()
    actions = apply(txn, cmd, _ctx(now))
    storage.commit_now(txn)
    return list(actions)


CASES = [
    Case(
        "new exclusive invocation starts and takes the lock",
        [],
        invoke(A),
        [StartAttempt, Reply],
        {A: Status.INVOKED},
    ),
    Case(
        "second exclusive on a locked key is inboxed",
        [invoke(A)],
        invoke(B, token=2),
        [Reply],
        {B: Status.INBOXED},
    ),
    Case(
        "end completes, answers waiters and starts the inbox head",
        [invoke(A), invoke(B, token=2), InvokerEffect(A, 1, output(b"5"))],
        InvokerEffect(A, 1, AttemptEnded()),
        [IngressResponse, StartAttempt, RegisterTimer],
        {A: Status.COMPLETED, B: Status.INVOKED},
    ),
    Case("stale epoch is dropped", [invoke(A)], InvokerEffect(A, 7, AttemptEnded()), [], {A: Status.INVOKED}),
    Case(
        "sleep registers a durable timer",
        [invoke(A)],
        InvokerEffect(A, 1, sleep_cmd(NOW + 50)),
        [RegisterTimer],
    ),
    Case(
        "failure is retried with back-off",
        [invoke(A)],
        InvokerEffect(A, 1, AttemptFailed(500, "boom")),
        [AbortAttempt, StartAttempt],
        {A: Status.INVOKED},
    ),
    Case(
        "exhausted retries pause",
        [invoke(A), InvokerEffect(A, 1, AttemptFailed(500, "boom"))],
        InvokerEffect(A, 2, AttemptFailed(500, "boom")),
        [AbortAttempt],
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
        "cancel of an inboxed invocation completes it",
        [invoke(A), invoke(B, token=2)],
        ManageInvocation(B, InvocationCommand.CANCEL, 3),
        [IngressResponse, RegisterTimer, Reply],
        {B: Status.COMPLETED, A: Status.INVOKED},
    ),
    Case(
        "kill aborts and completes",
        [invoke(A)],
        ManageInvocation(A, InvocationCommand.KILL, 3),
        [AbortAttempt, IngressResponse, RegisterTimer, Reply],
        {A: Status.COMPLETED},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_command_to_actions(case: Case) -> None:
    storage = MemoryStorage()
    for cmd in case.setup:
        _run(storage, cmd)
    actions = _run(storage, case.command)
    assert [type(a) for a in actions] == case.expect
    r = storage.reader()
    for iid, status in case.check.items():
        st = r.get_invocation_status(iid)
        assert st is not None and st.status is status, (iid, st)


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


def test_retry_policy_schedule() -> None:
    p = RetryPolicy()
    assert [p.delay_ms(n) for n in range(1, 10)] == [500, 1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000]
    assert p.delay_ms(70) is None and p.delay_ms(69) == 60000
