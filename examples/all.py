"""Every example's services in one ASGI app: what `make run` (`pyrestate dev examples.all:app`) serves.

Service names are unique across the examples; `restate.app` refuses a name bound twice, so a collision
fails at import. Paths under /reserve/ go to the durable RPC example's web app, which fronts Restate.
`pyrestate dev` prints CURL_EXAMPLES once everything is registered.
"""

from __future__ import annotations

import importlib
import json
import os
from types import ModuleType
from typing import Any

import pyrestate.sdk as restate
from pyrestate.sdk import Service, VirtualObject, Workflow

# Minutes, not days: the timers of these examples fire while you watch (set the variables to override).
os.environ.setdefault("REMINDER_DELAY_MS", "5000")
os.environ.setdefault("PAYMENT_EXPIRY_MS", "60000")

EXAMPLES = [
    "food_order",
    "async_tasks",
    "fan_out",
    "payment_reminders",
    "durable_rpc",
    "sagas",
    "stateful_actors",
    "payment_state_machine",
    "durable_promises",
    "priority_queue",
    "sync_to_async",
    "database",
    "kafka_posts",
    "package_tracking",
    "payment_signals",
]


def services_of(module: ModuleType) -> list[Service | VirtualObject | Workflow]:
    return [v for v in vars(module).values() if isinstance(v, Service | VirtualObject | Workflow)]


SERVICES = {name: services_of(importlib.import_module(f"examples.{name}.app")) for name in EXAMPLES}
restate_app = restate.app([svc for services in SERVICES.values() for svc in services])

_web = importlib.import_module("examples.durable_rpc.web").app


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http" and scope["path"].startswith("/reserve/"):
        await _web(scope, receive, send)
    else:
        await restate_app(scope, receive, send)


def _post(url: str, body: Any = None, headers: str = "") -> str:
    data = f" --json '{json.dumps(body)}'" if body is not None else " -X POST"
    return f"curl {url}{headers}{data}"


_BOOKING = {
    "flights": {"flightId": "12345", "passengerName": "John Doe"},
    "car": {"pickupLocation": "Airport", "rentalDate": "2024-12-16"},
    "paymentInfo": {"cardNumber": "4111111111111111", "amount": 1500},
}

# (what it shows, command): `{ingress}` and `{app}` stand for the URLs `pyrestate dev` uses.
CURL_EXAMPLES = [
    ("food order: payment, durable timer, restaurant awakeable, delivery (watch the log)",
     _post("{ingress}/OrderProcessor/order-1/process/send",
           {"id": "order-1", "total_cost": 30, "delivery_delay": 2000})),
    ("  ...its status, CREATED to DELIVERED", _post("{ingress}/OrderProcessor/order-1/getStatus")),
    ("fan-out / fan-in", _post("{ingress}/worker/run",
                               {"description": "get out of bed,shower,make coffee,have breakfast"})),
    ("durable RPC: true; reservation2 then gives false", _post("{app}/reserve/product1/reservation1")),
    ("async task, delayed 10 s and deduplicated by key",
     _post("'{ingress}/taskWorker/runTask/send?delay=10s'", {"id": "task-1", "payload": "hello"},
           " -H 'idempotency-key: task-1'")),
    ("  ...latch on to it", "curl {ingress}/restate/invocation/taskWorker/runTask/task-1/attach"),
    ("stateful actor (5 s transition)", _post("{ingress}/machineOperator/my-machine/setUp")),
    ("saga: a declined payment runs the compensations",
     _post("{ingress}/BookingWorkflow/trip-1/run", _BOOKING)),
    ("payment reminders every 5 s, then escalation",
     _post("{ingress}/PaymentTracker/in_123/onPaymentFailed",
           {"id": "evt_1", "type": "invoice.payment_failed", "invoice": "in_123"})),
    ("payment state machine",
     _post("{ingress}/payments/pay-1/makePayment", {"accountId": "abc", "amount": 100})),
    ("durable promise as a service",
     _post("{ingress}/durablePromiseServer/resolve", {"request": {"promiseName": "p1", "value": "hi"}})),
    ("priority queue", _post("{ingress}/myService/expensiveMethod", {"left": 1, "right": 2, "priority": 1})),
    ("sync to async: a 10 s upload workflow", _post("{ingress}/dataUploader/upload-1/run/send")),
    ("payment with signals: a card is answered at once",
     _post("{ingress}/checkout/processPayment", {"orderId": "o-1", "amount": 30, "method": "card"})),
    ("  ...a bank transfer by the provider's webhook, 3 s later",
     _post("{ingress}/checkout/processPayment",
           {"orderId": "o-2", "amount": 120, "method": "bank_transfer"})),
    ("package tracking: scans come from Kafka (see examples/package_tracking), enriched view",
     _post("{ingress}/packageTracker/pkg-1/get")),
]
