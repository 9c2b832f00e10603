"""Official-SDK services for the tracing test: a caller that calls, sends to and sleeps around a callee.

Handlers answer the `traceparent` their attempt request carried ("" when none)."""

from __future__ import annotations

from datetime import timedelta

import restate

callee = restate.Service("TraceCallee")


@callee.handler()
async def hello(ctx: restate.Context, name: str) -> dict[str, str]:
    return {"greeting": f"hi {name}", "traceparent": ctx.request().attempt_headers.get("traceparent", "")}


@callee.handler()
async def refuse(ctx: restate.Context) -> None:
    raise restate.TerminalError("refused", status_code=409)


caller = restate.Service("TraceCaller")


@caller.handler()
async def run(ctx: restate.Context, name: str) -> dict[str, str]:
    answer = await ctx.service_call(hello, arg=name)
    ctx.service_send(hello, arg=f"{name} (sent)")
    await ctx.sleep(timedelta(milliseconds=50))
    return {"callee": answer["traceparent"], "caller": ctx.request().attempt_headers.get("traceparent", "")}


app = restate.app(services=[callee, caller])
