"""A SQLite store holding invocations in every state, written with the engine's storage API."""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyrestate.protocol import service_protocol_pb2 as pb
from pyrestate.protocol.framing import MessageType
from pyrestate.protocol.ids import InvocationId, partition_key_for_key
from pyrestate.server.core_api import (
    DeploymentRecord,
    Failure,
    HandlerSchema,
    HandlerType,
    ServiceSchema,
    ServiceType,
    Success,
)
from pyrestate.server.storage.records import (
    InvocationStatus,
    JournalEntry,
    Promise,
    Status,
    Target,
    Waiting,
)
from pyrestate.server.storage.schema_codec import deployment_to_json, service_to_json
from pyrestate.server.storage.sqlite import SqliteStorage

NOW = 1_795_545_269_081  # 2026-11-24T18:34:29.081Z
DEPLOYMENT = "dp_116zPhmWzWGcGcAu2eXpLYl"
DAY_MS = 86_400_000


def iid(service: str, handler: str, ikey: str, key: str | None = None) -> str:
    return str(InvocationId.for_idempotent_request(service, handler, ikey, key))


@dataclass
class Fixture:
    path: Path
    ids: dict[str, str] = field(default_factory=dict)


def _vo(service: str, handler: str, key: str, hty: HandlerType = HandlerType.EXCLUSIVE) -> Target:
    return Target(service, handler, key, ServiceType.VIRTUAL_OBJECT, hty)


def _svc(service: str, handler: str) -> Target:
    return Target(service, handler, None, ServiceType.SERVICE, None)


def _entries(*msgs: tuple[MessageType, object]) -> list[JournalEntry]:
    return [JournalEntry(int(t), m.SerializeToString()) for t, m in msgs]  # type: ignore[attr-defined]


def _input(body: bytes) -> pb.InputCommandMessage:
    return pb.InputCommandMessage(
        headers=[pb.Header(key="content-type", value="application/json")], value=pb.Value(content=body)
    )


