from __future__ import annotations

import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from pyrestate.protocol.framing import MessageType
from pyrestate.server.admin.manifest import parse_manifest
from pyrestate.server.config import ServerConfig
from pyrestate.server.core_api import DeploymentRegistration
from pyrestate.server.engine.core import EngineCore
from pyrestate.server.invoker.discovery_client import discover
from pyrestate.server.partition.retry import RetryPolicy
from pyrestate.server.query.source import SqliteSnapshot
from pyrestate.server.storage.records import JournalEntry
from pyrestate.testing.ingress import eventually, eventually_async
from pyrestate.testing.process import ManagedProcess, free_port

HERE = Path(__file__).parent


async def register(core: EngineCore, url: str, *, use_http_11: bool = False) -> str:
    resp = await discover(url, use_http_11=use_http_11)
    parsed = parse_manifest(resp.manifest, version=resp.manifest_version)
    result = await core.register_deployment(
        DeploymentRegistration(
            uri=url,
            use_http_11=use_http_11,
            additional_headers={},
            protocol_mode=parsed.protocol_mode,
            min_protocol_version=parsed.min_protocol_version,
            max_protocol_version=parsed.max_protocol_version,
            sdk_version=None,
            services=parsed.services,
        )
    )
    return result.deployment.id


class SdkDeployment:
    def __init__(self, url: str, state_dir: Path, process: ManagedProcess) -> None:
        self.url = url
        self.state_dir = state_dir
        self.process = process

    def counter(self, name: str) -> int:
        path = self.state_dir / name
        return int(path.read_text()) if path.exists() else 0


def start_sdk(state: Path, variant: str = "v1") -> SdkDeployment:
    """The services of sdk_app.py in a new process; `variant` is what its versioned handlers report."""
    port = free_port()
    proc = ManagedProcess(
        f"sdk-{variant}",
        [sys.executable, "-m", "hypercorn", "sdk_app:app", "--bind", f"127.0.0.1:{port}"],
        state / f"sdk-{variant}.log",
        env={**os.environ, "SDK_TEST_DIR": str(state), "SDK_VARIANT": variant},
        cwd=HERE,
        stop_signal=signal.SIGINT,
        ready_url=f"http://127.0.0.1:{port}/health",
    )
    proc.start()
    return SdkDeployment(f"http://127.0.0.1:{port}", state, proc)


@pytest.fixture(scope="session")
def sdk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SdkDeployment]:
    deployment = start_sdk(tmp_path_factory.mktemp("sdk-state"))
    try:
        yield deployment
    finally:
        deployment.process.stop()


def fast_config(data_dir: Path, *, retry_policy: RetryPolicy | None = None, **overrides: Any) -> ServerConfig:
    """Four partitions and quick retries; `retry_policy` sets the config's retry fields."""
    policy = retry_policy or RetryPolicy(initial_interval_ms=50, max_interval_ms=200)
    assert policy.max_attempts is not None
    base: dict[str, Any] = dict(
        data_dir=data_dir,
        partitions=4,
        retry_initial_interval_ms=policy.initial_interval_ms,
        retry_exponentiation_factor=policy.exponentiation_factor,
        retry_max_interval_ms=policy.max_interval_ms,
        retry_max_attempts=policy.max_attempts,
        retry_on_max_attempts=policy.on_max_attempts.upper(),
    )
    base.update(overrides)
    return ServerConfig(**base)


@pytest.fixture
async def core(tmp_path: Path, sdk: SdkDeployment) -> AsyncIterator[EngineCore]:
    c = EngineCore(fast_config(tmp_path / "data"))
    await c.start()
    await register(c, sdk.url)
    try:
        yield c
    finally:
        await c.stop()


async def journaled(core: EngineCore, invocation_id: str, ty: MessageType, timeout: float = 10.0) -> None:
    """Wait until the invocation's journal holds an entry of type `ty` (e.g. its Sleep command: the
    timer is stored in the same commit)."""

    async def check() -> None:
        types = [e.ty for e in core.storage.reader().get_journal(invocation_id)]
        assert ty in types, types

    await eventually_async(check, timeout, interval=0.02)


def journaled_on_disk(data_dir: Path, invocation_id: str, ty: MessageType, timeout: float = 10.0) -> None:
    """`journaled` for an engine running in another process: read its committed SQLite file."""

    def check() -> None:
        snapshot = SqliteSnapshot(fast_config(data_dir).database_path)
        try:
            rows = snapshot.scan("journal")
        finally:
            snapshot.close()
        types = [JournalEntry.decode(v).ty for (iid, _), v in rows if iid == invocation_id]
        assert ty in types, types

    eventually(check, timeout, interval=0.05)
