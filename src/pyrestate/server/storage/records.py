"""Records the engine persists, with their on-disk (JSON) codecs.

Records are frozen: a change is a new record written in a transaction. The JSON shape is versioned by the
storage schema version (see `sqlite.MIGRATIONS`); readers tolerate missing optional fields so that adding a
field does not need a data migration.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field, fields
from typing import Any

from pyrestate.server.core_api import Failure, HandlerType, Outcome, ServiceType, Success


class Status(enum.Enum):
    SCHEDULED = "scheduled"
    INBOXED = "inboxed"
    # Waiting for a slot of its scope's concurrency limits (flow control); `inbox_seq` is its place.
    PENDING = "pending"
    INVOKED = "invoked"
    SUSPENDED = "suspended"
    PAUSED = "paused"
    COMPLETED = "completed"


@dataclass(frozen=True, slots=True)
class Target:
    service: str
    handler: str
    key: str | None
    service_ty: ServiceType
    handler_ty: HandlerType | None  # None for plain services
    # V7 scoped calls: shown and sent to the deployment; with flow control on, the scope's rules limit how
    # many run at once (`partition/lifecycle.py`).
    scope: str | None = None
    limit_key: str | None = None

    @property
    def exclusive(self) -> bool:
        """Holds the per-key lock (VO exclusive handler, workflow run handler)."""
        return self.key is not None and self.handler_ty in (HandlerType.EXCLUSIVE, HandlerType.WORKFLOW)

    @property
    def workflow_run(self) -> bool:
        return self.service_ty is ServiceType.WORKFLOW and self.handler_ty is HandlerType.WORKFLOW

    def to_json(self) -> list[Any]:
        """[service, handler, key, service type, handler type], the types in their admin spelling."""
        hty = None if self.handler_ty is None else self.handler_ty.admin_name
        out = [self.service, self.handler, self.key, self.service_ty.admin_name, hty]
        if self.scope is not None or self.limit_key is not None:  # most records: five elements
            out += [self.scope, self.limit_key]
        return out

    @classmethod
    def from_json(cls, d: list[Any]) -> Target:
        service, handler, key, sty, hty = d[:5]
        return cls(
            service,
            handler,
            key,
            ServiceType.from_admin_name(sty),
            None if hty is None else HandlerType.from_admin_name(hty),
            d[5] if len(d) > 5 else None,
            d[6] if len(d) > 6 else None,
        )

    def display(self) -> str:
        if self.key is None:
            return f"{self.service}/{self.handler}"
        return f"{self.service}/{self.key}/{self.handler}"


@dataclass(frozen=True, slots=True)
class ResponseSink:
    """Who waits for an invocation's result: another invocation's completion, or the ingress."""

    invocation_id: str | None = None  # None: ingress waiters (resolved in memory, keyed by invocation id)
    completion_id: int = 0
    notification_ty: int = 0x800D  # CallCompletion; AttachInvocationCompletion for an attach


@dataclass(frozen=True, slots=True)
class Waiting:
    completions: tuple[int, ...] = ()
    signals: tuple[int, ...] = ()
    named_signals: tuple[str, ...] = ()

    def matches(self, completion_id: int | None, signal_id: int | None, signal_name: str | None) -> bool:
        return (
            (completion_id is not None and completion_id in self.completions)
            or (signal_id is not None and signal_id in self.signals)
            or (signal_name is not None and signal_name in self.named_signals)
        )


@dataclass(frozen=True, slots=True)
class InvocationStatus:
    invocation_id: str
    status: Status
    target: Target
    created_at: int
    modified_at: int
    idempotency_key: str | None = None
    invoked_by: str = "ingress"  # ingress | service | restart_as_new (invoked_by_id: the original)
    invoked_by_id: str | None = None
    sinks: tuple[ResponseSink, ...] = ()
    execution_time: int | None = None  # scheduled (delayed) invocations
    inbox_seq: int | None = None
    deployment_id: str | None = None  # pinned on the first attempt
    protocol_version: int | None = None
    epoch: int = 0  # attempt generation; effects from older attempts are dropped
    journal_length: int = 0
    command_count: int = 0
    random_seed: int = 0
    retry_count: int = 0  # attempts failed since the last stored entry
    total_attempts: int = 0
    last_entry_at: int | None = None
    last_failure: str | None = None
    last_failure_code: int | None = None
    next_retry_at: int | None = None
    waiting: Waiting | None = None
    output: Outcome | None = None  # from the Output command; the result once completed
    completed_at: int | None = None
    completion_retention_ms: int = 0
    expires_at: int | None = None
    running_at: int | None = None
    # Span context (pyrestate.server.tracing), only when traced: its spans and its callees' join its trace.
    trace: str | None = None

    def with_(self, **changes: Any) -> InvocationStatus:
        """A copy with `changes`. The state machine copies a status several times per command, and
        `dataclasses.replace` (through `__init__`) costs four times what `_copy_status` does."""
        new: InvocationStatus = _copy_status(self)
        for name, value in changes.items():
            if name not in _STATUS_FIELD_SET:
                raise TypeError(f"InvocationStatus has no field {name!r}")
            _set_attr(new, name, value)
        return new

    @property
    def alive(self) -> bool:
        """Has a journal that can still receive notifications."""
        return self.status in (Status.INVOKED, Status.SUSPENDED, Status.PAUSED)


_STATUS_FIELDS = tuple(f.name for f in fields(InvocationStatus))
_STATUS_FIELD_SET = frozenset(_STATUS_FIELDS)
_set_attr = object.__setattr__


def _make_copier() -> Any:
    # Straight-line slot copies (one statement per field), generated as dataclasses generates __init__.
    body = "".join(f"    _set(new, {name!r}, s.{name})\n" for name in _STATUS_FIELDS)
    source = f"def _copy_status(s):\n    new = _new(cls)\n{body}    return new\n"
    namespace: dict[str, Any] = {"_new": object.__new__, "_set": _set_attr, "cls": InvocationStatus}
    exec(source, namespace)
    return namespace["_copy_status"]


_copy_status = _make_copier()


# ------------------------------------------------------------------------------------------------- codecs


def outcome_to_json(outcome: Outcome | None) -> Any:
    match outcome:
        case None:
            return None
        case Success(value=v, content_type=ct):
            return {"ok": v.hex(), "ct": ct}
        case Failure(code=c, message=m, metadata=md):
            return {"code": c, "message": m, "metadata": [list(p) for p in md]}


def outcome_from_json(d: Any) -> Outcome | None:
    if d is None:
        return None
    if "ok" in d:
        return Success(bytes.fromhex(d["ok"]), d.get("ct"))
    return Failure(d["code"], d["message"], tuple((k, v) for k, v in d.get("metadata", ())))


def sink_to_json(sink: ResponseSink) -> list[Any]:
    return [sink.invocation_id, sink.completion_id, sink.notification_ty]


def sink_from_json(d: list[Any]) -> ResponseSink:
    """Rows written before the notification type was kept have two elements (the default type)."""
    return ResponseSink(*d)


# JSON value of each optional status field at its default; status_from_json reads a missing field as that.
_OMITTED: dict[str, Any] = {
    "idempotency_key": None,
    "invoked_by": "ingress",
    "invoked_by_id": None,
    "sinks": [],
    "execution_time": None,
    "inbox_seq": None,
    "deployment_id": None,
    "protocol_version": None,
    "epoch": 0,
    "journal_length": 0,
    "command_count": 0,
    "random_seed": 0,
    "retry_count": 0,
    "total_attempts": 0,
    "last_entry_at": None,
    "last_failure": None,
    "last_failure_code": None,
    "next_retry_at": None,
    "waiting": None,
    "output": None,
    "completed_at": None,
    "completion_retention_ms": 0,
    "expires_at": None,
    "running_at": None,
    "trace": None,
}


def status_to_json(s: InvocationStatus) -> bytes:
    t = s.target
    d: dict[str, Any] = {
        "id": s.invocation_id,
        "status": s.status.value,
        "target": t.to_json(),
        "created_at": s.created_at,
        "modified_at": s.modified_at,
        "idempotency_key": s.idempotency_key,
        "invoked_by": s.invoked_by,
        "invoked_by_id": s.invoked_by_id,
        "sinks": [sink_to_json(k) for k in s.sinks],
        "execution_time": s.execution_time,
        "inbox_seq": s.inbox_seq,
        "deployment_id": s.deployment_id,
        "protocol_version": s.protocol_version,
        "epoch": s.epoch,
        "journal_length": s.journal_length,
        "command_count": s.command_count,
        "random_seed": s.random_seed,
        "retry_count": s.retry_count,
        "total_attempts": s.total_attempts,
        "last_entry_at": s.last_entry_at,
        "last_failure": s.last_failure,
        "last_failure_code": s.last_failure_code,
        "next_retry_at": s.next_retry_at,
        "waiting": None
        if s.waiting is None
        else [list(s.waiting.completions), list(s.waiting.signals), list(s.waiting.named_signals)],
        "output": outcome_to_json(s.output),
        "completed_at": s.completed_at,
        "completion_retention_ms": s.completion_retention_ms,
        "expires_at": s.expires_at,
        "running_at": s.running_at,
        "trace": s.trace,
    }
    # Fields at their default are left out (the reader restores them): half the bytes, half the time.
    return _dumps({k: v for k, v in d.items() if _OMITTED.get(k, _KEEP) != v})


_KEEP = object()
_dumps_str = json.JSONEncoder(separators=(",", ":")).encode


def _dumps(obj: Any) -> bytes:
    return _dumps_str(obj).encode()


def status_from_json(raw: bytes) -> InvocationStatus:
    d = json.loads(raw)
    w = d.get("waiting")
    return InvocationStatus(
        invocation_id=d["id"],
        status=Status(d["status"]),
        target=Target.from_json(d["target"]),
        created_at=d["created_at"],
        modified_at=d["modified_at"],
        idempotency_key=d.get("idempotency_key"),
        invoked_by=d.get("invoked_by", "ingress"),
        invoked_by_id=d.get("invoked_by_id"),
        sinks=tuple(sink_from_json(k) for k in d.get("sinks", ())),
        execution_time=d.get("execution_time"),
        inbox_seq=d.get("inbox_seq"),
        deployment_id=d.get("deployment_id"),
        protocol_version=d.get("protocol_version"),
        epoch=d.get("epoch", 0),
        journal_length=d.get("journal_length", 0),
        command_count=d.get("command_count", 0),
        random_seed=d.get("random_seed", 0),
        retry_count=d.get("retry_count", 0),
        total_attempts=d.get("total_attempts", 0),
        last_entry_at=d.get("last_entry_at"),
        last_failure=d.get("last_failure"),
        last_failure_code=d.get("last_failure_code"),
        next_retry_at=d.get("next_retry_at"),
        waiting=None if w is None else Waiting(tuple(w[0]), tuple(w[1]), tuple(w[2])),
        output=outcome_from_json(d.get("output")),
        completed_at=d.get("completed_at"),
        completion_retention_ms=d.get("completion_retention_ms", 0),
        expires_at=d.get("expires_at"),
        running_at=d.get("running_at"),
        trace=d.get("trace"),
    )


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One journal entry exactly as on the wire: message type and protobuf payload bytes, and when the
    partition appended it (epoch ms; None for entries stored before that was recorded)."""

    ty: int
    raw: bytes
    appended_at: int | None = None

    def encode(self) -> bytes:
        at = _NO_TIME if self.appended_at is None else self.appended_at
        if self.appended_at is not None and not 0 <= at < _NO_TIME:
            raise ValueError(f"appended_at {at} is outside 0..2**64-2 (epoch ms)")
        return _TIMED_ENTRY + self.ty.to_bytes(2, "big") + at.to_bytes(8, "big") + self.raw

    @staticmethod
    def decode(data: bytes) -> JournalEntry:
        if data[:2] == _TIMED_ENTRY:
            ty, at = int.from_bytes(data[2:4], "big"), int.from_bytes(data[4:12], "big")
            return JournalEntry(ty, bytes(data[12:]), None if at == _NO_TIME else at)
        return JournalEntry(int.from_bytes(data[:2], "big"), bytes(data[2:]))


