"""A priority queue built from state and awakeables: at most N expensive calls in flight, the rest wait.

`myService/expensiveMethod` asks the `queue` object for a slot (an awakeable the queue resolves) and
gives it back when done. The queue admits up to N at once; waiting items are admitted by priority
(highest first, first come first served within a priority).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pyrestate.sdk as restate
from examples.effects import record
from pyrestate.sdk import Context, ObjectContext, ObjectSharedContext, TerminalError

MAX_IN_FLIGHT = int(os.environ.get("QUEUE_MAX_IN_FLIGHT", "10"))
QUEUE_KEY = "myService"

queue = restate.VirtualObject("queue")
my_service = restate.Service("myService")


@queue.handler()
async def push(ctx: ObjectContext, item: dict[str, Any]) -> None:
    in_flight: int = await ctx.get("in_flight") or 0
    if in_flight < MAX_IN_FLIGHT:
        ctx.set("in_flight", in_flight + 1)
        ctx.resolve_awakeable(item["awakeable"], None)
        return
    items: list[dict[str, Any]] = await ctx.get("items") or []
    ctx.set("items", [*items, item])


@queue.handler()
async def done(ctx: ObjectContext) -> None:
    items: list[dict[str, Any]] = await ctx.get("items") or []
    if not items:
        ctx.set("in_flight", (await ctx.get("in_flight") or 1) - 1)
        return
    # The freed slot passes straight to the most urgent waiting item.
    chosen = select_and_pop_item(items)
    ctx.set("items", items)
    ctx.resolve_awakeable(chosen["awakeable"], None)


@queue.handler(kind="shared")
async def status(ctx: ObjectSharedContext) -> dict[str, int]:
    return {"inFlight": await ctx.get("in_flight") or 0, "queued": len(await ctx.get("items") or [])}


def select_and_pop_item(items: list[dict[str, Any]]) -> dict[str, Any]:
    best = max(range(len(items)), key=lambda i: (items[i]["priority"], -i))
    return items.pop(best)


@my_service.handler("expensiveMethod")
async def expensive_method(ctx: Context, req: dict[str, Any]) -> int:
    slot_id, slot = ctx.awakeable()
    ctx.object_send(push, QUEUE_KEY, {"awakeable": slot_id, "priority": req.get("priority", 0)})
    await slot
    try:
        result = await ctx.run("expensive operation", lambda: expensive_operation(req))
    except TerminalError:
        ctx.object_send(done, QUEUE_KEY, None)
        raise
    ctx.object_send(done, QUEUE_KEY, None)
    return result


async def expensive_operation(req: dict[str, Any]) -> int:
    tag = req.get("tag", "")
    record(f"start {tag}")
    await asyncio.sleep(req.get("seconds", 1.0))
    record(f"end {tag}")
    return int(req["left"]) + int(req["right"])


app = restate.app([my_service, queue])
