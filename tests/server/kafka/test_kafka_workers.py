"""Kafka subscriptions with `pyrestate server --workers 2`: the admin API answers alike on every worker,
records keyed onto partitions of both workers are each invoked once and in order per key, and after a
SIGKILL of either worker (the one consuming, or the other one owning partitions) mid-stream, every record
is still invoked exactly once."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pyrestate.protocol.ids import partition_key_for_key
from pyrestate.server.cluster.layout import Layout
from pyrestate.server.partition.context import partition_of_key
from pyrestate.testing import PyrestateServer, RuntimeConfig, ServiceApp, register_deployment

from .conftest import Broker, read_log, wait_for

PARTITIONS = 4
CLUSTER = "rt"


def _worker_of(key: str) -> int:
    return Layout(PARTITIONS, 2).owners()[partition_of_key(partition_key_for_key(key), PARTITIONS)]


def _keys(per_worker: int) -> list[str]:
    out: dict[int, list[str]] = {0: [], 1: []}
    i = 0
    while any(len(v) < per_worker for v in out.values()):
        key = f"k{i}"
        if len(out[_worker_of(key)]) < per_worker:
            out[_worker_of(key)].append(key)
        i += 1
    return out[0] + out[1]


def _worker_pid(server: PyrestateServer, index: int) -> int:
    """The worker listening on its inter-worker socket `w{index}.sock`."""
    inodes = {
        parts[6]
        for line in Path("/proc/net/unix").read_text().splitlines()[1:]
        if len(parts := line.split()) >= 8 and parts[7].endswith(f"/w{index}.sock")
    }
    parent = server.process.pid
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    for child in children:
        try:
            fds = os.listdir(f"/proc/{child}/fd")
            links = {os.readlink(f"/proc/{child}/fd/{fd}") for fd in fds}
        except OSError:
            continue
        if any(f"socket:[{i}]" in links for i in inodes):
            return int(child)
    raise AssertionError(f"no worker {index} among {children}")


def _kill(server: PyrestateServer, index: int) -> None:
    victim = _worker_pid(server, index)
    os.kill(victim, signal.SIGKILL)

    def back() -> bool:
        try:
            return _worker_pid(server, index) != victim
        except (AssertionError, OSError):
            return False

    wait_for(back, 30, f"worker {index} to be restarted")


@pytest.fixture
def workers(tmp_path: Path, broker: Broker, sdk_app: ServiceApp) -> Iterator[PyrestateServer]:
    cfg = RuntimeConfig(
        retry_initial_interval="100ms",
        retry_max_interval="1s",
        inactivity_timeout="5s",
        abort_timeout="5s",
        extra_env={"PYRESTATE_WORKERS": "2"},
    )
    srv = PyrestateServer(cfg, data_dir=tmp_path / "server", log_dir=tmp_path)
    srv.start()
    try:
        register_deployment(srv.admin_url, sdk_app.url)
        r = _admin(
            srv,
            "POST",
            "/kafka-clusters",
            {"name": CLUSTER, "properties": {"bootstrap.servers": broker.bootstrap}},
        )
        assert r.status_code == 201, r.text
        yield srv
    except BaseException:
        print(srv.log_tail(200))
        raise
    finally:
        srv.close()


def _admin(srv: PyrestateServer, method: str, path: str, body: Any = None) -> httpx.Response:
    # A new connection each time: the kernel hands it to either worker.
    return httpx.request(method, srv.admin_url + path, json=body, timeout=30)


def _subscribe(srv: PyrestateServer, topic: str) -> dict[str, Any]:
    r = _admin(
        srv,
        "POST",
        "/subscriptions",
        {
            "source": f"kafka://{CLUSTER}/{topic}",
            "sink": "service://Obj/add",
            "options": {"auto.offset.reset": "earliest", "session.timeout.ms": "6000"},
        },
    )
    assert r.status_code == 201, r.text
    sub: dict[str, Any] = r.json()
    return sub


def _records(keys: list[str], ns: range) -> list[tuple[bytes | None, bytes]]:
    return [(k.encode(), json.dumps({"k": k, "n": n}).encode()) for n in ns for k in keys]


def _check_once_in_order(srv: PyrestateServer, app_log: Path, keys: list[str], per_key: int) -> None:
    log = read_log(app_log)
    ids_per_record: dict[tuple[str, str], set[str]] = defaultdict(set)
    for e in log:
        ids_per_record[(e["headers"]["kafka.partition"], e["headers"]["kafka.offset"])].add(e["id"])
    assert len(ids_per_record) == len(keys) * per_key
    assert all(len(ids) == 1 for ids in ids_per_record.values()), "a record became two invocations"
    for k in keys:
        state = httpx.post(f"{srv.ingress_url}/Obj/{k}/get", timeout=30).json()
        assert [m["n"] for m in state] == list(range(per_key)), k
    seen: dict[str, list[int]] = defaultdict(list)
    for e in log:
        seen[e["key"]].append(e["body"]["n"])
    for k, ns in seen.items():
        assert list(dict.fromkeys(ns)) == list(range(per_key)), k


def _records_seen(app_log: Path) -> int:
    return len({(e["headers"]["kafka.partition"], e["headers"]["kafka.offset"]) for e in read_log(app_log)})


def test_admin_on_any_worker_and_records_on_both(
    broker: Broker, workers: PyrestateServer, app_log: Path
) -> None:
    srv = workers
    # Every admin request on a fresh connection: whichever worker answers, it sees the same schema.
    for _ in range(6):
        assert [c["name"] for c in _admin(srv, "GET", "/kafka-clusters").json()["clusters"]] == [CLUSTER]
    r = _admin(srv, "POST", "/kafka-clusters", {"name": CLUSTER, "properties": {"bootstrap.servers": "x:1"}})
    assert (
        r.status_code == 409
        and r.json()["message"] == f"kafka cluster '{CLUSTER}' already exists in schema registry"
    )
    r = _admin(srv, "POST", "/subscriptions", {"source": "kafka://nope/t", "sink": "service://Obj/add"})
    assert r.status_code == 400 and "Kafka cluster 'nope' not found" in r.json()["message"]
    r = _admin(srv, "DELETE", f"/kafka-clusters/{CLUSTER}?force=false")
    assert r.status_code == 202  # no subscription yet
    r = _admin(
        srv,
        "POST",
        "/kafka-clusters",
        {"name": CLUSTER, "properties": {"bootstrap.servers": broker.bootstrap}},
    )
    assert r.status_code == 201, r.text

    broker.create_topic("orders", 3)
    sub = _subscribe(srv, "orders")
    for _ in range(6):
        assert _admin(srv, "GET", f"/subscriptions/{sub['id']}").json() == sub
        assert _admin(srv, "GET", "/subscriptions").json() == {"subscriptions": [sub]}
        described = _admin(srv, "GET", f"/kafka-clusters/{CLUSTER}?include_subscriptions=true").json()
        assert described["subscriptions"] == [sub]
    r = _admin(srv, "DELETE", f"/kafka-clusters/{CLUSTER}")
    assert r.status_code == 409 and sub["id"] in r.json()["message"]

    keys, per_key = _keys(3), 25
    broker.produce("orders", _records(keys, range(per_key)))
    wait_for(lambda: _records_seen(app_log) >= len(keys) * per_key, 60, "every record", srv.log_tail)
    time.sleep(1)
    _check_once_in_order(srv, app_log, keys, per_key)
    assert {_worker_of(e["key"]) for e in read_log(app_log)} == {0, 1}

    # A deleted subscription stops consuming, whichever worker took the request.
    assert _admin(srv, "DELETE", f"/subscriptions/{sub['id']}").status_code == 202
    for _ in range(4):
        assert _admin(srv, "GET", "/subscriptions").json() == {"subscriptions": []}
    before = len(read_log(app_log))
    broker.produce("orders", _records(keys[:1], range(per_key, per_key + 3)))
    time.sleep(3)
    assert len(read_log(app_log)) == before


def test_every_record_once_across_sigkill_of_each_worker(
    broker: Broker, workers: PyrestateServer, app_log: Path
) -> None:
    srv = workers
    broker.create_topic("stream", 3)
    group = _subscribe(srv, "stream")["options"]["group.id"]
    keys, per_key = _keys(4), 45
    thirds = [range(0, 15), range(15, 30), range(30, per_key)]
    broker.produce("stream", _records(keys, thirds[0]))
    wait_for(lambda: _records_seen(app_log) >= 30, 60, "the stream to be under way", srv.log_tail)
    _kill(srv, 1)  # owner of half the partitions, with forwarded records in flight
    broker.produce("stream", _records(keys, thirds[1]))
    wait_for(lambda: _records_seen(app_log) >= 8 * 15 + 30, 60, "the stream to go on", srv.log_tail)
    _kill(srv, 0)  # the consumer, with offsets not yet committed
    broker.produce("stream", _records(keys, thirds[2]))
    total = len(keys) * per_key
    wait_for(lambda: _records_seen(app_log) >= total, 80, "every record", srv.log_tail)
    time.sleep(1)
    _check_once_in_order(srv, app_log, keys, per_key)
    committed = broker.committed(group, "stream", 3)
    wait_for(
        lambda: sum(v or 0 for v in broker.committed(group, "stream", 3).values()) == total,
        20,
        f"every offset committed (now {committed})",
    )
