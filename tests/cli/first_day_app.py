"""Official-SDK services of a user's first day: a handler that always fails, one mid-sleep, one waiting on an
awakeable, and one whose input has a JSON schema (for the `dev` hints)."""

from __future__ import annotations

from datetime import timedelta

import restate
from pydantic import BaseModel

failer = restate.Service("Failer")


@failer.handler()
async def boom(ctx: restate.Context, name: str) -> str:
    raise ValueError(f"boom for {name}")


sleepy = restate.VirtualObject("Sleepy")


@sleepy.handler()
async def nap(ctx: restate.ObjectContext, seconds: int) -> str:
    await ctx.sleep(timedelta(seconds=seconds))
    return "rested"


@sleepy.handler()
async def wait(ctx: restate.ObjectContext) -> str:
    name, promise = ctx.awakeable(type_hint=str)
    ctx.set("awakeable", name)
    await ctx.run_typed("noted", lambda: "noted")
    return await promise


class Item(BaseModel):
    product: str
    quantity: int


cart = restate.VirtualObject("Cart")


@cart.handler()
async def add(ctx: restate.ObjectContext, item: Item) -> int:
    count = (await ctx.get("count", type_hint=int) or 0) + item.quantity
    ctx.set("count", count)
    return count


app = restate.app(services=[failer, sleepy, cart])
