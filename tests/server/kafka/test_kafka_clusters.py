"""Kafka clusters registered at runtime (`POST/PATCH/DELETE /kafka-clusters`) on a real broker (tansu): the
answers of restate-server 1.7.12 (observed on the same requests), a subscription reading through a
registered cluster, new properties restarting its consumer, a forced delete leaving the subscription idle
until the cluster is back, and registered clusters surviving a restart."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from .conftest import CLUSTER, Broker, Server, read_log, wait_for

CREATED_AT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}000000Z$")


def _svc_bodies(app_log: Path) -> list[int]:
    return sorted(e["body"]["e"] for e in read_log(app_log) if e["kind"] == "svc")


def test_official_answers(broker: Broker, server: Server) -> None:
    r = server.admin(
        "POST",
        "/kafka-clusters",
        {"name": "c4", "properties": {"bootstrap.servers": "x:1", "sasl.password": "s", "client.id": "abc"}},
    )
    assert r.status_code == 201, r.text
    assert r.headers["location"] == "kafka-clusters/c4"
    c4 = r.json()
    assert CREATED_AT.match(c4.pop("created_at"))
    assert c4 == {
        "name": "c4",
        "properties": {"bootstrap.servers": "x:1", "sasl.password": "***", "client.id": "abc"},
    }

    r = server.admin("POST", "/kafka-clusters", {"name": "c4", "properties": {"bootstrap.servers": "y:1"}})
    assert r.status_code == 409
    assert r.json() == {
        "message": "kafka cluster 'c4' already exists in schema registry",
        "restate_code": None,
    }
    # The config file's cluster can be neither replaced, changed nor deleted through the API.
    r = server.admin("POST", "/kafka-clusters", {"name": CLUSTER, "properties": {"bootstrap.servers": "y:1"}})
    assert r.status_code == 409
    assert r.json()["message"] == (
        f"kafka cluster '{CLUSTER}' conflicts with static configuration. Cluster names in schema registry "
        "cannot override statically configured clusters."
    )
    file_cluster = (
        f"kafka cluster '{CLUSTER}' cannot be updated, because it was defined in the restate configuration "
        "file. Update the configuration file directly, or remove the configuration file"
    )
    r = server.admin("PATCH", f"/kafka-clusters/{CLUSTER}", {"properties": {"bootstrap.servers": "y:1"}})
    assert r.status_code == 409 and r.json()["message"] == file_cluster
    r = server.admin("DELETE", f"/kafka-clusters/{CLUSTER}")
    assert r.status_code == 409 and r.json()["message"] == file_cluster
    r = server.admin("POST", "/kafka-clusters", {"name": "c2", "properties": {"foo": "bar"}})
    assert r.status_code == 400
    assert r.json()["message"] == (
        "kafka cluster 'c2' properties must contain either 'bootstrap.servers' or 'metadata.broker.list'"
    )
    for body, text in [
        ({"name": "bad name!", "properties": {"bootstrap.servers": "x:1"}}, "name: invalid uri character"),
        ({"name": "", "properties": {"bootstrap.servers": "x:1"}}, "name: empty string"),
        ({"name": "c3"}, "missing field `properties`"),
        (
            {"name": "c6", "properties": {"bootstrap.servers": 1}},
            "properties.bootstrap.servers: invalid type",
        ),
    ]:
        r = server.admin("POST", "/kafka-clusters", body)
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"].startswith("text/plain")
        assert r.text.startswith("Failed to deserialize the JSON body into the target type: " + text), r.text

    listed = {c["name"]: c for c in server.admin("GET", "/kafka-clusters").json()["clusters"]}
    assert set(listed) == {CLUSTER, "c4"}
    assert "info" in listed[CLUSTER] and "info" not in listed["c4"]  # only the config file's is deprecated
    got = server.admin("GET", "/kafka-clusters/c4").json()
    assert got == {**c4, "created_at": got["created_at"], "subscriptions": []}

    r = server.admin("PATCH", "/kafka-clusters/c4", {"properties": {"metadata.broker.list": "y:2"}})
    assert r.status_code == 200, r.text
    assert r.json()["properties"] == {"metadata.broker.list": "y:2"}  # replaced, not merged
    assert r.json()["created_at"] == got["created_at"]
    r = server.admin("PATCH", "/kafka-clusters/nope", {"properties": {"metadata.broker.list": "y:2"}})
    assert r.status_code == 404
    assert r.json()["message"] == "not found in the schema registry: kafka cluster 'nope'"
    r = server.admin("PATCH", "/kafka-clusters/c4", {"properties": {"x": "y"}})
    assert r.status_code == 400
    r = server.admin("PATCH", "/kafka-clusters/c4", {})
    assert r.status_code == 422 and "missing field `properties`" in r.text
    r = server.admin("PUT", "/kafka-clusters/c4", {})
    assert r.status_code == 405 and r.headers["allow"] == "GET,HEAD,PATCH,DELETE"

    assert server.admin("DELETE", "/kafka-clusters/c4").status_code == 202
    r = server.admin("DELETE", "/kafka-clusters/c4")
    assert r.status_code == 404
    assert r.json()["message"] == "not found in the schema registry: kafka cluster named 'c4'"
    r = server.admin("GET", "/kafka-clusters/c4")
    assert r.status_code == 404
    assert r.json()["message"] == "The requested Kafka cluster 'c4' does not exist"


def test_a_registered_cluster_feeds_subscriptions(broker: Broker, server: Server, app_log: Path) -> None:
    broker.create_topic("events", 2)
    r = server.admin(
        "POST", "/kafka-clusters", {"name": "rt", "properties": {"bootstrap.servers": broker.bootstrap}}
    )
    assert r.status_code == 201, r.text
    r = server.admin(
        "POST",
        "/subscriptions",
        {
            "source": "kafka://rt/events",
            "sink": "service://Sink/handle",
            "options": {"auto.offset.reset": "earliest"},
        },
    )
    assert r.status_code == 201, r.text
    sub = r.json()
    broker.produce("events", [(None, json.dumps({"e": n}).encode()) for n in range(5)])
    wait_for(lambda: _svc_bodies(app_log) == list(range(5)), 90, "records via rt", server.process.log_tail)

    # New properties: the consumer restarts with them and goes on from the committed offsets.
    r = server.admin(
        "PATCH",
        "/kafka-clusters/rt",
        {"properties": {"metadata.broker.list": f"PLAINTEXT://{broker.bootstrap}", "client.id": "patched"}},
    )
    assert r.status_code == 200, r.text
    broker.produce("events", [(None, json.dumps({"e": 5}).encode())])
    wait_for(
        lambda: _svc_bodies(app_log) == list(range(6)), 90, "record after patch", server.process.log_tail
    )

    # A cluster with subscriptions is deleted only with force; the subscription stays, idle.
    r = server.admin("DELETE", "/kafka-clusters/rt")
    assert r.status_code == 409
    assert r.json()["message"] == (
        f"Removing the kafka cluster 'rt' leads to subscription '{sub['id']}' being orphan. "
        "Remove the subscription first, or use the 'force' flag."
    )
    assert server.admin("DELETE", "/kafka-clusters/rt?force=true").status_code == 202
    assert server.admin("GET", f"/subscriptions/{sub['id']}").json() == sub
    broker.produce("events", [(None, json.dumps({"e": 6}).encode())])
    time.sleep(3)
    assert _svc_bodies(app_log) == list(range(6))

    # Registered again (and across a restart), the cluster feeds the subscription from where it stopped.
    r = server.admin(
        "POST", "/kafka-clusters", {"name": "rt", "properties": {"bootstrap.servers": broker.bootstrap}}
    )
    assert r.status_code == 201, r.text
    created_at = r.json()["created_at"]
    wait_for(
        lambda: _svc_bodies(app_log) == list(range(7)), 90, "record after re-create", server.process.log_tail
    )
    server.process.stop()
    server.process.start()
    got = server.admin("GET", "/kafka-clusters/rt?include_subscriptions=true").json()
    assert got == {
        "name": "rt",
        "properties": {"bootstrap.servers": broker.bootstrap},
        "created_at": created_at,
        "subscriptions": [sub],
    }
    broker.produce("events", [(None, json.dumps({"e": 7}).encode())])
    wait_for(
        lambda: _svc_bodies(app_log) == list(range(8)), 90, "record after restart", server.process.log_tail
    )
    assert len({e["id"] for e in read_log(app_log)}) == len(read_log(app_log))  # one invocation per record
