"""Food order process: the handler of Restate's "building blocks" overview, end to end.

One `OrderProcessor` object per order id walks the order through its states; every step is durable:
the payment token and charge are journaled (`ctx.run`), the preparation delay is a durable timer, the
restaurant answers through an awakeable, and the delivery is a call to the `DeliveryManager` object.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pyrestate.sdk as restate
from examples.food_order import clients
from pyrestate.sdk import ObjectContext, ObjectSharedContext

Order = dict[str, Any]  # {"id": str, "total_cost": number, "delivery_delay": milliseconds}

order_processor = restate.VirtualObject("OrderProcessor")
delivery_manager = restate.VirtualObject("DeliveryManager")


@delivery_manager.handler("startDelivery")
async def start_delivery(ctx: ObjectContext, order: Order) -> None:
    driver = await ctx.run("find driver", lambda: clients.find_driver(order["id"]))
    ctx.set("driver", driver)
    await ctx.run("deliver", lambda: clients.deliver(order["id"], driver))


@delivery_manager.handler("getDriver", kind="shared")
async def get_driver(ctx: ObjectSharedContext) -> str | None:
    return await ctx.get("driver")


@order_processor.handler()
async def process(ctx: ObjectContext, order: Order) -> None:
    # 1. Set status
    ctx.set("status", "CREATED")

    # 2. Handle payment: the token is journaled, so a retried charge carries the same idempotency token
    token = await ctx.run("token", lambda: str(uuid.uuid4()))

    async def pay() -> bool:
        return await clients.charge(order["id"], token, order["total_cost"])

    paid = await ctx.run("payment", pay)
    if not paid:
        ctx.set("status", "REJECTED")
        return

    # 3. Wait until the requested preparation time (a durable timer: the handler may even suspend)
    ctx.set("status", "SCHEDULED")
    await ctx.sleep(timedelta(milliseconds=order["delivery_delay"]))

    # 4. Trigger preparation; the restaurant resolves the awakeable when the food is ready
    preparation_id, preparation_promise = ctx.awakeable()
    await ctx.run("prepare", lambda: clients.prepare(order["id"], preparation_id))
    ctx.set("status", "IN_PREPARATION")
    await preparation_promise

    ctx.set("status", "SCHEDULING_DELIVERY")
    # 5. Find a driver and start delivery
    await ctx.object_call(start_delivery, key=order["id"], arg=order)
    ctx.set("status", "DELIVERED")


@order_processor.handler("getStatus", kind="shared")
async def get_status(ctx: ObjectSharedContext) -> str | None:
    return await ctx.get("status")


app = restate.app([order_processor, delivery_manager])