# Marks an entry stored with its append time (every entry written now). Entries written before carry their
# message type first; 0xFFFF is no message type of the service protocol, so both layouts stay readable.
_TIMED_ENTRY = b"\xff\xff"
_NO_TIME = (1 << 64) - 1  # appended_at unknown


class TimerKind(enum.Enum):
    SLEEP = "sleep"  # completes a Sleep command
    INVOKE = "invoke"  # a delayed send becomes due
    CLEANUP = "cleanup"  # retention of a completed invocation expired
    JOURNAL_CLEANUP = "journal"  # journal retention (shorter than the completion's) expired
    RETRY = "retry"  # a scoped invocation backing off without its slot: its retry is due


@dataclass(frozen=True, slots=True)
class Timer:
    fire_at: int  # epoch ms
    kind: TimerKind
    invocation_id: str
    completion_id: int = 0
    partition: int = 0

    @property
    def timer_id(self) -> str:
        return f"{self.kind.value}:{self.invocation_id}:{self.completion_id}"

    def to_json(self) -> bytes:
        return json.dumps(
            [self.fire_at, self.kind.value, self.invocation_id, self.completion_id, self.partition]
        ).encode()

    @staticmethod
    def from_json(raw: bytes) -> Timer:
        f, k, i, c, p = json.loads(raw)
        return Timer(f, TimerKind(k), i, c, p)


@dataclass(frozen=True, slots=True)
class Promise:
    completed: bool = False
    result: Outcome | None = None
    listeners: tuple[ResponseSink, ...] = field(default=())

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "completed": self.completed,
                "result": outcome_to_json(self.result),
                "listeners": [sink_to_json(x) for x in self.listeners],
            }
        ).encode()

    @staticmethod
    def from_json(raw: bytes) -> Promise:
        d = json.loads(raw)
        return Promise(
            d["completed"],
            outcome_from_json(d["result"]),
            tuple(sink_from_json(x) for x in d.get("listeners", ())),
        )
