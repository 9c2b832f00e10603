"""Services that the ingress client tests (test_client.py) call through the official restate-server."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel

import pyrestate.sdk as restate


class Item(BaseModel):
    name: str
    qty: int = 1


svc = restate.Service("ClientSvc")


@svc.handler()
async def echo(ctx: restate.Context, item: Item) -> Item:
    return Item(name=item.name.upper(), qty=item.qty * 2)


@svc.handler()
async def slow(ctx: restate.Context, ms: int) -> str:
    await ctx.sleep(timedelta(milliseconds=ms))
    return f"slept {ms}"


@svc.handler()
async def fail(ctx: restate.Context, message: str) -> str:
    raise restate.TerminalError(message, status_code=418)


@svc.handler(name="noInput")
async def no_input(ctx: restate.Context) -> str:
    return "nothing in"


@svc.handler(name="bumpOnce")
async def bump_once(ctx: restate.Context, key: str) -> int:
    """Counts its executions in ClientCounter/<key>: an idempotent call must execute once."""
    return await ctx.object_call(add, key, 1)


@svc.handler(
    accept="*/*",
    content_type="application/octet-stream",
    input_serde=restate.BytesSerde(),
    output_serde=restate.BytesSerde(),
)
async def raw(ctx: restate.Context, data: bytes) -> bytes:
    return data[::-1]


counter = restate.VirtualObject("ClientCounter")


@counter.handler()
async def add(ctx: restate.ObjectContext, delta: int) -> int:
    value = (await ctx.get("n", type_hint=int) or 0) + delta
    ctx.set("n", value)
    return value


@counter.handler(name="slowAdd")
async def slow_add(ctx: restate.ObjectContext, delta: int) -> int:
    await ctx.sleep(timedelta(milliseconds=300))
    value = (await ctx.get("n", type_hint=int) or 0) + delta
    ctx.set("n", value)
    return value


@counter.handler(kind="shared")
async def get(ctx: restate.ObjectSharedContext) -> int:
    return await ctx.get("n", type_hint=int) or 0


wf = restate.Workflow("ClientWf")


@wf.main()
async def run(ctx: restate.WorkflowContext, item: Item) -> Item:
    extra = await ctx.promise("extra", type_hint=int).value()
    return Item(name=item.name, qty=item.qty + extra)


@wf.handler()
async def release(ctx: restate.WorkflowSharedContext, extra: int) -> None:
    await ctx.promise("extra", type_hint=int).resolve(extra)


app = restate.app(services=[svc, counter, wf])
