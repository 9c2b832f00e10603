"""Several `pyrestate server --storage postgresql://… --node-bind …` processes forming one cluster: every
node serves, each owns a share of the partition groups, requests reach the owner whatever node they enter
through; a killed node's groups are taken over and everything acknowledged completes."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from cluster_support import service_app, wait_for

from pyrestate.protocol.ids import partition_key_for_key
from pyrestate.server.cluster import membership
from pyrestate.server.partition.context import partition_of, partition_of_key
from pyrestate.testing import Admin, Ingress, ServiceApp, json_of
from pyrestate.testing.nodes import pg_node
from pyrestate.testing.postgres import PostgresServer, find_postgres_bin
from pyrestate.testing.process import ManagedProcess
from pyrestate.testing.runtime import RuntimeConfig

PARTITIONS = 8
GROUPS = 6
TTL = "1500ms"


@dataclass
class Node:
    name: str
    proc: ManagedProcess
    ingress: str
    admin: str


def _node(url: str, tmp: Path, name: str) -> Node:
    server = pg_node(
        url,
        name,
        tmp / name,
        log_dir=tmp,
        config=RuntimeConfig(retry_initial_interval="100ms"),
        partitions=PARTITIONS,
        partition_groups=GROUPS,
        lease_ttl=TTL,
    )
    return Node(name, server.process, server.ingress_url, server.admin_url)


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    if find_postgres_bin() is None:
        pytest.skip("PostgreSQL server binaries not found (apt-get install postgresql; PYRESTATE_PG_BIN)")
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def lease_owners(url: str) -> dict[int, str]:
    """Partition -> node holding an unexpired lease."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT partition, owner FROM partition_leases WHERE expires_at > now()"
        ).fetchall()
    return {int(p): str(o) for p, o in rows}


def all_owned_by(url: str, names: set[str]) -> bool:
    """The leases are exactly where the group map of these live nodes puts them (balanced, settled)."""
    groups = membership.assign(GROUPS, sorted(names))
    expected = {p: groups[g] for g, r in enumerate(membership.group_ranges(PARTITIONS, GROUPS)) for p in r}
    return lease_owners(url) == expected


def partition_of_object(key: str) -> int:
    return partition_of_key(partition_key_for_key(key), PARTITIONS)


def keys_on(url: str, node: str, n: int, prefix: str) -> list[str]:
    owners = lease_owners(url)
    out = [f"{prefix}{i}" for i in range(500) if owners.get(partition_of_object(f"{prefix}{i}")) == node]
    return out[:n]


@pytest.fixture
def cluster(pg: PostgresServer, tmp_path: Path) -> Iterator[tuple[str, list[Node], ServiceApp, Path]]:
    url = pg.create_database()
    side = tmp_path / "side"
    app = service_app(tmp_path, side)
    nodes = [_node(url, tmp_path, f"n{i}") for i in range(1, 4)]
    try:
        app.start()
        for n in nodes:
            n.proc.start()
        wait_for(lambda: all_owned_by(url, {"n1", "n2", "n3"}), 30, "every node owning its share")
        yield url, nodes, app, side
    finally:
        for n in nodes:
            n.proc.stop()
        app.close()


def test_three_nodes_serve_at_once(cluster: tuple[str, list[Node], ServiceApp, Path]) -> None:
    url, nodes, app, side = cluster
    counts = {name: list(lease_owners(url).values()).count(name) for name in ("n1", "n2", "n3")}
    assert all(2 <= c <= 3 for c in counts.values()), counts  # 8 partitions in 6 groups over 3 nodes
    with Admin(nodes[0].admin) as admin:
        admin.register(app.url)  # on n1: callable through every node
    ingresses = [Ingress(n.ingress) for n in nodes]
    try:
        for ing in ingresses:
            assert ing.call_json("Leaf", "echo", "x") == "leaf:x"
        # Objects whose partitions live on each node, called through each node.
        for owner in ("n1", "n2", "n3"):
            for key in keys_on(url, owner, 2, f"k-{owner}-"):
                for ing in ingresses:
                    ing.call_json("Acc", "add", 1, key=key)
                assert ingresses[0].call_json("Acc", "get", key=key) == 3
        # Calls and one-way sends that cross partitions (and nodes), and delayed sends.
        for i, ing in enumerate(ingresses):
            assert ing.call_json("Front", "chain_to", f"c{i}") == f"leaf:c{i}:x:1"
        fan = [f"fan{i}" for i in range(12)]
        assert ingresses[1].call_json("Front", "fan_add", fan) == 12

        def fanned() -> bool:
            return all(ingresses[2].call_json("Acc", "get", key=k) == 11 for k in fan)

        wait_for(fanned, 20, "every send and delayed send applied once")

        # An awakeable completed through a node that does not own the invocation.
        sent = ingresses[0].send_json("Front", "await_awakeable", "aw1")
        iid = sent["invocationId"]
        awk_file = side.parent / "awakeable-aw1"
        wait_for(awk_file.exists, 20, "the awakeable id")
        owner = lease_owners(url)[partition_of(iid, PARTITIONS)]
        other = next(i for i, n in enumerate(nodes) if n.name != owner)
        assert ingresses[other].resolve_awakeable(awk_file.read_text(), "yes").status_code == 202
        assert json_of(ingresses[other].attach(iid)) == "got yes"

        # A workflow promise resolved through a node that does not own the workflow.
        wf_partition = partition_of_object("order-1")
        runner = ingresses[0].send("Flow", "run", "order", key="order-1")
        assert runner.status_code == 202
        owner = lease_owners(url)[wf_partition]
        other = next(i for i, n in enumerate(nodes) if n.name != owner)
        ingresses[other].call("Flow", "approve", "bob", key="order-1").raise_for_status()
        r = ingresses[(other + 1) % 3].workflow_attach("Flow", "order-1")
        assert json_of(r) == "order approved by bob"

        # A node stopping normally hands its groups over at once; what it owned is served by the others.
        moved = keys_on(url, "n3", 2, "k-n3-")
        nodes[2].proc.stop()
        wait_for(lambda: all_owned_by(url, {"n1", "n2"}), 5, "the stopped node's groups taken over")
        for key in moved:
            assert ingresses[1].call_json("Acc", "get", key=key) == 3
    finally:
        for ing in ingresses:
            ing.close()


