"""Official-SDK services the CLI tests drive: a counter with state, a plain greeter, a handler that waits."""

from __future__ import annotations

import restate

counter = restate.VirtualObject("Counter")


@counter.handler()
async def add(ctx: restate.ObjectContext, delta: int) -> int:
    value = (await ctx.get("count", type_hint=int) or 0) + delta
    ctx.set("count", value)
    return value


@counter.handler(kind="shared")
async def get(ctx: restate.ObjectSharedContext) -> int:
    return await ctx.get("count", type_hint=int) or 0


greeter = restate.Service("Greeter")


@greeter.handler()
async def greet(ctx: restate.Context, name: str) -> str:
    return f"Hello {name}!"


waiter = restate.VirtualObject("Waiter")


@waiter.handler()
async def wait(ctx: restate.ObjectContext) -> str:
    # Blocks on an awakeable nobody resolves: the invocation stays open until cancelled or killed.
    name, promise = ctx.awakeable(type_hint=str)
    ctx.set("awakeable", name)
    await ctx.run_typed("noted", lambda: "noted")
    return await promise


app = restate.app(services=[counter, greeter, waiter])
