"""Jepsen-lite set workload (after restatedev/jepsen `set-vo`): concurrent clients add unique elements to one
set object, a reader reads it, while the nemesis crashes, stops and pauses the server and the service.

Each add is classified as Jepsen does: a 200 is acknowledged (`ok`); a request that never reached the server
(connection refused, no free connection) or a 4xx refusal is a definite failure (`fail`); a timeout, a broken
connection or a 5xx is indeterminate (`info`) and may or may not have taken effect. After healing, the final
read must hold every acknowledged add and nothing that was never attempted or definitely failed, and no read
that began after an acknowledgement may miss that element.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from faults_env import SCALE, SDKS, SEED, call_until_ok, duration, fault_env, summary

from pyrestate.testing.faults import Nemesis, SetHistory, check_set

TIMEOUT = 3.0


def _classify(outcome: httpx.Response | Exception) -> str:
    if isinstance(outcome, httpx.Response):
        if outcome.status_code == 200:
            return "ok"
        if 400 <= outcome.status_code < 500 and outcome.status_code not in (408, 409, 429):
            return "fail"
        return "info"
    if isinstance(outcome, httpx.ConnectError | httpx.PoolTimeout):
        return "fail"  # the request never left this process or was refused at connect
    return "info"


async def _workload(
    url: str, clients: int, run_for: float, history: SetHistory, outcomes: Counter[str]
) -> None:
    elements = itertools.count()
    stop_at = time.monotonic() + run_for

    async def adder() -> None:
        client = httpx.AsyncClient(timeout=TIMEOUT)
        try:
            while time.monotonic() < stop_at:
                e = next(elements)
                result: httpx.Response | Exception
                try:
                    result = await client.post(f"{url}/FaultsSet/s/add", json=e)
                except httpx.TransportError as err:
                    result = err
                    await client.aclose()
                    client = httpx.AsyncClient(timeout=TIMEOUT)
                verdict = _classify(result)
                outcomes[f"{verdict}:{getattr(result, 'status_code', type(result).__name__)}"] += 1
                if verdict == "ok":
                    history.ok[e] = time.monotonic()
                elif verdict == "fail":
                    history.fail.add(e)
                    await asyncio.sleep(0.2)
                else:
                    history.info.add(e)
        finally:
            await client.aclose()

    async def reader() -> None:
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            while time.monotonic() < stop_at:
                began = time.monotonic()
                try:
                    r = await client.post(f"{url}/FaultsSet/s/get")
                    if r.status_code == 200:
                        history.reads.append((began, frozenset(r.json())))
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.25)

    await asyncio.gather(reader(), *(adder() for _ in range(clients)))


@pytest.mark.parametrize("sdk", SDKS)
def test_set_acknowledged_adds_survive(sdk: str, tmp_path: Path) -> None:
    run_for = duration(12.0)
    with fault_env(sdk, tmp_path) as env:
        # Some pauses outlast the client timeout, so indeterminate adds happen.
        nemesis = Nemesis(env.targets(), seed=SEED + 2000, interval=(1.0, 2.5), pause=(0.5, 5.0))
        history = SetHistory()
        outcomes: Counter[str] = Counter()
        nemesis.start()
        try:
            asyncio.run(_workload(env.ingress_url, max(1, int(6 * SCALE)), run_for, history, outcomes))
        finally:
            nemesis.stop()
        # Indeterminate adds may still be executing: the final read comes once the object is idle.
        time.sleep(1.0)
        final = frozenset(call_until_ok(f"{env.ingress_url}/FaultsSet/s/get", None))
        report = check_set(history, final)
        summary(
            f"set-workload sdk={sdk} seed={SEED} acknowledged={report.acked} crashes={nemesis.crashes} "
            f"lost={len(report.lost)} duplicated=0 unexpected={len(report.unexpected)} "
            f"stale-reads={len(report.stale_reads)} reads={len(history.reads)} "
            f"refused={len(history.fail)} indeterminate={len(history.info)} "
            f"(present {report.indeterminate_present}, absent {report.indeterminate_absent}) "
            f"faults=[{nemesis.summary()}] outcomes={dict(outcomes)}"
        )
        assert not nemesis.errors, nemesis.errors
        assert report.lost == [], f"acknowledged adds missing: {report.lost[:20]}"
        assert report.unexpected == [], f"never attempted or refused, yet present: {report.unexpected[:20]}"
        assert report.stale_reads == [], report.stale_reads[:10]
        assert report.acked > 0 and nemesis.crashes > 0
