"""Official-SDK services for the PostgreSQL end-to-end test."""

from __future__ import annotations

from datetime import timedelta

import restate

greeter = restate.Service("PgGreeter")


@greeter.handler()
async def greet(ctx: restate.Context, name: str) -> str:
    stamp = await ctx.run_typed("stamp", lambda: f"hello {name}")
    return stamp


@greeter.handler()
async def sleepy(ctx: restate.Context, ms: int) -> str:
    await ctx.sleep(timedelta(milliseconds=ms))
    return "slept"


counter = restate.VirtualObject("PgCounter")


@counter.handler()
async def add(ctx: restate.ObjectContext, delta: int) -> int:
    value = (await ctx.get("count", type_hint=int)) or 0
    ctx.set("count", value + delta)
    return value + delta


@counter.handler(kind="shared")
async def get(ctx: restate.ObjectSharedContext) -> int:
    return (await ctx.get("count", type_hint=int)) or 0


app = restate.app(services=[greeter, counter])
