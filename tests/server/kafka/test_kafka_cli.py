"""`pyrestate subscriptions` and the official CLI's `restate subscriptions` / `restate kafka-clusters`
against pyrestate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import Broker, Server

OFFICIAL_CLI = (
    Path(__file__).resolve().parents[3]
    / ".cache/restate/node_modules/@restatedev/restate-linux-x64/bin/restate"
)


def _pyrestate(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from pyrestate.cli.main import main; main()",
            *args,
            "--admin-url",
            server.admin_url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_pyrestate_cli_subscriptions(broker: Broker, server: Server) -> None:
    r = _pyrestate(
        server,
        "subscriptions",
        "create",
        "kafka://my-cluster/t1",
        "service://Obj/add",
        "group.id=g1",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    sub = json.loads(r.stdout)
    assert sub["options"] == {"group.id": "g1", "client.id": "restate"}
    listed = json.loads(_pyrestate(server, "sub", "list", "--json").stdout)
    assert [s["id"] for s in listed] == [sub["id"]]
    assert "kafka://my-cluster/t1" in _pyrestate(server, "subscriptions", "list").stdout
    assert json.loads(_pyrestate(server, "subscriptions", "describe", sub["id"], "--json").stdout) == sub
    bad = _pyrestate(server, "subscriptions", "create", "kafka://nope/t1", "service://Obj/add")
    assert bad.returncode != 0 and "Kafka cluster 'nope' not found" in bad.stderr
    assert _pyrestate(server, "subscriptions", "delete", sub["id"]).returncode == 0
    assert json.loads(_pyrestate(server, "sub", "list", "--json").stdout) == []


def test_pyrestate_cli_kafka_clusters(broker: Broker, server: Server) -> None:
    r = _pyrestate(
        server, "kafka-clusters", "create", "rt", f"bootstrap.servers={broker.bootstrap}", "--json"
    )
    assert r.returncode == 0, r.stderr
    created = json.loads(r.stdout)
    assert created["properties"] == {"bootstrap.servers": broker.bootstrap}
    assert created == {
        k: v for k, v in server.admin("GET", "/kafka-clusters/rt").json().items() if k != "subscriptions"
    }
    listed = json.loads(_pyrestate(server, "kafka-clusters", "list", "--json").stdout)
    assert [c["name"] for c in listed] == ["my-cluster", "rt"]
    table = _pyrestate(server, "kafka-clusters", "list").stdout
    assert "rt" in table and broker.bootstrap in table
    r = _pyrestate(
        server, "kafka-clusters", "patch", "rt", "--set", "client.id=cli", "--set", "sasl.password=s"
    )
    assert r.returncode == 0, r.stderr
    props = server.admin("GET", "/kafka-clusters/rt").json()["properties"]
    assert props == {"bootstrap.servers": broker.bootstrap, "client.id": "cli", "sasl.password": "***"}
    # The server hides a secret's value: a patch must give it again (or drop it) rather than store "***".
    r = _pyrestate(server, "kafka-clusters", "patch", "rt", "--unset", "client.id")
    assert r.returncode != 0 and "sasl.password" in r.stderr
    r = _pyrestate(
        server, "kafka-clusters", "patch", "rt", "--unset", "client.id", "--unset", "sasl.password"
    )
    assert r.returncode == 0, r.stderr
    sub = _pyrestate(server, "sub", "create", "kafka://rt/t3", "service://Obj/add", "--json")
    assert sub.returncode == 0, sub.stderr
    sub_id = json.loads(sub.stdout)["id"]
    described = json.loads(_pyrestate(server, "kafka-clusters", "describe", "rt", "--json").stdout)
    assert described["properties"] == {"bootstrap.servers": broker.bootstrap}
    assert [s["id"] for s in described["subscriptions"]] == [sub_id]
    assert sub_id in _pyrestate(server, "kafka-clusters", "describe", "rt").stdout
    refused = _pyrestate(server, "kafka-clusters", "delete", "rt")
    assert refused.returncode != 0 and "orphan" in refused.stderr
    assert _pyrestate(server, "kafka-clusters", "delete", "rt", "--force").returncode == 0
    assert server.admin("GET", "/kafka-clusters/rt").status_code == 404
    missing = _pyrestate(server, "kafka-clusters", "describe", "rt")
    assert missing.returncode != 0 and "does not exist" in missing.stderr


@pytest.mark.skipif(
    not OFFICIAL_CLI.is_file(), reason="official restate CLI not installed (make official-restate)"
)
def test_official_cli_subscriptions(broker: Broker, server: Server) -> None:
    env = {**os.environ, "RESTATE_ADMIN_URL": server.admin_url, "NO_COLOR": "1"}

    def restate(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(OFFICIAL_CLI), *args], capture_output=True, text=True, timeout=60, env=env)

    r = restate(
        "--yes", "subscriptions", "create", "kafka://my-cluster/t2", "service://Sink/handle", "group.id=g2"
    )
    assert r.returncode == 0, r.stdout + r.stderr
    listed = restate("sub", "list")
    assert listed.returncode == 0 and "kafka://my-cluster/t2" in listed.stdout, listed.stdout + listed.stderr
    sub_id = next(w for w in listed.stdout.split() if w.startswith("sub_"))
    described = restate("sub", "describe", sub_id)
    assert described.returncode == 0 and "g2" in described.stdout, described.stdout + described.stderr
    clusters = restate("kafka-clusters", "list")
    assert clusters.returncode == 0 and "my-cluster" in clusters.stdout, clusters.stdout + clusters.stderr
    deleted = restate("--yes", "sub", "delete", sub_id)
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    assert server.admin("GET", "/subscriptions").json() == {"subscriptions": []}

    # Clusters registered, changed and removed at runtime.
    created = restate("--yes", "kafka-clusters", "create", "rt", f"bootstrap.servers={broker.bootstrap}")
    assert created.returncode == 0, created.stdout + created.stderr
    patched = restate("--yes", "kafka-clusters", "patch", "rt", "--set", "client.id=cli")
    assert patched.returncode == 0, patched.stdout + patched.stderr
    described = restate("kafka-clusters", "describe", "rt")
    assert described.returncode == 0 and "cli" in described.stdout, described.stdout + described.stderr
    assert server.admin("GET", "/kafka-clusters/rt").json()["properties"] == {
        "bootstrap.servers": broker.bootstrap,
        "client.id": "cli",
    }
    removed = restate("--yes", "kafka-clusters", "delete", "rt")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert server.admin("GET", "/kafka-clusters/rt").status_code == 404
