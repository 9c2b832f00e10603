"""Services on pyrestate.sdk driven through the official restate-server by test_interop_official.py."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pyrestate.sdk as restate

ATTEMPTS: dict[str, int] = {}

greeter = restate.Service("Greeter")


@greeter.handler()
async def greet(ctx: restate.Context, name: str) -> str:
    return f"hello {name}"


@greeter.handler()
async def fail(ctx: restate.Context, code: int) -> str:
    raise restate.TerminalError("nope", status_code=code)


@greeter.handler(name="runFlaky")
async def run_flaky(ctx: restate.Context, key: str) -> str:
    def step() -> str:
        ATTEMPTS[key] = ATTEMPTS.get(key, 0) + 1
        if ATTEMPTS[key] < 3:
            raise ValueError(f"transient {ATTEMPTS[key]}")
        return f"ok after {ATTEMPTS[key]}"

    return await ctx.run_typed(
        "flaky-step", step, restate.RunOptions(initial_retry_interval=timedelta(milliseconds=10))
    )


@greeter.handler(name="runGiveUp")
async def run_give_up(ctx: restate.Context) -> str:
    def step() -> str:
        raise ValueError("always")

    try:
        return await ctx.run_typed("doomed", step, restate.RunOptions(max_attempts=2))
    except restate.TerminalError as e:
        return f"gave up: {e.message}"


@greeter.handler()
async def sleepy(ctx: restate.Context, ms: int) -> str:
    await ctx.sleep(timedelta(milliseconds=ms))
    return "slept"


@greeter.handler(name="fanOut")
async def fan_out(ctx: restate.Context, names: list[str]) -> list[str]:
    futures = [ctx.service_call(greet, n) for n in names]
    await restate.gather(*futures)
    return [await f for f in futures]


@greeter.handler(name="raceSleep")
async def race_sleep(ctx: restate.Context) -> str:
    match await restate.select(
        fast=ctx.sleep(timedelta(milliseconds=10)), slow=ctx.sleep(timedelta(seconds=30))
    ):
        case ["fast", _]:
            return "fast"
        case [other, _]:
            return str(other)
    return "none"


@greeter.handler()
async def deterministic(ctx: restate.Context) -> dict[str, object]:
    before = [ctx.random().random(), str(ctx.uuid())]
    await ctx.sleep(timedelta(milliseconds=1))
    return {"values": before, "id": ctx.request().id}


@greeter.handler(name="longSleep")
async def long_sleep(ctx: restate.Context) -> str:
    await ctx.sleep(timedelta(hours=1))
    return "woke"


counter = restate.VirtualObject("Counter")


@counter.handler()
async def add(ctx: restate.ObjectContext, delta: int) -> int:
    value = (await ctx.get("count", type_hint=int) or 0) + delta
    ctx.set("count", value)
    return value


@counter.handler(kind="shared")
async def get(ctx: restate.ObjectSharedContext) -> int:
    return await ctx.get("count") or 0


@counter.handler()
async def keys(ctx: restate.ObjectContext) -> list[str]:
    return await ctx.state_keys()


@counter.handler()
async def reset(ctx: restate.ObjectContext) -> None:
    ctx.clear_all()


@counter.handler(name="addViaSend")
async def add_via_send(ctx: restate.ObjectContext, delta: int) -> None:
    ctx.object_send(add, ctx.key(), delta, send_delay=timedelta(milliseconds=100))


@counter.handler(name="awaitAwakeable")
async def await_awakeable(ctx: restate.ObjectContext) -> str:
    awk_id, fut = ctx.awakeable(type_hint=str)
    ctx.set("awk", awk_id)
    return await fut


@counter.handler(name="awakeableId", kind="shared")
async def awakeable_id(ctx: restate.ObjectSharedContext) -> str | None:
    return await ctx.get("awk")


@dataclass
class Order:
    item: str
    qty: int


wf = restate.Workflow("Approval")


@wf.main()
async def run(ctx: restate.WorkflowContext, order: Order) -> str:
    ctx.set("stage", "waiting")
    who = await ctx.promise("approval", type_hint=str).value()
    ctx.set("stage", "approved")
    return f"{order.qty}x{order.item} approved by {who}"


@wf.handler()
async def approve(ctx: restate.WorkflowSharedContext, who: str) -> str:
    await ctx.promise("approval").resolve(who)
    return "ok"


@wf.handler()
async def stage(ctx: restate.WorkflowSharedContext) -> str | None:
    return await ctx.get("stage")


app = restate.app(services=[greeter, counter, wf])
