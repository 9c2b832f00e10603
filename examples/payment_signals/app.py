"""Payments with signals: one durable handler takes the provider's synchronous answer when there is one and
otherwise waits, on an awakeable, for the provider's webhook.

`checkout/processPayment` creates the awakeable first and sends its id with the charge request (as the
payment's metadata); the provider answers at once for cards and later, through `checkout/processWebhook`,
for slower methods. The idempotency key is journaled before the charge, so a charge retried after a crash
is recognised by the provider and not made twice.

The provider is PAYMENT_PROVIDER_URL (see provider.py); without it the service starts the fake provider in
its own process on first use.
"""

from __future__ import annotations

import os
import threading
import uuid
from typing import Any

import httpx

import pyrestate.sdk as restate
from examples.effects import maybe_crash
from examples.payment_signals import provider
from pyrestate.sdk import Context

PaymentRequest = dict[str, Any]  # {"orderId": str, "amount": int, "method": "card" | "bank_transfer" | ...}
Intent = dict[str, Any]  # the provider's payment intent: {"id", "amount", "method", "status", "metadata"}

checkout = restate.Service("checkout")


@checkout.handler("processPayment")
async def process_payment(ctx: Context, request: PaymentRequest) -> dict[str, Any]:
    idempotency_key = await ctx.run("idempotency key", lambda: str(uuid.uuid4()))
    callback_id, webhook = ctx.awakeable(type_hint=dict)

    async def charge() -> Intent:
        return await request_charge(request, idempotency_key, callback_id)

    intent: Intent = await ctx.run("charge", charge)
    answer = "synchronous"
    if intent["status"] == "processing":
        # No answer yet: suspend until processWebhook resolves the awakeable (minutes or days later).
        intent = await webhook
        answer = "webhook"
    return {"orderId": request["orderId"], "paymentId": intent["id"], "status": intent["status"],
            "answer": answer}


@checkout.handler("processWebhook")
async def process_webhook(ctx: Context, event: dict[str, Any]) -> None:
    # A real provider signs its webhooks: verify the signature here before trusting the event.
    intent: Intent = event["data"]["object"]
    ctx.resolve_awakeable(intent["metadata"]["callbackId"], intent)


async def request_charge(request: PaymentRequest, idempotency_key: str, callback_id: str) -> Intent:
    body = {"amount": request["amount"], "method": request["method"],
            "metadata": {"orderId": request["orderId"], "callbackId": callback_id}}
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.post(f"{provider_url()}/payment_intents", json=body,
                              headers={"idempotency-key": idempotency_key})
    r.raise_for_status()
    intent: Intent = r.json()
    # The provider has charged, the journal does not know yet: a crash here is retried with the same key.
    maybe_crash("charged")
    return intent


_provider_lock = threading.Lock()


def provider_url() -> str:
    with _provider_lock:
        if "PAYMENT_PROVIDER_URL" not in os.environ:
            os.environ["PAYMENT_PROVIDER_URL"] = provider.start_in_background()
        return os.environ["PAYMENT_PROVIDER_URL"]


app = restate.app([checkout])
