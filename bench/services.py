"""The benchmark service: one source, served with either SDK.

BENCH_SDK=official (default) imports the official `restate` SDK, BENCH_SDK=pyrestate imports
`pyrestate.sdk` under the same name; nothing else differs.

    Noop.call        returns its input
    Steps.three      three sequential ctx.run steps
    Counter.add      VirtualObject: count += delta, returns the new count (Counter.get reads it)
    Sleeper.nap      durable ctx.sleep(10 ms)
"""

import os
from datetime import timedelta
from typing import Any

if os.environ.get("BENCH_SDK", "official") == "pyrestate":
    import pyrestate.sdk as restate
else:
    import restate  # type: ignore[no-redef]

noop = restate.Service("Noop")


@noop.handler("call")
async def noop_call(ctx: restate.Context, req: Any) -> Any:
    return req


steps = restate.Service("Steps")


async def _one() -> int:
    return 1


async def _two() -> int:
    return 2


async def _three() -> int:
    return 3


@steps.handler("three")
async def steps_three(ctx: restate.Context, req: Any) -> dict[str, int]:
    opts = restate.RunOptions[int]()
    a = await ctx.run_typed("a", _one, opts)
    b = await ctx.run_typed("b", _two, opts)
    c = await ctx.run_typed("c", _three, opts)
    return {"sum": a + b + c}


counter = restate.VirtualObject("Counter")


@counter.handler("add")
async def counter_add(ctx: restate.ObjectContext, delta: int) -> int:
    value = (await ctx.get("count", type_hint=int) or 0) + delta
    ctx.set("count", value)
    return value


@counter.handler("get", kind="shared")
async def counter_get(ctx: restate.ObjectSharedContext) -> int:
    return await ctx.get("count", type_hint=int) or 0


sleeper = restate.Service("Sleeper")


@sleeper.handler("nap")
async def sleeper_nap(ctx: restate.Context, req: Any) -> str:
    await ctx.sleep(timedelta(milliseconds=10))
    return "rested"


app = restate.app(services=[noop, steps, counter, sleeper])
