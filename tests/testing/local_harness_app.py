"""A user's services as the harness sees them: imported by MODULE:APP in a separate process."""

from __future__ import annotations

from datetime import timedelta

import pyrestate.sdk as restate

counter = restate.VirtualObject("HarnessCounter")


@counter.handler()
async def add(ctx: restate.ObjectContext, delta: int) -> int:
    value = (await ctx.get("count") or 0) + delta
    ctx.set("count", value)
    return value


@counter.handler("addSlowly")
async def add_slowly(ctx: restate.ObjectContext, delta: int) -> int:
    # A durable timer: a test kills the process while it runs, and the call still completes once.
    await ctx.sleep(timedelta(seconds=1))
    return await add(ctx, delta)


app = restate.app([counter])
