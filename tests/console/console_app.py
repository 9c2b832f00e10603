"""Official-SDK services the console tests drive: an object whose state has hostile keys and values, and a
handler that waits on an awakeable nobody resolves (stays open until cancelled or killed)."""

from __future__ import annotations

import restate

box = restate.VirtualObject("Box")


@box.handler()
async def put(ctx: restate.ObjectContext, value: str) -> str:
    ctx.set("<script>alert('k')</script>", value)
    ctx.set("plain", "ok")
    return value


waiter = restate.VirtualObject("Waiter")


@waiter.handler()
async def wait(ctx: restate.ObjectContext) -> str:
    name, promise = ctx.awakeable(type_hint=str)
    await ctx.run_typed("noted", lambda: name)
    return await promise


app = restate.app(services=[box, waiter])
