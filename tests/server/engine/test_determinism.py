"""`apply` is a function: the same commands applied to two fresh stores give the same stores and the same
actions. Random sequences of every kind of command (ingress invocations, SDK commands including calls
without an idempotency key, admin commands, outbox deliveries, timers) are drawn step by step; later
commands address invocations, epochs, outbox rows and timers that earlier steps produced."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyrestate.protocol import service_protocol_pb2 as pb
from pyrestate.protocol.framing import MessageType
from pyrestate.protocol.ids import InvocationId, awakeable_id, partition_key_for_key
from pyrestate.protocol.outcome import failure_to_pb
from pyrestate.server.core_api import (
    Failure,
    HandlerSchema,
    HandlerType,
    InvocationCommand,
    Outcome,
    ServiceSchema,
    ServiceType,
    Success,
)
from pyrestate.server.partition.context import ApplyContext, Policies, partition_of, partition_of_key
from pyrestate.server.partition.model import (
    Action,
    AttemptEnded,
    AttemptFailed,
    Command,
    Deliver,
    Effect,
    GetResult,
    InvocationRequest,
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
    Suspend,
    TimerFired,
)
from pyrestate.server.partition.retry import RetryPolicy
from pyrestate.server.partition.state_machine import apply
from pyrestate.server.storage.memory import MemoryStorage
from pyrestate.server.storage.records import Target, Timer, Waiting

PARTS = 3
NOW = 1_700_000_000_000
POLICIES = Policies(retry=RetryPolicy(max_attempts=3), journal_retention_ms=5_000)

SERVICES = {
    "Greeter": ServiceSchema(
        "Greeter", ServiceType.SERVICE, {"greet": HandlerSchema("greet", None)}, "dp_1", 1
    ),
    "Counter": ServiceSchema(
        "Counter",
        ServiceType.VIRTUAL_OBJECT,
        {
            "add": HandlerSchema("add", HandlerType.EXCLUSIVE),
            "get": HandlerSchema("get", HandlerType.SHARED),
        },
        "dp_1",
        1,
    ),
    "Wf": ServiceSchema(
        "Wf",
        ServiceType.WORKFLOW,
        {
            "run": HandlerSchema("run", HandlerType.WORKFLOW),
            "poke": HandlerSchema("poke", HandlerType.SHARED),
        },
        "dp_1",
        1,
    ),
}


class _Schema:
    def lookup_service(self, name: str) -> ServiceSchema | None:
        return SERVICES.get(name)


SCHEMA = _Schema()

# (service, handler, key) the ingress and handlers address.
TARGETS = [
    ("Greeter", "greet", None),
    ("Counter", "add", "k1"),
    ("Counter", "add", "k2"),
    ("Counter", "get", "k1"),
    ("Wf", "run", "w1"),
    ("Wf", "poke", "w1"),
]


def _target(service: str, handler: str, key: str | None) -> Target:
    svc = SERVICES[service]
    return Target(service, handler, key, svc.ty, svc.handlers[handler].ty)


def _ingress_id(service: str, handler: str, key: str | None, ikey: str) -> str:
    t = _target(service, handler, key)
    if t.workflow_run:
        assert key is not None
        return str(InvocationId.for_workflow_run(service, key))
    return str(InvocationId.for_idempotent_request(service, handler, ikey, key))


small = st.integers(1, 6)
names = st.sampled_from(["a", "b", "p"])
payloads = st.binary(max_size=4)
metadata = st.lists(st.tuples(names, names), max_size=2).map(tuple)
failures = st.builds(Failure, st.sampled_from([400, 409, 422, 500]), names, metadata)
outcomes: st.SearchStrategy[Outcome] = st.one_of(st.builds(Success, payloads), failures)


@dataclass
class World:
    """What earlier steps produced, read from the actions (identical for both stores)."""

    ids: list[str] = field(default_factory=list)
    epochs: dict[str, int] = field(default_factory=dict)
    outbox: list[SendToPartition] = field(default_factory=list)
    timers: list[Timer] = field(default_factory=list)

    def observe(self, actions: list[Action]) -> None:
        for x in actions:
            match x:
                case StartAttempt(invocation_id=iid, epoch=epoch):
                    self._know(iid)
                    self.epochs[iid] = epoch
                case SendToPartition(command=cmd):
                    self.outbox.append(x)
                    if isinstance(cmd, Invoke):
                        self._know(cmd.request.invocation_id)
                case RegisterTimer(timer=timer):
                    self.timers.append(timer)

    def _know(self, iid: str) -> None:
        if iid not in self.ids:
            self.ids.append(iid)

    def some_id(self, data: st.DataObject) -> str:
        if not self.ids or data.draw(st.integers(0, 4)) == 0:
            service, handler, key = data.draw(st.sampled_from(TARGETS))
            return _ingress_id(service, handler, key, data.draw(names))
        return data.draw(st.sampled_from(self.ids))

    def epoch(self, data: st.DataObject, iid: str) -> int:
        known = self.epochs.get(iid)
        if known is not None and data.draw(st.integers(0, 5)) > 0:
            return known
        return data.draw(small)


def _set_result(msg: Any, result: Outcome | None) -> None:
    match result:
        case Success(value=v):
            msg.value.content = v
            msg.value.SetInParent()
        case Failure():
            msg.failure.CopyFrom(failure_to_pb(result))
        case None:
            msg.void.SetInParent()


def _sdk_command(data: st.DataObject, world: World, now: int) -> SdkCommand:
    kind = data.draw(
        st.sampled_from(
            [
                "call",
                "send",
                "set",
                "get",
                "sleep",
                "output",
                "awakeable",
                "signal",
                "promise",
                "run",
                "attach",
                "junk",
            ]
        )
    )
    m: Any
    ty: MessageType
    match kind:
        case "call" | "send":
            service, handler, key = data.draw(st.sampled_from(TARGETS))
            fields: dict[str, Any] = {
                "service_name": service,
                "handler_name": handler,
                "key": key or "",
                "parameter": data.draw(payloads),
                "invocation_id_notification_idx": data.draw(small),
            }
            if data.draw(st.booleans()):
                fields["idempotency_key"] = data.draw(names)
            if kind == "call":
                m, ty = (
                    pb.CallCommandMessage(**fields, result_completion_id=data.draw(small)),
                    MessageType.CALL,
                )
            else:
                delay = data.draw(st.sampled_from([0, 0, 500, 5_000]))
                m = pb.OneWayCallCommandMessage(**fields, invoke_time=now + delay if delay else 0)
                ty = MessageType.ONE_WAY_CALL
        case "set":
            m = pb.SetStateCommandMessage(key=data.draw(names).encode(), value=pb.Value(content=b"1"))
            ty = MessageType.SET_STATE
        case "get":
            m = pb.GetLazyStateCommandMessage(
                key=data.draw(names).encode(), result_completion_id=data.draw(small)
            )
            ty = MessageType.GET_LAZY_STATE
        case "sleep":
            wake = now + data.draw(st.sampled_from([0, 100, 3_000]))
            m, ty = (
                pb.SleepCommandMessage(wake_up_time=wake, result_completion_id=data.draw(small)),
                MessageType.SLEEP,
            )
        case "output":
            m, ty = pb.OutputCommandMessage(), MessageType.OUTPUT
            _set_result(m, data.draw(outcomes))
        case "awakeable":
            target = InvocationId.parse(world.some_id(data))
            m = pb.CompleteAwakeableCommandMessage(
                awakeable_id=awakeable_id(target, data.draw(st.integers(17, 18)))
            )
            _set_result(m, data.draw(outcomes))
            ty = MessageType.COMPLETE_AWAKEABLE
        case "signal":
            m = pb.SendSignalCommandMessage(target_invocation_id=world.some_id(data))
            if data.draw(st.booleans()):
                m.idx = data.draw(st.sampled_from([1, 17, 18]))
            else:
                m.name = data.draw(names)
            _set_result(m, data.draw(st.one_of(st.none(), outcomes)))
            ty = MessageType.SEND_SIGNAL
        case "promise":
            which = data.draw(st.sampled_from(["get", "peek", "complete"]))
            key, cid = data.draw(names), data.draw(small)
            if which == "get":
                m, ty = (
                    pb.GetPromiseCommandMessage(key=key, result_completion_id=cid),
                    MessageType.GET_PROMISE,
                )
            elif which == "peek":
                m, ty = (
                    pb.PeekPromiseCommandMessage(key=key, result_completion_id=cid),
                    MessageType.PEEK_PROMISE,
                )
            else:
                m = pb.CompletePromiseCommandMessage(key=key, result_completion_id=cid)
                match data.draw(outcomes):
                    case Success(value=v):
                        m.completion_value.content = v
                        m.completion_value.SetInParent()
                    case Failure() as f:
                        m.completion_failure.CopyFrom(failure_to_pb(f))
                ty = MessageType.COMPLETE_PROMISE
        case "run":
            m, ty = pb.RunCommandMessage(result_completion_id=data.draw(small)), MessageType.RUN
        case "attach":
            cls = data.draw(
                st.sampled_from([pb.AttachInvocationCommandMessage, pb.GetInvocationOutputCommandMessage])
            )
            m = cls(invocation_id=world.some_id(data), result_completion_id=data.draw(small))
            ty = (
                MessageType.ATTACH_INVOCATION
                if cls is pb.AttachInvocationCommandMessage
                else MessageType.GET_INVOCATION_OUTPUT
            )
        case _:
            return SdkCommand(data.draw(st.sampled_from([0x0400, 0x8001, 0xFC00])), data.draw(payloads))
    return SdkCommand(int(ty), m.SerializeToString())


def _effect(data: st.DataObject, world: World, now: int) -> Effect:
    match data.draw(st.sampled_from(["sdk", "sdk", "sdk", "run", "suspend", "failed", "ended", "pin"])):
        case "sdk":
            return _sdk_command(data, world, now)
        case "run":
            return ProposeRun(data.draw(small), data.draw(outcomes))
        case "suspend":
            sigs = st.lists(st.sampled_from([1, 17, 18]), max_size=2).map(tuple)
            return Suspend(
                Waiting(
                    data.draw(st.lists(small, max_size=2).map(tuple)),
                    data.draw(sigs),
                    data.draw(st.lists(names, max_size=1).map(tuple)),
                )
            )
        case "failed":
            delay = data.draw(st.one_of(st.none(), st.integers(0, 1000)))
            return AttemptFailed(data.draw(st.sampled_from([500, 503, 571])), "boom", delay)
        case "ended":
            return AttemptEnded()
        case _:
            return PinDeployment("dp_1", 5)


def _command(data: st.DataObject, world: World, now: int, token: int) -> tuple[int, Command]:
    """The next command and the partition it is applied on."""
    kinds = ["invoke", "effect", "effect", "effect", "effect", "manage", "signal", "result", "patch"]
    if world.outbox:
        kinds += ["deliver"] * 4
    if world.timers:
        kinds += ["timer"] * 2
    kind = data.draw(st.sampled_from(kinds))
    match kind:
        case "invoke":
            service, handler, key = data.draw(st.sampled_from(TARGETS))
            ikey = data.draw(names)
            target = _target(service, handler, key)
            iid = _ingress_id(service, handler, key, ikey)
            delay = data.draw(st.sampled_from([0, 0, 0, 1_000]))
            request = InvocationRequest(
                iid,
                target,
                data.draw(payloads),
                idempotency_key=None if target.workflow_run else ikey,
                execution_time=now + delay if delay else None,
                completion_retention_ms=data.draw(st.sampled_from([0, 2_000])),
            )
            return partition_of(iid, PARTS), Invoke(request, token)
        case "effect":
            iid = world.some_id(data)
            return partition_of(iid, PARTS), InvokerEffect(
                iid, world.epoch(data, iid), _effect(data, world, now)
            )
        case "manage":
            iid = world.some_id(data)
            cmd = data.draw(st.sampled_from(list(InvocationCommand)))
            dp = data.draw(st.sampled_from([None, "dp_2"]))
            return partition_of(iid, PARTS), ManageInvocation(iid, cmd, token, dp)
        case "signal":
            iid = world.some_id(data)
            sid, name = data.draw(st.sampled_from([(1, None), (17, None), (None, "a")]))
            result = data.draw(st.one_of(st.none(), outcomes))
            return partition_of(iid, PARTS), NotifySignal(iid, sid, name, result, token)
        case "result":
            iid = world.some_id(data)
            get = GetResult(iid, world.some_id(data), data.draw(small), data.draw(st.booleans()))
            return partition_of(iid, PARTS), get
        case "patch":
            key = data.draw(st.sampled_from(["k1", "k2"]))
            state = data.draw(st.lists(st.tuples(st.just(b"n"), payloads), max_size=1).map(tuple))
            return partition_of_key(partition_key_for_key(key), PARTS), PatchState(
                "Counter", key, state, token
            )
        case "deliver":
            x = world.outbox.pop(0)  # outbox rows are delivered in order
            return x.partition, Deliver(x.seq, x.command)
        case _:
            timer = world.timers.pop(data.draw(st.integers(0, len(world.timers) - 1)))
            return timer.partition, TimerFired(timer)


def _apply(storage: MemoryStorage, partition: int, cmd: Command, now: int) -> list[Action] | str:
    txn = storage.begin()
    try:
        actions = apply(txn, cmd, ApplyContext(partition, PARTS, now, SCHEMA, POLICIES))
    except Exception as e:  # the processor rolls the command back; both stores must fail alike
        return repr(e)
    storage.commit_now(txn)
    return actions


def _comparable(result: list[Action] | str) -> object:
    """Replies may carry exceptions (NotFound, Conflict), which compare by identity."""
    if isinstance(result, str):
        return result
    return [
        Reply(x.token, (type(x.value), x.value.args))
        if isinstance(x, Reply) and isinstance(x.value, Exception)
        else x
        for x in result
    ]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_apply_twice_gives_identical_stores_and_actions(data: st.DataObject) -> None:
    one, two = MemoryStorage(), MemoryStorage()
    world = World()
    now = NOW
    for token in range(data.draw(st.integers(1, 60))):
        now += data.draw(st.sampled_from([0, 1, 50, 1_000, 6_000]))
        partition, cmd = _command(data, world, now, token)
        first = _apply(one, partition, cmd, now)
        second = _apply(two, partition, cmd, now)
        assert _comparable(first) == _comparable(second), cmd
        if isinstance(first, list):
            world.observe(first)
    assert one._data.tables == two._data.tables


def test_a_call_without_idempotency_key_names_the_same_callee_in_both_stores() -> None:
    """The case that used to draw a random id inside `apply`."""
    caller = _ingress_id("Greeter", "greet", None, "a")
    call = pb.CallCommandMessage(
        service_name="Greeter", handler_name="greet", invocation_id_notification_idx=1, result_completion_id=2
    )
    callees = []
    for _ in range(2):
        storage = MemoryStorage()
        p = partition_of(caller, PARTS)
        _apply(storage, p, Invoke(InvocationRequest(caller, _target("Greeter", "greet", None), b"")), NOW)
        actions = _apply(
            storage, p, InvokerEffect(caller, 1, SdkCommand(MessageType.CALL, call.SerializeToString())), NOW
        )
        assert isinstance(actions, list)
        [send] = [x for x in actions if isinstance(x, SendToPartition)]
        assert isinstance(send.command, Invoke)
        callees.append(send.command.request.invocation_id)
    assert callees[0] == callees[1]
    assert InvocationId.parse(callees[0]).timestamp_ms == NOW