async def _populate(path: Path) -> dict[str, str]:
    storage = SqliteStorage(path)
    await storage.open()
    ids = {
        "done": iid("Counter", "add", "k-done", "c1"),
        "killed": iid("Counter", "add", "k-killed", "c1"),
        "running": iid("Awk", "wait", "k-running", "a2"),
        "backing_off": iid("Counter", "add", "k-backoff", "c2"),
        "suspended": iid("Awk", "wait", "k-suspended", "a3"),
        "pending": iid("Awk", "wait", "k-pending", "a3"),
        "scheduled": iid("taskWorker", "runTask", "k-scheduled"),
        "paused": iid("Fail", "flaky", "k-paused"),
        "child": iid("worker", "runSubtask", "k-child"),
    }
    base: dict[str, Any] = {
        "created_at": NOW - 10_000,
        "modified_at": NOW - 5_000,
        "completion_retention_ms": DAY_MS,
    }
    statuses = [
        InvocationStatus(
            ids["done"],
            Status.COMPLETED,
            _vo("Counter", "add", "c1"),
            idempotency_key="k-done",
            deployment_id=DEPLOYMENT,
            protocol_version=6,
            journal_length=4,
            command_count=4,
            running_at=NOW - 9_000,
            completed_at=NOW - 8_000,
            output=Success(b"17"),
            **base,
        ),
        InvocationStatus(
            ids["killed"],
            Status.COMPLETED,
            _vo("Counter", "add", "c1"),
            idempotency_key="k-killed",
            deployment_id=DEPLOYMENT,
            protocol_version=6,
            journal_length=3,
            command_count=2,
            running_at=NOW - 9_000,
            completed_at=NOW - 8_000,
            output=Failure(409, "killed"),
            **base,
        ),
        InvocationStatus(
            ids["running"],
            Status.INVOKED,
            _vo("Awk", "wait", "a2"),
            idempotency_key="k-running",
            deployment_id=DEPLOYMENT,
            protocol_version=6,
            journal_length=1,
            command_count=1,
            running_at=NOW - 9_000,
            retry_count=1,
            last_failure="[500] boom",
            **base,
        ),
        InvocationStatus(
            ids["backing_off"],
            Status.INVOKED,
            _vo("Counter", "add", "c2"),
            idempotency_key="k-backoff",
            deployment_id=DEPLOYMENT,
            protocol_version=6,
            journal_length=2,
            command_count=2,
            running_at=NOW - 9_000,
            retry_count=7,
            next_retry_at=NOW + 60_000,
            last_failure="[500] TypeError('unsupported operand')",
            last_failure_code=500,
            **base,
        ),
        InvocationStatus(
            ids["suspended"],
            Status.SUSPENDED,
            _vo("Awk", "wait", "a3"),
            idempotency_key="k-suspended",
            deployment_id=DEPLOYMENT,
            protocol_version=6,
            journal_length=9,
            command_count=5,
            running_at=NOW - 9_000,
            waiting=Waiting((), (1, 17), ()),
            **base,
        ),
        InvocationStatus(
            ids["pending"],
            Status.INBOXED,
            _vo("Awk", "wait", "a3"),
            idempotency_key="k-pending",
            inbox_seq=1,
            **base,
        ),
        InvocationStatus(
            ids["scheduled"],
            Status.SCHEDULED,
            _svc("taskWorker", "runTask"),
            idempotency_key="k-scheduled",
            execution_time=NOW + 3_600_000,
            **base,
        ),
        InvocationStatus(
            ids["paused"],
            Status.PAUSED,
            _svc("Fail", "flaky"),
            idempotency_key="k-paused",
            deployment_id=DEPLOYMENT,
            protocol_version=6,
            journal_length=1,
            command_count=1,
            running_at=NOW - 9_000,
            retry_count=70,
            last_failure="[500] always failing",
            **base,
        ),
        InvocationStatus(
            ids["child"],
            Status.COMPLETED,
            _svc("worker", "runSubtask"),
            invoked_by="service",
            invoked_by_id=ids["suspended"],
            deployment_id=DEPLOYMENT,
            protocol_version=6,
            journal_length=2,
            command_count=2,
            running_at=NOW - 9_000,
            completed_at=NOW - 8_500,
            output=Success(b'"r"'),
            **base,
        ),
    ]
    journals = {
        ids["done"]: _entries(
            (MessageType.INPUT, _input(b"1")),
            (
                MessageType.GET_EAGER_STATE,
                pb.GetEagerStateCommandMessage(key=b"count", value=pb.Value(content=b"16")),
            ),
            (MessageType.SET_STATE, pb.SetStateCommandMessage(key=b"count", value=pb.Value(content=b"17"))),
            (MessageType.OUTPUT, pb.OutputCommandMessage(value=pb.Value(content=b"17"))),
        ),
        ids["suspended"]: _entries(
            (MessageType.INPUT, _input(b"")),
            (MessageType.RUN, pb.RunCommandMessage(result_completion_id=1, name="split task")),
            (
                MessageType.RUN_COMPLETION,
                pb.NotificationMessage(completion_id=1, value=pb.Value(content=b"[1]")),
            ),
            (
                MessageType.CALL,
                pb.CallCommandMessage(
                    service_name="worker",
                    handler_name="runSubtask",
                    parameter=b'"p"',
                    invocation_id_notification_idx=2,
                    result_completion_id=3,
                ),
            ),
            (
                MessageType.CALL_INVOCATION_ID_COMPLETION,
                pb.NotificationMessage(completion_id=2, invocation_id=ids["child"]),
            ),
            (
                MessageType.SLEEP,
                pb.SleepCommandMessage(wake_up_time=NOW + 45_000, result_completion_id=4, name="nap"),
            ),
            (MessageType.GET_PROMISE, pb.GetPromiseCommandMessage(key="approval", result_completion_id=5)),
            (
                MessageType.CALL_COMPLETION,
                pb.NotificationMessage(completion_id=3, value=pb.Value(content=b'"r"')),
            ),
            (MessageType.SIGNAL, pb.NotificationMessage(signal_id=18, void=pb.Void())),
        ),
    }
    dp = DeploymentRecord(
        id=DEPLOYMENT,
        uri="http://127.0.0.1:9080/",
        use_http_11=False,
        protocol_mode="BIDI_STREAM",
        min_protocol_version=5,
        max_protocol_version=7,
        sdk_version="restate-sdk-python/1.3.0",
        additional_headers={},
        created_at_ms=NOW - 60_000,
        services=(),
    )
    services = [
        ServiceSchema(
            "Counter",
            ServiceType.VIRTUAL_OBJECT,
            {"add": HandlerSchema("add", HandlerType.EXCLUSIVE)},
            DEPLOYMENT,
            1,
        ),
        ServiceSchema(
            "Awk",
            ServiceType.VIRTUAL_OBJECT,
            {"wait": HandlerSchema("wait", HandlerType.EXCLUSIVE)},
            DEPLOYMENT,
            1,
        ),
        ServiceSchema(
            "Wf", ServiceType.WORKFLOW, {"run": HandlerSchema("run", HandlerType.WORKFLOW)}, DEPLOYMENT, 1
        ),
        ServiceSchema(
            "taskWorker", ServiceType.SERVICE, {"runTask": HandlerSchema("runTask", None)}, DEPLOYMENT, 1
        ),
    ]
    dp = dataclasses.replace(dp, services=tuple(services))
    txn = storage.begin()
    for st in statuses:
        txn.put_invocation_status(st)
    for inv, entries in journals.items():
        for i, e in enumerate(entries):
            txn.put_journal_entry(inv, i, e)
    txn.put_state("Counter", "c1", b"count", b"17")
    txn.put_state("Wf", "w1", b"stage", b'"approved"')
    txn.put_state("Counter", "c1", b"bin", b"\xff\x00")
    txn.push_inbox("Awk", "a3", 1, ids["pending"])
    txn.put_lock("Awk", "a3", ids["suspended"])
    txn.put_lock("Awk", "a2", ids["running"])
    txn.put_lock("Counter", "c2", ids["backing_off"])
    txn.put_promise("Wf", "w1", "approval", Promise(True, Success(b'"alice"')))
    txn.put_promise("Wf", "w1", "rejection", Promise(True, Failure(500, "nope")))
    txn.put_promise("Wf", "w1", "open", Promise(False))
    txn.put_deployment(dp.id, deployment_to_json(dp))
    for s in services:
        txn.put_service(s.name, service_to_json(s))
    await storage.commit(txn)
    await storage.close()
    assert partition_key_for_key("c1") == InvocationId.parse(ids["done"]).partition_key
    return ids


def make_store(path: Path) -> Fixture:
    return Fixture(path, asyncio.run(_populate(path)))
