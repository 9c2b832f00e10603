"""Services on the official Python SDK behind the real engine of the ServerCore contract suite: the same
names as FakeCore's canned services, so one registration serves both."""

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


wf = restate.Workflow("Wf")


@wf.main()
async def run(ctx: restate.WorkflowContext, req: dict) -> dict:  # type: ignore[type-arg]
    await ctx.promise("go").value()  # running until `release`: a test decides when it completes
    return req


@wf.handler()
async def release(ctx: restate.WorkflowSharedContext) -> None:
    await ctx.promise("go").resolve(True)


greeter = restate.Service("Greeter")


@greeter.handler()
async def greet(ctx: restate.Context, name: str) -> str:
    return f"hello {name}"


app = restate.app(services=[counter, wf, greeter])
