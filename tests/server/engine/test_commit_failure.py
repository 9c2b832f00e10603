"""A commit that fails (disk full, I/O error) while invocations are mid-flight: nothing half-applied may
survive. The engine drops the batch, stops the attempts whose commands were lost and restarts them from
storage; a journal that went out of step with the SDK would end in a journal mismatch (570) and retries
forever, so a correct result within the time limit is the proof."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from pathlib import Path

import pytest
from engine_support import SdkDeployment, fast_config, register

from pyrestate.server.core_api import IngressInvocation, InvocationTarget, Success
from pyrestate.server.engine.core import EngineCore
from pyrestate.server.storage.api import Transaction

pytestmark = pytest.mark.timeout(60)


async def test_failed_commits_mid_invocation_leave_a_consistent_journal(
    tmp_path: Path, sdk: SdkDeployment
) -> None:
    core = EngineCore(fast_config(tmp_path / "data"))
    await core.start()
    try:
        await register(core, sdk.url)
        commit = core.storage.commit
        failures = {"left": 0, "injected": 0}

        async def failing_commit(txn: Transaction) -> None:
            if failures["left"] > 0 and txn.writes:
                failures["left"] -= 1
                failures["injected"] += 1
                raise sqlite3.OperationalError("disk I/O error")
            await commit(txn)

        core.storage.commit = failing_commit  # type: ignore[method-assign]
        tags = [uuid.uuid4().hex for _ in range(3)]
        calls = [
            asyncio.create_task(
                core.call(
                    IngressInvocation(
                        target=InvocationTarget("Greeter", "steps"),
                        body=json.dumps(tag).encode(),
                        headers=(("content-type", "application/json"),),
                    )
                )
            )
            for tag in tags
        ]
        # Let the invocations get going, then fail commits twice while their steps are in flight.
        for _ in range(2):
            await asyncio.sleep(0.12)
            failures["left"] = 1
        results = await asyncio.wait_for(asyncio.gather(*calls), 45)
        assert failures["injected"] == 2
        for tag, result in zip(tags, results, strict=True):
            assert isinstance(result.outcome, Success), result.outcome
            seen = json.loads(result.outcome.value)
            # A step whose result was never committed may run again; a committed one never does, and the
            # value the handler saw is the one recorded last.
            assert len(seen) == 5
            for i, value in enumerate(seen):
                assert value == sdk.counter(f"step-{tag}-{i}") >= 1
    finally:
        await core.stop()
