"""Records from a real broker (tansu) become invocations: a virtual object gets each key's records in offset
order with the record key as its key, a service gets them all; the headers are the official server's; a
subscription survives a restart and a deleted one stops consuming."""

from __future__ import annotations

import base64
import json
import time
from collections import defaultdict
from pathlib import Path

from pyrestate.testing import Admin

from .conftest import CLUSTER, Broker, Server, read_log, wait_for


def _subscribe(server: Server, topic: str, sink: str) -> str:
    r = server.admin(
        "POST",
        "/subscriptions",
        {"source": f"kafka://{CLUSTER}/{topic}", "sink": sink, "options": {"auto.offset.reset": "earliest"}},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def test_records_to_an_object_keep_key_order_and_to_a_service(
    broker: Broker, server: Server, app_log: Path
) -> None:
    broker.create_topic("orders", 3)
    broker.create_topic("events", 2)
    obj_sub = _subscribe(server, "orders", "service://Obj/add")
    svc_sub = _subscribe(server, "events", "service://Sink/handle")
    keys = [f"user-{i}" for i in range(5)]
    broker.produce(
        "orders", [(k.encode(), json.dumps({"k": k, "n": n}).encode()) for n in range(20) for k in keys]
    )
    broker.produce("events", [(None, json.dumps({"e": n}).encode()) for n in range(30)])
    broker.produce("orders", [(b"user-0", b"not json")])  # a poison record fails only its own invocation
    broker.produce("orders", [(b"user-0", json.dumps({"k": "user-0", "n": 20}).encode())])

    def done() -> bool:
        log = read_log(app_log)
        return (
            len([e for e in log if e["kind"] == "obj"]) >= 101
            and len([e for e in log if e["kind"] == "svc"]) >= 30
        )

    wait_for(done, 90, "all records invoked", lambda: server.process.log_tail())
    time.sleep(1)
    log = read_log(app_log)
    per_key: dict[str, list[int]] = defaultdict(list)
    for e in (e for e in log if e["kind"] == "obj"):
        assert e["key"] == e["body"]["k"]
        per_key[e["key"]].append(e["body"]["n"])
        h = e["headers"]
        assert h["restate.subscription.id"] == obj_sub and h["kafka.topic"] == "orders"
        assert base64.b64decode(h["kafka.key"]).decode() == e["key"]
        assert set(h) == {
            "kafka.offset",
            "kafka.topic",
            "kafka.partition",
            "kafka.timestamp",
            "restate.subscription.id",
            "kafka.key",
        }  # the record's own headers are not passed
    assert dict(per_key) == {k: list(range(21 if k == "user-0" else 20)) for k in keys}
    svc = [e for e in log if e["kind"] == "svc"]
    assert sorted(e["body"]["e"] for e in svc) == list(range(30))
    assert all(
        "kafka.key" not in e["headers"] and e["headers"]["restate.subscription.id"] == svc_sub for e in svc
    )
    with Admin(server.admin_url) as admin:
        rows = admin.query(
            "SELECT status, completion_failure, invoked_by, invoked_by_subscription_id "
            "FROM sys_invocation WHERE target_service_name = 'Obj'"
        )
    failed = [r for r in rows if r.get("completion_failure")]
    assert len(failed) == 1 and "Unable to parse an input argument" in failed[0]["completion_failure"]
    assert {r["invoked_by"] for r in rows} == {"subscription"}
    assert {r["invoked_by_subscription_id"] for r in rows} == {obj_sub}

    # Subscriptions survive a restart; consumption goes on from the committed offsets.
    server.process.stop()
    server.process.start()
    assert {s["id"] for s in server.admin("GET", "/subscriptions").json()["subscriptions"]} == {
        obj_sub,
        svc_sub,
    }
    broker.produce("events", [(None, json.dumps({"e": 30}).encode())])
    wait_for(
        lambda: len([e for e in read_log(app_log) if e["kind"] == "svc"]) >= 31, 90, "record after restart"
    )

    # Deleting a subscription stops its consumption.
    assert server.admin("DELETE", f"/subscriptions/{svc_sub}").status_code == 202
    broker.produce("events", [(None, json.dumps({"e": 31}).encode())])
    broker.produce("orders", [(b"user-1", json.dumps({"k": "user-1", "n": 20}).encode())])
    wait_for(
        lambda: any(e["body"] == {"k": "user-1", "n": 20} for e in read_log(app_log)), 60, "object record"
    )
    time.sleep(2)
    assert len([e for e in read_log(app_log) if e["kind"] == "svc"]) == 31
    assert len({e["id"] for e in read_log(app_log)}) == len(read_log(app_log))  # one invocation per record
