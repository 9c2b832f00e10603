"""End to end: three reminders a (shortened) day apart then an escalation; a payment stops the reminders."""

from __future__ import annotations

import time
import uuid

import pytest

from examples._harness import DeployFn, Deployment
from pyrestate.testing import json_of

DELAY_S = 0.8


@pytest.fixture(scope="module")
def dep(deploy: DeployFn) -> Deployment:
    return deploy("payment_reminders", env={"REMINDER_DELAY_MS": str(int(DELAY_S * 1000))})


def failed_event(invoice: str) -> dict[str, str]:
    return {"id": f"evt_{uuid.uuid4().hex[:12]}", "type": "invoice.payment_failed", "invoice": invoice}


def test_three_reminders_then_escalation(dep: Deployment) -> None:
    invoice = f"in_{uuid.uuid4().hex[:10]}"
    event = failed_event(invoice)
    started = time.monotonic()
    # The webhook's event id is the idempotency key: redeliveries by the provider are deduplicated.
    json_of(dep.ingress.call("PaymentTracker", "onPaymentFailed", event, key=invoice,
                             idempotency_key=event["id"]))
    escalation = f"Escalated invoice {invoice} to support"
    dep.effects.wait_for_line(escalation)
    assert time.monotonic() - started >= 3 * DELAY_S, "reminders came faster than the configured delay"
    json_of(dep.ingress.call("PaymentTracker", "onPaymentFailed", event, key=invoice,
                             idempotency_key=event["id"]))
    time.sleep(DELAY_S)  # a reminder's worth of time passes, and the deduplicated redelivery sends none
    assert dep.effects.matching(invoice) == [
        f"Reminder 1 sent for invoice {invoice}",
        f"Reminder 2 sent for invoice {invoice}",
        f"Reminder 3 sent for invoice {invoice}",
        escalation,
    ]


def test_a_payment_between_reminders_stops_them(dep: Deployment) -> None:
    invoice = f"in_{uuid.uuid4().hex[:10]}"
    json_of(dep.ingress.call("PaymentTracker", "onPaymentFailed", failed_event(invoice), key=invoice))
    assert dep.effects.matching(invoice) == [f"Reminder 1 sent for invoice {invoice}"]
    json_of(dep.ingress.call("PaymentTracker", "onPaymentSuccess",
                             {"type": "invoice.payment_succeeded", "invoice": invoice}, key=invoice))
    time.sleep(3 * DELAY_S)  # the time of the remaining reminders passes, and none is sent
    assert dep.effects.matching(invoice) == [f"Reminder 1 sent for invoice {invoice}"]
