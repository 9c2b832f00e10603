"""Commands a partition applies, and the actions applying them asks the leader to perform.

Commands are the only way state changes; every command carries all it needs, so applying it is a pure
function of (stored state, command, time). Commands that cross partitions travel through the outbox and
therefore have a JSON codec.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pyrestate.server.core_api import InvocationCommand, Outcome
from pyrestate.server.storage.records import (
    InvocationStatus,
    ResponseSink,
    Target,
    Timer,
    Waiting,
    outcome_from_json,
    outcome_to_json,
    sink_from_json,
    sink_to_json,
)

# ------------------------------------------------------------------------------------------------ requests


@dataclass(frozen=True, slots=True)
class InvocationRequest:
    invocation_id: str
    target: Target
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    idempotency_key: str | None = None
    sink: ResponseSink | None = None  # a calling invocation waiting for the result
    execution_time: int | None = None  # epoch ms, delayed sends
    invoked_by: str = "ingress"
    invoked_by_id: str | None = None
    completion_retention_ms: int = 0
    trace: str | None = None  # span context when traced (pyrestate.server.tracing)


# ------------------------------------------------------------------------------------------------ effects
# What an invocation attempt reports; applied only if the attempt's epoch is still current.


@dataclass(frozen=True, slots=True)
class PinDeployment:
    deployment_id: str
    protocol_version: int


@dataclass(frozen=True, slots=True)
class SdkCommand:
    ty: int
    raw: bytes


@dataclass(frozen=True, slots=True)
class ProposeRun:
    completion_id: int
    result: Outcome


@dataclass(frozen=True, slots=True)
class Suspend:
    waiting: Waiting


@dataclass(frozen=True, slots=True)
class AttemptFailed:
    code: int
    message: str
    next_retry_delay_ms: int | None = None
    # A limit was exceeded: another attempt would do the same, so the invocation fails now.
    terminal: bool = False
    # The handler asked to be paused instead of retried (V7 ErrorMessage.behavior).
    pause: bool = False


@dataclass(frozen=True, slots=True)
class AttemptEnded:
    pass


Effect = PinDeployment | SdkCommand | ProposeRun | Suspend | AttemptFailed | AttemptEnded


# ------------------------------------------------------------------------------------------------ commands


@dataclass(frozen=True, slots=True)
class Invoke:
    request: InvocationRequest
    reply_token: int | None = None  # ingress waiting for the submission outcome


@dataclass(frozen=True, slots=True)
class InvokerEffect:
    invocation_id: str
    epoch: int
    effect: Effect


@dataclass(frozen=True, slots=True)
class TimerFired:
    timer: Timer


@dataclass(frozen=True, slots=True)
class InvocationResponse:
    """The result of a call arrives at the caller (or at an attach from a handler)."""

    invocation_id: str
    completion_id: int
    outcome: Outcome | None  # None: void (get-output of an invocation that has not completed)
    notification_ty: int = 0x800D  # CallCompletion


@dataclass(frozen=True, slots=True)
class GetResult:
    """A handler asks for another invocation's result: AttachInvocation (wait for it) or
    GetInvocationOutput (answer now, void while it has not completed)."""

    invocation_id: str  # whose result
    caller: str
    completion_id: int
    wait: bool


@dataclass(frozen=True, slots=True)
class NotifySignal:
    invocation_id: str
    signal_id: int | None
    signal_name: str | None
    result: Outcome | None  # None: void
    reply_token: int | None = None


@dataclass(frozen=True, slots=True)
class ManageInvocation:
    invocation_id: str
    command: InvocationCommand
    reply_token: int | None = None
    deployment_id: str | None = None  # resume: continue on this deployment instead of the pinned one


@dataclass(frozen=True, slots=True)
class RestartAsNew:
    """A new invocation (`new_invocation_id`, on this partition) from a completed one's input, or from its
    journal up to `from_index` included with the completions of the commands in that prefix."""

    invocation_id: str
    new_invocation_id: str
    from_index: int = 0
    # Pin of the copied prefix: "keep" the original's, else a deployment id (None: pinned on first attempt).
    deployment_id: str | None = None
    reply_token: int | None = None


@dataclass(frozen=True, slots=True)
class Restarted:
    new_invocation_id: str


@dataclass(frozen=True, slots=True)
class PatchState:
    service: str
    key: str
    state: tuple[tuple[bytes, bytes], ...]
    reply_token: int | None = None


@dataclass(frozen=True, slots=True)
class Deliver:
    """An outbox message reaches its partition: the row is deleted atomically with applying `inner`.
    `remote`: it came from another process (whose outbox keeps the row until this commit is acknowledged);
    applied at most once per (source partition, sequence number)."""

    seq: int
    inner: Command
    remote: bool = False


@dataclass(frozen=True, slots=True)
class Ingest:
    """An invocation from an external producer (a Kafka subscription): `seq` (the record's offset) is
    recorded per (partition, producer) in the commit that enqueues it, and a `seq` at or below the recorded
    one is a redelivery, dropped. A producer's records reach a partition in `seq` order."""

    request: InvocationRequest
    producer: str
    seq: int
    reply_token: int | None = None


@dataclass(frozen=True, slots=True)
class ReviewLimits:
    """The rule book changed, or the server started: start the waiting invocations that fit now."""


Command = (
    Invoke
    | Ingest
    | InvokerEffect
    | TimerFired
    | InvocationResponse
    | GetResult
    | NotifySignal
    | ManageInvocation
    | RestartAsNew
    | PatchState
    | Deliver
    | ReviewLimits
)


# ------------------------------------------------------------------------------------------------ actions


@dataclass(frozen=True, slots=True)
class StartAttempt:
    invocation_id: str
    epoch: int
    delay_ms: int = 0


@dataclass(frozen=True, slots=True)
class ForwardNotification:
    invocation_id: str
    epoch: int
    index: int
    ty: int
    raw: bytes


@dataclass(frozen=True, slots=True)
class AbortAttempt:
    invocation_id: str


@dataclass(frozen=True, slots=True)
class RegisterTimer:
    timer: Timer


@dataclass(frozen=True, slots=True)
class IngressResponse:
    """An invocation completed: wake in-memory ingress waiters (attach/call) of this id."""

    invocation_id: str
    outcome: Outcome
    traced: InvocationStatus | None = None  # the completed invocation, when traced: its end span


@dataclass(frozen=True, slots=True)
class Reply:
    token: int
    value: object


@dataclass(frozen=True, slots=True)
class SendToPartition:
    partition: int
    seq: int
    command: Command


Action = (
    StartAttempt
    | ForwardNotification
    | AbortAttempt
    | RegisterTimer
    | IngressResponse
    | Reply
    | SendToPartition
)


# ------------------------------------------------------------------------------------------------ replies


@dataclass(frozen=True, slots=True)
class Submitted:
    invocation_id: str
    previously_accepted: bool
    execution_time: int | None = None


@dataclass(frozen=True, slots=True)
class AlreadyCompleted:
    invocation_id: str
    outcome: Outcome
    expires_at: int | None


@dataclass(frozen=True, slots=True)
class WorkflowAlreadyInvoked:
    invocation_id: str


@dataclass(frozen=True, slots=True)
class Duplicate:
    """The reply to an `Ingest` whose record was ingested before."""

    seq: int


# ------------------------------------------------------------------------------------------------ codec

# The commands one partition addresses to another through the durable outbox.
OUTBOX_COMMANDS = (Invoke, InvocationResponse, GetResult, NotifySignal, ManageInvocation)
# Fields that name something in this process's memory (a waiting request): they never travel, a stored
# token would answer an unrelated request after a restart. The state machine sends none.
PROCESS_LOCAL_FIELDS = frozenset({"reply_token"})


def _target_to(t: Target) -> list[Any]:
    return t.to_json()


def command_to_json(cmd: Command) -> bytes:
    d: dict[str, Any]
    match cmd:
        case Invoke(request=r):
            d = {
                "k": "invoke",
                "id": r.invocation_id,
                "target": _target_to(r.target),
                "body": r.body.hex(),
                "headers": [list(h) for h in r.headers],
                "ik": r.idempotency_key,
                "sink": None if r.sink is None else sink_to_json(r.sink),
                "at": r.execution_time,
                "by": r.invoked_by,
                "by_id": r.invoked_by_id,
                "ret": r.completion_retention_ms,
            }
            if r.trace is not None:
                d["tr"] = r.trace
        case InvocationResponse(invocation_id=i, completion_id=c, outcome=o, notification_ty=ty):
            d = {"k": "response", "id": i, "cid": c, "outcome": outcome_to_json(o), "ty": ty}
        case NotifySignal(invocation_id=i, signal_id=s, signal_name=n, result=o):
            d = {"k": "signal", "id": i, "sid": s, "name": n, "result": outcome_to_json(o)}
        case GetResult(invocation_id=i, caller=caller, completion_id=c, wait=w):
            d = {"k": "result", "id": i, "caller": caller, "cid": c, "wait": w}
        case ManageInvocation(invocation_id=i, command=c, deployment_id=dp):
            d = {"k": "manage", "id": i, "cmd": c.value, "dp": dp}
        case _:
            raise ValueError(f"{type(cmd).__name__} does not travel through the outbox")
    return json.dumps(d, separators=(",", ":")).encode()


def command_from_json(raw: bytes) -> Command:
    d = json.loads(raw)
    kind = d["k"]
    if kind == "invoke":
        sink = d["sink"]
        return Invoke(
            InvocationRequest(
                invocation_id=d["id"],
                target=Target.from_json(d["target"]),
                body=bytes.fromhex(d["body"]),
                headers=tuple((k, v) for k, v in d["headers"]),
                idempotency_key=d["ik"],
                sink=None if sink is None else sink_from_json(sink),
                execution_time=d["at"],
                invoked_by=d["by"],
                invoked_by_id=d["by_id"],
                completion_retention_ms=d["ret"],
                trace=d.get("tr"),
            )
        )
    if kind == "response":
        return InvocationResponse(d["id"], d["cid"], outcome_from_json(d["outcome"]), d["ty"])
    if kind == "result":
        return GetResult(d["id"], d["caller"], d["cid"], d["wait"])
    if kind == "signal":
        return NotifySignal(d["id"], d["sid"], d["name"], outcome_from_json(d["result"]))
    if kind == "manage":
        return ManageInvocation(d["id"], InvocationCommand(d["cmd"]), deployment_id=d.get("dp"))
    raise ValueError(f"unknown outbox command {kind!r}")
