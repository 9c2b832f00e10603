"""Test-side helpers of the Kafka examples: a real tansu broker, topics, records and subscriptions.

The `kafka` fixture (examples/conftest.py) starts one broker per session on a free port; each example
creates its topics and registers a cluster of its own (a fresh name per test) with the runtime.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from examples.kafka_posts.broker import command
from pyrestate.testing.process import ManagedProcess, free_port


class KafkaBroker:
    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.process = ManagedProcess("tansu", command(self.port), log)

    def start(self, timeout: float = 20.0) -> None:
        self.process.start()

        async def answers() -> None:
            from aiokafka.admin import AIOKafkaAdminClient

            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
            await admin.start()
            await admin.close()

        deadline = time.monotonic() + timeout
        while True:
            try:
                asyncio.run(answers())
                return
            except Exception:
                if time.monotonic() > deadline:
                    self.process.stop()
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        self.process.stop()

    def create_topic(self, name: str, partitions: int = 2) -> None:
        async def run() -> None:
            from aiokafka.admin import AIOKafkaAdminClient, NewTopic

            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
            await admin.start()
            try:
                await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
            finally:
                await admin.close()

        asyncio.run(run())

    def produce(self, topic: str, records: list[tuple[str, object]]) -> None:
        """Send (key, JSON value) records in this order: records of one key land in one partition."""

        async def run() -> None:
            from aiokafka import AIOKafkaProducer

            producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap)
            await producer.start()
            try:
                for key, value in records:
                    await producer.send_and_wait(topic, json.dumps(value).encode(), key=key.encode())
            finally:
                await producer.stop()

        asyncio.run(run())

    @contextmanager
    def subscription(self, admin_url: str, topic: str, sink: str) -> Iterator[str]:
        """Register this broker as a cluster and subscribe `sink` (service://Name/handler) to `topic`, read
        from the earliest offset; both are deleted afterwards. Yields the subscription id."""
        cluster = f"{topic}-{uuid.uuid4().hex[:6]}"
        with httpx.Client(base_url=admin_url, timeout=30) as admin:
            r = admin.post("/kafka-clusters",
                           json={"name": cluster, "properties": {"bootstrap.servers": self.bootstrap}})
            assert r.status_code == 201, r.text
            r = admin.post("/subscriptions", json={"source": f"kafka://{cluster}/{topic}", "sink": sink,
                                                   "options": {"auto.offset.reset": "earliest"}})
            assert r.status_code == 201, r.text
            sub_id = str(r.json()["id"])
            try:
                yield sub_id
            finally:
                assert admin.delete(f"/subscriptions/{sub_id}").status_code == 202
                assert admin.delete(f"/kafka-clusters/{cluster}").status_code == 202
