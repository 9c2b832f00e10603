"""Official-SDK services the console tests drive: an object whose state has hostile keys and values, a
handler that waits on an awakeable nobody resolves (stays open until cancelled or killed), one that always
fails (backs off), one that works for a while (running), a caller that calls, sends and sleeps, and a
workflow waiting on a promise."""

from __future__ import annotations

import asyncio
from datetime import timedelta

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


flaky = restate.Service("Flaky")


@flaky.handler()
async def fail(ctx: restate.Context, value: str) -> str:
    # Not a terminal error: the server retries it with backoff and keeps the last failure.
    raise RuntimeError(f"flaky failure for {value}")


slow = restate.Service("Slow")


@slow.handler()
async def work(ctx: restate.Context, seconds: float) -> str:
    async def nap() -> str:
        await asyncio.sleep(seconds)
        return "rested"

    return await ctx.run_typed("nap", nap)


caller = restate.Service("Caller")


@caller.handler()
async def fan(ctx: restate.Context, key: str) -> str:
    out = await ctx.object_call(put, key=key, arg="from-caller")
    ctx.object_send(put, key=key + "-sent", arg="sent")
    await ctx.sleep(timedelta(milliseconds=100))
    return out


signup = restate.Workflow("Signup")


@signup.main()
async def run(ctx: restate.WorkflowContext, email: str) -> str:
    ctx.set("email", email)
    return await ctx.promise("confirmed", type_hint=str).value()


@signup.handler()
async def confirm(ctx: restate.WorkflowSharedContext, code: str) -> None:
    await ctx.promise("confirmed", type_hint=str).resolve(code)


app = restate.app(services=[box, waiter, flaky, slow, caller, signup])


extra = restate.Service("Extra")


@extra.handler()
async def hello(ctx: restate.Context, name: str) -> str:
    return f"hello {name}"


# A second deployment, registered and removed from the deployments page.
other = restate.app(services=[extra])
