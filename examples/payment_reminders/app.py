"""Durable webhook processing: payment events per invoice, reminders by delayed self-calls, escalation."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pyrestate.sdk as restate
from examples.effects import record
from pyrestate.sdk import ObjectContext

# A day between reminders in production; tests shorten it (REMINDER_DELAY_MS).
REMINDER_DELAY = timedelta(milliseconds=int(os.environ.get("REMINDER_DELAY_MS", str(24 * 60 * 60 * 1000))))

payment_tracker = restate.VirtualObject("PaymentTracker")  # one instance per invoice id


# The payment provider sends webhook events for invoice payment attempts.
@payment_tracker.handler("onPaymentSuccess")
async def on_payment_success(ctx: ObjectContext, event: dict[str, Any]) -> None:
    ctx.set("paid", True)


@payment_tracker.handler("onPaymentFailed")
async def on_payment_failed(ctx: ObjectContext, event: dict[str, Any]) -> None:
    if await ctx.get("paid"):
        return

    reminder_count: int = await ctx.get("reminder_count") or 0
    if reminder_count < 3:
        ctx.set("reminder_count", reminder_count + 1)
        await ctx.run("send_reminder", lambda: send_reminder_email(ctx.key(), reminder_count + 1))
        # Schedule the next reminder via a delayed call to this handler of this same invoice.
        ctx.object_send(on_payment_failed, ctx.key(), event, send_delay=REMINDER_DELAY)
    else:
        await ctx.run("escalate", lambda: escalate_to_human(ctx.key()))


def send_reminder_email(invoice: str, number: int) -> None:
    record(f"Reminder {number} sent for invoice {invoice}")


def escalate_to_human(invoice: str) -> None:
    record(f"Escalated invoice {invoice} to support")


app = restate.app([payment_tracker])
