"""Durable promises as a service: peek / await / resolve / reject by promise name over HTTP.

A promise is a virtual object keyed by its name: it holds the first completion and the awakeables of
the awaiters that came before it. Awaiting happens in a stateless handler (suspended on its awakeable),
so the object itself never blocks and any number of awaiters can wait, across processes and restarts.
"""

from __future__ import annotations

from typing import Any

import pyrestate.sdk as restate
from pyrestate.sdk import Context, ObjectContext, ObjectSharedContext

# A completion is {"value": ...} or {"error": "..."}; the first one to arrive is the promise's forever.
Completion = dict[str, Any]

promise_object = restate.VirtualObject("durablePromiseObject")
promise_server = restate.Service("durablePromiseServer")


@promise_object.handler(kind="shared")
async def result(ctx: ObjectSharedContext) -> Completion | None:
    completion: Completion | None = await ctx.get("result")
    return completion


@promise_object.handler()
async def subscribe(ctx: ObjectContext, awakeable_id: str) -> Completion | None:
    completion: Completion | None = await ctx.get("result")
    if completion is None:
        listeners: list[str] = await ctx.get("listeners") or []
        ctx.set("listeners", [*listeners, awakeable_id])
    return completion


@promise_object.handler()
async def complete(ctx: ObjectContext, completion: Completion) -> Completion:
    existing: Completion | None = await ctx.get("result")
    if existing is not None:
        return existing
    ctx.set("result", completion)
    for awakeable_id in await ctx.get("listeners") or []:
        ctx.resolve_awakeable(awakeable_id, completion)
    ctx.clear("listeners")
    return completion


@promise_server.handler()
async def peek(ctx: Context, req: dict[str, Any]) -> Completion | None:
    return await ctx.object_call(result, key=req["request"]["promiseName"], arg=None)


@promise_server.handler("await")
async def await_promise(ctx: Context, req: dict[str, Any]) -> Completion:
    awakeable_id, completion = ctx.awakeable()
    done = await ctx.object_call(subscribe, key=req["request"]["promiseName"], arg=awakeable_id)
    if done is not None:
        return done
    value: Completion = await completion
    return value


@promise_server.handler()
async def resolve(ctx: Context, req: dict[str, Any]) -> Completion:
    request = req["request"]
    return await ctx.object_call(complete, key=request["promiseName"], arg={"value": request["value"]})


@promise_server.handler()
async def reject(ctx: Context, req: dict[str, Any]) -> Completion:
    request = req["request"]
    return await ctx.object_call(complete, key=request["promiseName"], arg={"error": request["errorMessage"]})


app = restate.app([promise_server, promise_object])
