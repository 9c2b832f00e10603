"""Services on the official Python SDK (restate-sdk 1.3.0), served by `pyrestate serve` in the tests."""

from __future__ import annotations

import restate

counter = restate.VirtualObject("Counter")


@counter.handler()
async def add(ctx: restate.ObjectContext, delta: int) -> int:
    value = (await ctx.get("count") or 0) + delta
    ctx.set("count", value)
    return value


@counter.handler(kind="shared")
async def get(ctx: restate.ObjectSharedContext) -> int:
    return await ctx.get("count") or 0


@counter.handler()
async def reset(ctx: restate.ObjectContext) -> None:
    ctx.clear("count")


wf = restate.Workflow("Wf")


@wf.main()
async def run(ctx: restate.WorkflowContext, req: dict) -> dict:  # type: ignore[type-arg]
    return req


@wf.handler()
async def stage(ctx: restate.WorkflowSharedContext) -> str:
    return "stage"


greeter = restate.Service("Greeter")


@greeter.handler()
async def greet(ctx: restate.Context, name: str) -> str:
    return f"hello {name}"


app = restate.app(services=[counter, wf, greeter])
