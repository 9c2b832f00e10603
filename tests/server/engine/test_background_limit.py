"""Sent invocations yield to a busy ingress: at most `background_concurrency` of their attempts run at once,
calls are never held back, and an attempt that runs long stops counting so slow handlers cannot block the
queue. Every queued invocation still runs to completion."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from engine_support import SdkDeployment, fast_config, register

from pyrestate.server.core_api import ById, IngressInvocation, InvocationTarget, Success
from pyrestate.server.engine.core import EngineCore
from pyrestate.testing.ingress import eventually_async

pytestmark = pytest.mark.timeout(60)


def _invocation(handler: str, arg: object) -> IngressInvocation:
    return IngressInvocation(
        target=InvocationTarget("Greeter", handler),
        body=json.dumps(arg).encode(),
        headers=(("content-type", "application/json"),),
    )


async def _send_sleepers(core: EngineCore, n: int, ms: int) -> list[int]:
    ids = [(await core.send(_invocation("sleepy", ms))).invocation_id for _ in range(n)]
    seen: list[int] = []

    async def sample() -> None:
        while True:
            seen.append(core.invoker.running)
            await asyncio.sleep(0.005)

    sampler = asyncio.create_task(sample())
    try:
        results = await asyncio.wait_for(asyncio.gather(*(core.attach(ById(i)) for i in ids)), 30)
    finally:
        sampler.cancel()
    assert all(r.outcome == Success(b'"slept"', "application/json") for r in results)
    return seen


async def test_sent_invocations_queue_behind_a_busy_ingress_and_all_complete(
    tmp_path: Path, sdk: SdkDeployment
) -> None:
    core = EngineCore(
        fast_config(tmp_path / "data", background_concurrency=2, ingress_busy_s=60.0, background_slot_s=60.0)
    )
    await core.start()
    try:
        await register(core, sdk.url)
        seen = await _send_sleepers(core, 8, 150)
        assert max(seen) == 2  # queued, not all at once, and the queue is served
        # A call is not held back by the full background slots.
        blocker = [(await core.send(_invocation("sleepy", 1500))).invocation_id for _ in range(2)]

        async def both_running() -> None:
            assert core.invoker.running == 2

        await eventually_async(both_running, 10, interval=0.02)
        t0 = asyncio.get_running_loop().time()
        result = await core.call(_invocation("square", 7))
        assert result.outcome == Success(b"49", "application/json")
        assert asyncio.get_running_loop().time() - t0 < 1.0
        for i in blocker:
            await core.attach(ById(i))
    finally:
        await core.stop()


async def test_long_running_attempts_stop_counting(tmp_path: Path, sdk: SdkDeployment) -> None:
    core = EngineCore(
        fast_config(tmp_path / "data", background_concurrency=2, ingress_busy_s=60.0, background_slot_s=0.05)
    )
    await core.start()
    try:
        await register(core, sdk.url)
        seen = await _send_sleepers(core, 8, 1000)
        assert max(seen) > 2  # each 1 s sleeper released its slot after 50 ms: more started meanwhile
    finally:
        await core.stop()
