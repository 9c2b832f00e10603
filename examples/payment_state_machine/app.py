"""Payment state machine: one virtual object per payment token; payment and cancellation never race.

States: NEW -> COMPLETED_SUCCESSFULLY -> CANCELLED (rolled back), or NEW -> CANCELLED (refused later).
Tokens expire after a while (a durable timer), after which the id can be reused.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pyrestate.sdk as restate
from examples.effects import record
from pyrestate.sdk import ObjectContext, ObjectSharedContext

EXPIRY = timedelta(milliseconds=int(os.environ.get("PAYMENT_EXPIRY_MS", str(24 * 60 * 60 * 1000))))

payment_service = restate.VirtualObject("payments")


@payment_service.handler("makePayment")
async def make_payment(ctx: ObjectContext, payment: dict[str, Any]) -> str:
    payment_id = ctx.key()
    status = await ctx.get("status") or "NEW"
    if status == "CANCELLED":
        return f"{payment_id} was cancelled before"
    if status == "COMPLETED_SUCCESSFULLY":
        return f"{payment_id} previously completed"

    account_id, amount = payment["accountId"], payment["amount"]
    await ctx.run("debit", lambda: update_account(account_id, -amount, payment_id))
    ctx.set("payment", {"accountId": account_id, "amountCents": amount})
    ctx.set("status", "COMPLETED_SUCCESSFULLY")
    ctx.object_send(expire, payment_id, None, send_delay=EXPIRY)
    return f"{payment_id} was processed"


@payment_service.handler("cancelPayment")
async def cancel_payment(ctx: ObjectContext) -> None:
    payment_id = ctx.key()
    status = await ctx.get("status") or "NEW"
    if status == "NEW":
        # Remember the cancellation so a late payment request is refused.
        ctx.set("status", "CANCELLED")
        ctx.object_send(expire, payment_id, None, send_delay=EXPIRY)
    elif status == "COMPLETED_SUCCESSFULLY":
        payment = await ctx.get("payment")
        account_id, amount = payment["accountId"], payment["amountCents"]
        await ctx.run("refund", lambda: update_account(account_id, amount, payment_id))
        ctx.set("status", "CANCELLED")


@payment_service.handler()
async def expire(ctx: ObjectContext) -> None:
    ctx.clear_all()


@payment_service.handler("getStatus", kind="shared")
async def get_status(ctx: ObjectSharedContext) -> dict[str, Any]:
    return {"status": await ctx.get("status") or "NEW", "payment": await ctx.get("payment")}


def update_account(account_id: str, amount: int, payment_id: str) -> None:
    record(f"account {account_id} {amount:+d} ({payment_id})")


app = restate.app([payment_service])
