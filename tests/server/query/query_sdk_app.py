"""Official-SDK services for the `/query` end-to-end test."""

from __future__ import annotations

from datetime import timedelta

import restate

counter = restate.VirtualObject("Counter")


@counter.handler()
async def add(ctx: restate.ObjectContext, delta: int) -> int:
    value = (await ctx.get("count", type_hint=int) or 0) + delta
    ctx.set("count", value)
    return value


waiter = restate.VirtualObject("Waiter")


@waiter.handler()
async def wait(ctx: restate.ObjectContext) -> str:
    name, promise = ctx.awakeable(type_hint=str)
    ctx.set("awakeable", name)
    await ctx.run_typed("noted", lambda: "noted")
    await ctx.sleep(timedelta(milliseconds=1))
    return await promise


app = restate.app(services=[counter, waiter])
