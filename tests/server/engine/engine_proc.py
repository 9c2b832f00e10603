"""Runs an engine in its own process for crash tests: registers the deployment, submits the invocations
named on the command line, prints their ids, then serves until killed."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from engine_support import fast_config, register

from pyrestate.server.core_api import IngressInvocation, InvocationTarget
from pyrestate.server.engine.core import EngineCore


async def main(data_dir: str, url: str, key: str) -> None:
    core = EngineCore(fast_config(Path(data_dir)))
    await core.start()
    await register(core, url)
    ct = (("content-type", "application/json"),)
    ids = [
        (await core.send(IngressInvocation(InvocationTarget("Greeter", "sleepy"), b"1500", ct))).invocation_id
    ]
    for _ in range(3):
        inv = IngressInvocation(InvocationTarget("Counter", "add", key), b"1", ct)
        ids.append((await core.send(inv)).invocation_id)
    print(json.dumps(ids), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
