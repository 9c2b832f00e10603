"""Durable RPC with idempotency: a product can be reserved once; the reservation id deduplicates retries."""

from __future__ import annotations

import pyrestate.sdk as restate
from examples.effects import record
from pyrestate.sdk import ObjectContext

product_service = restate.VirtualObject("product")  # one object per product id


@product_service.handler()
async def reserve(ctx: ObjectContext) -> bool:
    # Requests for one product run one at a time, so check-then-set needs no lock.
    if await ctx.get("reserved"):
        await ctx.run("audit", lambda: record(f"product {ctx.key()}: rejected"))
        return False
    ctx.set("reserved", True)
    await ctx.run("audit", lambda: record(f"product {ctx.key()}: reserved"))
    return True


app = restate.app([product_service])