def test_a_killed_node_is_taken_over(cluster: tuple[str, list[Node], ServiceApp, Path]) -> None:
    url, nodes, app, side = cluster
    with Admin(nodes[1].admin) as admin:
        admin.register(app.url)
    victim = nodes[2]
    survivors = nodes[:2]
    keys = keys_on(url, victim.name, 3, "kill-") + keys_on(url, "n1", 2, "kill-")
    acked: list[str] = []
    # A call waiting, through a survivor, on an invocation the victim runs: answered after the takeover.
    (hang_key,) = keys_on(url, victim.name, 1, "hang-")
    waiting: dict[str, object] = {}

    def wait_call() -> None:
        with Ingress(nodes[1].ingress) as other:
            waiting["answer"] = other.call_json("Acc", "hang_chain", 3000, key=hang_key)

    caller = threading.Thread(target=wait_call)
    caller.start()
    with Ingress(nodes[0].ingress) as ing:
        # Sends through a survivor, some to the victim's partitions; each acknowledged one must complete.
        for i in range(30):
            r = ing.send("Front", "steps", f"tag{i % 5}", idempotency_key=f"steps-{i}")
            if r.status_code == 202:
                acked.append(r.json()["invocationId"])
            if i == 10:
                victim.proc.kill()  # SIGKILL: no lease handed back, no goodbye
                killed_at = time.monotonic()
        for k in keys:
            ing.send("Acc", "add", 1, key=k, idempotency_key=f"add-{k}")
        wait_for(lambda: all_owned_by(url, {"n1", "n2"}), 15, "the victim's partitions taken over")
        took = time.monotonic() - killed_at
        assert took < 10.0, f"takeover took {took:.1f} s"
        assert len(acked) == 30
        for iid in acked:
            assert json_of(ing.attach(iid)) == 3 * 32
        for k in keys:
            assert ing.call_json("Acc", "get", key=k) == 1
    caller.join(60)
    assert waiting.get("answer") == "woke"
    # Every step ran once and every handler saw the result recorded for it.
    lines = side.read_text().splitlines()
    execs = [line.split()[1] for line in lines if line.startswith("exec ")]
    seen = {tuple(line.split()[1:]) for line in lines if line.startswith("seen ")}
    recorded = {tuple(line.split()[1:]) for line in lines if line.startswith("exec ")}
    assert seen <= recorded
    assert len({s[0] for s in seen}) == 90
    # A step may run again only if its result was never recorded (the attempt died with the node).
    assert len({s[0] for s in seen}) == len({t for t, _ in seen})
    assert len(execs) >= 90
    for s in survivors:
        assert s.proc.is_running()


def test_a_paused_node_cannot_commit_and_a_fourth_node_gets_its_share(
    cluster: tuple[str, list[Node], ServiceApp, Path], pg: PostgresServer, tmp_path: Path
) -> None:
    url, nodes, app, side = cluster
    with Admin(nodes[0].admin) as admin:
        admin.register(app.url)
    paused = nodes[2]
    with Ingress(nodes[0].ingress) as ing:
        acked = [
            ing.send_json("Front", "steps", f"p{i % 4}", idempotency_key=f"pause-{i}")["invocationId"]
            for i in range(24)
        ]
        pid = paused.proc.pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)  # mid-flight: its attempts' answers wait in its sockets
        try:
            wait_for(lambda: all_owned_by(url, {"n1", "n2"}), 15, "the paused node's partitions taken over")
            time.sleep(0.5)
        finally:
            os.kill(pid, signal.SIGCONT)
        # It wakes with leases it no longer holds: its commits are refused, it stops those groups.
        wait_for(lambda: "lost to another node" in paused.proc.log_tail(400), 15, "the lost lease noticed")
        for iid in acked:
            assert json_of(ing.attach(iid)) == 3 * 32
        # Each steps run made 3 calls: exactly 24 * 3 adds over the 4 tags, none applied twice.
        assert sum(ing.call_json("Acc", "get", key=f"p{t}") for t in range(4)) == 72
    lines = side.read_text().splitlines()
    seen = {tuple(line.split()[1:]) for line in lines if line.startswith("seen ")}
    recorded = {tuple(line.split()[1:]) for line in lines if line.startswith("exec ")}
    assert seen <= recorded
    assert len({s[0] for s in seen}) == len(seen) == 72  # every step: one result, whoever ran it
    # The woken node rejoins, and a fourth node gets its share.
    assert paused.proc.is_running()
    fourth = _node(url, tmp_path, "n4")
    nodes.append(fourth)  # stopped by the fixture
    fourth.proc.start()
    wait_for(lambda: all_owned_by(url, {"n1", "n2", "n3", "n4"}), 30, "four nodes owning a share each")
    with Ingress(fourth.ingress) as ing:
        for key in keys_on(url, "n4", 2, "n4-") + keys_on(url, "n3", 2, "n3-"):
            assert ing.call_json("Acc", "add", 5, key=key) == 5
